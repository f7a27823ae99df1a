/*
 * remount.c - see remount.h.
 *
 * mount(8) runs the helper of a mount's type for a remount as for a mount:
 * for fuse.fsbridge that is mount.fuse.fsbridge (mount.fuse, the fallback,
 * would look for a program called "fsbridge"), given the mount's whole
 * current option list with the change and "remount" in it.  The relay
 * already serving the mount takes no part: the kernel's FUSE remount
 * changes the superblock's and the mount's VFS flags (ro/rw above all)
 * and ignores the data of a mount(2) remount, so the whole work is one
 * mount(2) call.  The guest kernel then refuses writes with EROFS
 * itself; the host is never asked.
 *
 * MS_REMOUNT replaces the mount's flags with those given, so the call
 * starts from the flags the mount has now (/proc/self/mountinfo) and applies the list
 * as changes: `fsbridge-mount -o remount,ro DIR` must not clear the
 * nosuid and nodev that every FUSE mount is made with.  Only a FUSE mount
 * is remounted: the helper is root's, and a typo must not remount "/".
 */
#include "mount/remount.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statfs.h>

#include "common/log.h"

struct vfs_flag {
    const char *name;
    unsigned long set;   /* the flags this name turns on */
    unsigned long clear; /* and off */
};

/* mount(8)'s names of the flags mount(2) takes on a remount. */
static const struct vfs_flag vfs_flags[] = {
    { "ro", MS_RDONLY, 0 },
    { "rw", 0, MS_RDONLY },
    { "nosuid", MS_NOSUID, 0 },
    { "suid", 0, MS_NOSUID },
    { "nodev", MS_NODEV, 0 },
    { "dev", 0, MS_NODEV },
    { "noexec", MS_NOEXEC, 0 },
    { "exec", 0, MS_NOEXEC },
    { "sync", MS_SYNCHRONOUS, 0 },
    { "async", 0, MS_SYNCHRONOUS },
    { "dirsync", MS_DIRSYNC, 0 },
    { "noatime", MS_NOATIME, MS_RELATIME | MS_STRICTATIME },
    { "atime", 0, MS_NOATIME },
    { "relatime", MS_RELATIME, MS_NOATIME | MS_STRICTATIME },
    { "norelatime", 0, MS_RELATIME },
    { "strictatime", MS_STRICTATIME, MS_NOATIME | MS_RELATIME },
    { "nodiratime", MS_NODIRATIME, 0 },
    { "diratime", 0, MS_NODIRATIME },
    { "lazytime", MS_LAZYTIME, 0 },
    { "nolazytime", 0, MS_LAZYTIME },
    { "nosymfollow", MS_NOSYMFOLLOW, 0 },
    { "symfollow", 0, MS_NOSYMFOLLOW },
};

/* Applies the option OPT to FLAGS; an option that is no VFS flag leaves
 * them as they are. */
static unsigned long apply_flag(unsigned long flags, const char *opt)
{
    for (size_t i = 0; i < sizeof(vfs_flags) / sizeof(vfs_flags[0]); i++)
        if (strcmp(opt, vfs_flags[i].name) == 0)
            return (flags & ~vfs_flags[i].clear) | vfs_flags[i].set;
    return flags;
}

/* Applies each option of the comma-separated list OPTS (changed). */
static unsigned long apply_flags(unsigned long flags, char *opts)
{
    char *save = NULL;
    for (char *opt = strtok_r(opts, ",", &save); opt; opt = strtok_r(NULL, ",", &save))
        flags = apply_flag(flags, opt);
    return flags;
}

/*
 * The flags of the /proc/self/mountinfo LINE (changed) of the mount whose
 * id is at KEY, or -1 when it is another mount's.  Two lists hold them: the mount's own
 * options (ro or rw for the mount alone, nosuid, nodev, noexec, the atime
 * ones, nosymfollow) and the superblock's (after " - ", its type and
 * source: ro or rw, sync, dirsync, lazytime).  They are the names mount(8)
 * takes, so apply_flag reads each, and the flags are those of either:
 * read-only if the mount or its superblock is.  statvfs(3) would do for
 * most, but it reports neither dirsync nor lazytime.  (dirsync is read
 * and passed, but a remount cannot change it: it is not in the kernel's
 * MS_RMT_MASK.)
 */
static long mountinfo_flags(char *line, const void *key)
{
    uint64_t mnt_id = *(const uint64_t *)key;
    char *save = NULL, *mount_opts = NULL, *field = strtok_r(line, " ", &save);
    if (!field || strtoull(field, NULL, 10) != mnt_id)
        return -1;
    for (int i = 1; (field = strtok_r(NULL, " ", &save)) && strcmp(field, "-") != 0; i++)
        if (i == 5)
            mount_opts = field;
    char *sb_opts = NULL;
    for (int i = 0; i < 3 && (field = strtok_r(NULL, " \n", &save)); i++)
        sb_opts = field; /* type, source, options */
    if (!mount_opts || !sb_opts)
        return -1;
    return (long)(apply_flags(0, mount_opts) | apply_flags(0, sb_opts));
}

/* The mount id of the /proc/self/mountinfo LINE when its third field is
 * the major:minor of the dev_t at KEY, else -1. */
static long mountinfo_id_of_dev(char *line, const void *key)
{
    unsigned long long mnt_id;
    unsigned int major, minor;
    if (sscanf(line, "%llu %*u %u:%u", &mnt_id, &major, &minor) != 3 ||
        makedev(major, minor) != *(const dev_t *)key)
        return -1;
    return (long)mnt_id;
}

/* What MATCH(line, KEY) gives for the last line of /proc/self/mountinfo it
 * does not answer -1 for (the newest mount), or -errno (-ENOENT: none). */
static long last_mountinfo_match(long (*match)(char *line, const void *key), const void *key)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t size = 0;
    long found = -ENOENT;
    while (getline(&line, &size, f) > 0) {
        long value = match(line, key);
        if (value >= 0)
            found = value;
    }
    free(line);
    fclose(f);
    return found;
}

/* The mount(2) flags of the mount with id MNT_ID, or -errno. */
static long flags_of_mount(uint64_t mnt_id)
{
    return last_mountinfo_match(mountinfo_flags, &mnt_id);
}

/* The id of the newest mount of the superblock with device DEV, or
 * -errno.  Guest kernels before 5.8 have no STATX_MNT_ID: a FUSE
 * superblock has a device of its own, so the device names the mount
 * unless it is bind-mounted too, and then the newest mount is taken (the
 * superblock's flags, ro among them, are the same for all of them). */
static long mount_id_of_dev(dev_t dev)
{
    return last_mountinfo_match(mountinfo_id_of_dev, &dev);
}

/* The mount(2) flags MOUNTPOINT's mount has now, or -errno (-EINVAL when
 * it is no FUSE mount), after logging one line. */
static long flags_now(const char *mountpoint)
{
    struct statfs fs;
    struct statx stx;
    if (statfs(mountpoint, &fs) < 0 || statx(AT_FDCWD, mountpoint, 0, STATX_MNT_ID, &stx) < 0) {
        int err = errno;
        log_error("remount of %s: %s", mountpoint, strerror(err));
        return -err;
    }
    if (fs.f_type != FUSE_SUPER_MAGIC) {
        log_error("remount of %s: not a FUSE mount", mountpoint);
        return -EINVAL;
    }
    long id = (stx.stx_mask & STATX_MNT_ID) ? (long)stx.stx_mnt_id
                                            : mount_id_of_dev(makedev(stx.stx_dev_major,
                                                                      stx.stx_dev_minor));
    long flags = id < 0 ? id : flags_of_mount((uint64_t)id);
    if (flags < 0)
        log_error("remount of %s: its flags are not in /proc/self/mountinfo: %s", mountpoint,
                  strerror((int)-flags));
    return flags;
}

int mount_remount(const char *mountpoint, const char *options)
{
    long now = flags_now(mountpoint);
    if (now < 0)
        return (int)now;
    unsigned long flags = (unsigned long)now;
    char *copy = options ? strdup(options) : NULL;
    if (options && !copy) {
        log_error("out of memory");
        return -ENOMEM;
    }
    if (copy)
        flags = apply_flags(flags, copy);
    free(copy);
    if (mount(NULL, mountpoint, NULL, MS_REMOUNT | flags, NULL) < 0) {
        int err = errno;
        log_error("remount of %s: %s", mountpoint, strerror(err));
        return -err;
    }
    return 0;
}
