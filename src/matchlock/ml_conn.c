/*
 * ml_conn.c - a matchlock connection's state: its backend instances, its
 * handle table, and paths resolved through the backend one component at a
 * time (see ml_internal.h for why nothing is cached between requests).
 */
#include "matchlock/ml_internal.h"
#include "backend/passthrough/passthrough.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Known inodes per backend instance, as for a native session. */
#define ML_MAX_INODES 1000000

int ml_conn_init(struct ml_conn *c, int fd, unsigned id, const struct fsb_export *exports,
                 unsigned nexports, uint64_t visible)
{
    *c = (struct ml_conn){ .fd = fd, .id = id, .exports = exports, .nexports = nexports };
    c->map = ml_exports_new(exports, nexports, visible);
    c->backends = calloc(nexports ? nexports : 1, sizeof(*c->backends));
    c->max_handles = passthrough_session_handle_limit();
    if (!c->map || !c->backends) {
        ml_conn_destroy(c);
        return -ENOMEM;
    }
    return 0;
}

/* Everything the connection opened goes: destroying a backend instance
 * closes its open files and forgets its inodes. */
void ml_conn_destroy(struct ml_conn *c)
{
    for (unsigned i = 0; c->backends && i < c->nexports; i++)
        if (c->backends[i])
            c->backends[i]->ops->destroy(c->backends[i]);
    free(c->backends);
    free(c->handles);
    free(c->read_buf);
    ml_exports_free(c->map);
    memset(c, 0, sizeof(*c));
}

struct fsb_backend *ml_backend(struct ml_conn *c, unsigned export, int *err)
{
    if (!c->backends[export]) {
        const struct fsb_export *exp = &c->exports[export];
        struct passthrough_config cfg = {
            .root_fd = exp->root_fd,
            .max_inodes = ML_MAX_INODES,
            .max_handles = c->max_handles,
            .allow_devices = exp->allow_devices,
            /* matchlock's guest mounts without default_permissions and
             * sends no supplementary groups: the host's check is the only
             * one, so no group is lent after EACCES. */
            .trust_guest_groups = false,
            .guest = c->guest,
            .watch = exp->watch, /* its changes reach coherent sessions */
        };
        c->backends[export] = fsb_export_backend(exp, &cfg, err);
    }
    return c->backends[export];
}

/* ---------------------------------------------------------------------- */
/* Resolving paths                                                          */

void ml_node_put(struct ml_node *n)
{
    if (n->held)
        n->be->ops->forget(n->be, n->nodeid, 1);
    n->held = false;
}

/* One component: looked up, or (with MKDIR_MODE) made when missing. */
static int step(struct ml_call *call, struct fsb_backend *be, uint64_t parent,
                const char *name, const mode_t *mkdir_mode, struct fsb_entry *e)
{
    int err = be->ops->lookup(be, &call->ctx, parent, name, e);
    if (err != -ENOENT || !mkdir_mode)
        return err;
    err = be->ops->mkdir(be, &call->ctx, parent, name, *mkdir_mode, e);
    if (err == -EEXIST) /* made by someone else meanwhile */
        err = be->ops->lookup(be, &call->ctx, parent, name, e);
    return err;
}

int ml_walk_mkdir(struct ml_call *call, unsigned export, const char *rel, size_t len,
                  const mode_t *mkdir_mode, struct ml_node *out)
{
    int err;
    struct fsb_backend *be = ml_backend(call->conn, export, &err);
    if (!be)
        return err;
    *out = (struct ml_node){ .be = be, .export = export, .nodeid = FSB_ROOT_NODEID };
    if (len == 0)
        return be->ops->getattr(be, FSB_ROOT_NODEID, FSB_NO_FH, &out->attr);
    char name[NAME_MAX + 1];
    for (const char *p = rel, *end = rel + len; p < end;) {
        size_t n = strcspn(p, "/");
        if (n > (size_t)(end - p))
            n = (size_t)(end - p);
        memcpy(name, p, n); /* ml_locate bounded components to NAME_MAX */
        name[n] = '\0';
        struct fsb_entry e;
        err = step(call, be, out->nodeid, name, mkdir_mode, &e);
        ml_node_put(out);
        if (err)
            return err;
        out->nodeid = e.nodeid;
        out->held = true;
        out->attr = e.attr;
        p += n + 1;
    }
    return 0;
}

int ml_walk(struct ml_call *call, unsigned export, const char *rel, size_t len,
            struct ml_node *out)
{
    return ml_walk_mkdir(call, export, rel, len, NULL, out);
}

int ml_resolve(struct ml_call *call, const struct ml_location *loc, struct ml_node *out)
{
    return ml_walk(call, loc->export, loc->rel, strlen(loc->rel), out);
}

int ml_resolve_parent(struct ml_call *call, const struct ml_location *loc,
                      struct ml_node *out, const char **name)
{
    const char *slash = strrchr(loc->rel, '/');
    *name = slash ? slash + 1 : loc->rel;
    size_t len = slash ? (size_t)(slash - loc->rel) : 0;
    int err = ml_walk(call, loc->export, loc->rel, len, out);
    if (!err && !S_ISDIR(out->attr.st_mode)) {
        ml_node_put(out);
        err = -ENOTDIR;
    }
    return err;
}

/* ---------------------------------------------------------------------- */
/* Handles: fh = generation << 32 | (slot + 1), so never 0 and never a
 * closed handle's number again while the slot is reused.  The first
 * handle is 1, as on matchlock's server.                                 */

static int grow_handles(struct ml_conn *c)
{
    unsigned cap = c->handle_cap ? c->handle_cap * 2 : 16;
    struct ml_handle *h = realloc(c->handles, cap * sizeof(*h));
    if (!h)
        return -ENOMEM;
    memset(h + c->handle_cap, 0, (cap - c->handle_cap) * sizeof(*h));
    c->handles = h;
    c->handle_cap = cap;
    return 0;
}

static int64_t free_slot(struct ml_conn *c)
{
    for (unsigned i = 0; i < c->nhandles; i++)
        if (c->handles[i].kind == ML_HANDLE_FREE)
            return i;
    if (c->nhandles == c->handle_cap) {
        int err = grow_handles(c);
        if (err)
            return err;
    }
    return c->nhandles++;
}

int64_t ml_handle_add(struct ml_conn *c, enum ml_handle_kind kind, unsigned export,
                      uint64_t backend_fh, uint64_t nodeid)
{
    if (c->open_handles >= c->max_handles)
        return -EMFILE;
    int64_t slot = free_slot(c);
    if (slot < 0)
        return slot;
    struct ml_handle *h = &c->handles[slot];
    h->kind = kind;
    h->export = export;
    h->backend_fh = backend_fh;
    h->nodeid = nodeid;
    c->open_handles++;
    return (int64_t)((uint64_t)h->generation << 32 | (uint64_t)(slot + 1));
}

struct ml_handle *ml_handle_get(struct ml_conn *c, uint64_t fh)
{
    uint64_t slot = (fh & 0xffffffffu) - 1;
    if ((fh & 0xffffffffu) == 0 || slot >= c->nhandles)
        return NULL;
    struct ml_handle *h = &c->handles[slot];
    if (h->kind == ML_HANDLE_FREE || h->generation != (uint32_t)(fh >> 32))
        return NULL;
    return h;
}

void ml_handle_close(struct ml_conn *c, struct ml_handle *h)
{
    struct fsb_backend *be = c->backends[h->export];
    if (h->kind == ML_HANDLE_FILE)
        be->ops->release(be, h->backend_fh);
    else if (h->kind == ML_HANDLE_DIR)
        be->ops->releasedir(be, h->backend_fh);
    if (h->kind != ML_HANDLE_SYNTHETIC && h->nodeid != FSB_ROOT_NODEID)
        be->ops->forget(be, h->nodeid, 1);
    h->kind = ML_HANDLE_FREE;
    h->generation++;
    c->open_handles--;
}

/* ---------------------------------------------------------------------- */
/* Attributes                                                               */

static uint64_t fnv1a64(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL

/* 0 means "no inode" to matchlock's guest, 1 is the root. */
static uint64_t not_reserved(uint64_t ino)
{
    return ino <= 1 ? ino + 2 : ino;
}

uint64_t ml_ino_of(dev_t dev, ino_t ino)
{
    uint8_t pair[16];
    for (int i = 0; i < 8; i++) {
        pair[i] = (uint8_t)((uint64_t)dev >> (56 - 8 * i));
        pair[8 + i] = (uint8_t)((uint64_t)ino >> (56 - 8 * i));
    }
    return not_reserved(fnv1a64(FNV_OFFSET, pair, sizeof(pair)));
}

uint64_t ml_ino_of_path(const char *clean_path, bool is_dir)
{
    if (strcmp(clean_path, "/") == 0)
        return 1;
    uint64_t h = fnv1a64(FNV_OFFSET, clean_path, strlen(clean_path));
    return not_reserved(fnv1a64(h, is_dir ? "d" : "f", 1));
}

void ml_stat_from(struct ml_stat *out, const struct stat *st)
{
    bool device = S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode);
    *out = (struct ml_stat){
        .size = st->st_size,
        .mode = ml_go_mode_from_unix(st->st_mode),
        .mtime = st->st_mtim.tv_sec,
        .is_dir = S_ISDIR(st->st_mode),
        .ino = ml_ino_of(st->st_dev, st->st_ino),
        .uid = st->st_uid,
        .gid = st->st_gid,
        .nlink = (uint32_t)st->st_nlink,
        .atime = st->st_atim.tv_sec,
        .atime_nsec = (uint32_t)st->st_atim.tv_nsec,
        .mtime_nsec = (uint32_t)st->st_mtim.tv_nsec,
        .ctime = st->st_ctim.tv_sec,
        .ctime_nsec = (uint32_t)st->st_ctim.tv_nsec,
        .blocks = (uint64_t)st->st_blocks,
        .rdev = device ? (uint64_t)st->st_rdev : 0,
    };
}

/* Synthesized directories: 0755, owned by root, time 0, like an empty
 * directory. */
void ml_stat_synthetic(struct ml_stat *out, const char *clean_path)
{
    *out = (struct ml_stat){
        .size = 4096,
        .mode = ML_GO_MODE_DIR | 0755,
        .is_dir = true,
        .ino = ml_ino_of_path(clean_path, true),
        .nlink = 2,
    };
}
