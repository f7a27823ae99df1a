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
#include "backend/passthrough/change_watch.h"
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
static unsigned usable_fds = 960;

/* Fds the daemon keeps for itself beyond those open when it starts
 * serving: accept (and the spare fd that sheds connections), log lines,
 * the signalfd, eventfds, vhost-user's fds. */
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
    usable_fds = usable;
    return 0;
}

unsigned passthrough_guest_fd_pool(unsigned open_now, unsigned *conn_fds)
{
    unsigned left = usable_fds - fd_cache_capacity();
    if (*conn_fds > left / 3)
        *conn_fds = left / 3;
    left -= *conn_fds;
    return left > open_now ? left - open_now : 1;
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

int passthrough_pin(struct fsb_backend *be, uint64_t nodeid, mode_t *type, void **pin)
{
    struct pt_inode *in;
    int fd = pt_pin(pt_of(be), nodeid, &in);
    if (fd >= 0) {
        *type = in->type;
        *pin = in;
    }
    return fd;
}

void passthrough_unpin(struct fsb_backend *be, void *pin)
{
    pt_unpin(pt_of(be), pin);
}

int passthrough_reopen(int fd, int flags)
{
    return pt_reopen(fd, flags);
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

/*
 * cache=coherent: the attributes a coherent session is told about a node
 * must be read while the node is in its inode table.  The change watcher
 * counts a host change in the session only when the session knows the
 * inode (change_watch.c, known_change), so a change that came between the
 * stat and the node's joining the table would be neither counted (the
 * reply would be cached) nor pushed (no node id yet): the guest would keep
 * the old attributes for a day.  So a node that was not in the table
 * before its stat (not SETTLED) is statted again, now that it is.  If the
 * pin fails the file is gone (or the fds ran out): its name's removal is
 * a change of the parent, which the session knows, and counts.
 */
static void restat_joined(struct passthrough *pt, bool settled, struct fsb_entry *out)
{
    if (!pt->sub || settled)
        return;
    struct pt_inode *in;
    int fd = pt_pin(pt, out->nodeid, &in);
    if (fd < 0)
        return;
    struct stat st;
    if (stat_fd(fd, &st) == 0)
        out->attr = st;
    pt_unpin(pt, in);
}

/* Records the O_PATH fd FD (consumed), whose stat OUT->attr holds
 * already, taken after inode_table_links returned SINCE, and fills the
 * rest of OUT. */
static int remember_statted(struct passthrough *pt, int fd, uint64_t since, struct fsb_entry *out)
{
    if (pt->sub && S_ISDIR(out->attr.st_mode)) /* inotify mode watches what is looked up */
        change_watch_dir_seen(pt->watch, fd, out->attr.st_dev, out->attr.st_ino);
    if (pt->sub && pt->test_join_delay_ms)
        usleep(pt->test_join_delay_ms * 1000u);
    bool settled;
    int64_t id = inode_remember(&pt->inodes, fd, &out->attr, since, &settled);
    if (id < 0)
        return (int)id;
    out->nodeid = (uint64_t)id;
    out->generation = 0; /* node ids are never reused in a session */
    restat_joined(pt, settled, out);
    return 0;
}

/* Records the O_PATH fd FD (consumed) and fills OUT. */
static int remember(struct passthrough *pt, int fd, struct fsb_entry *out)
{
    uint64_t since = inode_table_links(&pt->inodes);
    int err = stat_fd(fd, &out->attr);
    if (err) {
        close(fd);
        return err;
    }
    return remember_statted(pt, fd, since, out);
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
    uint64_t since = inode_table_links(&pt->inodes);
    if (stat_fd(fd, &out->attr) < 0 ||
        !inode_is_known(&pt->inodes, out->attr.st_dev, out->attr.st_ino)) {
        close(fd);
        return -ENOENT;
    }
    return remember_statted(pt, fd, since, out);
}

/* "." names the node itself, whatever its type: the guest kernel asks for
 * it to turn one of its file handles (a node id) back into an inode it has
 * evicted (FUSE_EXPORT_SUPPORT).  A node the guest has forgotten is
 * brought back under the same id while its host file exists
 * (inode_revive).  No permission is checked: the guest is not trusted to
 * check any, but this node was reached beneath the export by this session
 * already, and guest root may send any uid in a request anyway. */
static int lookup_dot(struct passthrough *pt, uint64_t nodeid, struct fsb_entry *out)
{
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd >= 0) {
        /* Known still: the guest's FORGET is on its way.  A deleted file
         * is ESTALE, as the guest's kernel would find it evicted. */
        uint64_t since = inode_table_links(&pt->inodes);
        int err = stat_fd(fd, &out->attr);
        if (!err && out->attr.st_nlink == 0)
            err = -ESTALE;
        int path_fd = err ? err : pt_reopen(fd, O_PATH);
        err = path_fd < 0 ? path_fd : remember_statted(pt, path_fd, since, out);
        pt_unpin(pt, in);
        return err;
    }
    if (fd != -ESTALE)
        return fd;
    int64_t id = inode_revive(&pt->inodes, nodeid, &out->attr);
    if (id < 0)
        return (int)id;
    out->nodeid = (uint64_t)id;
    out->generation = 0;
    restat_joined(pt, false, out); /* revived: it joins the table again */
    return 0;
}

static int pt_lookup(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                     const char *name, struct fsb_entry *out)
{
    struct passthrough *pt = pt_of(be);
    if (strcmp(name, ".") == 0)
        return lookup_dot(pt, parent, out);
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

static bool pt_forget(struct fsb_backend *be, uint64_t nodeid, uint64_t nlookup)
{
    return inode_forget(&pt_of(be)->inodes, nodeid, nlookup);
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

/*
 * The owner may give a file to any group he is in, supplementary ones
 * included; FUSE carries only the caller's primary gid, so the host refuses
 * (EPERM) a chown to a supplementary group.  The guest kernel (mounted with
 * default_permissions) checked the membership before it asked, so the
 * target gid is lent to the thread for the chown (see PT_AS_CALLER).
 */
static int set_owner_as_caller(struct passthrough *pt, const struct fsb_ctx *ctx, int fd,
                               const struct fsb_setattr *set)
{
    int err = set_owner(fd, set);
    if (err == -EPERM && (set->valid & FSB_SET_GID) && set->gid != ctx->gid && ctx->uid != 0 &&
        pt->trust_guest_groups && pt->switch_creds && cred_lend_groups(&set->gid, 1) == 0)
        err = set_owner(fd, set);
    return err;
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
 * the writer opened, and sends a truncate with the times it set.  Explicit
 * times need ownership on the host, while writing needs only write access:
 * a writer that is not the owner would get EPERM at close(2) or truncate.
 * A handle opened for writing, or the size change the caller just made,
 * stands for that write access, so the kernel's own time update is then
 * applied as the daemon, but as "now" (kernel_times_as_now): what a local
 * writer may set (utimensat(2) with UTIME_NOW needs only write access, an
 * explicit time needs ownership), never the times the guest chose.
 */
static bool kernel_time_update_allowed(int hfd, const struct fsb_setattr *set)
{
    unsigned others = FSB_SET_MODE | FSB_SET_UID | FSB_SET_GID;
    if (!(set->valid & FSB_SET_KERNEL_TIMES) || (set->valid & others))
        return false;
    if (set->valid & FSB_SET_SIZE)
        return true; /* applied as the caller before the times were refused */
    int fl = hfd >= 0 ? fcntl(hfd, F_GETFL) : -1;
    return fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
}

/* SET with each time it names set to "now" (set_times prefers the _NOW
 * flags over the values). */
static struct fsb_setattr kernel_times_as_now(const struct fsb_setattr *set)
{
    struct fsb_setattr now = *set;
    if (set->valid & FSB_SET_ATIME)
        now.valid |= FSB_SET_ATIME_NOW;
    if (set->valid & FSB_SET_MTIME)
        now.valid |= FSB_SET_MTIME_NOW;
    return now;
}

/* Applies SET as the caller; *times_refused tells that everything but the
 * times was applied and the times got EPERM. */
static int apply_setattr(struct passthrough *pt, const struct fsb_ctx *ctx, struct pt_inode *in,
                         int fd, int hfd, const struct fsb_setattr *set, bool *times_refused)
{
    int err = 0;
    if (set->valid & FSB_SET_MODE)
        err = set_mode(in, fd, hfd, set->mode);
    if (!err && set->valid & (FSB_SET_UID | FSB_SET_GID))
        err = set_owner_as_caller(pt, ctx, fd, set);
    if (!err && set->valid & FSB_SET_SIZE)
        err = set_size(in, fd, hfd, set->size);
    if (!err && set->valid & (FSB_SET_ATIME | FSB_SET_MTIME | FSB_SET_ATIME_NOW |
                              FSB_SET_MTIME_NOW)) {
        err = set_times(fd, hfd, set);
        *times_refused = err == -EPERM;
    }
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
    bool times_refused = false;
    PT_AS_CALLER(pt, ctx, err, err = apply_setattr(pt, ctx, in, fd, hfd, set, &times_refused), fd);
    if (times_refused && kernel_time_update_allowed(hfd, set)) {
        struct fsb_setattr now = kernel_times_as_now(set);
        err = set_times(fd, hfd, &now);
    }
    if (!err)
        err = stat_fd(fd, out);
    if (!err)
        pt_note_inode(pt, in->dev, in->ino, set->valid & FSB_SET_SIZE ? 0 : -1, 0);
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
    PT_CREATING_AS_CALLER(pt, ctx, err, err = make(dirfd, a), dirfd);
    if (!err)
        pt_note_entry(pt, dir, a->name);
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

/* Pins A into *IN_A and *FD_A, then B into *IN_B and *FD_B (see pt_pin):
 * 0, or -errno with neither pinned. */
static int pin_both(struct passthrough *pt, uint64_t a, struct pt_inode **in_a, int *fd_a,
                    uint64_t b, struct pt_inode **in_b, int *fd_b)
{
    *fd_a = pt_pin(pt, a, in_a);
    if (*fd_a < 0)
        return *fd_a;
    *fd_b = pt_pin(pt, b, in_b);
    if (*fd_b < 0) {
        pt_unpin(pt, *in_a);
        return *fd_b;
    }
    return 0;
}

static int pt_link(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                   uint64_t newparent, const char *newname, struct fsb_entry *out)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in, *dir;
    int fd, dirfd;
    int err = pin_both(pt, nodeid, &in, &fd, newparent, &dir, &dirfd);
    if (err)
        return err;
    char name[16];
    proc_name(fd, name);
    /* Through /proc/self/fd: links the inode itself (even a symlink)
     * without the CAP_DAC_READ_SEARCH that AT_EMPTY_PATH needs. */
    PT_AS_CALLER(pt, ctx, err,
                 err = linkat(pt_proc_self_fd, name, dirfd, newname, AT_SYMLINK_FOLLOW) < 0
                           ? -errno : 0,
                 dirfd);
    if (!err) {
        pt_note_entry(pt, dir, newname);
        pt_note_inode(pt, in->dev, in->ino, -1, 0); /* its link count */
        err = pt_lookup_at(pt, dirfd, newname, out);
    }
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
    if (!err)
        pt_note_entry(pt, dir, name);
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
    int fromfd, tofd;
    int err = pin_both(pt, parent, &from, &fromfd, newparent, &to, &tofd);
    if (err)
        return err;
    PT_AS_CALLER(pt, ctx, err,
                 err = syscall(SYS_renameat2, fromfd, name, tofd, newname, flags) < 0 ? -errno : 0,
                 fromfd, tofd);
    if (!err) {
        pt_note_entry(pt, from, name);
        pt_note_entry(pt, to, newname);
    }
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

/*
 * REMOVEXATTR of security.capability.  The guest kernel sends it itself
 * before a write, truncate or chown of a file that has the attribute (the
 * local rule: modifying a file drops its file capabilities), and guest root
 * sends it for `setcap -r`.  Taking a capability away never gives anyone a
 * privilege, so it is allowed where the guest could have caused it
 * locally: the caller is root, owns the file or may write it.  That is
 * within what ext4 allows a local user (Linux 6.18): removexattr of it
 * needs CAP_SETFCAP, but any write drops it, and so does chown(f, -1, -1)
 * by any user at all (stricter here: a stranger gets EPERM).  The daemon
 * holds no CAP_SETFCAP, so the removal is the host kernel's own: a chown
 * to the same owner (-1, -1) drops security.capability as any chown does.
 * That chown also drops set-user-ID (and group-executable set-group-ID),
 * which removexattr must not: the mode is put back when that happened.
 */
#define CAPS_XATTR "security.capability"

static bool may_drop_capability(int fd, const struct fsb_ctx *ctx, const struct stat *st)
{
    if (ctx->uid == 0 || ctx->uid == st->st_uid)
        return true;
    return faccessat(fd, "", W_OK, AT_EMPTY_PATH | AT_EACCESS) == 0;
}

/* 0 when the file has the capability xattr NAME and the caller may drop
 * it; *ST gets the file's attributes. */
static int drop_allowed(struct passthrough *pt, const struct fsb_ctx *ctx, int fd,
                        const char *path, const char *name, struct stat *st)
{
    int err = stat_fd(fd, st);
    if (err)
        return err;
    if (getxattr(path, name, NULL, 0) < 0)
        return -errno; /* ENODATA: there is nothing to remove */
    bool allowed = false;
    PT_AS_CALLER(pt, ctx, err, allowed = may_drop_capability(fd, ctx, st); err = 0, fd);
    return err ? err : allowed ? 0 : -EPERM;
}

static ssize_t drop_capability(struct passthrough *pt, const struct fsb_ctx *ctx, int fd,
                               const char *path)
{
    struct stat st, after;
    int err = drop_allowed(pt, ctx, fd, path, CAPS_XATTR, &st);
    if (err)
        return err;
    if (fchownat(fd, "", (uid_t)-1, (gid_t)-1, AT_EMPTY_PATH) < 0)
        return -errno;
    char name[16];
    proc_name(fd, name);
    if (stat_fd(fd, &after) == 0 && after.st_mode != st.st_mode &&
        fchmodat(pt_proc_self_fd, name, st.st_mode & 07777, 0) < 0)
        return -errno;
    return 0;
}

/*
 * xattr=map: the guest's security.capability is a user.* name on the host
 * (mapped_caps_xattr), which the host kernel never drops by itself; the
 * engine removes it after each write, truncate and chown, and the guest
 * kernel may too.  It goes under the rule of the host's own (root, the
 * owner or a writer: a chown by an owner who may not write the file drops
 * it as well), removed as the daemon.
 */
static ssize_t drop_mapped_capability(struct passthrough *pt, const struct fsb_ctx *ctx, int fd,
                                      const char *path)
{
    struct stat st;
    int err = drop_allowed(pt, ctx, fd, path, pt->mapped_caps_xattr, &st);
    if (err)
        return err;
    return removexattr(path, pt->mapped_caps_xattr) < 0 ? -errno : 0;
}

static bool is_mapped_caps(const struct passthrough *pt, const struct xattr_call *c)
{
    return c->op == XATTR_REMOVE && pt->mapped_caps_xattr &&
           strcmp(c->name, pt->mapped_caps_xattr) == 0;
}

/* A read of the mapped capability (xattr=map) is made as the daemon: on a
 * local disk reading security.capability needs no permission on the file,
 * and the guest kernel reads it at every exec, of execute-only programs
 * too (a read as the caller would fail there with EACCES). */
static bool is_mapped_caps_read(const struct passthrough *pt, const struct xattr_call *c)
{
    return c->op == XATTR_GET && pt->mapped_caps_xattr &&
           strcmp(c->name, pt->mapped_caps_xattr) == 0;
}

static ssize_t xattr_call(struct passthrough *pt, const struct fsb_ctx *ctx, uint64_t nodeid,
                          const struct xattr_call *c)
{
    bool drop_caps = c->op == XATTR_REMOVE && strcmp(c->name, CAPS_XATTR) == 0;
    if ((c->op == XATTR_SET || c->op == XATTR_REMOVE) && !drop_caps &&
        !xattr_name_writable(c->name))
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
        if (drop_caps)
            r = drop_capability(pt, ctx, fd, path);
        else if (is_mapped_caps(pt, c))
            r = drop_mapped_capability(pt, ctx, fd, path);
        else if (is_mapped_caps_read(pt, c))
            r = xattr_syscall(path, c);
        else
            PT_AS_CALLER(pt, ctx, r, r = xattr_syscall(path, c), fd);
    }
    if (r >= 0 && (c->op == XATTR_SET || c->op == XATTR_REMOVE))
        pt_note_inode(pt, in->dev, in->ino, -1, 0);
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
    pt_untrack_free(pt);
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
    .empty_dir = pt_empty_dir,
    .symlink = pt_symlink,
    .link = pt_link,
    .unlink = pt_unlink,
    .rmdir = pt_rmdir,
    .rename = pt_rename,
    .open = pt_open,
    .create = pt_create,
    .tmpfile = pt_tmpfile,
    .read = pt_read,
    .read_to_pipe = pt_read_to_pipe,
    .write = pt_write,
    .flush = pt_flush,
    .drop_locks = pt_drop_locks,
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
    pt->mapped_caps_xattr = cfg->mapped_caps_xattr;
    pt->trust_guest_groups = cfg->trust_guest_groups;
    pt->max_handles = cfg->max_handles;
    pt->guest = cfg->guest;
    pt->watch = cfg->watch;
    pt->test_join_delay_ms = cfg->test_join_delay_ms;
    *err = pt_handles_init(pt);
    /* Handles need CAP_DAC_READ_SEARCH to be reopened: only as root. */
    /* Permanent inode fds (see inode_table_init): half as many as the
     * session may have open files. */
    if (!*err)
        *err = inode_table_init(&pt->inodes, root, cfg->max_inodes, cfg->max_handles / 2,
                                cred_can_switch(), !cfg->stacked, cfg->guest);
    if (*err) {
        close(root);
        pt_handles_destroy(pt);
        free(pt);
        return NULL;
    }
    return &pt->base;
}
