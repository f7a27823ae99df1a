/*
 * overlay.c - the overlay backend: lookup and inode operations, the
 * instance, and the work dir at start-up.  Namespace changes live in
 * ov_namespace.c, copy-up in ov_copy_up.c, open files in ov_files.c,
 * directories in ov_dirs.c, xattrs in ov_xattr.c.
 */
#include "backend/overlay/ov_internal.h"
#include "backend/passthrough/credentials.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

const struct fsb_ctx ov_daemon_ctx = { 0, 0, 0 };

struct fsb_backend *ov_top(struct overlay *ov, struct ov_node *n, uint64_t *id)
{
    uint64_t up, low;
    ov_layers(ov, n, &up, &low);
    *id = up ? up : low;
    return up ? ov->upper : ov->lower;
}

int ov_top_attr(struct overlay *ov, struct ov_node *n, struct stat *st)
{
    uint64_t id;
    struct fsb_backend *l = ov_top(ov, n, &id);
    return l->ops->getattr(l, id, FSB_NO_FH, st);
}

void ov_staging_name(struct overlay *ov, const char *kind, char out[64])
{
    snprintf(out, 64, "%s-%d-%lu", kind, (int)getpid(), ++ov->shared->staging_seq);
}

static int entry_of(struct overlay *ov, struct ov_node *n, struct fsb_entry *out)
{
    uint64_t id;
    struct fsb_backend *l = ov_top(ov, n, &id);
    int err = l->ops->getattr(l, id, FSB_NO_FH, &out->attr);
    if (err)
        return err;
    out->attr.st_ino = n->ino;
    out->nodeid = n->nodeid;
    out->generation = 0;
    ov_add_lookup(ov, n);
    return 0;
}

static int ov_lookup(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                     const char *name, struct fsb_entry *out)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *dir = ov_get(ov, parent);
    if (!dir)
        return -ESTALE;
    int err;
    if (strcmp(name, ".") == 0) {
        err = entry_of(ov, dir, out); /* a guest file handle's node, any type */
    } else if (strcmp(name, "..") == 0) {
        /* The parent the node was reached through: inside the export. */
        err = entry_of(ov, dir->parent ? dir->parent : dir, out);
    } else {
        struct ov_found f;
        err = ov_find(ov, ctx, dir, name, &f);
        if (!err)
            err = ov_node_from(ov, dir, name, &f, out, NULL);
    }
    ov_put(ov, dir);
    return err;
}

static int ov_getattr(struct fsb_backend *be, uint64_t nodeid, uint64_t fh, struct stat *out)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *n = ov_get(ov, nodeid);
    if (!n)
        return -ESTALE;
    uint64_t id;
    struct fsb_backend *l = ov_top(ov, n, &id);
    int err = l->ops->getattr(l, id, l == ov->upper ? ov_upper_fh(fh) : FSB_NO_FH, out);
    if (!err)
        out->st_ino = n->ino;
    ov_put(ov, n);
    return err;
}

/* What a setattr needs of the caller on the LOWER object (before the
 * copy-up it would cause): ownership for modes, owners and explicit
 * times, write access for a size, either for "now" times. */
static int setattr_allowed(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t low,
                           const struct fsb_setattr *set)
{
    struct stat st;
    int err = ov->lower->ops->getattr(ov->lower, low, FSB_NO_FH, &st);
    if (err || !ov->switch_creds || ctx->uid == 0)
        return err;
    bool owner = ctx->uid == st.st_uid;
    unsigned needs_owner = FSB_SET_MODE | FSB_SET_UID | FSB_SET_GID | FSB_SET_ATIME | FSB_SET_MTIME;
    if ((set->valid & needs_owner) && !owner)
        return -EPERM;
    if ((set->valid & FSB_SET_SIZE) && !ov_mode_permits(ov, ctx, &st, W_OK))
        return -EACCES;
    if ((set->valid & (FSB_SET_ATIME_NOW | FSB_SET_MTIME_NOW)) && !owner &&
        !ov_mode_permits(ov, ctx, &st, W_OK))
        return -EACCES;
    return 0;
}

static int ov_setattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                      uint64_t fh, const struct fsb_setattr *set, struct stat *out)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *n = ov_get(ov, nodeid);
    if (!n)
        return -ESTALE;
    uint64_t up, low;
    ov_layers(ov, n, &up, &low);
    int err = 0;
    if (!up) {
        err = setattr_allowed(ov, ctx, low, set);
        if (!err)
            err = ov_copy_up_locked(ov, n, &up);
    }
    if (!err)
        err = ov->upper->ops->setattr(ov->upper, ctx, up, ov_upper_fh(fh), set, out);
    if (!err)
        out->st_ino = n->ino;
    ov_put(ov, n);
    return err;
}

static int ov_readlink(struct fsb_backend *be, uint64_t nodeid, char *buf, size_t size)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *n = ov_get(ov, nodeid);
    if (!n)
        return -ESTALE;
    uint64_t id;
    struct fsb_backend *l = ov_top(ov, n, &id);
    int r = l->ops->readlink(l, id, buf, size);
    ov_put(ov, n);
    return r;
}

static int ov_statfs(struct fsb_backend *be, uint64_t nodeid, struct statvfs *out)
{
    (void)nodeid; /* UPPER's filesystem takes the changes: its space counts */
    struct overlay *ov = ov_of(be);
    return ov->upper->ops->statfs(ov->upper, FSB_ROOT_NODEID, out);
}

int ov_may(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *n, int mask)
{
    uint64_t up, low;
    ov_layers(ov, n, &up, &low);
    int err = 0;
    if (!up && (mask & W_OK)) {
        /* Writing would copy up: LOWER's modes decide, not its mount. */
        struct stat st;
        err = ov->lower->ops->getattr(ov->lower, low, FSB_NO_FH, &st);
        if (!err && !ov_mode_permits(ov, ctx, &st, W_OK))
            err = -EACCES;
        mask &= ~W_OK;
    }
    if (!err && mask) {
        struct fsb_backend *l = up ? ov->upper : ov->lower;
        err = l->ops->access(l, ctx, up ? up : low, mask);
    }
    return err;
}

static int ov_access(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                     int mask)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *n = ov_get(ov, nodeid);
    if (!n)
        return -ESTALE;
    int err = ov_may(ov, ctx, n, mask);
    ov_put(ov, n);
    return err;
}

static int ov_syncfs(struct fsb_backend *be)
{
    struct overlay *ov = ov_of(be);
    return ov->upper->ops->syncfs(ov->upper);
}

static void ov_destroy(struct fsb_backend *be)
{
    struct overlay *ov = ov_of(be);
    ov_dirs_destroy(ov);
    ov_nodes_destroy(ov);
    if (ov->upper)
        ov->upper->ops->destroy(ov->upper);
    if (ov->lower)
        ov->lower->ops->destroy(ov->lower);
    if (ov->staging_fd >= 0)
        close(ov->staging_fd);
    free(ov);
}

static struct fsb_backend_ops overlay_ops = {
    .destroy = ov_destroy,
    .lookup = ov_lookup,
    .forget = ov_forget,
    .getattr = ov_getattr,
    .setattr = ov_setattr,
    .readlink = ov_readlink,
    .mknod = ov_mknod,
    .mkdir = ov_mkdir,
    .symlink = ov_symlink,
    .link = ov_link,
    .unlink = ov_unlink,
    .rmdir = ov_rmdir,
    .rename = ov_rename,
    .statfs = ov_statfs,
    .access = ov_access,
    .setxattr = ov_setxattr,
    .getxattr = ov_getxattr,
    .listxattr = ov_listxattr,
    .removexattr = ov_removexattr,
    .syncfs = ov_syncfs,
};

static void fill_ops(void)
{
    ov_file_ops(&overlay_ops);
    ov_dir_ops(&overlay_ops);
}

static bool same_filesystem(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev;
}

static int open_layers(struct overlay *ov, const struct passthrough_config *layers,
                       const struct overlay_dirs *dirs)
{
    struct passthrough_config lower = *layers, upper = *layers;
    lower.allow_devices = false; /* nothing is ever made in LOWER */
    /* The guest sees the overlay's node ids, never the layers': no guest
     * file handle ever asks a layer for a forgotten node (inode_revive). */
    lower.stacked = upper.stacked = true;
    upper.root_fd = dirs->upper_fd;
    int err;
    ov->lower = passthrough_new(&lower, &err);
    if (ov->lower)
        ov->upper = passthrough_new(&upper, &err);
    if (!ov->upper)
        return err;
    struct stat root;
    err = ov->lower->ops->getattr(ov->lower, FSB_ROOT_NODEID, FSB_NO_FH, &root);
    return err ? err : ov_nodes_init(ov, layers->max_inodes, &root);
}

struct fsb_backend *overlay_new(const struct passthrough_config *layers,
                                const struct overlay_dirs *dirs, int *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fill_ops);
    struct overlay *ov = calloc(1, sizeof(*ov));
    if (!ov) {
        *err = -ENOMEM;
        return NULL;
    }
    ov->base.ops = &overlay_ops;
    ov->staging_fd = fcntl(dirs->work_fd, F_DUPFD_CLOEXEC, 0);
    ov->shared = dirs->shared;
    ov->privileged = cred_can_switch();
    ov->switch_creds = cred_can_switch();
    ov->trust_groups = layers->trust_guest_groups;
    ov->same_fs = same_filesystem(layers->root_fd, dirs->upper_fd);
    ov->max_dirs = layers->max_handles;
    *err = ov->staging_fd < 0 ? -errno : open_layers(ov, layers, dirs);
    if (*err) {
        ov_destroy(&ov->base);
        return NULL;
    }
    return &ov->base;
}

/* ---------------------------------------------------------------------- */
/* The work dir                                                             */

int overlay_default_work(const char *upper_path, char *out, size_t size)
{
    size_t n = strlen(upper_path);
    while (n > 1 && upper_path[n - 1] == '/')
        n--;
    int r = snprintf(out, size, "%.*s.work", (int)n, upper_path);
    return r < 0 || (size_t)r >= size ? -ENAMETOOLONG : 0;
}

/* Empties the staging directory: what a killed daemon left there was
 * never visible in UPPER. */
static int clean_staging(int work)
{
    int fd = openat(work, "staging", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *dp = fdopendir(fd);
    if (!dp) {
        close(fd);
        return -errno;
    }
    for (struct dirent *d; (d = readdir(dp));)
        if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
            ov_remove_tree(dirfd(dp), d->d_name);
    closedir(dp);
    return 0;
}

static int take_lock(int work, const char **why)
{
    int fd = openat(work, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        *why = "cannot create the work dir's lock file";
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = -errno;
        close(fd);
        *why = "the upper directory is in use (another fsbridged, or fsbridge-overlay commit)";
        return err;
    }
    return fd;
}

static int open_work(const char *work_path, int upper_fd, const char **why)
{
    if (mkdir(work_path, 0700) < 0 && errno != EEXIST) {
        *why = "cannot create the work dir";
        return -errno;
    }
    int work = open(work_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (work < 0) {
        *why = "cannot open the work dir";
        return -errno;
    }
    if (!same_filesystem(work, upper_fd)) {
        close(work);
        *why = "the work dir must be on the upper directory's filesystem (copy-up renames)";
        return -EXDEV;
    }
    return work;
}

int overlay_open_dirs(const char *upper_path, const char *work_path, struct overlay_dirs *dirs,
                      const char **why)
{
    *dirs = (struct overlay_dirs){ -1, -1, -1, NULL };
    dirs->shared = calloc(1, sizeof(*dirs->shared));
    if (!dirs->shared) {
        *why = "out of memory";
        return -ENOMEM;
    }
    pthread_mutex_init(&dirs->shared->change_lock, NULL);
    dirs->upper_fd = open(upper_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirs->upper_fd < 0) {
        *why = "cannot open the upper directory";
        return -errno;
    }
    int work = open_work(work_path, dirs->upper_fd, why);
    if (work < 0)
        return work;
    dirs->lock_fd = take_lock(work, why);
    int err = dirs->lock_fd < 0 ? dirs->lock_fd : 0;
    if (!err && mkdirat(work, "staging", 0700) < 0 && errno != EEXIST) {
        *why = "cannot create the staging directory";
        err = -errno;
    }
    if (!err && (err = clean_staging(work)) < 0)
        *why = "cannot clean the staging directory";
    if (!err) {
        dirs->work_fd = openat(work, "staging", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dirs->work_fd < 0) {
            *why = "cannot open the staging directory";
            err = -errno;
        }
    }
    close(work);
    return err;
}
