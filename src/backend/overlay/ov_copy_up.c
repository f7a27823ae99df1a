/*
 * ov_copy_up.c - the first change of a LOWER object copies it into UPPER.
 *
 * As overlayfs does it (fs/overlayfs/copy_up.c): the copy is made in the
 * work dir's staging directory, on UPPER's filesystem, complete with its
 * data, owner, mode, xattrs and times, and only then renamed to its name in
 * UPPER.  A daemon killed in the middle leaves a stray file in staging
 * (removed at the next start, overlay_open_dirs) and the LOWER object still
 * visible: the guest sees the old content or the whole copy, never part of
 * it.  The data goes with copy_file_range (a reflink or an in-kernel copy
 * where the filesystems allow), hole by hole so that sparse files stay
 * sparse, and is flushed to disk before the rename, so that a power loss
 * cannot leave a renamed but empty file either.
 *
 * The copy remembers LOWER's inode number in the xattr
 * {trusted,user}.overlay.fsbridge.ino (overlayfs ignores and hides it), so
 * that st_ino stays the same for the guest in later sessions too (within a
 * session the node remembers it).  Symlinks cannot carry user xattrs:
 * a copied-up symlink shows UPPER's inode number from the next session on.
 *
 * Called with the export's change lock held: one copy-up at a time per
 * export (other exports copy up at the same time).
 */
#include "backend/overlay/ov_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define COPY_CHUNK (1 << 30)

/* Copies [off, end) of IN to OUT: copy_file_range, or read/write where the
 * kernel cannot copy between these filesystems. */
static int copy_range(int in, int out, off_t off, off_t end)
{
    char buf[16384]; /* the fallback only: copy_file_range needs none */
    bool plain = false;
    while (off < end) {
        size_t len = (size_t)(end - off > COPY_CHUNK ? COPY_CHUNK : end - off);
        ssize_t n;
        if (!plain) {
            loff_t a = off, b = off;
            n = copy_file_range(in, &a, out, &b, len, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP ||
                          errno == ENOSYS)) {
                plain = true;
                continue;
            }
        } else {
            n = pread(in, buf, len < sizeof(buf) ? len : sizeof(buf), off);
            if (n > 0 && pwrite(out, buf, (size_t)n, off) != n)
                return errno ? -errno : -EIO;
        }
        if (n < 0)
            return -errno;
        if (n == 0)
            break; /* LOWER shrank under us: the copy is as long as stat said */
        off += n;
    }
    return 0;
}

/* Copies the data of IN (SIZE bytes) to the empty file OUT, skipping holes. */
static int copy_data(int in, int out, off_t size)
{
    if (ftruncate(out, size) < 0)
        return -errno;
    for (off_t off = 0; off < size;) {
        off_t data = lseek(in, off, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -errno; /* ENXIO: only a hole is left */
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        int err = copy_range(in, out, data, hole > size ? size : hole);
        if (err)
            return err;
        off = hole;
    }
    return fdatasync(out) < 0 ? -errno : 0;
}

static int make_file_copy(int staging, const char *tmp, int lfd, const struct stat *st)
{
    int in = passthrough_reopen(lfd, O_RDONLY | O_NOATIME);
    if (in == -EPERM)
        in = passthrough_reopen(lfd, O_RDONLY);
    if (in < 0)
        return in;
    int out = openat(staging, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int err = out < 0 ? -errno : copy_data(in, out, st->st_size);
    if (out >= 0)
        close(out);
    close(in);
    return err;
}

/* Creates the copy of LFD's object (ST) at STAGING/TMP, without metadata. */
static int make_copy(int staging, const char *tmp, int lfd, const struct stat *st)
{
    switch (st->st_mode & S_IFMT) {
    case S_IFREG:
        return make_file_copy(staging, tmp, lfd, st);
    case S_IFDIR:
        return mkdirat(staging, tmp, 0700) < 0 ? -errno : 0;
    case S_IFLNK: {
        char target[PATH_MAX + 1];
        ssize_t n = readlinkat(lfd, "", target, PATH_MAX);
        if (n < 0)
            return -errno;
        target[n] = 0;
        return symlinkat(target, staging, tmp) < 0 ? -errno : 0;
    }
    default:
        return mknodat(staging, tmp, st->st_mode & (S_IFMT | 0777), st->st_rdev) < 0 ? -errno : 0;
    }
}

static int copy_owner_mode(const struct overlay *ov, int tfd, const struct stat *st)
{
    if (fchownat(tfd, "", st->st_uid, st->st_gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 &&
        (ov->privileged || errno != EPERM)) /* not root: the copy is ours */
        return -errno;
    if (S_ISLNK(st->st_mode))
        return 0;
    char path[32];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", tfd);
    /* After the chown, which clears set-id bits. */
    return fchmodat(AT_FDCWD, path, st->st_mode & 07777, 0) < 0 ? -errno : 0;
}

/* The copy's metadata, LOWER's: xattrs, our inode-number note, owner and
 * mode, then the times (last: the others change ctime only). */
static int copy_metadata(const struct overlay *ov, int lfd, int tfd, const struct stat *st)
{
    int err = 0;
    if (!S_ISLNK(st->st_mode)) {
        err = ov_copy_xattrs(ov, lfd, tfd);
        uint64_t ino = st->st_ino;
        int e = err ? 0 : ov_meta_set(ov, tfd, "fsbridge.ino", &ino, sizeof(ino));
        /* user.* xattrs exist on files and directories only. */
        if (e && (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)))
            err = e;
    }
    if (!err)
        err = copy_owner_mode(ov, tfd, st);
    struct timespec ts[2] = { st->st_atim, st->st_mtim };
    if (!err && utimensat(tfd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        err = -errno;
    return err;
}

static void remove_staged(int staging, const char *tmp, const struct stat *st)
{
    unlinkat(staging, tmp, S_ISDIR(st->st_mode) ? AT_REMOVEDIR : 0);
}

/* Stages the copy of LFD's object and renames it to NAME in PFD. */
static int stage_and_place(struct overlay *ov, int lfd, const struct stat *st, int pfd,
                           const char *name)
{
    char tmp[64];
    ov_staging_name(ov, "copy", tmp);
    int err = make_copy(ov->staging_fd, tmp, lfd, st);
    if (err)
        return err;
    int tfd = openat(ov->staging_fd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    err = tfd < 0 ? -errno : copy_metadata(ov, lfd, tfd, st);
    if (tfd >= 0)
        close(tfd);
    if (!err && syscall(SYS_renameat2, ov->staging_fd, tmp, pfd, name, RENAME_NOREPLACE) < 0)
        err = -errno;
    if (err)
        remove_staged(ov->staging_fd, tmp, st);
    return err;
}

/* Copies N (LOWER node LOW) to PARENT's upper directory as NAME. */
static int copy_up_at(struct overlay *ov, struct ov_node *n, struct ov_node *parent,
                      const char *name, uint64_t low)
{
    mode_t type;
    void *lpin, *ppin;
    uint64_t pup;
    ov_layers(ov, parent, &pup, NULL);
    int lfd = passthrough_pin(ov->lower, low, &type, &lpin);
    if (lfd < 0)
        return lfd;
    int pfd = passthrough_pin(ov->upper, pup, &type, &ppin);
    int err = pfd;
    if (pfd >= 0) {
        struct stat st;
        err = fstatat(lfd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0
                  ? -errno : stage_and_place(ov, lfd, &st, pfd, name);
        passthrough_unpin(ov->upper, ppin);
    }
    passthrough_unpin(ov->lower, lpin);
    struct fsb_entry e;
    if (!err)
        err = ov->upper->ops->lookup(ov->upper, &ov_daemon_ctx, pup, name, &e);
    if (!err)
        ov_set_upper(ov, n, e.nodeid);
    return err;
}

int ov_copy_up_locked(struct overlay *ov, struct ov_node *n, uint64_t *up)
{
    ov_lock_changes(ov);
    int err = ov_copy_up(ov, n);
    ov_unlock_changes(ov);
    ov_layers(ov, n, up, NULL);
    return err;
}

int ov_copy_up(struct overlay *ov, struct ov_node *n)
{
    uint64_t up, low;
    ov_layers(ov, n, &up, &low);
    if (up)
        return 0;
    if (!low)
        return -ESTALE;
    struct ov_node *parent;
    char *name = ov_name_of(ov, n, &parent);
    if (!name)
        return -ENOMEM;
    int err = parent ? ov_copy_up(ov, parent) : -ESTALE;
    if (!err)
        err = copy_up_at(ov, n, parent, name, low);
    free(name);
    if (parent)
        ov_put(ov, parent);
    return err;
}
