/*
 * host_fs.c - what an export's host filesystem promises, decided once per
 * export at start-up from its fstatfs type (passthrough.h): whether its
 * directory offsets stay valid across opens, and whether a close there is
 * quiet.  One short list of filesystems whose code we know; anything else
 * gets the careful answer.
 */
#include "backend/passthrough/passthrough.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

enum host_fs { HOST_FS_OTHER, HOST_FS_EXT, HOST_FS_XFS, HOST_FS_BTRFS, HOST_FS_TMPFS };

/* ext2, ext3 and ext4 share the magic number. */
static enum host_fs host_fs_of(int fd)
{
    enum { EXT = 0xEF53, XFS = 0x58465342, BTRFS = 0x9123683E, TMPFS = 0x01021994 };
    struct statfs sf;
    if (fstatfs(fd, &sf) != 0)
        return HOST_FS_OTHER;
    switch ((unsigned long)sf.f_type) {
    case EXT:
        return HOST_FS_EXT;
    case XFS:
        return HOST_FS_XFS;
    case BTRFS:
        return HOST_FS_BTRFS;
    case TMPFS:
        return HOST_FS_TMPFS;
    }
    return HOST_FS_OTHER;
}

/* True if the running kernel is at least MAJOR.MINOR. */
static bool kernel_at_least(unsigned major, unsigned minor)
{
    struct utsname u;
    unsigned ma = 0, mi = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%u.%u", &ma, &mi) != 2)
        return false;
    return ma > major || (ma == major && mi >= minor);
}

/*
 * Filesystems whose directory offsets (d_off) stay valid across opens, so
 * a listing resumed with a fresh open at the last cookie neither skips nor
 * repeats entries while others are removed: ext2/3/4 (hash or block
 * offsets), xfs and btrfs (offsets stored on disk), tmpfs since Linux 6.6
 * (stable simple_offset; before, an offset was a position in the list of
 * children and shifted with every unlink).  Everything else is refused,
 * overlayfs first: a merged directory's offsets count entries of a list
 * built per open file.  The list is short on purpose: a filesystem not
 * on it only costs the guest an OPENDIR per listing.
 */
bool passthrough_dir_offsets_stable(int dirfd)
{
    enum host_fs fs = host_fs_of(dirfd);
    return fs == HOST_FS_TMPFS ? kernel_at_least(6, 6) : fs != HOST_FS_OTHER;
}

bool passthrough_handles_start_with_ino(int fd)
{
    enum host_fs fs = host_fs_of(fd);
    return fs == HOST_FS_EXT || fs == HOST_FS_XFS;
}

static bool is_octal(char c)
{
    return c >= '0' && c <= '7';
}

/* Undoes mountinfo's escapes (\040 for a space, and so on) in place. */
static void unescape_mountinfo(char *s)
{
    char *out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && is_octal(s[1]) && is_octal(s[2]) && is_octal(s[3])) {
            *out++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = 0;
}

/* Whether mount point MP is strictly below directory DIR (both absolute,
 * as the kernel writes them). */
static bool is_below(const char *mp, const char *dir)
{
    size_t n = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return strcmp(mp, "/") != 0;
    return strncmp(mp, dir, n) == 0 && mp[n] == '/';
}

/* Whether some filesystem is mounted below DIR in our mount namespace (or
 * we cannot tell): fills BELOW with the first such mount point, relative
 * to DIR (inside the sandbox DIR is not the host's path). */
static bool has_mounts_below(const char *dir, char *below, size_t size)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) {
        snprintf(below, size, "(no /proc/self/mountinfo)");
        return true;
    }
    char line[8192], mp[PATH_MAX];
    bool found = false;
    /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ...": the fifth field. */
    while (!found && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
            continue;
        unescape_mountinfo(mp);
        if ((found = is_below(mp, dir)))
            snprintf(below, size, "%s", mp + strlen(dir) + (strcmp(dir, "/") != 0));
    }
    fclose(f);
    return found;
}

/*
 * On ext2/3/4, xfs, btrfs and tmpfs a file has no ->flush method, so the
 * close(dup(fd)) of a FLUSH (pt_flush) reports nothing and writes nothing
 * back: it only drops record locks.  A network or FUSE filesystem (NFS,
 * CIFS, another fsbridge mount) writes back and reports errors there.
 * The daemon crosses into filesystems mounted below the export root
 * (lookups are RESOLVE_BENEATH, not RESOLVE_NO_XDEV; the inode table
 * keeps a mount fd per device), so the rule must hold for them too, and
 * the simplest rule that does: no mount at all below the root.  That is
 * checked by the caller once the mount table can no longer change
 * (passthrough.h).
 */
bool passthrough_close_quiet(int root_fd, char *why, size_t size)
{
    enum host_fs fs = host_fs_of(root_fd);
    if (fs == HOST_FS_OTHER) {
        snprintf(why, size, "its filesystem may report errors at close");
        return false;
    }
    char link[64], dir[PATH_MAX], below[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", root_fd);
    ssize_t n = readlinkat(AT_FDCWD, link, dir, sizeof(dir) - 1);
    if (n <= 0 || dir[0] != '/') {
        snprintf(why, size, "its path cannot be read back");
        return false;
    }
    dir[n] = 0;
    if (has_mounts_below(dir, below, sizeof(below))) {
        snprintf(why, size, "a filesystem is mounted below it (on '%s')", below);
        return false;
    }
    snprintf(why, size, "its filesystem reports nothing at close and nothing is mounted below it");
    return true;
}
