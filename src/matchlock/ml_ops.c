/*
 * ml_ops.c - one handler per matchlock opcode, each a path (or handle)
 * turned into backend calls.  Every handler returns 0 or a negative errno,
 * the real one: matchlock's server collapses most errors into EIO, EACCES
 * or EEXIST; we pass on what the host said.
 *
 * Special places (ml_paths.h): an export root or a synthesized directory
 * cannot be removed or renamed (EBUSY) or created again (EEXIST); the
 * synthesized tree is read-only (EROFS), and nothing exists outside it
 * (ENOENT).  Read-only exports refuse every change with EROFS, here,
 * before the backend is called.
 */
#include "matchlock/ml_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The open(2) flags taken from the guest: those with the same value on
 * every Linux architecture (as matchlock does).  O_CREAT is CREATE's
 * business, O_DIRECTORY's value differs between x86 and arm64. */
#define OPEN_FLAGS (O_ACCMODE | O_APPEND | O_TRUNC)
#define CREATE_FLAGS (OPEN_FLAGS | O_EXCL)
#define PERMISSION_BITS 07777

/* Room left in a Readdir response besides its entries. */
#define ENTRIES_MAX (ML_RESPONSE_MAX - 1024)

static bool readonly(const struct ml_call *c, unsigned export)
{
    return c->conn->exports[export].readonly;
}

static void answer_stat(struct ml_call *c, const struct stat *st)
{
    c->resp->has_stat = true;
    ml_stat_from(&c->resp->stat, st);
}

/*
 * An object that must exist: in an export (resolved into *node, which the
 * caller puts) or a synthesized directory (node->be is NULL).
 */
static int find(struct ml_call *c, const char *path, struct ml_location *loc,
                struct ml_node *node)
{
    memset(node, 0, sizeof(*node));
    int err = ml_locate(c->conn->map, path, loc);
    if (err)
        return err;
    if (loc->place == ML_PLACE_OUTSIDE)
        return -ENOENT;
    if (loc->place == ML_PLACE_SYNTHETIC)
        return 0;
    err = ml_resolve(c, loc, node);
    /* A nested export point whose parents the outer export lacks: they
     * are synthesized as they would be outside every export. */
    if (err == -ENOENT && ml_leads_to_export(c->conn->map, loc->path)) {
        memset(node, 0, sizeof(*node)); /* nothing held after a failed walk */
        loc->place = ML_PLACE_SYNTHETIC;
        err = 0;
    }
    return err;
}

/* Like find(), for an object about to change. */
static int find_writable(struct ml_call *c, const char *path, struct ml_location *loc,
                         struct ml_node *node)
{
    int err = find(c, path, loc, node);
    if (!err && (!node->be || readonly(c, loc->export)))
        err = -EROFS;
    if (err)
        ml_node_put(node);
    return err;
}

/* Whether LOC's parent is a synthesized directory (read-only). */
static bool parent_is_synthetic(struct ml_call *c, const struct ml_location *loc)
{
    struct ml_location *up = malloc(sizeof(*up));
    bool synthetic = up && ml_locate_parent(c->conn->map, loc, up) == 0 &&
                     ml_leads_to_export(c->conn->map, up->path);
    free(up);
    return synthetic;
}

/*
 * The directory an entry is made in, removed from or renamed in: *parent
 * (to put) and the entry's *name.  -EBUSY when PATH is itself an export
 * root or a synthesized directory (callers that create turn that into
 * EEXIST); -EROFS in a synthesized directory.
 */
static int find_parent(struct ml_call *c, const char *path, struct ml_location *loc,
                       struct ml_node *parent, const char **name)
{
    memset(parent, 0, sizeof(*parent));
    int err = ml_locate(c->conn->map, path, loc);
    if (err)
        return err;
    if (loc->place == ML_PLACE_SYNTHETIC ||
        (loc->place == ML_PLACE_EXPORT && loc->rel[0] == '\0'))
        return -EBUSY;
    if (loc->place == ML_PLACE_OUTSIDE)
        err = -ENOENT;
    else if (readonly(c, loc->export))
        return -EROFS;
    else
        err = ml_resolve_parent(c, loc, parent, name);
    if (err == -ENOENT && parent_is_synthetic(c, loc))
        err = -EROFS;
    return err;
}

static int create_error(int err)
{
    return err == -EBUSY ? -EEXIST : err;
}

/* A new entry made by the backend: answered, and its lookup given back. */
static void answer_entry(struct ml_call *c, struct fsb_backend *be, const struct fsb_entry *e)
{
    answer_stat(c, &e->attr);
    be->ops->forget(be, e->nodeid, 1);
}

/* ---------------------------------------------------------------------- */
/* Attributes                                                               */

static int op_getattr(struct ml_call *c)
{
    struct ml_location loc;
    struct ml_node node;
    int err = find(c, c->req->path, &loc, &node);
    if (err)
        return err;
    c->resp->has_stat = true;
    if (node.be)
        ml_stat_from(&c->resp->stat, &node.attr);
    else
        ml_stat_synthetic(&c->resp->stat, loc.path);
    ml_node_put(&node);
    return 0;
}

static int time_from(int64_t sec, uint32_t nsec, struct timespec *ts)
{
    if (nsec >= 1000000000u)
        return -EINVAL;
    *ts = (struct timespec){ .tv_sec = (time_t)sec, .tv_nsec = (long)nsec };
    return 0;
}

/* matchlock's Setattr is a chmod; fsbridge's extension (`set`) says which
 * attributes to change, as FUSE's SETATTR does. */
static int setattr_from(const struct ml_request *req, struct fsb_setattr *set)
{
    static const struct { unsigned ml, fsb; } bits[] = {
        { ML_SET_MODE, FSB_SET_MODE },   { ML_SET_UID, FSB_SET_UID },
        { ML_SET_GID, FSB_SET_GID },     { ML_SET_SIZE, FSB_SET_SIZE },
        { ML_SET_ATIME, FSB_SET_ATIME }, { ML_SET_MTIME, FSB_SET_MTIME },
        { ML_SET_ATIME_NOW, FSB_SET_ATIME_NOW }, { ML_SET_MTIME_NOW, FSB_SET_MTIME_NOW },
    };
    unsigned want = req->set ? req->set : ML_SET_MODE, known = 0;
    *set = (struct fsb_setattr){ .mode = req->mode & PERMISSION_BITS, .uid = req->owner_uid,
                                 .gid = req->owner_gid, .size = req->off };
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        known |= bits[i].ml;
        if (want & bits[i].ml)
            set->valid |= bits[i].fsb;
    }
    if ((want & ~known) || ((want & ML_SET_SIZE) && req->off < 0))
        return -EINVAL;
    int err = time_from(req->atime, req->atime_nsec, &set->atime);
    return err ? err : time_from(req->mtime, req->mtime_nsec, &set->mtime);
}

static int op_setattr(struct ml_call *c)
{
    struct fsb_setattr set;
    int err = setattr_from(c->req, &set);
    if (err)
        return err;
    struct ml_location loc;
    struct ml_node node;
    err = find_writable(c, c->req->path, &loc, &node);
    if (err)
        return err;
    struct stat st;
    err = node.be->ops->setattr(node.be, &c->ctx, node.nodeid, FSB_NO_FH, &set, &st);
    if (!err)
        answer_stat(c, &st);
    ml_node_put(&node);
    return err;
}

/* Truncate: `off` is the new size, of `fh` when given, else of `path`. */
static int op_truncate(struct ml_call *c)
{
    if (c->req->off < 0)
        return -EINVAL;
    struct fsb_setattr set = { .valid = FSB_SET_SIZE, .size = c->req->off };
    struct stat st;
    if (c->req->fh) {
        struct ml_handle *h = ml_handle_get(c->conn, c->req->fh);
        if (!h)
            return -EBADF;
        if (h->kind != ML_HANDLE_FILE)
            return -EISDIR;
        if (readonly(c, h->export))
            return -EROFS;
        struct fsb_backend *be = c->conn->backends[h->export];
        return be->ops->setattr(be, &c->ctx, h->nodeid, h->backend_fh, &set, &st);
    }
    struct ml_location loc;
    struct ml_node node;
    int err = find(c, c->req->path, &loc, &node);
    if (!err && !node.be)
        err = -EISDIR;
    if (!err && readonly(c, loc.export))
        err = -EROFS;
    if (!err)
        err = node.be->ops->setattr(node.be, &c->ctx, node.nodeid, FSB_NO_FH, &set, &st);
    ml_node_put(&node);
    return err;
}

/* ---------------------------------------------------------------------- */
/* Open files                                                               */

static int add_handle(struct ml_call *c, enum ml_handle_kind kind, const struct ml_node *node,
                      uint64_t backend_fh)
{
    int64_t fh = ml_handle_add(c->conn, kind, node->export, backend_fh, node->nodeid);
    if (fh < 0)
        return (int)fh;
    c->resp->fh = (uint64_t)fh;
    return 0;
}

static int open_node(struct ml_call *c, struct ml_node *node, int flags)
{
    struct fsb_backend *be = node->be;
    bool dir = S_ISDIR(node->attr.st_mode);
    if (dir && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
        return -EISDIR;
    uint64_t bfh;
    int err = dir ? be->ops->opendir(be, &c->ctx, node->nodeid, &bfh)
                  : be->ops->open(be, &c->ctx, node->nodeid, flags, &bfh);
    if (err)
        return err;
    err = add_handle(c, dir ? ML_HANDLE_DIR : ML_HANDLE_FILE, node, bfh);
    if (err) {
        dir ? be->ops->releasedir(be, bfh) : be->ops->release(be, bfh);
        return err;
    }
    node->held = false; /* the handle holds the lookup now */
    return 0;
}

/* Open: matchlock's guest opens directories too (for its OPENDIR). */
static int op_open(struct ml_call *c)
{
    int flags = (int)(c->req->flags & OPEN_FLAGS);
    bool writes = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
    struct ml_location loc;
    struct ml_node node;
    int err = find(c, c->req->path, &loc, &node);
    if (err)
        return err;
    if (!node.be)
        err = writes ? -EISDIR : add_handle(c, ML_HANDLE_SYNTHETIC, &node, 0);
    else if (writes && readonly(c, loc.export))
        err = -EROFS;
    else
        err = open_node(c, &node, flags);
    ml_node_put(&node);
    return err;
}

/* Create: matchlock's guest sends no flags and means read-write,
 * truncated; a guest that sends flags gets exactly those. */
static int op_create(struct ml_call *c)
{
    int flags = c->req->flags ? (int)(c->req->flags & CREATE_FLAGS) : O_RDWR | O_TRUNC;
    struct ml_location loc;
    struct ml_node dir;
    const char *name;
    int err = find_parent(c, c->req->path, &loc, &dir, &name);
    if (err)
        return create_error(err);
    struct fsb_entry e;
    uint64_t bfh;
    err = dir.be->ops->create(dir.be, &c->ctx, dir.nodeid, name, c->req->mode & PERMISSION_BITS,
                              flags, &e, &bfh);
    ml_node_put(&dir);
    if (err)
        return err;
    struct ml_node file = { .be = dir.be, .export = dir.export, .nodeid = e.nodeid };
    err = add_handle(c, ML_HANDLE_FILE, &file, bfh);
    if (err) {
        dir.be->ops->release(dir.be, bfh);
        dir.be->ops->forget(dir.be, e.nodeid, 1);
        return err;
    }
    answer_stat(c, &e.attr);
    return 0;
}

static struct ml_handle *file_handle(struct ml_call *c, int *err)
{
    struct ml_handle *h = ml_handle_get(c->conn, c->req->fh);
    *err = !h ? -EBADF : h->kind != ML_HANDLE_FILE ? -EISDIR : 0;
    return *err ? NULL : h;
}

static int op_read(struct ml_call *c)
{
    int err;
    struct ml_handle *h = file_handle(c, &err);
    if (!h)
        return err;
    if (c->req->off < 0)
        return -EINVAL;
    if (!c->conn->read_buf && !(c->conn->read_buf = malloc(ML_DATA_MAX)))
        return -ENOMEM;
    /* A larger size is served short, as read(2) may be. */
    size_t size = c->req->sz < ML_DATA_MAX ? c->req->sz : ML_DATA_MAX;
    struct iovec iov = { c->conn->read_buf, size };
    struct fsb_backend *be = c->conn->backends[h->export];
    ssize_t n = be->ops->read(be, h->backend_fh, c->req->off, &iov, 1);
    if (n < 0)
        return (int)n;
    c->resp->data = c->conn->read_buf;
    c->resp->data_len = (size_t)n;
    return 0;
}

/* O_APPEND works: the host file was opened with it, and Linux's pwrite on
 * such a file appends whatever the offset. */
static int op_write(struct ml_call *c)
{
    int err;
    struct ml_handle *h = file_handle(c, &err);
    if (!h)
        return err;
    if (c->req->off < 0)
        return -EINVAL;
    struct iovec iov = { (void *)c->req->data, c->req->data_len };
    struct fsb_backend *be = c->conn->backends[h->export];
    ssize_t n = be->ops->write(be, &c->ctx, h->backend_fh, c->req->off, &iov, 1);
    if (n < 0)
        return (int)n;
    c->resp->written = (uint32_t)n;
    return 0;
}

static int op_release(struct ml_call *c)
{
    struct ml_handle *h = ml_handle_get(c->conn, c->req->fh);
    if (!h)
        return -EBADF;
    ml_handle_close(c->conn, h);
    return 0;
}

static int op_fsync(struct ml_call *c)
{
    struct ml_handle *h = ml_handle_get(c->conn, c->req->fh);
    if (!h)
        return -EBADF;
    struct fsb_backend *be = c->conn->backends[h->export];
    if (h->kind == ML_HANDLE_FILE)
        return be->ops->fsync(be, h->backend_fh, false);
    if (h->kind == ML_HANDLE_DIR)
        return be->ops->fsyncdir(be, h->backend_fh, false);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Directories                                                              */

/* A Readdir response being built: entries encoded into call->entries. */
struct listing {
    struct ml_call *call;
    struct fsb_backend *be;
    char (*shadowed)[NAME_MAX + 1]; /* export points below: listed apart */
    unsigned nshadowed;
    dev_t dev;                      /* the directory's, for entries without attributes */
    int err;
};

static bool add_dirent(struct listing *l, const struct ml_dirent *d)
{
    struct ml_call *c = l->call;
    size_t len = c->resp->entries_len;
    while (ml_encode_dirent(d, c->entries, c->entries_cap, &len) < 0) {
        /* Doubling, with a last step to ENTRIES_MAX itself: the documented
         * bound, not the power of two below it. */
        size_t cap = c->entries_cap ? c->entries_cap * 2 : 16384;
        if (cap > ENTRIES_MAX)
            cap = ENTRIES_MAX;
        if (cap <= c->entries_cap) {
            l->err = -ENOBUFS;
            return false;
        }
        uint8_t *p = realloc(c->entries, cap);
        if (!p) {
            l->err = -ENOMEM;
            return false;
        }
        c->entries = p;
        c->entries_cap = cap;
    }
    c->resp->entries = c->entries;
    c->resp->entries_len = len;
    c->resp->entry_count++;
    return true;
}

static void dirent_from_stat(struct ml_dirent *d, const char *name, const struct ml_stat *st)
{
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->is_dir = st->is_dir;
    d->mode = st->mode & ML_GO_MODE_TYPE;
    d->size = st->size;
    d->ino = st->ino;
}

static uint32_t go_type_of_dt(uint32_t type)
{
    return ml_go_mode_from_unix(DTTOIF(type)) & ML_GO_MODE_TYPE;
}

static bool fill_entry(void *cookie, const struct fsb_dirent *d)
{
    struct listing *l = cookie;
    if (strcmp(d->name, ".") == 0 || strcmp(d->name, "..") == 0)
        return true;
    for (unsigned i = 0; i < l->nshadowed; i++)
        if (strcmp(d->name, l->shadowed[i]) == 0)
            return true;
    struct ml_dirent out;
    if (d->entry) {
        struct ml_stat st;
        ml_stat_from(&st, &d->entry->attr);
        dirent_from_stat(&out, d->name, &st);
    } else { /* gone since the directory was read: as much as is known */
        out = (struct ml_dirent){ .is_dir = d->type == DT_DIR, .mode = go_type_of_dt(d->type),
                                  .ino = ml_ino_of(l->dev, d->ino) };
        snprintf(out.name, sizeof(out.name), "%s", d->name);
    }
    bool taken = add_dirent(l, &out);
    if (taken && d->entry) /* attributes copied: give the lookup back */
        l->be->ops->forget(l->be, d->entry->nodeid, 1);
    return taken;
}

static int list_backend_dir(struct listing *l, struct ml_node *dir)
{
    struct fsb_backend *be = dir->be;
    if (!S_ISDIR(dir->attr.st_mode))
        return -ENOTDIR;
    uint64_t bfh;
    int err = be->ops->opendir(be, &l->call->ctx, dir->nodeid, &bfh);
    if (err)
        return err;
    l->be = be;
    l->dev = dir->attr.st_dev;
    err = be->ops->readdir(be, dir->nodeid, bfh, 0, true, fill_entry, l);
    be->ops->releasedir(be, bfh);
    return l->err ? l->err : err;
}

/* The export points and synthesized directories below a listed one. */
static int list_children(struct listing *l, const char *dir)
{
    struct ml_location *loc = malloc(sizeof(*loc));
    if (!loc)
        return -ENOMEM;
    char path[ML_PATH_SIZE];
    int err = 0;
    for (unsigned i = 0; i < l->nshadowed && !err; i++) {
        if (snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") ? dir : "",
                     l->shadowed[i]) >= (int)sizeof(path))
            continue; /* cannot be: the export's own prefix fits */
        struct ml_call *c = l->call;
        struct ml_node node;
        struct ml_stat st;
        if (find(c, path, loc, &node) == 0 && node.be)
            ml_stat_from(&st, &node.attr);
        else
            ml_stat_synthetic(&st, loc->path);
        ml_node_put(&node);
        struct ml_dirent d;
        dirent_from_stat(&d, l->shadowed[i], &st);
        if (!add_dirent(l, &d))
            err = l->err;
    }
    free(loc);
    return err;
}

static int op_readdir(struct ml_call *c)
{
    static __thread char children[ML_MAX_CHILDREN][NAME_MAX + 1];
    struct ml_location loc;
    struct ml_node node;
    int err = find(c, c->req->path, &loc, &node);
    if (err)
        return err;
    struct listing l = { .call = c, .shadowed = children };
    l.nshadowed = ml_exports_children(c->conn->map, loc.path, children);
    if (node.be)
        err = list_backend_dir(&l, &node);
    ml_node_put(&node);
    return err ? err : list_children(&l, loc.path);
}

/* Makes NAME in DIR for C (mkdir, symlink): 0 with *E filled, or -errno. */
typedef int (*make_fn)(struct ml_call *c, const struct ml_node *dir, const char *name,
                       struct fsb_entry *e);

/* The shape of Mkdir and Symlink: the parent of `path`, MAKE in it, the
 * new entry's attributes as the answer. */
static int make_entry(struct ml_call *c, make_fn make)
{
    struct ml_location loc;
    struct ml_node dir;
    const char *name;
    int err = find_parent(c, c->req->path, &loc, &dir, &name);
    if (err)
        return create_error(err);
    struct fsb_entry e;
    err = make(c, &dir, name, &e);
    if (!err)
        answer_entry(c, dir.be, &e);
    ml_node_put(&dir);
    return err;
}

static int make_dir(struct ml_call *c, const struct ml_node *dir, const char *name,
                    struct fsb_entry *e)
{
    return dir->be->ops->mkdir(dir->be, &c->ctx, dir->nodeid, name,
                               c->req->mode & PERMISSION_BITS, e);
}

static int op_mkdir(struct ml_call *c)
{
    return make_entry(c, make_dir);
}

/* MkdirAll: mkdir -p below an export root.  Existing directories are
 * fine (also on a read-only export); anything else in the way is
 * ENOTDIR. */
static int op_mkdir_all(struct ml_call *c)
{
    struct ml_location loc;
    struct ml_node node;
    int err = find(c, c->req->path, &loc, &node);
    if (err == -ENOENT && loc.place == ML_PLACE_EXPORT) {
        if (readonly(c, loc.export))
            return -EROFS;
        mode_t mode = c->req->mode & PERMISSION_BITS;
        err = ml_walk_mkdir(c, loc.export, loc.rel, strlen(loc.rel), &mode, &node);
    }
    if (!err && node.be && !S_ISDIR(node.attr.st_mode))
        err = -ENOTDIR;
    ml_node_put(&node);
    return err;
}

static int remove_entry(struct ml_call *c, bool dir)
{
    struct ml_location loc;
    struct ml_node parent;
    const char *name;
    int err = find_parent(c, c->req->path, &loc, &parent, &name);
    if (err)
        return err;
    struct fsb_backend *be = parent.be;
    err = dir ? be->ops->rmdir(be, &c->ctx, parent.nodeid, name)
              : be->ops->unlink(be, &c->ctx, parent.nodeid, name);
    ml_node_put(&parent);
    return err;
}

static int op_unlink(struct ml_call *c)
{
    return remove_entry(c, false);
}

static int op_rmdir(struct ml_call *c)
{
    return remove_entry(c, true);
}

/*
 * Rename and Link name two paths, `path` and `new_path`: their locations
 * (allocated, they are large: the caller frees them) with *err 0, or
 * -EXDEV when they are in two exports.  Both stay inside one export, as
 * inside one mount, and EXDEV comes before anything else, as from
 * rename(2).  NULL (and -ENOMEM) when out of memory.
 */
static struct ml_location *locate_pair(struct ml_call *c, int *err)
{
    struct ml_location *loc = malloc(2 * sizeof(*loc));
    if (!loc) {
        *err = -ENOMEM;
        return NULL;
    }
    *err = ml_locate(c->conn->map, c->req->path, &loc[0]);
    if (!*err)
        *err = ml_locate(c->conn->map, c->req->new_path, &loc[1]);
    if (!*err && loc[0].place == ML_PLACE_EXPORT && loc[1].place == ML_PLACE_EXPORT &&
        loc[0].export != loc[1].export)
        *err = -EXDEV;
    return loc;
}

static int op_rename(struct ml_call *c)
{
    struct ml_node from = { 0 }, to = { 0 };
    const char *from_name, *to_name;
    int err;
    struct ml_location *loc = locate_pair(c, &err);
    if (!err)
        err = find_parent(c, c->req->path, &loc[0], &from, &from_name);
    if (!err)
        err = find_parent(c, c->req->new_path, &loc[1], &to, &to_name);
    if (!err)
        err = from.be->ops->rename(from.be, &c->ctx, from.nodeid, from_name, to.nodeid,
                                   to_name, 0);
    ml_node_put(&to);
    ml_node_put(&from);
    free(loc);
    return err;
}

/* ---------------------------------------------------------------------- */
/* Links (fsbridge defines these; matchlock answers ENOSYS)                 */

static int make_symlink(struct ml_call *c, const struct ml_node *dir, const char *name,
                        struct fsb_entry *e)
{
    return dir->be->ops->symlink(dir->be, &c->ctx, dir->nodeid, name, c->req->new_path, e);
}

/* Symlink: `path` is the link to make, `new_path` its target text. */
static int op_symlink(struct ml_call *c)
{
    if (!c->req->new_path[0])
        return -ENOENT; /* as symlink(2) with an empty target */
    return make_entry(c, make_symlink);
}

/* Readlink: the target's bytes in `data`, never followed on the host. */
static int op_readlink(struct ml_call *c)
{
    struct ml_location loc;
    struct ml_node node;
    int err = find(c, c->req->path, &loc, &node);
    if (err)
        return err;
    if (!c->conn->read_buf && !(c->conn->read_buf = malloc(ML_DATA_MAX)))
        err = -ENOMEM;
    else if (!node.be || !S_ISLNK(node.attr.st_mode))
        err = -EINVAL; /* as readlink(2) on anything but a symlink */
    else
        err = node.be->ops->readlink(node.be, node.nodeid, (char *)c->conn->read_buf, PATH_MAX);
    ml_node_put(&node);
    if (err < 0)
        return err;
    if (err >= PATH_MAX)
        return -ENAMETOOLONG;
    c->resp->data = c->conn->read_buf;
    c->resp->data_len = (size_t)err;
    return 0;
}

/* Link: `path` is the existing file, `new_path` the new name. */
static int op_link(struct ml_call *c)
{
    struct ml_node node = { 0 }, dir = { 0 };
    const char *name;
    int err;
    struct ml_location *loc = locate_pair(c, &err);
    if (!err)
        err = find(c, c->req->path, &loc[0], &node);
    if (!err && !node.be)
        err = -EPERM; /* a directory */
    if (!err)
        err = create_error(find_parent(c, c->req->new_path, &loc[1], &dir, &name));
    struct fsb_entry e;
    if (!err)
        err = dir.be->ops->link(dir.be, &c->ctx, node.nodeid, dir.nodeid, name, &e);
    if (!err)
        answer_entry(c, dir.be, &e);
    ml_node_put(&dir);
    ml_node_put(&node);
    free(loc);
    return err;
}

/* ---------------------------------------------------------------------- */

typedef int (*ml_handler)(struct ml_call *c);

static const ml_handler handlers[ML_OP_COUNT] = {
    [ML_OP_LOOKUP] = op_getattr,    [ML_OP_GETATTR] = op_getattr,
    [ML_OP_SETATTR] = op_setattr,   [ML_OP_READ] = op_read,
    [ML_OP_WRITE] = op_write,       [ML_OP_CREATE] = op_create,
    [ML_OP_MKDIR] = op_mkdir,       [ML_OP_UNLINK] = op_unlink,
    [ML_OP_RMDIR] = op_rmdir,       [ML_OP_RENAME] = op_rename,
    [ML_OP_OPEN] = op_open,         [ML_OP_RELEASE] = op_release,
    [ML_OP_READDIR] = op_readdir,   [ML_OP_FSYNC] = op_fsync,
    [ML_OP_MKDIR_ALL] = op_mkdir_all, [ML_OP_TRUNCATE] = op_truncate,
    [ML_OP_SYMLINK] = op_symlink,   [ML_OP_READLINK] = op_readlink,
    [ML_OP_LINK] = op_link,
};

void ml_dispatch(struct ml_call *c)
{
    const struct ml_request *req = c->req;
    /* As the native path does: the caller's ids, for the backend's
     * credential switch when the daemon runs as root. */
    c->ctx = (struct fsb_ctx){ .uid = req->uid, .gid = req->gid };
    memset(c->resp, 0, sizeof(*c->resp));
    int err = req->op < ML_OP_COUNT ? handlers[req->op](c) : -ENOSYS;
    if (err) {
        memset(c->resp, 0, sizeof(*c->resp));
        c->resp->err = err;
    }
}
