/*
 * ov_namespace.c - creating, removing and renaming names in the merged
 * view, under the export's change lock.
 *
 * New names are made in UPPER by the upper instance, as the caller (so the
 * host checks permissions on the copied-up parent, whose owner and mode
 * are LOWER's).  Removing a name that LOWER has leaves a whiteout in UPPER
 * (mknod 0/0, what overlayfs writes and reads); replacing an UPPER object
 * by a whiteout is one rename from the staging directory, and a removed
 * UPPER directory goes there with RENAME_EXCHANGE, so no crash shows the
 * LOWER object again.  Those steps run as the daemon (a whiteout needs
 * CAP_MKNOD, the metadata xattrs CAP_SYS_ADMIN), after the permission check
 * the caller would face (may_delete).
 *
 * Differences from a local filesystem, as in overlayfs without
 * redirect_dir: renaming a directory that merges a LOWER directory, or
 * onto one, fails with EXDEV (mv then copies); RENAME_EXCHANGE works
 * between UPPER-only names only (else EXDEV).  A guest cannot create a 0/0
 * character device (it would read back as a whiteout): EPERM.
 */
#include "backend/overlay/ov_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int make_whiteout(int dirfd, const char *name)
{
    return mknodat(dirfd, name, S_IFCHR | 0, makedev(0, 0)) < 0 ? -errno : 0;
}

/* Runs FN on the pinned O_PATH fd of the upper node UP. */
#define WITH_UPPER_FD(ov, up, fd, err, stmt)                                   \
    do {                                                                       \
        mode_t type_;                                                          \
        void *pin_;                                                            \
        int fd = passthrough_pin((ov)->upper, (up), &type_, &pin_);            \
        (err) = fd;                                                            \
        if (fd >= 0) {                                                         \
            stmt;                                                              \
            passthrough_unpin((ov)->upper, pin_);                              \
        }                                                                      \
    } while (0)

static uint64_t upper_of(struct overlay *ov, struct ov_node *n)
{
    uint64_t up;
    ov_layers(ov, n, &up, NULL);
    return up;
}

int ov_clear_whiteout(struct overlay *ov, struct ov_node *parent, const char *name,
                      bool *had_whiteout)
{
    int err = 0;
    *had_whiteout = ov_upper_whiteout(ov, parent, name);
    if (*had_whiteout)
        WITH_UPPER_FD(ov, upper_of(ov, parent), fd, err,
                      err = unlinkat(fd, name, 0) < 0 ? -errno : 0);
    return err < 0 ? err : 0;
}

void ov_restore_whiteout(struct overlay *ov, struct ov_node *parent, const char *name)
{
    int err;
    WITH_UPPER_FD(ov, upper_of(ov, parent), fd, err, err = make_whiteout(fd, name));
    (void)err; /* best effort: the failed create left the name free */
}

/* The permission check of removing VICTIM from PARENT, as the caller
 * would meet it on the host: write and search on the merged directory,
 * and the sticky bit's ownership rule.  Made before PARENT is copied up. */
static int may_delete(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *parent,
                      const struct stat *victim)
{
    if (!ov->switch_creds)
        return 0; /* not root: the daemon's own rights decide, as in passthrough */
    int err = ov_may(ov, ctx, parent, W_OK | X_OK);
    struct stat dir;
    if (!err)
        err = ov_top_attr(ov, parent, &dir);
    if (!err && (dir.st_mode & S_ISVTX) && ctx->uid != 0 && ctx->uid != victim->st_uid &&
        ctx->uid != dir.st_uid)
        err = -EPERM;
    return err;
}

/* Puts a whiteout where the UPPER object NAME is, in one rename. */
static int replace_with_whiteout(struct overlay *ov, struct ov_node *parent, const char *name,
                                 bool is_dir)
{
    char tmp[64];
    ov_staging_name(ov, "whiteout", tmp);
    int err = make_whiteout(ov->staging_fd, tmp);
    if (err)
        return err;
    unsigned flags = is_dir ? RENAME_EXCHANGE : 0;
    WITH_UPPER_FD(ov, upper_of(ov, parent), fd, err,
                  err = syscall(SYS_renameat2, ov->staging_fd, tmp, fd, name, flags) < 0
                            ? -errno : 0);
    if (err < 0)
        unlinkat(ov->staging_fd, tmp, 0);
    else if (is_dir)
        ov_remove_tree(ov->staging_fd, tmp); /* the old directory, whiteouts only */
    return err < 0 ? err : 0;
}

static int add_whiteout(struct overlay *ov, struct ov_node *parent, const char *name)
{
    int err;
    WITH_UPPER_FD(ov, upper_of(ov, parent), fd, err, err = make_whiteout(fd, name));
    return err < 0 ? err : 0;
}

static const struct stat *top_attr(const struct ov_found *f)
{
    return f->have_upper ? &f->upper.attr : &f->lower.attr;
}

/* ---------------------------------------------------------------------- */
/* Creating                                                                 */

struct make_args {
    mode_t mode;
    dev_t rdev;
    const char *target;
};
typedef int (*make_fn)(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t up,
                       const char *name, const struct make_args *a, struct fsb_entry *e);

static int set_opaque(struct overlay *ov, uint64_t dir)
{
    int err;
    WITH_UPPER_FD(ov, dir, fd, err, err = ov_meta_set(ov, fd, "opaque", "y", 1));
    return err < 0 ? err : 0;
}

/* A name free in the merged view, that the caller may add to PARENT:
 * then PARENT is copied up and the name made free in UPPER too (a
 * whiteout there is removed; *had tells).  EEXIST comes before EACCES, as
 * on a local filesystem. */
static int claim_name(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *parent,
                      const char *name, bool *had)
{
    *had = false;
    struct ov_found f;
    int err = ov_find(ov, ctx, parent, name, &f);
    if (err == 0) {
        ov_found_drop(ov, &f);
        return -EEXIST;
    }
    if (err != -ENOENT)
        return err;
    err = ov_may(ov, ctx, parent, W_OK | X_OK);
    if (!err)
        err = ov_copy_up(ov, parent);
    return err ? err : ov_clear_whiteout(ov, parent, name, had);
}

/* A directory made where LOWER has the name must not show LOWER's
 * content: it is opaque, as overlayfs makes it. */
static int finish_new(struct overlay *ov, struct ov_node *parent, const char *name, bool had,
                      struct fsb_entry *e, struct fsb_entry *out)
{
    int err = 0;
    if (S_ISDIR(e->attr.st_mode) && (had || ov_lower_has(ov, parent, name)))
        err = set_opaque(ov, e->nodeid);
    struct ov_found f = { .have_upper = true, .upper = *e };
    if (err) {
        ov_found_drop(ov, &f);
        return err;
    }
    return ov_node_from(ov, parent, name, &f, out, NULL);
}

static int make_in(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t parent_id,
                   const char *name, make_fn make, const struct make_args *a,
                   struct fsb_entry *out)
{
    struct ov_node *parent = ov_get(ov, parent_id);
    if (!parent)
        return -ESTALE;
    bool had;
    struct fsb_entry e;
    ov_lock_changes(ov);
    int err = claim_name(ov, ctx, parent, name, &had);
    if (!err) {
        err = make(ov, ctx, upper_of(ov, parent), name, a, &e);
        if (err && had)
            ov_restore_whiteout(ov, parent, name);
    }
    if (!err)
        err = finish_new(ov, parent, name, had, &e, out);
    ov_unlock_changes(ov);
    ov_put(ov, parent);
    return err;
}

static int make_mknod(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t up,
                      const char *name, const struct make_args *a, struct fsb_entry *e)
{
    return ov->upper->ops->mknod(ov->upper, ctx, up, name, a->mode, a->rdev, e);
}

static int make_mkdir(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t up,
                      const char *name, const struct make_args *a, struct fsb_entry *e)
{
    return ov->upper->ops->mkdir(ov->upper, ctx, up, name, a->mode, e);
}

static int make_symlink(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t up,
                        const char *name, const struct make_args *a, struct fsb_entry *e)
{
    return ov->upper->ops->symlink(ov->upper, ctx, up, name, a->target, e);
}

int ov_mknod(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
             const char *name, mode_t mode, dev_t rdev, struct fsb_entry *out)
{
    if (S_ISCHR(mode) && rdev == makedev(0, 0))
        return -EPERM; /* a whiteout: the guest may not forge one */
    struct make_args a = { .mode = mode, .rdev = rdev };
    return make_in(ov_of(be), ctx, parent, name, make_mknod, &a, out);
}

int ov_mkdir(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
             const char *name, mode_t mode, struct fsb_entry *out)
{
    struct make_args a = { .mode = mode };
    return make_in(ov_of(be), ctx, parent, name, make_mkdir, &a, out);
}

int ov_symlink(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
               const char *name, const char *target, struct fsb_entry *out)
{
    struct make_args a = { .target = target };
    return make_in(ov_of(be), ctx, parent, name, make_symlink, &a, out);
}

/* Whether the caller may link to N, as fs.protected_hardlinks (on by
 * default) rules on the host: the owner, or someone who may read and
 * write a regular file.  Checked before N is copied up for the link. */
static int may_link(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *n)
{
    struct stat st;
    int err = ov_top_attr(ov, n, &st);
    if (err || !ov->switch_creds || ctx->uid == 0 || ctx->uid == st.st_uid)
        return err;
    return S_ISREG(st.st_mode) && ov_mode_permits(ov, ctx, &st, R_OK | W_OK) ? 0 : -EPERM;
}

static int link_locked(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *n,
                       struct ov_node *dir, const char *newname, struct fsb_entry *out)
{
    bool had = false;
    int err = may_link(ov, ctx, n);
    if (!err)
        err = claim_name(ov, ctx, dir, newname, &had);
    if (!err)
        err = ov_copy_up(ov, n);
    struct fsb_entry e;
    if (!err)
        err = ov->upper->ops->link(ov->upper, ctx, upper_of(ov, n), upper_of(ov, dir), newname,
                                   &e);
    if (err) {
        if (had)
            ov_restore_whiteout(ov, dir, newname);
        return err;
    }
    struct ov_found f = { .have_upper = true, .upper = e };
    return ov_node_from(ov, dir, newname, &f, out, NULL); /* finds N again */
}

int ov_link(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
            uint64_t newparent, const char *newname, struct fsb_entry *out)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *n = ov_get(ov, nodeid), *dir = ov_get(ov, newparent);
    int err = !n || !dir ? -ESTALE : S_ISDIR(n->type) ? -EPERM : 0;
    if (!err) {
        ov_lock_changes(ov);
        err = link_locked(ov, ctx, n, dir, newname, out);
        ov_unlock_changes(ov);
    }
    if (n)
        ov_put(ov, n);
    if (dir)
        ov_put(ov, dir);
    return err;
}

/* ---------------------------------------------------------------------- */
/* Removing                                                                 */

static int merged_empty(struct overlay *ov, const struct ov_found *f)
{
    struct ov_dirent *e;
    size_t count;
    int err = ov_list(ov, f->have_upper ? f->upper.nodeid : 0,
                      f->have_lower ? f->lower.nodeid : 0, &e, &count);
    if (err)
        return err;
    ov_list_free(e, count);
    return count ? -ENOTEMPTY : 0;
}

static int remove_found(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *parent,
                        const char *name, const struct ov_found *f, bool is_dir)
{
    int err = may_delete(ov, ctx, parent, top_attr(f));
    if (!err)
        err = ov_copy_up(ov, parent);
    if (err)
        return err;
    bool need_whiteout = ov_lower_has(ov, parent, name);
    if (f->have_upper && !need_whiteout)
        return is_dir ? ov->upper->ops->rmdir(ov->upper, ctx, upper_of(ov, parent), name)
                      : ov->upper->ops->unlink(ov->upper, ctx, upper_of(ov, parent), name);
    return f->have_upper ? replace_with_whiteout(ov, parent, name, is_dir)
                         : add_whiteout(ov, parent, name);
}

static int remove_name(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent_id,
                       const char *name, bool is_dir)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *parent;
    struct ov_found f;
    int err = ov_begin_name_change(ov, ctx, parent_id, name, &parent, &f);
    if (!parent)
        return err;
    if (!err) {
        bool dir = S_ISDIR(top_attr(&f)->st_mode);
        err = dir != is_dir ? (dir ? -EISDIR : -ENOTDIR) : is_dir ? merged_empty(ov, &f) : 0;
        if (!err)
            err = remove_found(ov, ctx, parent, name, &f, is_dir);
        ov_found_drop(ov, &f);
    }
    ov_end_name_change(ov, parent);
    return err;
}

int ov_unlink(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
              const char *name)
{
    return remove_name(be, ctx, parent, name, false);
}

int ov_rmdir(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
             const char *name)
{
    return remove_name(be, ctx, parent, name, true);
}

/* ---------------------------------------------------------------------- */
/* Renaming                                                                 */

struct rename_op {
    struct ov_node *from, *to;
    const char *name, *newname;
    unsigned flags;
    struct ov_found src, dst;
    bool dst_exists;
};

static bool same_object(const struct ov_found *a, const struct ov_found *b)
{
    if (a->have_upper || b->have_upper)
        return a->have_upper && b->have_upper && a->upper.nodeid == b->upper.nodeid;
    return a->lower.nodeid == b->lower.nodeid;
}

/* What may not be renamed, before anything changes.  1: nothing to do. */
static int check_rename(struct overlay *ov, struct rename_op *r)
{
    bool src_dir = S_ISDIR(top_attr(&r->src)->st_mode);
    if (src_dir && r->src.have_lower)
        return -EXDEV;
    if (!r->dst_exists)
        return r->flags & RENAME_EXCHANGE ? -ENOENT : 0;
    if (r->flags & RENAME_NOREPLACE)
        return -EEXIST;
    if (same_object(&r->src, &r->dst))
        return 1;
    bool dst_dir = S_ISDIR(top_attr(&r->dst)->st_mode);
    if (r->flags & RENAME_EXCHANGE)
        return r->src.have_lower || r->dst.have_lower || ov_lower_has(ov, r->from, r->name) ||
                       ov_lower_has(ov, r->to, r->newname)
                   ? -EXDEV : 0;
    if (src_dir != dst_dir)
        return src_dir ? -ENOTDIR : -EISDIR;
    if (dst_dir)
        return r->dst.have_lower ? -EXDEV : merged_empty(ov, &r->dst);
    return 0;
}

/* rename(2) leaving a whiteout at the source: RENAME_WHITEOUT where the
 * kernel and filesystem allow it (one step), else rename and mknod. */
static int rename_leaving_whiteout(int fromfd, const char *name, int tofd, const char *newname)
{
    if (syscall(SYS_renameat2, fromfd, name, tofd, newname, RENAME_WHITEOUT) == 0)
        return 0;
    if (errno != EINVAL && errno != EPERM)
        return -errno;
    if (syscall(SYS_renameat2, fromfd, name, tofd, newname, 0) < 0)
        return -errno;
    return make_whiteout(fromfd, name);
}

/* The caller's rights for the rename, before anything is copied up:
 * removing the source name, and replacing the target or adding a name. */
static int may_rename(struct overlay *ov, const struct fsb_ctx *ctx, struct rename_op *r)
{
    int err = may_delete(ov, ctx, r->from, top_attr(&r->src));
    if (!err && r->dst_exists)
        err = may_delete(ov, ctx, r->to, top_attr(&r->dst));
    else if (!err)
        err = ov_may(ov, ctx, r->to, W_OK | X_OK);
    return err;
}

static int rename_with_whiteout(struct overlay *ov, struct rename_op *r)
{
    int err;
    mode_t type;
    void *from_pin, *to_pin;
    int fromfd = passthrough_pin(ov->upper, upper_of(ov, r->from), &type, &from_pin);
    if (fromfd < 0)
        return fromfd;
    int tofd = passthrough_pin(ov->upper, upper_of(ov, r->to), &type, &to_pin);
    err = tofd;
    if (tofd >= 0) {
        err = rename_leaving_whiteout(fromfd, r->name, tofd, r->newname);
        passthrough_unpin(ov->upper, to_pin);
    }
    passthrough_unpin(ov->upper, from_pin);
    return err;
}

/* The source in UPPER, the target's parent too; a moved directory that
 * lands on a LOWER name becomes opaque; a whiteout in the way of a
 * directory is removed (*had). */
static int prepare_rename(struct overlay *ov, struct rename_op *r, struct ov_node *src,
                          bool *had)
{
    *had = false;
    int err = ov_copy_up(ov, src);
    if (!err)
        err = ov_copy_up(ov, r->to);
    if (err || !S_ISDIR(src->type))
        return err;
    if (ov_lower_has(ov, r->to, r->newname))
        err = set_opaque(ov, upper_of(ov, src));
    if (!err && !r->dst_exists)
        err = ov_clear_whiteout(ov, r->to, r->newname, had);
    return err;
}

/* Moves the nodes the guest knows to their new names. */
static int rename_nodes(struct overlay *ov, struct rename_op *r, struct ov_node *src)
{
    int err = ov_move(ov, src, r->to, r->newname);
    if (err || !(r->flags & RENAME_EXCHANGE))
        return err;
    struct ov_node *dst;
    if (ov_resolve(ov, &ov_daemon_ctx, r->from, r->name, &dst) == 0) {
        err = ov_move(ov, dst, r->from, r->name);
        ov_put(ov, dst);
    }
    return err;
}

static int rename_locked(struct overlay *ov, const struct fsb_ctx *ctx, struct rename_op *r)
{
    int err = check_rename(ov, r);
    if (!err)
        err = may_rename(ov, ctx, r);
    if (err)
        return err > 0 ? 0 : err;
    struct fsb_entry e;
    struct ov_node *src;
    err = ov_node_from(ov, r->from, r->name, &r->src, &e, &src);
    if (err)
        return err;
    ov_forget(&ov->base, e.nodeid, 1); /* SRC is a reference, not a lookup */
    bool had;
    err = prepare_rename(ov, r, src, &had);
    bool whiteout = !err && !(r->flags & RENAME_EXCHANGE) && ov_lower_has(ov, r->from, r->name);
    if (!err && whiteout)
        err = rename_with_whiteout(ov, r);
    else if (!err)
        err = ov->upper->ops->rename(ov->upper, ctx, upper_of(ov, r->from), r->name,
                                     upper_of(ov, r->to), r->newname, r->flags);
    if (err && had)
        ov_restore_whiteout(ov, r->to, r->newname);
    if (!err)
        err = rename_nodes(ov, r, src);
    ov_put(ov, src);
    return err;
}

int ov_rename(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
              const char *name, uint64_t newparent, const char *newname, unsigned flags)
{
    struct overlay *ov = ov_of(be);
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
        return -EINVAL; /* RENAME_WHITEOUT would forge overlay metadata */
    struct rename_op r = { .from = ov_get(ov, parent), .to = ov_get(ov, newparent),
                           .name = name, .newname = newname, .flags = flags };
    int err = !r.from || !r.to ? -ESTALE : 0;
    if (!err) {
        ov_lock_changes(ov);
        err = ov_find(ov, ctx, r.from, name, &r.src);
        int derr = err ? 0 : ov_find(ov, ctx, r.to, newname, &r.dst);
        if (!err && derr && derr != -ENOENT) {
            ov_found_drop(ov, &r.src);
            err = derr;
        }
        if (!err) {
            r.dst_exists = derr == 0;
            err = rename_locked(ov, ctx, &r);
            ov_found_drop(ov, &r.src); /* a no-op when rename_locked took it */
            ov_found_drop(ov, &r.dst);
        }
        ov_unlock_changes(ov);
    }
    if (r.from)
        ov_put(ov, r.from);
    if (r.to)
        ov_put(ov, r.to);
    return err;
}
