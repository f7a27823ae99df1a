/*
 * passthrough_files.c - open files of the passthrough backend: open and
 * create, data I/O, sync, space and locks.  Every fh is checked against the
 * session's handle table (handles.c) before its fd is used.
 */
#include "backend/passthrough/pt_internal.h"
#include "common/splice_io.h"

#include <errno.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/*
 * Flags for the host open.  Dropped on purpose:
 *  - O_CREAT/O_EXCL/O_NOCTTY: OPEN never creates (CREATE does, below).
 *  - O_NOFOLLOW: the guest kernel already applied it; on the host the file
 *    is reopened through its /proc/self/fd magic link, which O_NOFOLLOW
 *    would refuse (ELOOP), and a symlink is never opened at all.
 *  - O_DIRECT: the guest kernel already bypasses its own cache for O_DIRECT
 *    I/O; passing it on would impose the host filesystem's alignment rules
 *    and turn valid guest requests into EINVAL.
 *  - O_PATH: a guest kernel resolves O_PATH opens itself and never sends
 *    them, and on the host it would make openat ignore O_CREAT|O_EXCL:
 *    CREATE would hand out a handle of an existing symlink, FIFO or device
 *    node instead of refusing it (create_at).
 * With a writeback cache the guest kernel reads pages of files opened
 * write-only and computes append offsets itself, so the host file is opened
 * read-write and without O_APPEND (as virtiofsd does).
 */
static int host_open_flags(const struct passthrough *pt, int flags)
{
    flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT | O_NOFOLLOW | O_PATH | FSB_OPEN_EXEC);
    if (pt->writeback) {
        if ((flags & O_ACCMODE) == O_WRONLY)
            flags = (flags & ~O_ACCMODE) | O_RDWR;
        flags &= ~O_APPEND;
    }
    return flags | O_CLOEXEC;
}

/*
 * The kernel marks the open of a program it is about to run with
 * __FMODE_EXEC in the open flags.  Running needs execute permission, not
 * read: a binary of mode 0111 runs on ext4, while the host refuses to open
 * it for reading as the caller.  The guest kernel checked MAY_EXEC before
 * it asked; when the host agrees that the caller may execute the file, it
 * is opened read-only as the daemon, for the guest kernel to load (it
 * gives the program no access to the bytes).  A hostile guest gains
 * nothing it could not have by sending uid 0.
 */
static bool exec_open_allowed(struct passthrough *pt, const struct fsb_ctx *ctx, int flags,
                              int fd)
{
    if (!(flags & FSB_OPEN_EXEC) || (flags & (O_ACCMODE | O_TRUNC)) != O_RDONLY)
        return false;
    int err;
    PT_AS_CALLER(pt, ctx, err,
                 err = faccessat(fd, "", X_OK, AT_EMPTY_PATH | AT_EACCESS) < 0 ? -errno : 0, fd);
    return err == 0;
}

/* O_NOATIME is refused (EPERM) to non-owners: then open without it. */
static int reopen_noatime_fallback(int fd, int flags)
{
    int r = pt_reopen(fd, flags);
    if (r == -EPERM && (flags & O_NOATIME))
        r = pt_reopen(fd, flags & ~O_NOATIME);
    return r;
}

static int add_handle(struct passthrough *pt, int fd, const struct stat *st, uint64_t *fh)
{
    int64_t h = pt_handle_add(pt, fd, false, st);
    if (h < 0) {
        close(fd);
        return (int)h;
    }
    *fh = (uint64_t)h;
    return 0;
}

/* OPEN is only for regular files: the guest kernel runs FIFOs, sockets
 * and device nodes itself and never sends OPEN for them, so one that comes
 * is hostile.  Opening a FIFO on the host would block a worker until a
 * writer appears, and a device node must never be opened for the guest. A
 * symlink is never opened: that would follow it on the host. */
static int openable(mode_t type)
{
    if (S_ISREG(type))
        return 0;
    return S_ISDIR(type) ? -EISDIR : S_ISLNK(type) ? -ELOOP : -ENXIO;
}

int pt_open(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid, int flags,
            uint64_t *fh)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return fd;
    struct stat st = { .st_dev = in->dev, .st_ino = in->ino };
    int hfd = openable(in->type);
    if (!hfd)
        hfd = pt_handle_grant(pt);
    if (!hfd) {
        PT_AS_CALLER(pt, ctx, hfd, hfd = reopen_noatime_fallback(fd, host_open_flags(pt, flags)),
                     fd);
        if (hfd == -EACCES && exec_open_allowed(pt, ctx, flags, fd))
            hfd = pt_reopen(fd, host_open_flags(pt, flags) & ~O_NOATIME);
        if (hfd < 0)
            pt_handle_ungrant(pt);
    }
    if (hfd >= 0 && flags & O_TRUNC)
        pt_note_inode(pt, in->dev, in->ino, 0, 0);
    pt_unpin(pt, in);
    if (hfd < 0)
        return hfd;
    return add_handle(pt, hfd, &st, fh);
}

/* Records the new open file HFD (consumed, its grant used up) as an inode
 * and a handle. */
static int remember_new_file(struct fsb_backend *be, int hfd, struct fsb_entry *out, uint64_t *fh)
{
    struct passthrough *pt = pt_of(be);
    int err = pt_remember_fd(pt, hfd, out);
    if (err) {
        close(hfd);
        pt_handle_ungrant(pt);
        return err;
    }
    err = add_handle(pt, hfd, &out->attr, fh);
    if (err)
        be->ops->forget(be, out->nodeid, 1);
    return err;
}

/*
 * CREATE opens a regular file only, like OPEN: with O_CREAT alone, openat
 * would open whatever already has the name, and a FIFO would block the
 * worker, a device node would be opened on the host.  So the file is made
 * with O_EXCL; if the name exists and the guest did not ask for O_EXCL,
 * what is there is looked up, checked and reopened like OPEN does.
 */
static int create_at(int dirfd, const char *name, int flags, mode_t mode)
{
    int fd;
    FD_RETRY_EMFILE(fd, openat(dirfd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW, mode));
    if (fd >= 0 || errno != EEXIST || (flags & O_EXCL))
        return fd < 0 ? -errno : fd;
    int path_fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (path_fd < 0)
        return -errno;
    struct stat st;
    int err = fstat(path_fd, &st) < 0 ? -errno : openable(st.st_mode & S_IFMT);
    fd = err ? err : reopen_noatime_fallback(path_fd, flags & ~O_EXCL);
    close(path_fd);
    return fd;
}

/* O_TMPFILE: the unnamed file, made in DIRFD.  O_EXCL keeps its meaning
 * (never linkable). */
static int tmpfile_at(int dirfd, int flags, mode_t mode)
{
    int fd;
    FD_RETRY_EMFILE(fd, openat(dirfd, ".", flags | O_TMPFILE, mode & 07777));
    return fd < 0 ? -errno : fd;
}

/* CREATE and TMPFILE (NAME NULL): a new file opened in PARENT as the
 * caller, its fd granted from the guest's open-file budget first. */
static int open_new_file(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                         const char *name, mode_t mode, int flags, struct fsb_entry *out,
                         uint64_t *fh)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *dir;
    int dirfd = pt_pin(pt, parent, &dir);
    if (dirfd < 0)
        return dirfd;
    int oflags = host_open_flags(pt, flags & ~O_TMPFILE) | (flags & O_EXCL);
    int hfd = pt_handle_grant(pt);
    if (!hfd) {
        PT_CREATING_AS_CALLER(pt, ctx, hfd,
                              hfd = name ? create_at(dirfd, name, oflags, mode)
                                         : tmpfile_at(dirfd, oflags, mode),
                              dirfd);
        if (hfd < 0)
            pt_handle_ungrant(pt);
    }
    if (hfd >= 0)
        pt_note_entry(pt, dir, name); /* new, or truncated: the others look again */
    pt_unpin(pt, dir);
    if (hfd < 0)
        return hfd;
    return remember_new_file(be, hfd, out, fh);
}

int pt_create(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
              const char *name, mode_t mode, int flags, struct fsb_entry *out, uint64_t *fh)
{
    return open_new_file(be, ctx, parent, name, mode, flags, out, fh);
}

/*
 * O_TMPFILE (FUSE_TMPFILE): the host makes the unnamed file, as the caller,
 * in the directory.  The guest may give it a name later with linkat (by
 * /proc/self/fd or AT_EMPTY_PATH), which arrives as a LINK of its node:
 * pt_link links through /proc/self/fd with AT_SYMLINK_FOLLOW, which the
 * kernel allows for an O_TMPFILE file made without O_EXCL.
 */
int pt_tmpfile(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent, mode_t mode,
               int flags, struct fsb_entry *out, uint64_t *fh)
{
    return open_new_file(be, ctx, parent, NULL, mode, flags, out, fh);
}

ssize_t pt_read(struct fsb_backend *be, uint64_t fh, off_t off, const struct iovec *iov, int cnt)
{
    struct passthrough *pt = pt_of(be);
    int fd = pt_handle_get(pt, fh, false);
    if (fd < 0)
        return fd;
    ssize_t n = preadv(fd, iov, cnt, off);
    if (n < 0)
        n = -errno;
    pt_handle_put(pt, fh);
    return n;
}

ssize_t pt_read_to_pipe(struct fsb_backend *be, uint64_t fh, off_t off, size_t size,
                        struct fsb_pipe *p)
{
    struct passthrough *pt = pt_of(be);
    int fd = pt_handle_get(pt, fh, false);
    if (fd < 0)
        return fd;
    ssize_t n = fsb_splice_in(fd, &off, p, size);
    pt_handle_put(pt, fh);
    return n;
}

/*
 * Writes and fallocate run as the daemon (the open file is the permission),
 * which holds CAP_FSETID: for a caller without it (ctx->kill_suidgid), the
 * thread gives it up meanwhile so that the host kernel clears the
 * set-user-ID and set-group-ID bits as it does for a local writer.  The
 * host removes security.capability on a write whoever writes.
 */
static bool drop_fsetid_for(const struct passthrough *pt, const struct fsb_ctx *ctx)
{
    bool drop = ctx->kill_suidgid && pt->switch_creds;
    if (drop)
        cred_drop_fsetid();
    return drop;
}

ssize_t pt_write(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh, off_t off,
                 const struct iovec *iov, int cnt)
{
    struct passthrough *pt = pt_of(be);
    int fd = pt_handle_get(pt, fh, false);
    if (fd < 0)
        return fd;
    bool dropped = drop_fsetid_for(pt, ctx);
    ssize_t n = pwritev(fd, iov, cnt, off);
    if (n < 0)
        n = -errno;
    if (dropped)
        cred_restore_fsetid();
    if (n > 0)
        pt_note_handle(pt, fh, off, n);
    pt_handle_put(pt, fh);
    return n;
}

int pt_release(struct fsb_backend *be, uint64_t fh)
{
    return pt_handle_close(pt_of(be), fh, false);
}

int pt_handle_fsync(struct passthrough *pt, uint64_t fh, bool is_dir, bool datasync)
{
    int fd = pt_handle_get(pt, fh, is_dir);
    if (fd < 0)
        return fd;
    int r = datasync ? fdatasync(fd) : fsync(fd);
    pt_handle_put(pt, fh);
    return r < 0 ? -errno : 0;
}

int pt_fsync(struct fsb_backend *be, uint64_t fh, bool datasync)
{
    return pt_handle_fsync(pt_of(be), fh, false, datasync);
}

int pt_fallocate(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh, int mode,
                 off_t off, off_t len)
{
    struct passthrough *pt = pt_of(be);
    int fd = pt_handle_get(pt, fh, false);
    if (fd < 0)
        return fd;
    bool dropped = drop_fsetid_for(pt, ctx);
    int err = fallocate(fd, mode, off, len) < 0 ? -errno : 0;
    if (dropped)
        cred_restore_fsetid();
    if (!err)
        pt_note_handle(pt, fh, 0, 0); /* the size may change, and punched holes */
    pt_handle_put(pt, fh);
    return err;
}

off_t pt_lseek(struct fsb_backend *be, uint64_t fh, off_t off, int whence)
{
    struct passthrough *pt = pt_of(be);
    int fd = pt_handle_get(pt, fh, false);
    if (fd < 0)
        return fd;
    /* The handle's file position is never used for I/O (pread/pwrite), so
     * moving it here disturbs nothing. */
    off_t r = lseek(fd, off, whence);
    pt_handle_put(pt, fh);
    return r < 0 ? -errno : r;
}

ssize_t pt_copy_file_range(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh_in,
                           off_t off_in, uint64_t fh_out, off_t off_out, size_t len)
{
    struct passthrough *pt = pt_of(be);
    int in = pt_handle_get(pt, fh_in, false);
    if (in < 0)
        return in;
    int out = pt_handle_get(pt, fh_out, false);
    if (out < 0) {
        pt_handle_put(pt, fh_in);
        return out;
    }
    loff_t oin = off_in, oout = off_out;
    bool dropped = drop_fsetid_for(pt, ctx); /* a write to OUT, as pt_write */
    ssize_t n = copy_file_range(in, &oin, out, &oout, len, 0);
    if (n < 0)
        n = -errno;
    if (dropped)
        cred_restore_fsetid();
    if (n > 0)
        pt_note_handle(pt, fh_out, off_out, n);
    pt_handle_put(pt, fh_out);
    pt_handle_put(pt, fh_in);
    return n;
}

/*
 * Locks are taken on the host, so guests sharing an export (and host
 * processes) see each other's.  POSIX record locks become open-file-
 * description (OFD) locks on the session's handle: the daemon is one
 * process for all guests, so classic POSIX locks would never conflict.
 * The unit of ownership is thus the guest's open file rather than the
 * guest process; the difference shows only when one process opens the same
 * file twice and locks through both (docs/architecture.md).  Each handle
 * remembers the guest lock owner (the process) that last locked through
 * it, so a close by that process anywhere drops them (drop_owner_locks).
 *
 * A waiting lock (SETLKW, LOCK_EX without LOCK_NB) must not block a worker
 * forever, so it polls with a bounded back-off and gives up with -EINTR
 * when the guest interrupts the request or the session ends.
 */
static void lock_backoff(unsigned *delay_us)
{
    struct timespec ts = { 0, (long)*delay_us * 1000 };
    nanosleep(&ts, NULL);
    if (*delay_us < 50000)
        *delay_us *= 2;
}

typedef int (*try_lock_fn)(int fd, const void *arg);

static int wait_for_lock(int fd, try_lock_fn try_lock, const void *arg, bool wait,
                         fsb_cancelled_fn cancelled, void *cookie)
{
    unsigned delay_us = 500;
    for (;;) {
        int err = try_lock(fd, arg);
        if (!wait || (err != -EAGAIN && err != -EACCES && err != -EWOULDBLOCK))
            return err;
        if (cancelled && cancelled(cookie))
            return -EINTR;
        lock_backoff(&delay_us);
    }
}

static void to_flock(const struct fsb_lock *l, struct flock *fl)
{
    fl->l_type = (short)l->type;
    fl->l_whence = SEEK_SET;
    fl->l_start = l->start;
    fl->l_len = l->end == FSB_LOCK_TO_EOF ? 0 : l->end - l->start + 1;
    fl->l_pid = 0; /* required by OFD locks */
}

static int try_posix_lock(int fd, const void *arg)
{
    struct flock fl;
    to_flock(arg, &fl);
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

static int try_flock(int fd, const void *arg)
{
    return flock(fd, *(const int *)arg | LOCK_NB) < 0 ? -errno : 0;
}

/*
 * OFD locks have no owning process, but F_GETLK must name one.  Each handle
 * remembers the guest pid that last locked through it; the holder of a
 * conflicting lock is the handle of the same inode that does not see that
 * lock as a conflict (its own locks never conflict with it).  Only the
 * handles on the inode's locker list (pt_internal.h) can hold one.
 */
static pid_t find_lock_holder(struct passthrough *pt, uint64_t self, const struct flock *conflict)
{
    pid_t pid = 0;
    pthread_mutex_lock(&pt->handles_lock);
    const struct pt_handle *me = &pt->handles[self];
    for (uint64_t i = pt_first_locker(pt, me->dev, me->ino); i != PT_NO_HANDLE && !pid;
         i = pt->handles[i].next_locker) {
        const struct pt_handle *h = &pt->handles[i];
        if (i == self || h->closed || !h->lock_pid || h->dev != me->dev || h->ino != me->ino)
            continue;
        struct flock probe = *conflict;
        probe.l_type = F_WRLCK;
        probe.l_pid = 0;
        if (fcntl(h->fd, F_OFD_GETLK, &probe) == 0 && probe.l_type == F_UNLCK)
            pid = h->lock_pid;
    }
    pthread_mutex_unlock(&pt->handles_lock);
    return pid;
}

static void note_lock_owner(struct passthrough *pt, uint64_t fh, const struct fsb_lock *lock)
{
    pthread_mutex_lock(&pt->handles_lock);
    if (lock->type != F_UNLCK)
        pt_handle_note_locker(pt, fh, lock->owner, lock->pid);
    pthread_mutex_unlock(&pt->handles_lock);
}

/*
 * A close(2) in the guest (FLUSH, with the closing process's lock owner)
 * drops every record lock that process holds on the file, whichever of its
 * descriptors took it: a dup()ed descriptor, or another open of the same
 * file.  The guest kernel keeps no record of FUSE's remote locks, so this
 * is the only place that can.  The locks of each handle of the inode that
 * owner last locked through are removed (F_OFD_SETLK, F_UNLCK, whole file;
 * never blocks); a handle shared with a forked child goes with the owner
 * that locked through it last.  Only the inode's locker list is walked:
 * a close costs nothing more while other files hold locks.  Caller holds
 * handles_lock.
 */
static void drop_owner_locks(struct passthrough *pt, dev_t dev, ino_t ino, uint64_t lock_owner)
{
    struct flock unlock = { .l_type = F_UNLCK, .l_whence = SEEK_SET };
    uint64_t next;
    for (uint64_t i = pt_first_locker(pt, dev, ino); lock_owner && i != PT_NO_HANDLE; i = next) {
        struct pt_handle *h = &pt->handles[i];
        next = h->next_locker;
        if (h->lock_owner != lock_owner || h->dev != dev || h->ino != ino)
            continue;
        fcntl(h->fd, F_OFD_SETLK, &unlock);
        pt_handle_forget_locker(pt, i);
    }
}

/* FLUSH comes at every close(2) of the guest: closing a duplicate gives the
 * host filesystem its close-time write-back (NFS and the like report
 * errors there), without closing the handle itself; and the closing
 * process loses its record locks on the file, as POSIX says. */
int pt_flush(struct fsb_backend *be, uint64_t fh, uint64_t lock_owner)
{
    struct passthrough *pt = pt_of(be);
    int fd = pt_handle_get(pt, fh, false);
    if (fd < 0)
        return fd;
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    int err = dup_fd < 0 ? -errno : (close(dup_fd) < 0 ? -errno : 0);
    pthread_mutex_lock(&pt->handles_lock);
    drop_owner_locks(pt, pt->handles[fh].dev, pt->handles[fh].ino, lock_owner);
    pthread_mutex_unlock(&pt->handles_lock);
    pt_handle_put(pt, fh);
    return err;
}

/* The close of a descriptor the host never opened (a lazy handle no
 * request used, engine/lazy_handles.h): nothing to write back, but the
 * closing process's locks on the file go all the same. */
int pt_drop_locks(struct fsb_backend *be, uint64_t nodeid, uint64_t lock_owner)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in = inode_get(&pt->inodes, nodeid);
    if (!in)
        return -ESTALE;
    pthread_mutex_lock(&pt->handles_lock);
    drop_owner_locks(pt, in->dev, in->ino, lock_owner);
    pthread_mutex_unlock(&pt->handles_lock);
    inode_put(&pt->inodes, in);
    return 0;
}

int pt_getlk(struct fsb_backend *be, uint64_t fh, struct fsb_lock *lock)
{
    struct passthrough *pt = pt_of(be);
    int fd = pt_handle_get(pt, fh, false);
    if (fd < 0)
        return fd;
    struct flock fl;
    to_flock(lock, &fl);
    int err = fcntl(fd, F_OFD_GETLK, &fl) < 0 ? -errno : 0;
    pt_handle_put(pt, fh);
    if (err)
        return err;
    lock->type = fl.l_type;
    if (fl.l_type != F_UNLCK) {
        lock->start = fl.l_start;
        lock->end = fl.l_len == 0 ? FSB_LOCK_TO_EOF : fl.l_start + fl.l_len - 1;
        /* 0 when another guest or a host process holds it: its pid means
         * nothing here. */
        lock->pid = find_lock_holder(pt, fh, &fl);
    }
    return 0;
}

int pt_setlk(struct fsb_backend *be, uint64_t fh, const struct fsb_lock *lock, bool wait,
             fsb_cancelled_fn cancelled, void *cookie)
{
    struct passthrough *pt = pt_of(be);
    int fd = pt_handle_get(pt, fh, false);
    if (fd < 0)
        return fd;
    int err = wait_for_lock(fd, try_posix_lock, lock, wait, cancelled, cookie);
    if (!err)
        note_lock_owner(pt, fh, lock);
    pt_handle_put(pt, fh);
    return err;
}

int pt_flock(struct fsb_backend *be, uint64_t fh, int op, bool wait, fsb_cancelled_fn cancelled,
             void *cookie)
{
    struct passthrough *pt = pt_of(be);
    int fd = pt_handle_get(pt, fh, false);
    if (fd < 0)
        return fd;
    int err = wait_for_lock(fd, try_flock, &op, wait, cancelled, cookie);
    pt_handle_put(pt, fh);
    return err;
}
