/*
 * ov_xattr.c - overlay metadata in xattrs, and the guest's own xattrs.
 *
 * The metadata (opaque directories, a copy's LOWER inode number) lives in
 * trusted.overlay.* when the daemon is root, as overlayfs reads it, and in
 * user.overlay.* otherwise (overlayfs's `userxattr`).  A guest must not
 * forge it: names in either namespace are refused to setxattr and
 * removexattr (EPERM), read as absent (ENODATA) and left out of listxattr,
 * in both forms whatever the daemon's mode, since the same UPPER may later
 * be mounted with the other one.  overlayfs hides trusted.overlay.* the
 * same way.
 *
 * trusted.overlay.* needs CAP_SYS_ADMIN, which the daemon keeps permitted
 * but not effective: it is raised in the calling thread around the calls
 * here that read or write the overlay's own metadata (and copy a LOWER
 * file's xattrs up), never around a guest's xattr request.
 */
#include "backend/overlay/ov_internal.h"
#include "backend/passthrough/credentials.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#define TRUSTED_PREFIX "trusted.overlay."
#define USER_PREFIX "user.overlay."
#define XATTR_LIST_MAX_BYTES 65536
#define XATTR_LIST_ON_STACK 1024

bool ov_xattr_private(const char *name)
{
    return strncmp(name, TRUSTED_PREFIX, strlen(TRUSTED_PREFIX)) == 0 ||
           strncmp(name, USER_PREFIX, strlen(USER_PREFIX)) == 0;
}

void ov_meta_name(const struct overlay *ov, const char *key, char *out, size_t size)
{
    snprintf(out, size, "%s%s", ov->privileged ? TRUSTED_PREFIX : USER_PREFIX, key);
}

static void proc_path(int fd, char out[32])
{
    snprintf(out, 32, "/proc/self/fd/%d", fd);
}

/* CAP_SYS_ADMIN for the overlay's trusted.* calls (user.* needs none). */
static bool raise_for_meta(const struct overlay *ov)
{
    return ov->privileged && cred_raise_admin();
}

ssize_t ov_meta_get(const struct overlay *ov, int fd, const char *key, void *buf, size_t size)
{
    char name[64], path[32];
    ov_meta_name(ov, key, name, sizeof(name));
    proc_path(fd, path);
    bool raised = raise_for_meta(ov);
    ssize_t n = getxattr(path, name, buf, size);
    int err = errno;
    cred_lower_admin(raised);
    return n < 0 ? -err : n;
}

int ov_meta_set(const struct overlay *ov, int fd, const char *key, const void *val, size_t size)
{
    char name[64], path[32];
    ov_meta_name(ov, key, name, sizeof(name));
    proc_path(fd, path);
    bool raised = raise_for_meta(ov);
    int r = setxattr(path, name, val, size, 0) < 0 ? -errno : 0;
    cred_lower_admin(raised);
    return r;
}

/* The xattr names of PATH in a malloc'd buffer; *len its length. */
static char *list_names(const char *path, ssize_t *len)
{
    *len = listxattr(path, NULL, 0);
    if (*len <= 0)
        return NULL;
    char *names = malloc((size_t)*len);
    if (names && (*len = listxattr(path, names, (size_t)*len)) < 0) {
        free(names);
        return NULL;
    }
    return names;
}

static int copy_one(const char *from, const char *to, const char *name)
{
    ssize_t n = getxattr(from, name, NULL, 0);
    if (n < 0)
        return errno == ENODATA ? 0 : -errno;
    char *v = malloc(n ? (size_t)n : 1);
    if (!v)
        return -ENOMEM;
    n = getxattr(from, name, v, (size_t)n);
    int err = n < 0 ? -errno : setxattr(to, name, v, (size_t)n, 0) < 0 ? -errno : 0;
    free(v);
    /* An attribute UPPER's filesystem cannot hold (a security label of
     * another module) is not a reason to refuse the copy. */
    return err == -EOPNOTSUPP ? 0 : err;
}

int ov_copy_xattrs(const struct overlay *ov, int from, int to)
{
    char src[32], dst[32];
    proc_path(from, src);
    proc_path(to, dst);
    bool raised = raise_for_meta(ov); /* LOWER's trusted.* go up too, as in overlayfs */
    ssize_t len;
    char *names = list_names(src, &len);
    int err = 0;
    for (ssize_t off = 0; names && off < len && !err; off += (ssize_t)strlen(names + off) + 1)
        if (!ov_xattr_private(names + off))
            err = copy_one(src, dst, names + off);
    free(names);
    cred_lower_admin(raised);
    return err;
}

static bool has_prefix(const char *name, const char *prefix)
{
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

/* What the host asks of the caller for changing the xattr NAME of an
 * object (ST), judged on LOWER's object before the copy-up the change
 * costs (xattr_permission() in fs/xattr.c, cap_inode_setxattr()):
 * trusted.* needs CAP_SYS_ADMIN, which serves no guest (the daemon raises
 * it for the overlay's own metadata only), security.* a guest root,
 * system.* (ACLs) the owner, user.* write access to a file or directory
 * (the owner's in a sticky directory).  The change itself then runs on
 * UPPER as the caller, where the host has the last word. */
static int may_change_xattr(const struct overlay *ov, const struct fsb_ctx *ctx,
                            const struct stat *st, const char *name)
{
    if (!ov->switch_creds || ctx->uid == 0)
        return 0;
    bool owner = ctx->uid == st->st_uid;
    if (has_prefix(name, "security."))
        return -EPERM;
    if (has_prefix(name, "system."))
        return owner ? 0 : -EPERM;
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
        return -EPERM;
    if (S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX) && !owner)
        return -EPERM;
    return ov_mode_permits(ov, ctx, st, W_OK) ? 0 : -EACCES;
}

/* A setxattr (VALUE set) or a removexattr (VALUE NULL). */
struct xattr_change {
    const char *name;
    const void *value; /* NULL: remove */
    size_t size;
    int flags;
};

static int change_on_upper(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t up,
                           const struct xattr_change *x)
{
    struct fsb_backend *u = ov->upper;
    return x->value ? u->ops->setxattr(u, ctx, up, x->name, x->value, x->size, x->flags)
                    : u->ops->removexattr(u, ctx, up, x->name);
}

static int change_xattr(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t nodeid,
                        const struct xattr_change *x)
{
    if (ov_xattr_private(x->name))
        return -EPERM;
    struct ov_node *n = ov_get(ov, nodeid);
    if (!n)
        return -ESTALE;
    uint64_t up, low;
    ov_layers(ov, n, &up, &low);
    struct stat st;
    int err = has_prefix(x->name, "trusted.") ? -EPERM : 0;
    if (!err && !up) { /* a copy-up first: only for a caller the host would allow */
        err = ov->lower->ops->getattr(ov->lower, low, FSB_NO_FH, &st);
        if (!err)
            err = may_change_xattr(ov, ctx, &st, x->name);
        if (!err)
            err = ov_copy_up_locked(ov, n, &up);
    }
    if (!err)
        err = change_on_upper(ov, ctx, up, x);
    ov_put(ov, n);
    return err;
}

int ov_setxattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                const char *name, const void *value, size_t size, int flags)
{
    static const char empty; /* a zero-length value is still a set */
    struct xattr_change x = { name, value ? value : &empty, size, flags };
    return change_xattr(ov_of(be), ctx, nodeid, &x);
}

int ov_removexattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                   const char *name)
{
    struct xattr_change x = { .name = name };
    return change_xattr(ov_of(be), ctx, nodeid, &x);
}

ssize_t ov_getxattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                    const char *name, void *value, size_t size)
{
    struct overlay *ov = ov_of(be);
    if (ov_xattr_private(name))
        return -ENODATA;
    struct ov_node *n = ov_get(ov, nodeid);
    if (!n)
        return -ESTALE;
    uint64_t id;
    struct fsb_backend *layer = ov_top(ov, n, &id);
    ssize_t r = layer->ops->getxattr(layer, ctx, id, name, value, size);
    ov_put(ov, n);
    return r;
}

/* Drops the overlay's own names from the list BUF of LEN bytes, in place;
 * returns the new length. */
static size_t filter_private(char *buf, size_t len)
{
    size_t out = 0;
    for (size_t off = 0; off < len;) {
        size_t n = strnlen(buf + off, len - off) + 1;
        if (!ov_xattr_private(buf + off)) {
            memmove(buf + out, buf + off, n);
            out += n;
        }
        off += n;
    }
    return out;
}

ssize_t ov_listxattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                     char *list, size_t size)
{
    struct overlay *ov = ov_of(be);
    struct ov_node *n = ov_get(ov, nodeid);
    if (!n)
        return -ESTALE;
    uint64_t id;
    struct fsb_backend *layer = ov_top(ov, n, &id);
    /* The whole list, filtered, whatever SIZE is: the size the guest is
     * told must be the filtered one.  A list of a few names (most are)
     * fits on the stack; only a longer one costs a heap buffer. */
    char stack[XATTR_LIST_ON_STACK], *buf = stack, *heap = NULL;
    ssize_t r = layer->ops->listxattr(layer, ctx, id, buf, sizeof(stack));
    if (r == -ERANGE) {
        buf = heap = malloc(XATTR_LIST_MAX_BYTES);
        r = buf ? layer->ops->listxattr(layer, ctx, id, buf, XATTR_LIST_MAX_BYTES) : -ENOMEM;
    }
    ov_put(ov, n);
    if (r >= 0) {
        r = (ssize_t)filter_private(buf, (size_t)r);
        if (size && (size_t)r > size)
            r = -ERANGE;
        else if (size)
            memcpy(list, buf, (size_t)r);
    }
    free(heap);
    return r;
}
