/*
 * ov_lookup.c - finding a name in the merged view, by overlayfs's rules
 * (Documentation/filesystems/overlayfs.rst, fs/overlayfs/namei.c):
 *  - UPPER first.  A whiteout (a 0/0 character device) there hides the
 *    name; a non-directory there hides whatever LOWER has.
 *  - A directory in UPPER merges with a directory of the same name in
 *    LOWER, unless it is opaque (the opaque xattr is "y") or LOWER's object
 *    is not a directory.
 *  - Otherwise LOWER answers, if the parent merges a LOWER directory.
 * Each layer's lookup is its passthrough instance's, as the caller.
 */
#include "backend/overlay/ov_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/sysmacros.h>

bool ov_is_whiteout(const struct stat *st)
{
    return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

/* Whether the upper directory entry UP (held) is opaque. */
static bool opaque(struct overlay *ov, uint64_t up)
{
    mode_t type;
    void *pin;
    int fd = passthrough_pin(ov->upper, up, &type, &pin);
    if (fd < 0)
        return false;
    char v = 0;
    bool yes = ov_meta_get(ov, fd, "opaque", &v, 1) == 1 && v == 'y';
    passthrough_unpin(ov->upper, pin);
    return yes;
}

/* A copied-up file's LOWER inode number (ov_copy_up.c), or 0. */
static ino_t origin_ino(struct overlay *ov, const struct fsb_entry *up)
{
    if (S_ISLNK(up->attr.st_mode))
        return 0; /* no xattrs on symlinks (see ov_copy_up.c) */
    mode_t type;
    void *pin;
    int fd = passthrough_pin(ov->upper, up->nodeid, &type, &pin);
    if (fd < 0)
        return 0;
    uint64_t ino = 0;
    if (ov_meta_get(ov, fd, "fsbridge.ino", &ino, sizeof(ino)) != sizeof(ino))
        ino = 0;
    passthrough_unpin(ov->upper, pin);
    return (ino_t)ino;
}

/* The upper half: 1 when UPPER decides alone, 0 to look at LOWER too. */
static int find_upper(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t up,
                      const char *name, struct ov_found *f)
{
    int err = ov->upper->ops->lookup(ov->upper, ctx, up, name, &f->upper);
    if (err)
        return err == -ENOENT ? 0 : err;
    if (ov_is_whiteout(&f->upper.attr)) {
        ov->upper->ops->forget(ov->upper, f->upper.nodeid, 1);
        return -ENOENT;
    }
    f->have_upper = true;
    if (!S_ISDIR(f->upper.attr.st_mode)) {
        f->origin_ino = origin_ino(ov, &f->upper);
        return 1;
    }
    return opaque(ov, f->upper.nodeid) ? 1 : 0;
}

int ov_find(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *parent,
            const char *name, struct ov_found *f)
{
    uint64_t up, low;
    ov_layers(ov, parent, &up, &low);
    memset(f, 0, sizeof(*f));
    int r = up ? find_upper(ov, ctx, up, name, f) : 0;
    if (r < 0)
        return r;
    if (r == 0 && low) {
        int err = ov->lower->ops->lookup(ov->lower, ctx, low, name, &f->lower);
        if (err == 0)
            f->have_lower = true;
        else if (err != -ENOENT) {
            ov_found_drop(ov, f);
            return err;
        }
        /* An upper directory hides a lower non-directory. */
        if (f->have_upper && f->have_lower && !S_ISDIR(f->lower.attr.st_mode)) {
            ov->lower->ops->forget(ov->lower, f->lower.nodeid, 1);
            f->have_lower = false;
        }
    }
    return f->have_upper || f->have_lower ? 0 : -ENOENT;
}

int ov_begin_name_change(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t parent_id,
                         const char *name, struct ov_node **parent, struct ov_found *f)
{
    *parent = ov_get(ov, parent_id);
    if (!*parent)
        return -ESTALE;
    ov_lock_changes(ov);
    return ov_find(ov, ctx, *parent, name, f);
}

void ov_end_name_change(struct overlay *ov, struct ov_node *parent)
{
    ov_unlock_changes(ov);
    ov_put(ov, parent);
}

int ov_resolve(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *parent,
               const char *name, struct ov_node **node)
{
    struct ov_found f;
    int err = ov_find(ov, ctx, parent, name, &f);
    if (err)
        return err;
    struct fsb_entry e;
    err = ov_node_from(ov, parent, name, &f, &e, node);
    if (!err)
        ov_forget(&ov->base, e.nodeid, 1); /* a reference, not a guest lookup */
    return err;
}

/* fstatat of NAME in the directory of node ID of layer BE. */
static int stat_in(struct fsb_backend *be, uint64_t id, const char *name, struct stat *st)
{
    mode_t type;
    void *pin;
    int fd = passthrough_pin(be, id, &type, &pin);
    if (fd < 0)
        return fd;
    int err = fstatat(fd, name, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
    passthrough_unpin(be, pin);
    return err;
}

bool ov_lower_has(struct overlay *ov, struct ov_node *parent, const char *name)
{
    uint64_t low;
    struct stat st;
    ov_layers(ov, parent, NULL, &low);
    return low && stat_in(ov->lower, low, name, &st) == 0;
}

bool ov_upper_whiteout(struct overlay *ov, struct ov_node *parent, const char *name)
{
    uint64_t up;
    struct stat st;
    ov_layers(ov, parent, &up, NULL);
    return up && stat_in(ov->upper, up, name, &st) == 0 && ov_is_whiteout(&st);
}
