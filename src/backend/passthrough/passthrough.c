/*
 * passthrough.c - the backend that exports a host directory: inode
 * operations and the instance itself.  Files and directories live in
 * passthrough_files.c and passthrough_dirs.c.
 *
 * The guest is hostile.  The rules that keep it inside the export:
 *  - Every inode is reached from the export root by single-component
 *    lookups (the engine rejects '/' and empty names), done with
 *    openat2(RESOLVE_BENEATH) and O_NOFOLLOW: a symlink is never followed on
 *    the host; READLINK returns its target and the guest resolves it.
 *  - Inodes are then named by file handle or O_PATH fd, never by a path
 *    string.  Data is opened by re-opening the O_PATH fd through
 *    /proc/self/fd, and never for a symlink.
 *  - When root, every operation that checks permissions or creates
 *    something runs with the caller's fsuid/fsgid (credentials.h).
 *  - Node ids and fhs are this instance's own: one session cannot reach
 *    another's, and forged ones are unknown (-ESTALE / -EBADF).
 */
#include "backend/passthrough/pt_internal.h"
#include "common/log.h"

#include <errno.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

int pt_proc_self_fd = -1;
static unsigned session_handle_limit = 1024;

/* Fds kept aside for sockets, listeners and the like. */
#define FD_RESERVE 64

int passthrough_global_init(void)
{
    struct rlimit rl;
    pt_proc_self_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (pt_proc_self_fd < 0)
        return -errno;
    /* A quarter of what is left for cached inode fds, the rest for the
     * guests' open files, of which one session may hold at most half (3/8
     * of all), so that one guest cannot take every fd from the others. */
    unsigned limit = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        limit = rl.rlim_cur > 1u << 20 ? 1u << 20 : (unsigned)rl.rlim_cur;
    unsigned usable = limit > 2 * FD_RESERVE ? limit - FD_RESERVE : limit / 2;
    fd_cache_init(usable / 4);
    session_handle_limit = usable * 3 / 8;
    return 0;
}

unsigned passthrough_session_handle_limit(void)
{
    return session_handle_limit;
}

bool pt_lend_groups(struct passthrough *pt, const struct fsb_ctx *ctx, const int *fds, int n)
{
    gid_t groups[4];
    int count = 0;
    if (!pt->trust_guest_groups || !pt->switch_creds)
        return false;
    for (int i = 0; i < n && count < 4; i++) {
        struct stat st;
        if (fstat(fds[i], &st) == 0 && st.st_gid != ctx->gid)
            groups[count++] = st.st_gid;
    }
    return count > 0 && cred_lend_groups(groups, count) == 0;
}

static void proc_name(int fd, char buf[16])
{
    snprintf(buf, 16, "%d", fd);
}

int pt_reopen(int fd, int flags)
{
    char name[16];
    int newfd;
    proc_name(fd, name);
    FD_RETRY_EMFILE(newfd, openat(pt_proc_self_fd, name, flags | O_CLOEXEC));
    return newfd < 0 ? -errno : newfd;
}

int pt_pin(struct passthrough *pt, uint64_t nodeid, struct pt_inode **inode)
{
    struct pt_inode *in = inode_get(&pt->inodes, nodeid);
    if (!in)
        return -ESTALE;
    int fd = inode_pin(in);
    if (fd < 0) {
        inode_put(&pt->inodes, in);
        return fd;
    }
    *inode = in;
    return fd;
}

void pt_unpin(struct passthrough *pt, struct pt_inode *inode)
{
    inode_unpin(inode);
    inode_put(&pt->inodes, inode);
}

/* openat2 with RESOLVE_BENEATH where the kernel has it (5.6+); otherwise
 * O_NOFOLLOW on a single component, which the engine guarantees. */
static int open_beneath(int dirfd, const char *name, int flags)
{
    static bool no_openat2;
    struct open_how how = { .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
                            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
    int fd;
    if (!no_openat2) {
        FD_RETRY_EMFILE(fd, (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how)));
        if (fd >= 0 || errno != ENOSYS)
            return fd < 0 ? -errno : fd;
        no_openat2 = true;
    }
    FD_RETRY_EMFILE(fd, openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC));
    return fd < 0 ? -errno : fd;
}

static int stat_fd(int fd, struct stat *st)
{
    return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* Records the O_PATH fd FD (consumed) and fills OUT. */
static int remember(struct passthrough *pt, int fd, struct fsb_entry *out)
{
    int err = stat_fd(fd, &out->attr);
    if (err) {
        close(fd);
        return err;
    }
    int64_t id = inode_remember(&pt->inodes, fd, &out->attr);
    if (id < 0)
        return (int)id;
    out->nodeid = (uint64_t)id;
    out->generation = 0; /* node ids are never reused in a session */
    return 0;
}

int pt_lookup_at(struct passthrough *pt, int dirfd, const char *name, struct fsb_entry *out)
{
    int fd = open_beneath(dirfd, name, O_PATH);
    if (fd < 0)
        return fd;
    return remember(pt, fd, out);
}

int pt_remember_fd(struct passthrough *pt, int fd, struct fsb_entry *out)
{
    int path_fd = pt_reopen(fd, O_PATH);
    if (path_fd < 0)
        return path_fd;
    return remember(pt, path_fd, out);
}

/* ".." is only answered with a directory the session already knows: every
 * known inode was reached from the root by beneath-lookups, so it is inside
 * the export, while the host parent of an arbitrary directory need not be.
 * At the root, ".." is the root. */
static int lookup_dotdot(struct passthrough *pt, uint64_t parent, int dirfd,
                         struct fsb_entry *out)
{
    if (parent == FSB_ROOT_NODEID)
        return pt_lookup_at(pt, dirfd, ".", out);
    int fd = openat(dirfd, "..", O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (stat_fd(fd, &st) < 0 || !inode_is_known(&pt->inodes, st.st_dev, st.st_ino)) {
        close(fd);
        return -ENOENT;
    }
    return remember(pt, fd, out);
}

static int pt_lookup(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                     const char *name, struct fsb_entry *out)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *dir;
    int dirfd = pt_pin(pt, parent, &dir);
    if (dirfd < 0)
        return dirfd;
    int err;
    bool dotdot = strcmp(name, "..") == 0;
    PT_AS_CALLER(pt, ctx, err,
                 err = dotdot ? lookup_dotdot(pt, parent, dirfd, out)
                              : pt_lookup_at(pt, dirfd, name, out),
                 dirfd);
    pt_unpin(pt, dir);
    return err;
}

static void pt_forget(struct fsb_backend *be, uint64_t nodeid, uint64_t nlookup)
{
    inode_forget(&pt_of(be)->inodes, nodeid, nlookup);
}

static int pt_getattr(struct fsb_backend *be, uint64_t nodeid, uint64_t fh, struct stat *out)
{
    struct passthrough *pt = pt_of(be);
    if (fh != FSB_NO_FH) {
        int fd = pt_handle_get(pt, fh, false);
        if (fd >= 0) {
            int err = fstat(fd, out) < 0 ? -errno : 0;
            pt_handle_put(pt, fh);
            return err;
        }
    }
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return fd;
    int err = stat_fd(fd, out);
    pt_unpin(pt, in);
    return err;
}

/* A setattr step on the inode: FD is its pinned O_PATH fd, HFD an open fd
 * of it or -1. */
static int set_mode(struct pt_inode *in, int fd, int hfd, mode_t mode)
{
    char name[16];
    if (hfd >= 0)
        return fchmod(hfd, mode) < 0 ? -errno : 0;
    if (S_ISLNK(in->type))
        return -EOPNOTSUPP; /* Linux has no symlink modes */
    proc_name(fd, name);
    return fchmodat(pt_proc_self_fd, name, mode, 0) < 0 ? -errno : 0;
}

static int set_owner(int fd, const struct fsb_setattr *set)
{
    uid_t uid = set->valid & FSB_SET_UID ? set->uid : (uid_t)-1;
    gid_t gid = set->valid & FSB_SET_GID ? set->gid : (gid_t)-1;
    return fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int set_size(struct pt_inode *in, int fd, int hfd, off_t size)
{
    if (hfd >= 0)
        return ftruncate(hfd, size) < 0 ? -errno : 0;
    if (!S_ISREG(in->type))
        return S_ISDIR(in->type) ? -EISDIR : -EINVAL;
    int wfd = pt_reopen(fd, O_WRONLY);
    if (wfd < 0)
        return wfd;
    int err = ftruncate(wfd, size) < 0 ? -errno : 0;
    close(wfd);
    return err;
}

static int set_times(int fd, int hfd, const struct fsb_setattr *set)
{
    struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
    if (set->valid & FSB_SET_ATIME_NOW)
        ts[0].tv_nsec = UTIME_NOW;
    else if (set->valid & FSB_SET_ATIME)
        ts[0] = set->atime;
    if (set->valid & FSB_SET_MTIME_NOW)
        ts[1].tv_nsec = UTIME_NOW;
    else if (set->valid & FSB_SET_MTIME)
        ts[1] = set->mtime;
    if (hfd >= 0)
        return futimens(hfd, ts) < 0 ? -errno : 0;
    /* utimensat on the O_PATH fd itself: works for symlinks too. */
    return utimensat(fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/*
 * A guest with a writeback cache writes file data into its page cache and
 * later sends the mtime it recorded, as explicit times, through the handle
 * the writer opened.  Explicit times need ownership on the host, while
 * writing needs only write access: a writer that is not the owner would get
 * EPERM at close(2).  A handle opened for writing stands for that write
 * access, so the kernel's own time update is then applied as the daemon.
 */
static bool kernel_time_update_allowed(int hfd, const struct fsb_setattr *set)
{
    unsigned others = FSB_SET_MODE | FSB_SET_UID | FSB_SET_GID | FSB_SET_SIZE;
    if (!(set->valid & FSB_SET_KERNEL_TIMES) || (set->valid & others) || hfd < 0)
        return false;
    int fl = fcntl(hfd, F_GETFL);
    return fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
}

static int apply_setattr(struct pt_inode *in, int fd, int hfd, const struct fsb_setattr *set)
{
    int err = 0;
    if (set->valid & FSB_SET_MODE)
        err = set_mode(in, fd, hfd, set->mode);
    if (!err && set->valid & (FSB_SET_UID | FSB_SET_GID))
        err = set_owner(fd, set);
    if (!err && set->valid & FSB_SET_SIZE)
        err = set_size(in, fd, hfd, set->size);
    if (!err && set->valid & (FSB_SET_ATIME | FSB_SET_MTIME | FSB_SET_ATIME_NOW |
                              FSB_SET_MTIME_NOW))
        err = set_times(fd, hfd, set);
    return err;
}

static int pt_setattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                      uint64_t fh, const struct fsb_setattr *set, struct stat *out)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return fd;
    int hfd = fh != FSB_NO_FH ? pt_handle_get(pt, fh, false) : -1;
    int err;
    PT_AS_CALLER(pt, ctx, err, err = apply_setattr(in, fd, hfd, set), fd);
    if (err == -EPERM && kernel_time_update_allowed(hfd, set))
        err = set_times(fd, hfd, set);
    if (!err)
        err = stat_fd(fd, out);
    if (hfd >= 0)
        pt_handle_put(pt, fh);
    pt_unpin(pt, in);
    return err;
}

static int pt_readlink(struct fsb_backend *be, uint64_t nodeid, char *buf, size_t size)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return fd;
    ssize_t n = readlinkat(fd, "", buf, size);
    int err = n < 0 ? -errno : (int)n;
    pt_unpin(pt, in);
    return err;
}

/*
 * The shape of every creating operation: pin the parent, run MAKE as the
 * caller, then look the new name up to answer with its entry.
 */
struct make_args {
    const char *name;
    mode_t mode;
    dev_t rdev;
    const char *target;
};
typedef int (*make_fn)(int dirfd, const struct make_args *a);

static int make_node(struct passthrough *pt, const struct fsb_ctx *ctx, uint64_t parent,
                     make_fn make, const struct make_args *a, struct fsb_entry *out)
{
    struct pt_inode *dir;
    int dirfd = pt_pin(pt, parent, &dir);
    if (dirfd < 0)
        return dirfd;
    int err;
    PT_AS_CALLER(pt, ctx, err, err = make(dirfd, a), dirfd);
    if (!err)
        err = pt_lookup_at(pt, dirfd, a->name, out);
    pt_unpin(pt, dir);
    return err;
}

static int make_mknod(int dirfd, const struct make_args *a)
{
    return mknodat(dirfd, a->name, a->mode, a->rdev) < 0 ? -errno : 0;
}

static int make_mkdir(int dirfd, const struct make_args *a)
{
    return mkdirat(dirfd, a->name, a->mode) < 0 ? -errno : 0;
}

static int make_symlink(int dirfd, const struct make_args *a)
{
    return symlinkat(a->target, dirfd, a->name) < 0 ? -errno : 0;
}

static int pt_mknod(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                    const char *name, mode_t mode, dev_t rdev, struct fsb_entry *out)
{
    struct passthrough *pt = pt_of(be);
    if ((S_ISCHR(mode) || S_ISBLK(mode)) && !pt->allow_devices)
        return -EPERM;
    struct make_args a = { .name = name, .mode = mode, .rdev = rdev };
    return make_node(pt, ctx, parent, make_mknod, &a, out);
}

static int pt_mkdir(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                    const char *name, mode_t mode, struct fsb_entry *out)
{
    struct make_args a = { .name = name, .mode = mode };
    return make_node(pt_of(be), ctx, parent, make_mkdir, &a, out);
}

static int pt_symlink(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                      const char *name, const char *target, struct fsb_entry *out)
{
    struct make_args a = { .name = name, .target = target };
    return make_node(pt_of(be), ctx, parent, make_symlink, &a, out);
}

static int pt_link(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                   uint64_t newparent, const char *newname, struct fsb_entry *out)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in, *dir;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return fd;
    int dirfd = pt_pin(pt, newparent, &dir);
    if (dirfd < 0) {
        pt_unpin(pt, in);
        return dirfd;
    }
    char name[16];
    proc_name(fd, name);
    /* Through /proc/self/fd: links the inode itself (even a symlink)
     * without the CAP_DAC_READ_SEARCH that AT_EMPTY_PATH needs. */
    int err;
    PT_AS_CALLER(pt, ctx, err,
                 err = linkat(pt_proc_self_fd, name, dirfd, newname, AT_SYMLINK_FOLLOW) < 0
                           ? -errno : 0,
                 dirfd);
    if (!err)
        err = pt_lookup_at(pt, dirfd, newname, out);
    pt_unpin(pt, dir);
    pt_unpin(pt, in);
    return err;
}

static int remove_name(struct passthrough *pt, const struct fsb_ctx *ctx, uint64_t parent,
                       const char *name, int flags)
{
    struct pt_inode *dir;
    int dirfd = pt_pin(pt, parent, &dir);
    if (dirfd < 0)
        return dirfd;
    int err;
    PT_AS_CALLER(pt, ctx, err, err = unlinkat(dirfd, name, flags) < 0 ? -errno : 0, dirfd);
    pt_unpin(pt, dir);
    return err;
}

static int pt_unlink(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                     const char *name)
{
    return remove_name(pt_of(be), ctx, parent, name, 0);
}

static int pt_rmdir(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                    const char *name)
{
    return remove_name(pt_of(be), ctx, parent, name, AT_REMOVEDIR);
}

static int pt_rename(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                     const char *name, uint64_t newparent, const char *newname, unsigned flags)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *from, *to;
    int fromfd = pt_pin(pt, parent, &from);
    if (fromfd < 0)
        return fromfd;
    int tofd = pt_pin(pt, newparent, &to);
    if (tofd < 0) {
        pt_unpin(pt, from);
        return tofd;
    }
    int err;
    PT_AS_CALLER(pt, ctx, err,
                 err = syscall(SYS_renameat2, fromfd, name, tofd, newname, flags) < 0 ? -errno : 0,
                 fromfd, tofd);
    pt_unpin(pt, to);
    pt_unpin(pt, from);
    return err;
}

static int pt_statfs(struct fsb_backend *be, uint64_t nodeid, struct statvfs *out)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return fd;
    int err = fstatvfs(fd, out) < 0 ? -errno : 0;
    pt_unpin(pt, in);
    return err;
}

static int pt_access(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                     int mask)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return fd;
    /* AT_EACCESS: check with the switched fs ids, not the real uid. */
    int err;
    PT_AS_CALLER(pt, ctx, err,
                 err = faccessat(fd, "", mask, AT_EMPTY_PATH | AT_EACCESS) < 0 ? -errno : 0, fd);
    pt_unpin(pt, in);
    return err;
}

static int pt_syncfs(struct fsb_backend *be)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in;
    int fd = pt_pin(pt, FSB_ROOT_NODEID, &in);
    if (fd < 0)
        return fd;
    int dirfd = pt_reopen(fd, O_RDONLY | O_DIRECTORY); /* syncfs refuses O_PATH fds */
    pt_unpin(pt, in);
    if (dirfd < 0)
        return dirfd;
    int err = syncfs(dirfd) < 0 ? -errno : 0;
    close(dirfd);
    return err;
}

/*
 * Extended attributes.  The guest may change only user.* and POSIX ACLs: a
 * guest root setting security.capability (or trusted.*) on a host file
 * could hand privileges to whoever runs that file on the host.  Reading is
 * allowed (the host kernel still checks permissions as the caller).
 * Symlinks carry no user xattrs on Linux, and the /proc/self/fd route below
 * would act on their target, so they are answered here.
 */
static bool xattr_name_writable(const char *name)
{
    return strncmp(name, "user.", 5) == 0 || strcmp(name, "system.posix_acl_access") == 0 ||
           strcmp(name, "system.posix_acl_default") == 0;
}

enum xattr_op { XATTR_GET, XATTR_LIST, XATTR_SET, XATTR_REMOVE };

struct xattr_call {
    enum xattr_op op;
    const char *name;
    void *value;
    size_t size;
    int flags;
};

static ssize_t xattr_syscall(const char *path, const struct xattr_call *c)
{
    ssize_t r = 0;
    switch (c->op) {
    case XATTR_GET:
        r = getxattr(path, c->name, c->value, c->size);
        break;
    case XATTR_LIST:
        r = listxattr(path, c->value, c->size);
        break;
    case XATTR_SET:
        r = setxattr(path, c->name, c->value, c->size, c->flags);
        break;
    case XATTR_REMOVE:
        r = removexattr(path, c->name);
        break;
    }
    return r < 0 ? -errno : r;
}

static ssize_t xattr_on_symlink(const struct xattr_call *c)
{
    return c->op == XATTR_LIST ? 0 : c->op == XATTR_GET ? -ENODATA : -EPERM;
}

static ssize_t xattr_call(struct passthrough *pt, const struct fsb_ctx *ctx, uint64_t nodeid,
                          const struct xattr_call *c)
{
    if ((c->op == XATTR_SET || c->op == XATTR_REMOVE) && !xattr_name_writable(c->name))
        return -EPERM;
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return fd;
    ssize_t r;
    if (S_ISLNK(in->type)) {
        r = xattr_on_symlink(c);
    } else {
        char path[32];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        PT_AS_CALLER(pt, ctx, r, r = xattr_syscall(path, c), fd);
    }
    pt_unpin(pt, in);
    return r;
}

static int pt_setxattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                       const char *name, const void *value, size_t size, int flags)
{
    struct xattr_call c = { XATTR_SET, name, (void *)value, size, flags };
    return (int)xattr_call(pt_of(be), ctx, nodeid, &c);
}

static ssize_t pt_getxattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                           const char *name, void *value, size_t size)
{
    struct xattr_call c = { XATTR_GET, name, value, size, 0 };
    return xattr_call(pt_of(be), ctx, nodeid, &c);
}

static ssize_t pt_listxattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                            char *list, size_t size)
{
    struct xattr_call c = { XATTR_LIST, NULL, list, size, 0 };
    return xattr_call(pt_of(be), ctx, nodeid, &c);
}

static int pt_removexattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                          const char *name)
{
    struct xattr_call c = { XATTR_REMOVE, name, NULL, 0, 0 };
    return (int)xattr_call(pt_of(be), ctx, nodeid, &c);
}

static void pt_destroy(struct fsb_backend *be)
{
    struct passthrough *pt = pt_of(be);
    pt_handles_destroy(pt);
    inode_table_destroy(&pt->inodes);
    free(pt);
}

static const struct fsb_backend_ops passthrough_ops = {
    .destroy = pt_destroy,
    .lookup = pt_lookup,
    .forget = pt_forget,
    .getattr = pt_getattr,
    .setattr = pt_setattr,
    .readlink = pt_readlink,
    .mknod = pt_mknod,
    .mkdir = pt_mkdir,
    .symlink = pt_symlink,
    .link = pt_link,
    .unlink = pt_unlink,
    .rmdir = pt_rmdir,
    .rename = pt_rename,
    .open = pt_open,
    .create = pt_create,
    .read = pt_read,
    .write = pt_write,
    .flush = pt_flush,
    .release = pt_release,
    .fsync = pt_fsync,
    .fallocate = pt_fallocate,
    .lseek = pt_lseek,
    .copy_file_range = pt_copy_file_range,
    .opendir = pt_opendir,
    .readdir = pt_readdir,
    .releasedir = pt_releasedir,
    .fsyncdir = pt_fsyncdir,
    .statfs = pt_statfs,
    .access = pt_access,
    .setxattr = pt_setxattr,
    .getxattr = pt_getxattr,
    .listxattr = pt_listxattr,
    .removexattr = pt_removexattr,
    .getlk = pt_getlk,
    .setlk = pt_setlk,
    .flock = pt_flock,
    .syncfs = pt_syncfs,
};

struct fsb_backend *passthrough_new(const struct passthrough_config *cfg, int *err)
{
    struct passthrough *pt = calloc(1, sizeof(*pt));
    if (!pt) {
        *err = -ENOMEM;
        return NULL;
    }
    int root = fcntl(cfg->root_fd, F_DUPFD_CLOEXEC, 0);
    if (root < 0) {
        *err = -errno;
        free(pt);
        return NULL;
    }
    pt->base.ops = &passthrough_ops;
    pt->switch_creds = cred_can_switch();
    pt->writeback = cfg->writeback;
    pt->allow_devices = cfg->allow_devices;
    pt->trust_guest_groups = cfg->trust_guest_groups;
    pt->max_handles = cfg->max_handles;
    pt->free_head = UINT64_MAX;
    pthread_mutex_init(&pt->handles_lock, NULL);
    /* Handles need CAP_DAC_READ_SEARCH to be reopened: only as root. */
    /* Permanent inode fds (see inode_table_init): half as many as the
     * session may have open files. */
    *err = inode_table_init(&pt->inodes, root, cfg->max_inodes, cfg->max_handles / 2,
                            cred_can_switch());
    if (*err) {
        close(root);
        pt_handles_destroy(pt);
        free(pt);
        return NULL;
    }
    return &pt->base;
}
