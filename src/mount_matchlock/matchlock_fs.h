/*
 * matchlock_fs.h - the filesystem fsbridge-mount --protocol=matchlock
 * serves with libfuse's low-level API: each FUSE request becomes one (or a
 * few) of matchlock's path requests to the host.
 *
 *   matchlock_ops.c    names and attributes: lookup, getattr, setattr,
 *                      mkdir, mknod, unlink, rmdir, rename, symlink,
 *                      readlink, link; the ops table and the probe
 *   matchlock_files.c  open files and directories: create, open, read,
 *                      write, flush, fsync, release, opendir, readdir
 *   matchlock_nodes.c  node id -> guest path
 *   matchlock_client.c the connections to the host
 *
 * What the host can do is probed once before mounting (ml_fs_probe()): a
 * host that answers Readlink (op 17) with anything but ENOSYS implements
 * fsbridge's additions (ops 15-18, Setattr's `set`), and the filesystem
 * uses them; an original matchlock host does not, and the operations that
 * need them fail the way they would on a local filesystem without the
 * feature (EPERM), while truncation to zero still works through Open with
 * O_TRUNC.
 */
#ifndef FSB_MOUNT_MATCHLOCK_FS_H
#define FSB_MOUNT_MATCHLOCK_FS_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 35
#endif

#include <fuse3/fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>

#include "matchlock/ml_codec.h"
#include "mount_matchlock/matchlock_client.h"
#include "mount_matchlock/matchlock_nodes.h"

/* Entry and attribute cache time: as fsbridged's cache=auto. */
#define ML_FS_TIMEOUT 1.0

/* An open file or directory, on its filesystem's list: only the kernel
 * holds the pointer otherwise (fi->fh), and a daemon that ends with files
 * open (a lost host) must not look like it leaked them. */
struct ml_open {
    struct ml_open *prev, *next;
};

struct ml_fs {
    struct ml_client *client;  /* set before the mount */
    struct ml_nodes *nodes;
    char prefix[ML_PREFIX_MAX + 1]; /* the root's guest path */
    bool extensions;           /* the host serves ops 15-18 and Setattr's `set` */
    pthread_mutex_t open_lock;
    struct ml_open open;       /* list head of open files and directories */
};

extern const struct fuse_lowlevel_ops ml_fs_ops;

/* Asks the host about the prefix and its extensions.  Returns 0, or -1
 * after logging one line (ADDRESS names the host in it). */
int ml_fs_probe(struct ml_fs *fs, const char *address);

/* ----------------------------------------------------------------------
 * Shared by matchlock_ops.c and matchlock_files.c
 */

static inline struct ml_fs *ml_fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* A request of OP on behalf of REQ's caller (uid and gid filled in). */
void ml_request_init(struct ml_request *r, fuse_req_t req, unsigned op);

/* Its path: INO's, or INO's child NAME's.  0 or -errno. */
int ml_request_path(struct ml_request *r, fuse_req_t req, fuse_ino_t ino, const char *name);

/*
 * Sends R (on PIN, if not NULL) and waits.  Returns 0 with x holding a
 * successful response (release it with ml_exchange_done()), or a negative
 * errno for the guest: the host's own error, or ENOTCONN once it is lost.
 */
int ml_fs_call(struct ml_fs *fs, struct ml_conn *pin, const struct ml_request *r,
               struct ml_exchange *x);

/* The same, for requests whose response carries nothing but err. */
int ml_fs_call_simple(struct ml_fs *fs, struct ml_conn *pin, const struct ml_request *r);

/* Answers REQ with -ERR (0: success). */
void ml_reply_err(fuse_req_t req, int err);

/* Attributes of PATH from a response's `stat`. */
void ml_attr_from_stat(const struct ml_stat *s, const char *path, struct stat *st);

/* The inode number the guest shows for PATH when the host sends none:
 * matchlock's FNV-1a of the path and 'd' or 'f'. */
uint64_t ml_synthetic_ino(const char *path, bool is_dir);

/* Answers a request that made NAME in PARENT with its attributes: the
 * response's stat, or (when the host sent none) a Lookup. */
void ml_reply_entry(fuse_req_t req, fuse_ino_t parent, const char *name, const char *path,
                    const struct ml_response *resp);

/* Fills E for a new node of NAME in PARENT with attributes ST; 0 or
 * -ENOMEM. */
int ml_make_entry(struct ml_fs *fs, fuse_ino_t parent, const char *name, const struct stat *st,
                  struct fuse_entry_param *e);

/* An open file: the host's handle and the connection it belongs to. */
struct ml_file {
    struct ml_open open;       /* first: the list links */
    uint64_t fh;
    struct ml_conn *conn;
};

static inline struct ml_file *ml_file_of(const struct fuse_file_info *fi)
{
    return (struct ml_file *)(uintptr_t)fi->fh;
}

/* mknod(2) of a regular file: Create, then Release. */
void ml_create_closed(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);

/* matchlock_files.c's operations, for the table. */
void ml_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi);
void ml_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ml_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void ml_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
              struct fuse_file_info *fi);
void ml_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ml_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ml_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void ml_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ml_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi);
void ml_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ml_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

#endif
