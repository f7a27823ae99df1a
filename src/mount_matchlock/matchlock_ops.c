/*
 * matchlock_ops.c - names and attributes of fsbridge-mount
 * --protocol=matchlock (see matchlock_fs.h), the probe made before
 * mounting, and the table of operations given to libfuse.
 *
 * Every operation builds one matchlock request from the node table's path,
 * sends it on any connection, and turns the response into the FUSE reply.
 * The node table changes only after the host said yes.
 */
#include "mount_matchlock/matchlock_fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

/* ----------------------------------------------------------------------
 * Requests, responses and attributes
 */

void ml_request_init(struct ml_request *r, fuse_req_t req, unsigned op)
{
    memset(r, 0, sizeof(*r));
    r->op = op;
    if (req) {
        const struct fuse_ctx *ctx = fuse_req_ctx(req);
        r->uid = ctx->uid;
        r->gid = ctx->gid;
    } else {
        r->uid = geteuid();
        r->gid = getegid();
    }
}

int ml_request_path(struct ml_request *r, fuse_req_t req, fuse_ino_t ino, const char *name)
{
    return ml_nodes_path(ml_fs_of(req)->nodes, ino, name, r->path, sizeof(r->path));
}

int ml_fs_call(struct ml_fs *fs, struct ml_conn *pin, const struct ml_request *r,
               struct ml_exchange *x)
{
    int err = ml_client_call(fs->client, pin, r, x);
    if (err)
        return err;
    err = x->resp.err;
    if (err == 0)
        return 0;
    ml_exchange_done(x);
    /* Not an errno at all: the host is broken, the guest gets EIO. */
    return err < 0 && err >= -4095 ? err : -EIO;
}

int ml_fs_call_simple(struct ml_fs *fs, struct ml_conn *pin, const struct ml_request *r)
{
    struct ml_exchange x;
    int err = ml_fs_call(fs, pin, r, &x);
    if (!err)
        ml_exchange_done(&x);
    return err;
}

void ml_reply_err(fuse_req_t req, int err)
{
    /* The kernel takes ENOSYS from OPEN, CREATE, FSYNC, ... as "never
     * ask again": a host's ENOSYS must not switch operations off for the
     * rest of the mount. */
    fuse_reply_err(req, err == -ENOSYS ? EIO : -err);
}

uint64_t ml_synthetic_ino(const char *path, bool is_dir)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    h = (h ^ (unsigned char)(is_dir ? 'd' : 'f')) * 0x100000001b3u;
    return h <= 1 ? h + 2 : h;
}

static struct timespec timespec_of(int64_t sec, uint32_t nsec)
{
    return (struct timespec){ .tv_sec = sec, .tv_nsec = nsec < 1000000000u ? nsec : 0 };
}

void ml_attr_from_stat(const struct ml_stat *s, const char *path, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_mode = ml_unix_mode_from_go(s->mode);
    if (s->is_dir)
        st->st_mode = S_IFDIR | (st->st_mode & 07777);
    st->st_ino = s->ino ? s->ino : ml_synthetic_ino(path, S_ISDIR(st->st_mode));
    /* Fields an original matchlock host leaves out get local defaults. */
    st->st_nlink = s->nlink ? s->nlink : S_ISDIR(st->st_mode) ? 2 : 1;
    st->st_uid = s->uid;
    st->st_gid = s->gid;
    st->st_rdev = s->rdev;
    st->st_size = s->size > 0 ? s->size : 0;
    st->st_blksize = 4096;
    st->st_blocks = s->blocks ? (blkcnt_t)s->blocks : (st->st_size + 511) / 512;
    st->st_mtim = timespec_of(s->mtime, s->mtime_nsec);
    st->st_atim = s->atime ? timespec_of(s->atime, s->atime_nsec) : st->st_mtim;
    st->st_ctim = s->ctime ? timespec_of(s->ctime, s->ctime_nsec) : st->st_mtim;
}

/* An ENOSYS from an extension op: the host lacks it after all. */
static int ml_extension_refused(struct ml_fs *fs, int err)
{
    if (err != -ENOSYS)
        return err;
    __atomic_store_n(&fs->extensions, false, __ATOMIC_RELAXED);
    log_info("the host does not implement symlinks, hard links or Truncate: turned off");
    return -EPERM;
}

static bool ml_has_extensions(struct ml_fs *fs)
{
    return __atomic_load_n(&fs->extensions, __ATOMIC_RELAXED);
}

/* Sends R (a Lookup or Getattr) and converts the stat.  0 or -errno. */
static int stat_of(struct ml_fs *fs, const struct ml_request *r, struct stat *st)
{
    struct ml_exchange x;
    int err = ml_fs_call(fs, NULL, r, &x);
    if (err)
        return err;
    if (x.resp.has_stat)
        ml_attr_from_stat(&x.resp.stat, r->path, st);
    ml_exchange_done(&x);
    return x.resp.has_stat ? 0 : -EIO;
}

int ml_make_entry(struct ml_fs *fs, fuse_ino_t parent, const char *name, const struct stat *st,
                  struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = ml_nodes_remember(fs->nodes, parent, name, st);
    if (!e->ino)
        return -ENOMEM;
    e->attr = *st;
    e->attr_timeout = ML_FS_TIMEOUT;
    e->entry_timeout = ML_FS_TIMEOUT;
    return 0;
}

/* A reply the kernel did not take (its caller was interrupted) must not
 * count as a lookup. */
static void send_entry(fuse_req_t req, const struct fuse_entry_param *e)
{
    if (fuse_reply_entry(req, e) != 0)
        ml_nodes_forget(ml_fs_of(req)->nodes, e->ino, 1);
}

/* Looks NAME up in PARENT (its guest path is PATH) and answers REQ. */
static void lookup_and_reply(fuse_req_t req, fuse_ino_t parent, const char *name,
                             const char *path)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    struct fuse_entry_param e;
    struct stat st;
    ml_request_init(&r, req, ML_OP_LOOKUP);
    snprintf(r.path, sizeof(r.path), "%s", path);
    int err = stat_of(fs, &r, &st);
    if (!err)
        err = ml_make_entry(fs, parent, name, &st, &e);
    if (err)
        ml_reply_err(req, err);
    else
        send_entry(req, &e);
}

void ml_reply_entry(fuse_req_t req, fuse_ino_t parent, const char *name, const char *path,
                    const struct ml_response *resp)
{
    struct fuse_entry_param e;
    struct stat st;
    if (!resp->has_stat) {
        lookup_and_reply(req, parent, name, path);
        return;
    }
    ml_attr_from_stat(&resp->stat, path, &st);
    int err = ml_make_entry(ml_fs_of(req), parent, name, &st, &e);
    if (err)
        ml_reply_err(req, err);
    else
        send_entry(req, &e);
}

/* Sends R, which makes NAME in PARENT, and answers with the new entry. */
static void make_and_reply(fuse_req_t req, fuse_ino_t parent, const char *name,
                           const struct ml_request *r)
{
    struct ml_exchange x;
    int err = ml_fs_call(ml_fs_of(req), NULL, r, &x);
    if (err) {
        ml_reply_err(req, err);
        return;
    }
    struct ml_response resp = x.resp; /* its stat is a copy: no pointers */
    ml_exchange_done(&x);             /* before a Lookup may need a connection */
    ml_reply_entry(req, parent, name, r->path, &resp);
}

/* ----------------------------------------------------------------------
 * Lookup, forget, getattr
 */

static void ml_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    char path[ML_PATH_SIZE];
    int err = ml_nodes_path(ml_fs_of(req)->nodes, parent, name, path, sizeof(path));
    if (err)
        ml_reply_err(req, err);
    else
        lookup_and_reply(req, parent, name, path);
}

static void ml_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    ml_nodes_forget(ml_fs_of(req)->nodes, ino, nlookup);
    fuse_reply_none(req);
}

static void ml_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct ml_fs *fs = ml_fs_of(req);
    for (size_t i = 0; i < count; i++)
        ml_nodes_forget(fs->nodes, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

/* INO's attributes: from the host, or the last known for a detached
 * node (it has no path; open handles keep it alive). */
static int attr_of(fuse_req_t req, fuse_ino_t ino, struct stat *st)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    if (ml_nodes_detached_attr(fs->nodes, ino, st))
        return 0;
    ml_request_init(&r, req, ML_OP_GETATTR);
    int err = ml_request_path(&r, req, ino, NULL);
    if (!err)
        err = stat_of(fs, &r, st);
    if (!err)
        ml_nodes_set_attr(fs->nodes, ino, st);
    return err;
}

static void ml_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;
    (void)fi;
    int err = attr_of(req, ino, &st);
    if (err)
        ml_reply_err(req, err);
    else
        fuse_reply_attr(req, &st, ML_FS_TIMEOUT);
}

/* ----------------------------------------------------------------------
 * Setattr
 */

/* Sends a Setattr (R, path filled in); its stat, if any, into *st. */
static int send_setattr(struct ml_fs *fs, const struct ml_request *r, struct stat *st,
                        bool *have)
{
    struct ml_exchange x;
    int err = ml_fs_call(fs, NULL, r, &x);
    if (err)
        return err;
    if (x.resp.has_stat) {
        ml_attr_from_stat(&x.resp.stat, r->path, st);
        *have = true;
    }
    ml_exchange_done(&x);
    return 0;
}

/* fsbridge's Setattr: everything in one request. */
static int setattr_extended(fuse_req_t req, fuse_ino_t ino, const struct stat *a, int to_set,
                            struct stat *st, bool *have)
{
    static const struct { int fuse; uint32_t ml; } bits[] = {
        { FUSE_SET_ATTR_MODE, ML_SET_MODE },   { FUSE_SET_ATTR_UID, ML_SET_UID },
        { FUSE_SET_ATTR_GID, ML_SET_GID },     { FUSE_SET_ATTR_SIZE, ML_SET_SIZE },
        { FUSE_SET_ATTR_ATIME, ML_SET_ATIME }, { FUSE_SET_ATTR_MTIME, ML_SET_MTIME },
        { FUSE_SET_ATTR_ATIME_NOW, ML_SET_ATIME_NOW },
        { FUSE_SET_ATTR_MTIME_NOW, ML_SET_MTIME_NOW },
    };
    struct ml_request r;
    ml_request_init(&r, req, ML_OP_SETATTR);
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        if (to_set & bits[i].fuse)
            r.set |= bits[i].ml;
    if (!r.set)
        return 0;
    int err = ml_request_path(&r, req, ino, NULL);
    if (err)
        return err;
    r.mode = a->st_mode;
    r.owner_uid = a->st_uid;
    r.owner_gid = a->st_gid;
    r.off = a->st_size;
    r.atime = a->st_atim.tv_sec;
    r.atime_nsec = (uint32_t)a->st_atim.tv_nsec;
    r.mtime = a->st_mtim.tv_sec;
    r.mtime_nsec = (uint32_t)a->st_mtim.tv_nsec;
    return send_setattr(ml_fs_of(req), &r, st, have);
}

/* Truncate (op 15) of an open file's handle. */
static int ml_truncate_handle(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, off_t size)
{
    struct ml_fs *fs = ml_fs_of(req);
    const struct ml_file *f = ml_file_of(fi);
    struct ml_request r;
    ml_request_init(&r, req, ML_OP_TRUNCATE);
    r.fh = f->fh;
    r.off = size;
    int err = ml_extension_refused(fs, ml_fs_call_simple(fs, f->conn, &r));
    if (!err)
        ml_nodes_resized(fs->nodes, ino, size, false);
    return err;
}

/* Truncation to zero without Truncate: open with O_TRUNC and close. */
static int truncate_by_open(fuse_req_t req, fuse_ino_t ino)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    struct ml_exchange x;
    ml_request_init(&r, req, ML_OP_OPEN);
    r.flags = O_WRONLY | O_TRUNC;
    int err = ml_request_path(&r, req, ino, NULL);
    if (!err)
        err = ml_fs_call(fs, NULL, &r, &x);
    if (err)
        return err;
    struct ml_conn *conn = x.conn;
    uint64_t fh = x.resp.fh;
    ml_exchange_done(&x);
    ml_request_init(&r, req, ML_OP_RELEASE);
    r.fh = fh;
    ml_fs_call_simple(fs, conn, &r);
    return 0;
}

/*
 * An original matchlock host: Setattr is chmod only.  What it cannot do
 * fails before anything changes, with EPERM as on a local filesystem that
 * cannot store owners or times; an owner that stays the same is no change.
 */
static int setattr_matchlock(fuse_req_t req, fuse_ino_t ino, const struct stat *a, int to_set,
                             struct stat *st, bool *have)
{
    const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                      FUSE_SET_ATTR_MTIME_NOW;
    if (to_set & times)
        return -EPERM;
    if ((to_set & FUSE_SET_ATTR_SIZE) && a->st_size != 0)
        return -EPERM;
    if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        struct stat now;
        int err = attr_of(req, ino, &now);
        if (err)
            return err;
        if (((to_set & FUSE_SET_ATTR_UID) && a->st_uid != now.st_uid) ||
            ((to_set & FUSE_SET_ATTR_GID) && a->st_gid != now.st_gid))
            return -EPERM;
    }
    int err = (to_set & FUSE_SET_ATTR_SIZE) ? truncate_by_open(req, ino) : 0;
    if (err || !(to_set & FUSE_SET_ATTR_MODE))
        return err;
    struct ml_request r;
    ml_request_init(&r, req, ML_OP_SETATTR);
    r.mode = a->st_mode;
    err = ml_request_path(&r, req, ino, NULL);
    return err ? err : send_setattr(ml_fs_of(req), &r, st, have);
}

static void ml_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct stat st;
    bool have = false;
    int err = 0;
    /* Through an open handle the size changes as ftruncate(2) would:
     * without a second permission check, and on an unlinked file too. */
    if ((to_set & FUSE_SET_ATTR_SIZE) && fi && ml_has_extensions(fs)) {
        err = ml_truncate_handle(req, ino, fi, attr->st_size);
        if (!err)
            to_set &= ~FUSE_SET_ATTR_SIZE;
        else if (!ml_has_extensions(fs))
            err = 0; /* refused just now: try without */
    }
    if (!err)
        err = ml_has_extensions(fs) ? setattr_extended(req, ino, attr, to_set, &st, &have)
                             : setattr_matchlock(req, ino, attr, to_set, &st, &have);
    if (!err && have)
        ml_nodes_set_attr(fs->nodes, ino, &st);
    else if (!err)
        err = attr_of(req, ino, &st);
    if (err)
        ml_reply_err(req, err);
    else
        fuse_reply_attr(req, &st, ML_FS_TIMEOUT);
}

/* ----------------------------------------------------------------------
 * Making and removing names
 */

static void ml_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct ml_request r;
    ml_request_init(&r, req, ML_OP_MKDIR);
    r.mode = S_IFDIR | (mode & 07777);
    int err = ml_request_path(&r, req, parent, name);
    if (err)
        ml_reply_err(req, err);
    else
        make_and_reply(req, parent, name, &r);
}

/* Regular files only: the protocol has no way to make a FIFO, socket or
 * device node, and a local filesystem without them says EPERM. */
static void ml_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev)
{
    (void)rdev;
    if (!S_ISREG(mode)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    ml_create_closed(req, parent, name, mode);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, unsigned op)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    ml_request_init(&r, req, op);
    int err = ml_request_path(&r, req, parent, name);
    if (!err)
        err = ml_fs_call_simple(fs, NULL, &r);
    if (!err)
        ml_nodes_removed(fs->nodes, parent, name);
    ml_reply_err(req, err);
}

static void ml_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_name(req, parent, name, ML_OP_UNLINK);
}

static void ml_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_name(req, parent, name, ML_OP_RMDIR);
}

/* A request naming two paths (Rename, Link): INO's (or its child NAME's)
 * as `path`, NEWNAME in NEWPARENT as `new_path`. */
static int pair_request(struct ml_request *r, fuse_req_t req, unsigned op, fuse_ino_t ino,
                        const char *name, fuse_ino_t newparent, const char *newname)
{
    ml_request_init(r, req, op);
    int err = ml_request_path(r, req, ino, name);
    return err ? err
               : ml_nodes_path(ml_fs_of(req)->nodes, newparent, newname, r->new_path,
                               sizeof(r->new_path));
}

/* RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT cannot be said in
 * the protocol: EINVAL, as from a filesystem without them. */
static void ml_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    if (flags) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    int err = pair_request(&r, req, ML_OP_RENAME, parent, name, newparent, newname);
    if (!err)
        err = ml_fs_call_simple(fs, NULL, &r);
    if (!err)
        ml_nodes_moved(fs->nodes, parent, name, newparent, newname);
    ml_reply_err(req, err);
}

/* ----------------------------------------------------------------------
 * Symlinks and hard links: fsbridge's ops 16-18
 */

/* Sends R (an op 16 or 18 that makes NAME in PARENT) and answers. */
static void link_and_reply(fuse_req_t req, fuse_ino_t parent, const char *name,
                           const struct ml_request *r)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_exchange x;
    int err = ml_fs_call(fs, NULL, r, &x);
    if (err) {
        ml_reply_err(req, ml_extension_refused(fs, err));
        return;
    }
    struct ml_response resp = x.resp;
    ml_exchange_done(&x);
    /* The new path is the request's path (Symlink) or new_path (Link). */
    ml_reply_entry(req, parent, name, r->op == ML_OP_LINK ? r->new_path : r->path, &resp);
}

static void ml_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
    struct ml_request r;
    if (!ml_has_extensions(ml_fs_of(req))) {
        fuse_reply_err(req, EPERM);
        return;
    }
    ml_request_init(&r, req, ML_OP_SYMLINK);
    int err = ml_request_path(&r, req, parent, name);
    if (!err && strlen(target) >= sizeof(r.new_path))
        err = -ENAMETOOLONG;
    if (err) {
        ml_reply_err(req, err);
        return;
    }
    strcpy(r.new_path, target);
    link_and_reply(req, parent, name, &r);
}

static void ml_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    if (!ml_has_extensions(fs)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    int err = pair_request(&r, req, ML_OP_LINK, ino, NULL, newparent, newname);
    if (err)
        ml_reply_err(req, err);
    else
        link_and_reply(req, newparent, newname, &r);
}

/* Without the extensions no symlink is ever shown (matchlock's server
 * follows them), so a readlink is of something else: EINVAL. */
static void ml_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    struct ml_exchange x;
    char target[PATH_MAX];
    if (!ml_has_extensions(fs)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    ml_request_init(&r, req, ML_OP_READLINK);
    int err = ml_request_path(&r, req, ino, NULL);
    if (!err)
        err = ml_fs_call(fs, NULL, &r, &x);
    if (err) {
        ml_reply_err(req, ml_extension_refused(fs, err));
        return;
    }
    size_t len = x.resp.data_len;
    bool ok = len > 0 && len < sizeof(target) && !memchr(x.resp.data, 0, len);
    if (ok) {
        memcpy(target, x.resp.data, len);
        target[len] = 0;
    }
    ml_exchange_done(&x);
    if (ok)
        fuse_reply_readlink(req, target);
    else
        fuse_reply_err(req, EIO);
}

/* ----------------------------------------------------------------------
 * Start-up: the probe, INIT, the table
 */

static void ml_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    conn->max_write = ML_DATA_MAX;
    /* open(O_TRUNC) becomes one Open with O_TRUNC, which every host
     * honours, instead of a Setattr of the size. */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    /* The guest kernel clears set-user-ID bits itself on write and chown. */
    conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
}

/* The first request: does the prefix exist on the host, as a directory? */
static int probe_root(struct ml_fs *fs, const char *address)
{
    struct ml_request r;
    struct stat st;
    ml_request_init(&r, NULL, ML_OP_GETATTR);
    snprintf(r.path, sizeof(r.path), "%s", fs->prefix);
    int err = stat_of(fs, &r, &st);
    if (err == -ENOTCONN)
        log_error("%s: %s", address, ml_client_lost_reason(fs->client));
    else if (err == -ENOENT)
        log_error("%s has nothing at %s (the guest path the host maps to an export: see "
                  "prefix=)", address, fs->prefix);
    else if (err)
        log_error("%s: %s: %s", address, fs->prefix, strerror(-err));
    else if (!S_ISDIR(st.st_mode))
        log_error("%s: %s is not a directory", address, fs->prefix);
    return err || !S_ISDIR(st.st_mode) ? -1 : 0;
}

int ml_fs_probe(struct ml_fs *fs, const char *address)
{
    struct ml_request r;
    if (probe_root(fs, address) < 0)
        return -1;
    /* Readlink of a directory: EINVAL from a host with the extensions,
     * ENOSYS from matchlock's server. */
    ml_request_init(&r, NULL, ML_OP_READLINK);
    snprintf(r.path, sizeof(r.path), "%s", fs->prefix);
    int err = ml_fs_call_simple(fs, NULL, &r);
    if (err == -ENOTCONN) {
        log_error("%s: %s", address, ml_client_lost_reason(fs->client));
        return -1;
    }
    fs->extensions = err != -ENOSYS;
    log_debug("%s: %s", address, fs->extensions
                                     ? "fsbridge host: symlinks, hard links, Truncate, full Setattr"
                                     : "matchlock host: no symlinks, hard links, Truncate; "
                                       "Setattr is chmod only");
    return 0;
}

const struct fuse_lowlevel_ops ml_fs_ops = {
    .init = ml_init,
    .lookup = ml_lookup,
    .forget = ml_forget,
    .forget_multi = ml_forget_multi,
    .getattr = ml_getattr,
    .setattr = ml_setattr,
    .readlink = ml_readlink,
    .mknod = ml_mknod,
    .mkdir = ml_mkdir,
    .unlink = ml_unlink,
    .rmdir = ml_rmdir,
    .symlink = ml_symlink,
    .rename = ml_rename,
    .link = ml_link,
    .open = ml_open,
    .read = ml_read,
    .write = ml_write,
    .flush = ml_flush,
    .release = ml_release,
    .fsync = ml_fsync,
    .opendir = ml_opendir,
    .readdir = ml_readdir,
    .releasedir = ml_releasedir,
    .fsyncdir = ml_fsyncdir,
    .create = ml_create,
};
