/*
 * matchlock_files.c - open files and directories of fsbridge-mount
 * --protocol=matchlock (see matchlock_fs.h).
 *
 * An open file is the host's handle plus the connection that opened it:
 * fsbridged's handles belong to their connection, so every Read, Write,
 * Fsync and Release of the file goes over that one.  A directory is read
 * whole at opendir (the protocol lists a directory in one response) and
 * served from that listing, as a local directory stream would be.
 */
#include "mount_matchlock/matchlock_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * What the host hears of the guest's open(2) flags:
 *  - O_APPEND: the guest kernel puts appends at the end itself (it knows
 *    the size), and writes back a shared mapping's pages through any
 *    writable handle of the file: on an O_APPEND handle the host would
 *    move those writes to the end;
 *  - O_DIRECT: the guest kernel already bypasses its cache, and the host
 *    filesystem's alignment rules would refuse valid guest I/O;
 *  - O_NOATIME: the host refuses it unless the caller owns the file;
 *  - O_CREAT, O_EXCL: Open never creates (the kernel sends CREATE).
 */
static uint32_t host_open_flags(int flags, bool create)
{
    int drop = O_APPEND | O_DIRECT | O_NOATIME | O_NOCTTY;
    if (!create)
        drop |= O_CREAT | O_EXCL;
    return (uint32_t)(flags & ~drop);
}

static void track(struct ml_fs *fs, struct ml_open *o)
{
    pthread_mutex_lock(&fs->open_lock);
    o->prev = &fs->open;
    o->next = fs->open.next;
    if (o->next)
        o->next->prev = o;
    fs->open.next = o;
    pthread_mutex_unlock(&fs->open_lock);
}

static void untrack(struct ml_fs *fs, struct ml_open *o)
{
    pthread_mutex_lock(&fs->open_lock);
    o->prev->next = o->next;
    if (o->next)
        o->next->prev = o->prev;
    pthread_mutex_unlock(&fs->open_lock);
}

/* Releases a host handle; its errors cannot be reported to anyone. */
static void release_host_handle(struct ml_fs *fs, uint64_t fh, struct ml_conn *conn)
{
    struct ml_request r;
    ml_request_init(&r, NULL, ML_OP_RELEASE);
    r.fh = fh;
    ml_fs_call_simple(fs, conn, &r);
}

/* Keeps the host's handle FH (opened on CONN) in FI.  0, or -ENOMEM after
 * releasing it. */
static int keep_handle(struct ml_fs *fs, uint64_t fh, struct ml_conn *conn,
                       struct fuse_file_info *fi)
{
    struct ml_file *f = malloc(sizeof(*f));
    if (!f) {
        release_host_handle(fs, fh, conn);
        return -ENOMEM;
    }
    f->fh = fh;
    f->conn = conn;
    track(fs, &f->open);
    ml_conn_hold(fs->client, conn);
    fi->fh = (uintptr_t)f;
    return 0;
}

static void drop_handle(struct ml_fs *fs, struct ml_file *f)
{
    release_host_handle(fs, f->fh, f->conn);
    ml_conn_unhold(fs->client, f->conn);
    untrack(fs, &f->open);
    free(f);
}

/* ----------------------------------------------------------------------
 * Create, open
 */

/* What a Create answered: the handle, and the new file's attributes. */
struct created {
    uint64_t fh;
    struct ml_conn *conn;
    struct stat st;
};

/* Sends a Create of NAME in PARENT; on success *out holds an open host
 * handle.  0 or -errno. */
static int create_file(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       int flags, struct created *out)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    struct ml_exchange x;
    ml_request_init(&r, req, ML_OP_CREATE);
    r.mode = S_IFREG | (mode & 07777);
    r.flags = host_open_flags(flags, true);
    int err = ml_request_path(&r, req, parent, name);
    if (!err)
        err = ml_fs_call(fs, NULL, &r, &x);
    if (err)
        return err;
    out->fh = x.resp.fh;
    out->conn = x.conn;
    bool has_stat = x.resp.has_stat;
    if (has_stat)
        ml_attr_from_stat(&x.resp.stat, r.path, &out->st);
    ml_exchange_done(&x);
    if (has_stat)
        return 0;
    /* matchlock's server always sends the stat; ask if one did not. */
    ml_request_init(&r, req, ML_OP_LOOKUP);
    err = ml_request_path(&r, req, parent, name);
    if (!err)
        err = ml_fs_call(fs, NULL, &r, &x);
    if (!err) {
        if (x.resp.has_stat)
            ml_attr_from_stat(&x.resp.stat, r.path, &out->st);
        else
            err = -EIO;
        ml_exchange_done(&x);
    }
    if (err)
        release_host_handle(fs, out->fh, out->conn);
    return err;
}

void ml_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct created c;
    struct fuse_entry_param e;
    int err = create_file(req, parent, name, mode, fi->flags, &c);
    if (err) {
        ml_reply_err(req, err);
        return;
    }
    err = ml_make_entry(fs, parent, name, &c.st, &e);
    if (err)
        release_host_handle(fs, c.fh, c.conn);
    else
        err = keep_handle(fs, c.fh, c.conn, fi);
    if (err) {
        ml_reply_err(req, err);
        return;
    }
    if (fuse_reply_create(req, &e, fi) != 0) { /* the caller was interrupted */
        drop_handle(fs, ml_file_of(fi));
        ml_nodes_forget(fs->nodes, e.ino, 1);
    }
}

void ml_create_closed(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct created c;
    struct fuse_entry_param e;
    int err = create_file(req, parent, name, mode, O_WRONLY | O_CREAT | O_EXCL, &c);
    if (!err) {
        release_host_handle(fs, c.fh, c.conn);
        err = ml_make_entry(fs, parent, name, &c.st, &e);
    }
    if (err)
        ml_reply_err(req, err);
    else if (fuse_reply_entry(req, &e) != 0)
        ml_nodes_forget(fs->nodes, e.ino, 1);
}

void ml_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    struct ml_exchange x;
    ml_request_init(&r, req, ML_OP_OPEN);
    r.flags = host_open_flags(fi->flags, false);
    int err = ml_request_path(&r, req, ino, NULL);
    if (!err)
        err = ml_fs_call(fs, NULL, &r, &x);
    if (err) {
        ml_reply_err(req, err);
        return;
    }
    uint64_t fh = x.resp.fh;
    struct ml_conn *conn = x.conn;
    ml_exchange_done(&x);
    err = keep_handle(fs, fh, conn, fi);
    if (err)
        ml_reply_err(req, err);
    else if (fuse_reply_open(req, fi) != 0)
        drop_handle(fs, ml_file_of(fi));
}

/* ----------------------------------------------------------------------
 * I/O on an open file
 */

void ml_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    struct ml_fs *fs = ml_fs_of(req);
    const struct ml_file *f = ml_file_of(fi);
    struct ml_request r;
    struct ml_exchange x;
    (void)ino;
    ml_request_init(&r, req, ML_OP_READ);
    r.fh = f->fh;
    r.off = off;
    r.sz = size < ML_DATA_MAX ? (uint32_t)size : ML_DATA_MAX;
    int err = ml_fs_call(fs, f->conn, &r, &x);
    if (err) {
        ml_reply_err(req, err);
        return;
    }
    /* Fewer bytes than asked is the end of the file; more is a broken host. */
    if (x.resp.data_len > r.sz)
        fuse_reply_err(req, EIO);
    else
        fuse_reply_buf(req, x.resp.data, x.resp.data_len);
    ml_exchange_done(&x);
}

void ml_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
              struct fuse_file_info *fi)
{
    struct ml_fs *fs = ml_fs_of(req);
    const struct ml_file *f = ml_file_of(fi);
    struct ml_request r;
    struct ml_exchange x;
    ml_request_init(&r, req, ML_OP_WRITE);
    r.fh = f->fh;
    r.off = off;
    r.data = buf;
    r.data_len = size < ML_DATA_MAX ? size : ML_DATA_MAX; /* max_write keeps it so */
    int err = ml_fs_call(fs, f->conn, &r, &x);
    if (err) {
        ml_reply_err(req, err);
        return;
    }
    size_t written = x.resp.written;
    ml_exchange_done(&x);
    if (written > r.data_len) {
        fuse_reply_err(req, EIO);
        return;
    }
    ml_nodes_resized(fs->nodes, ino, off + (off_t)written, true);
    fuse_reply_write(req, written);
}

void ml_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    (void)fi;
    fuse_reply_err(req, 0); /* writes went to the host as they came */
}

void ml_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    drop_handle(ml_fs_of(req), ml_file_of(fi));
    fuse_reply_err(req, 0);
}

void ml_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    const struct ml_file *f = ml_file_of(fi);
    struct ml_request r;
    (void)ino;
    (void)datasync;
    ml_request_init(&r, req, ML_OP_FSYNC);
    r.fh = f->fh;
    ml_reply_err(req, ml_fs_call_simple(ml_fs_of(req), f->conn, &r));
}

/* ----------------------------------------------------------------------
 * Directories
 */

struct listing_entry {
    char *name;
    uint64_t ino;
    mode_t type;
};

struct listing {
    struct ml_open open;
    size_t count;
    struct listing_entry entries[];
};

/* Frees L, which is not on the open list (yet or any more). */
static void free_listing(struct listing *l)
{
    for (size_t i = 2; i < l->count; i++)
        free(l->entries[i].name);
    free(l);
}

/* One entry of a Readdir response; the inode number as Lookup shows it. */
static int add_entry(struct listing *l, const struct ml_dirent *d, const char *dir)
{
    char path[ML_PATH_SIZE];
    struct listing_entry *e = &l->entries[l->count];
    e->type = d->is_dir ? S_IFDIR : ml_unix_mode_from_go(d->mode) & S_IFMT;
    e->ino = d->ino;
    if (!e->ino) {
        /* A path too long to look up keeps its cut form: any number will do. */
        if (snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") == 0 ? "" : dir,
                     d->name) >= (int)sizeof(path))
            path[sizeof(path) - 1] = 0;
        e->ino = ml_synthetic_ino(path, S_ISDIR(e->type));
    }
    e->name = strdup(d->name);
    if (!e->name)
        return -ENOMEM;
    l->count++;
    return 0;
}

/* The listing of RESP (a Readdir of DIR), with "." and ".." first. */
static int listing_of(const struct ml_response *resp, const char *dir, struct listing **out)
{
    struct ml_dirent_iter it;
    struct ml_dirent d;
    struct listing *l = malloc(sizeof(*l) + (resp->entry_count + 2) * sizeof(l->entries[0]));
    if (!l)
        return -ENOMEM;
    /* The kernel does not look at these inode numbers; "." and ".." are
     * ours to add, since matchlock lists neither. */
    l->entries[0] = (struct listing_entry){ .name = ".", .ino = FUSE_ROOT_ID, .type = S_IFDIR };
    l->entries[1] = (struct listing_entry){ .name = "..", .ino = FUSE_ROOT_ID, .type = S_IFDIR };
    l->count = 2;
    ml_dirent_iter_init(&it, resp);
    while (l->count < resp->entry_count + 2 && ml_dirent_next(&it, &d)) {
        if (add_entry(l, &d, dir) < 0) {
            free_listing(l);
            return -ENOMEM;
        }
    }
    *out = l;
    return 0;
}

void ml_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ml_fs *fs = ml_fs_of(req);
    struct ml_request r;
    struct ml_exchange x;
    struct listing *l = NULL;
    ml_request_init(&r, req, ML_OP_READDIR);
    int err = ml_request_path(&r, req, ino, NULL);
    if (!err)
        err = ml_fs_call(fs, NULL, &r, &x);
    if (!err) {
        err = listing_of(&x.resp, r.path, &l);
        ml_exchange_done(&x);
    }
    if (err) {
        ml_reply_err(req, err);
        return;
    }
    fi->fh = (uintptr_t)l;
    track(fs, &l->open);
    if (fuse_reply_open(req, fi) != 0) {
        untrack(fs, &l->open);
        free_listing(l);
    }
}

void ml_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi)
{
    const struct listing *l = (const struct listing *)(uintptr_t)fi->fh;
    char *buf = malloc(size);
    size_t used = 0;
    (void)ino;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (size_t i = off < 0 ? l->count : (size_t)off; i < l->count; i++) {
        const struct listing_entry *e = &l->entries[i];
        struct stat st = { .st_ino = e->ino, .st_mode = e->type };
        size_t n = fuse_add_direntry(req, buf + used, size - used, e->name, &st, (off_t)i + 1);
        if (n > size - used)
            break;
        used += n;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

void ml_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct listing *l = (struct listing *)(uintptr_t)fi->fh;
    (void)ino;
    untrack(ml_fs_of(req), &l->open);
    free_listing(l);
    fuse_reply_err(req, 0);
}

void ml_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    (void)fi;
    fuse_reply_err(req, 0); /* the protocol has no way to sync a directory */
}
