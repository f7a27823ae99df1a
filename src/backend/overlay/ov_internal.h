/*
 * ov_internal.h - what the overlay backend's files share.
 *
 * A node is what the guest knows by one node id: the same object in the
 * merged view, backed by a node of the upper instance, of the lower
 * instance, or both (a merged directory).  A node without an upper gets one
 * at copy-up and keeps it; nodes are found again by their top layer's node
 * id (the passthrough instances already name each host inode once), so a
 * repeated lookup, and a LINK, answer with the same node id.
 *
 * Locking: the table lock guards the maps, counts and each node's fields;
 * it is held only briefly and never around a host call.  Every change of
 * the merged namespace (copy-up, create, remove, rename) runs under the
 * export's change lock (overlay_shared.change_lock, ov_lock_changes), so
 * that two sessions on the same UPPER never copy up the same file twice or
 * race a whiteout against a create.  A large copy-up thus delays other
 * changes of the same export (not reads, not other exports); see
 * docs/architecture.md.
 *
 * Permissions: a change is checked as the caller, against the merged view,
 * BEFORE anything is copied up (ov_may, the checks in ov_namespace.c and
 * ov_xattr.c): a caller who may not change a file must not make the host
 * write a copy of it.
 */
#ifndef FSB_OV_INTERNAL_H
#define FSB_OV_INTERNAL_H

#include "backend/overlay/overlay.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct ov_node {
    uint64_t nodeid;
    uint64_t nlookup;      /* the guest's references */
    unsigned refs;         /* operations and child nodes using it */
    uint64_t upper, lower; /* node ids in the layer instances; 0: none */
    mode_t type;           /* S_IFMT */
    ino_t ino;             /* st_ino the guest sees: kept across copy-up */
    struct ov_node *parent; /* a reference; NULL for the root */
    char *name;            /* the last name it was reached by */
    struct ov_node *next_by_id, *next_by_key;
};

/* An open directory: the merged listing, taken at OPENDIR (and again
 * when the guest rewinds). */
struct ov_dirent {
    char *name;
    ino_t ino;
    unsigned char type;
};

struct ov_dir {
    struct ov_dirent *entries;
    size_t count;
    uint64_t nodeid;
    unsigned refs;  /* the open itself + readdirs running now */
    bool closed;
};

struct overlay {
    struct fsb_backend base;
    struct fsb_backend *upper, *lower;
    int staging_fd;         /* O_PATH: the work dir's staging directory */
    struct overlay_shared *shared; /* the export's change lock */
    bool privileged;        /* root: trusted.overlay.*, else user.overlay.* */
    bool same_fs;           /* UPPER and LOWER on one filesystem */
    bool switch_creds;
    bool trust_groups;      /* the guest kernel checks groups itself */

    pthread_mutex_t lock;   /* the table lock */
    struct ov_node **by_id, **by_key;
    size_t nbuckets, count, max_nodes;
    uint64_t next_nodeid;
    struct ov_node *root;

    struct ov_dir **dirs;   /* index = directory fh; NULL: free */
    size_t ndirs, open_dirs, max_dirs;
};

static inline void ov_lock_changes(struct overlay *ov)
{
    pthread_mutex_lock(&ov->shared->change_lock);
}

static inline void ov_unlock_changes(struct overlay *ov)
{
    pthread_mutex_unlock(&ov->shared->change_lock);
}

/* A fresh name KIND-PID-N for the staging directory (under the change lock). */
void ov_staging_name(struct overlay *ov, const char *kind, char out[64]);
extern const struct fsb_ctx ov_daemon_ctx; /* internal work: the daemon itself */

static inline struct overlay *ov_of(struct fsb_backend *be)
{
    return (struct overlay *)be;
}

/* ---- ov_nodes.c: the node table ---- */
int ov_nodes_init(struct overlay *ov, size_t max_nodes, const struct stat *root_attr);
void ov_nodes_destroy(struct overlay *ov);
/* The node with a use reference, or NULL (unknown id). */
struct ov_node *ov_get(struct overlay *ov, uint64_t nodeid);
void ov_ref(struct overlay *ov, struct ov_node *n);
void ov_put(struct overlay *ov, struct ov_node *n);
bool ov_forget(struct fsb_backend *be, uint64_t nodeid, uint64_t nlookup);
/* One more guest lookup of N (answering ".."). */
void ov_add_lookup(struct overlay *ov, struct ov_node *n);
/* A snapshot of N's layers and name (NAME: a copy, free it). */
void ov_layers(struct overlay *ov, const struct ov_node *n, uint64_t *upper, uint64_t *lower);
char *ov_name_of(struct overlay *ov, const struct ov_node *n, struct ov_node **parent);
/* N now has the upper node UPPER (its copy-up is done): found by it. */
void ov_set_upper(struct overlay *ov, struct ov_node *n, uint64_t upper);
/* N moved to PARENT/NAME (a rename). */
int ov_move(struct overlay *ov, struct ov_node *n, struct ov_node *parent, const char *name);

/* The layered result of a lookup, before it becomes a node. */
struct ov_found {
    bool have_upper, have_lower;
    struct fsb_entry upper, lower; /* each holds one lookup in its layer */
    ino_t origin_ino;              /* from a copied-up file's xattr, or 0 */
};
/* Turns F into the node of PARENT/NAME (one guest lookup counted) and
 * fills OUT; consumes F's layer lookups. */
int ov_node_from(struct overlay *ov, struct ov_node *parent, const char *name,
                 struct ov_found *f, struct fsb_entry *out, struct ov_node **node);
void ov_found_drop(struct overlay *ov, struct ov_found *f);
/* The st_ino the guest sees for an upper-only object. */
ino_t ov_upper_ino(const struct overlay *ov, ino_t ino);

/* ---- ov_lookup.c: layered lookup ---- */
/* Looks NAME up in both layers of PARENT: -ENOENT when absent or whited
 * out. */
int ov_find(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *parent,
            const char *name, struct ov_found *f);
/* Begins a change of NAME in directory PARENT_ID (create, unlink, rmdir):
 * *PARENT gets a reference to the directory's node, the change lock is
 * taken, and NAME is looked up (ov_find's result, *F filled when 0).  With
 * *PARENT NULL (an unknown node id: -ESTALE) nothing was taken; else
 * ov_end_name_change ends it (or ov_unlock_changes and ov_put). */
int ov_begin_name_change(struct overlay *ov, const struct fsb_ctx *ctx, uint64_t parent_id,
                         const char *name, struct ov_node **parent, struct ov_found *f);
void ov_end_name_change(struct overlay *ov, struct ov_node *parent);
/* ov_find + ov_node_from: a node reference (refs, not a guest lookup). */
int ov_resolve(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *parent,
               const char *name, struct ov_node **node);
/* Whether LOWER has NAME under PARENT's lower directory (so that removing
 * or renaming it from the merged view needs a whiteout). */
bool ov_lower_has(struct overlay *ov, struct ov_node *parent, const char *name);
/* Whether UPPER holds a whiteout for NAME under PARENT's upper directory. */
bool ov_upper_whiteout(struct overlay *ov, struct ov_node *parent, const char *name);
bool ov_is_whiteout(const struct stat *st);

/* ---- ov_copy_up.c ---- */
/* Gives N (and its parents) an upper copy; under the change lock. */
int ov_copy_up(struct overlay *ov, struct ov_node *n);
/* ov_copy_up taking the change lock itself; *UP: N's upper node after. */
int ov_copy_up_locked(struct overlay *ov, struct ov_node *n, uint64_t *up);

/* ---- ov_xattr.c: overlay metadata and the guest's xattrs ---- */
/* Whether NAME is in an overlay metadata namespace (either form). */
bool ov_xattr_private(const char *name);
/* The metadata xattr KEY ("opaque", ...) in this instance's namespace. */
void ov_meta_name(const struct overlay *ov, const char *key, char *out, size_t size);
/* Get/set metadata on the inode behind the O_PATH fd FD (not a symlink). */
ssize_t ov_meta_get(const struct overlay *ov, int fd, const char *key, void *buf, size_t size);
int ov_meta_set(const struct overlay *ov, int fd, const char *key, const void *val, size_t size);
/* Copies FROM's xattrs to TO (both O_PATH fds of non-symlinks), except
 * overlay metadata. */
int ov_copy_xattrs(const struct overlay *ov, int from, int to);
int ov_setxattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                const char *name, const void *value, size_t size, int flags);
ssize_t ov_getxattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                    const char *name, void *value, size_t size);
ssize_t ov_listxattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                     char *list, size_t size);
int ov_removexattr(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                   const char *name);

/* ---- ov_namespace.c: creating, removing and renaming ---- */
int ov_mknod(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
             const char *name, mode_t mode, dev_t rdev, struct fsb_entry *out);
int ov_mkdir(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
             const char *name, mode_t mode, struct fsb_entry *out);
int ov_symlink(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
               const char *name, const char *target, struct fsb_entry *out);
int ov_link(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
            uint64_t newparent, const char *newname, struct fsb_entry *out);
int ov_unlink(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
              const char *name);
int ov_rmdir(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
             const char *name);
int ov_rename(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
              const char *name, uint64_t newparent, const char *newname, unsigned flags);
/* Makes room for a new upper name: removes a whiteout at NAME (true in
 * *had_whiteout, so that a failed create can put it back). */
int ov_clear_whiteout(struct overlay *ov, struct ov_node *parent, const char *name,
                      bool *had_whiteout);
void ov_restore_whiteout(struct overlay *ov, struct ov_node *parent, const char *name);

/* ---- ov_files.c: open files (fh = layer's fh * 2 + 1 for upper) ---- */
int ov_open(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid, int flags,
            uint64_t *fh);
int ov_create(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
              const char *name, mode_t mode, int flags, struct fsb_entry *out, uint64_t *fh);
void ov_file_ops(struct fsb_backend_ops *ops);
/* The UPPER instance's handle behind FH, or FSB_NO_FH (none, or LOWER's). */
uint64_t ov_upper_fh(uint64_t fh);
/* Whether the caller's ids may do MASK on an object of ST (the lower
 * layer is checked by its modes: it may sit on a read-only mount, which
 * must not turn a write that copies up into EROFS). */
bool ov_mode_permits(const struct overlay *ov, const struct fsb_ctx *ctx,
                     const struct stat *st, int mask);

/* ---- overlay.c ---- */
/* access(2) of the merged object N for the caller: UPPER's check where N
 * is there; for a LOWER-only N, W_OK by LOWER's modes (a write would copy
 * up, so LOWER's read-only mount must not answer EROFS).  The check every
 * change makes before it copies anything up. */
int ov_may(struct overlay *ov, const struct fsb_ctx *ctx, struct ov_node *n, int mask);
/* N's top layer (UPPER if N is there) and N's node id in it. */
struct fsb_backend *ov_top(struct overlay *ov, struct ov_node *n, uint64_t *id);
/* The attributes of N's top layer (st_ino: the layer's). */
int ov_top_attr(struct overlay *ov, struct ov_node *n, struct stat *st);

/* ---- ov_dirs.c: merged directories ---- */
/* The merged listing (without . and ..) of the directory made of the
 * layer nodes UP and LOW (0: none). */
int ov_list(struct overlay *ov, uint64_t up, uint64_t low, struct ov_dirent **out,
            size_t *count);
/* Removes the directory NAME in DIRFD with everything below it (our own
 * staging entries: no symlink is followed, nothing outside is touched). */
int ov_remove_tree(int parent, const char *name);
void ov_list_free(struct ov_dirent *e, size_t count);
void ov_dir_ops(struct fsb_backend_ops *ops);
void ov_dirs_destroy(struct overlay *ov);

#endif
