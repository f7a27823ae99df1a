/*
 * ov_files.c - open files of the overlay backend.
 *
 * An open file is an open file of one layer's instance: its fh is that
 * instance's fh times two, plus one for UPPER (the instance checks the fh
 * as it checks its own).  Opening a LOWER file for writing (or with
 * O_TRUNC) copies it up first, as overlayfs does, so every write goes to
 * UPPER; a LOWER file opened read-only stays a LOWER handle.  A handle
 * opened read-only before the file's copy-up keeps reading LOWER's data
 * (as overlayfs did before Linux 4.19); the guest's page cache is dropped
 * at the next open of a changed file anyway (its size and mtime change).
 */
#include "backend/overlay/ov_internal.h"

#include <errno.h>

#define FH_UPPER 1u

static uint64_t make_fh(uint64_t layer_fh, bool upper)
{
    return layer_fh << 1 | (upper ? FH_UPPER : 0);
}

static struct fsb_backend *layer_of(struct overlay *ov, uint64_t fh, uint64_t *layer_fh)
{
    *layer_fh = fh >> 1;
    return fh & FH_UPPER ? ov->upper : ov->lower;
}

bool ov_mode_permits(const struct overlay *ov, const struct fsb_ctx *ctx,
                     const struct stat *st, int mask)
{
    if (!ov->switch_creds || ctx->uid == 0)
        return true; /* root's write needs no mode bit (its copy-up is root's) */
    unsigned bits = ctx->uid == st->st_uid ? st->st_mode >> 6
                    : ctx->gid == st->st_gid ? st->st_mode >> 3
                                             : st->st_mode;
    /* FUSE carries no supplementary groups: a guest that checks them
     * itself (default_permissions) already allowed a group access. */
    if (ov->trust_groups && ctx->uid != st->st_uid && (st->st_mode >> 3 & (unsigned)mask))
        bits |= st->st_mode >> 3;
    return (bits & (unsigned)mask) == (unsigned)mask;
}

static bool opens_for_change(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* Copies N up before a write-open, if the caller may write it at all. */
static int copy_up_for_write(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *n,
                             uint64_t low)
{
    struct stat st;
    int err = ov->lower->ops->getattr(ov->lower, low, FSB_NO_FH, &st);
    if (!err && !ov_mode_permits(ov, ctx, &st, W_OK))
        err = -EACCES;
    if (!err && !S_ISREG(st.st_mode))
        err = S_ISDIR(st.st_mode) ? -EISDIR : -ENXIO;
    uint64_t up;
    return err ? err : ov_copy_up_locked(ov, n, &up);
}

int ov_open(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid, int flags,
            uint64_t *fh)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *n = ov_get(ov, nodeid);
    if (!n)
        return -ESTALE;
    uint64_t up, low, layer_fh;
    ov_layers(ov, n, &up, &low);
    int err = 0;
    if (!up && opens_for_change(flags)) {
        err = copy_up_for_write(ov, ctx, n, low);
        ov_layers(ov, n, &up, NULL);
    }
    if (!err && up)
        err = ov->upper->ops->open(ov->upper, ctx, up, flags, &layer_fh);
    else if (!err)
        err = ov->lower->ops->open(ov->lower, ctx, low, flags, &layer_fh);
    if (!err)
        *fh = make_fh(layer_fh, up != 0);
    ov_put(ov, n);
    return err;
}

/* CREATE of a name the merged view has: an open of it (O_EXCL: EEXIST). */
static int create_existing(struct overlay *ov, const struct fsb_ctx *ctx,
                           struct ov_node *parent, const char *name, struct ov_found *f,
                           int flags, struct fsb_entry *out, uint64_t *fh)
{
    if (flags & O_EXCL) {
        ov_found_drop(ov, f);
        return -EEXIST;
    }
    int err = ov_node_from(ov, parent, name, f, out, NULL);
    if (err)
        return err;
    err = ov_open(&ov->base, ctx, out->nodeid, flags & ~(O_CREAT | O_EXCL), fh);
    if (!err)
        err = ov->base.ops->getattr(&ov->base, out->nodeid, FSB_NO_FH, &out->attr);
    if (err)
        ov_forget(&ov->base, out->nodeid, 1);
    return err;
}

static int create_new(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *parent,
                      const char *name, mode_t mode, int flags, struct fsb_entry *out,
                      uint64_t *fh)
{
    bool had;
    int err = ov_clear_whiteout(ov, parent, name, &had);
    if (err)
        return err;
    uint64_t up, layer_fh;
    ov_layers(ov, parent, &up, NULL);
    struct ov_found f = { .have_upper = true };
    err = ov->upper->ops->create(ov->upper, ctx, up, name, mode, flags, &f.upper, &layer_fh);
    if (err) {
        if (had)
            ov_restore_whiteout(ov, parent, name);
        return err;
    }
    err = ov_node_from(ov, parent, name, &f, out, NULL);
    if (err) {
        ov->upper->ops->release(ov->upper, layer_fh);
        return err;
    }
    *fh = make_fh(layer_fh, true);
    return 0;
}

int ov_create(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent_id,
              const char *name, mode_t mode, int flags, struct fsb_entry *out, uint64_t *fh)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *parent;
    struct ov_found f;
    int err = ov_begin_name_change(ov, ctx, parent_id, name, &parent, &f);
    if (!parent)
        return err;
    if (err == 0) {
        /* ov_open takes the change lock itself. */
        ov_unlock_changes(ov);
        err = create_existing(ov, ctx, parent, name, &f, flags, out, fh);
        ov_put(ov, parent);
        return err;
    }
    if (err == -ENOENT) /* a new name: the caller's right to add it, then the copy-up */
        err = ov_may(ov, ctx, parent, W_OK | X_OK);
    if (!err)
        err = ov_copy_up(ov, parent);
    if (!err)
        err = create_new(ov, ctx, parent, name, mode, flags, out, fh);
    ov_end_name_change(ov, parent);
    return err;
}

/* ---------------------------------------------------------------------- */
/* Operations on an open file: its layer's.                                 */

/* OP of FH's layer, on the layer's own handle: (l, lfh, ARGS...). */
#define FORWARD(be, fh, op, ...)                                               \
    ({                                                                         \
        uint64_t lfh_;                                                         \
        struct fsb_backend *l_ = layer_of(ov_of(be), (fh), &lfh_);             \
        l_->ops->op(l_, lfh_, ##__VA_ARGS__);                                  \
    })

static ssize_t ov_read(struct fsb_backend *be, uint64_t fh, off_t off, const struct iovec *iov,
                       int cnt)
{
    return FORWARD(be, fh, read, off, iov, cnt);
}

static ssize_t ov_write(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh,
                        off_t off, const struct iovec *iov, int cnt)
{
    uint64_t lfh;
    struct fsb_backend *l = layer_of(ov_of(be), fh, &lfh);
    if (l != ov_of(be)->upper)
        return -EBADF; /* LOWER handles are read-only */
    return l->ops->write(l, ctx, lfh, off, iov, cnt);
}

static int ov_flush(struct fsb_backend *be, uint64_t fh, uint64_t lock_owner)
{
    return FORWARD(be, fh, flush, lock_owner);
}

/* Locks are taken through either layer's handles (a read-only open of a
 * file not copied up is LOWER's): both layers drop the owner's. */
static int ov_drop_locks(struct fsb_backend *be, uint64_t nodeid, uint64_t lock_owner)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *n = ov_get(ov, nodeid);
    if (!n)
        return -ESTALE;
    uint64_t up, low;
    ov_layers(ov, n, &up, &low);
    if (low)
        ov->lower->ops->drop_locks(ov->lower, low, lock_owner);
    if (up)
        ov->upper->ops->drop_locks(ov->upper, up, lock_owner);
    ov_put(ov, n);
    return 0;
}

static int ov_release(struct fsb_backend *be, uint64_t fh)
{
    return FORWARD(be, fh, release);
}

static int ov_fsync(struct fsb_backend *be, uint64_t fh, bool datasync)
{
    uint64_t lfh;
    struct fsb_backend *l = layer_of(ov_of(be), fh, &lfh);
    return l == ov_of(be)->upper ? l->ops->fsync(l, lfh, datasync) : 0;
}

static int ov_fallocate(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh, int mode,
                        off_t off, off_t len)
{
    uint64_t lfh;
    struct fsb_backend *l = layer_of(ov_of(be), fh, &lfh);
    if (l != ov_of(be)->upper)
        return -EBADF;
    return l->ops->fallocate(l, ctx, lfh, mode, off, len);
}

static off_t ov_lseek(struct fsb_backend *be, uint64_t fh, off_t off, int whence)
{
    return FORWARD(be, fh, lseek, off, whence);
}

/* Between two handles of one layer, that layer copies; across layers the
 * guest kernel falls back to its own copy on EXDEV. */
static ssize_t ov_copy_file_range(struct fsb_backend *be, const struct fsb_ctx *ctx,
                                  uint64_t fh_in, off_t off_in, uint64_t fh_out, off_t off_out,
                                  size_t len)
{
    uint64_t in, out;
    struct fsb_backend *lin = layer_of(ov_of(be), fh_in, &in);
    struct fsb_backend *lout = layer_of(ov_of(be), fh_out, &out);
    if (lout != ov_of(be)->upper)
        return -EBADF;
    if (lin != lout)
        return -EXDEV;
    return lin->ops->copy_file_range(lin, ctx, in, off_in, out, off_out, len);
}

static int ov_getlk(struct fsb_backend *be, uint64_t fh, struct fsb_lock *lock)
{
    return FORWARD(be, fh, getlk, lock);
}

static int ov_setlk(struct fsb_backend *be, uint64_t fh, const struct fsb_lock *lock, bool wait,
                    fsb_cancelled_fn cancelled, void *cookie)
{
    return FORWARD(be, fh, setlk, lock, wait, cancelled, cookie);
}

static int ov_flock(struct fsb_backend *be, uint64_t fh, int op, bool wait,
                    fsb_cancelled_fn cancelled, void *cookie)
{
    return FORWARD(be, fh, flock, op, wait, cancelled, cookie);
}

void ov_file_ops(struct fsb_backend_ops *ops)
{
    ops->open = ov_open;
    ops->create = ov_create;
    ops->read = ov_read;
    ops->write = ov_write;
    ops->flush = ov_flush;
    ops->drop_locks = ov_drop_locks;
    ops->release = ov_release;
    ops->fsync = ov_fsync;
    ops->fallocate = ov_fallocate;
    ops->lseek = ov_lseek;
    ops->copy_file_range = ov_copy_file_range;
    ops->getlk = ov_getlk;
    ops->setlk = ov_setlk;
    ops->flock = ov_flock;
}

uint64_t ov_upper_fh(uint64_t fh)
{
    return fh != FSB_NO_FH && (fh & FH_UPPER) ? fh >> 1 : FSB_NO_FH;
}
