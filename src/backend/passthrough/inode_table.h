/*
 * inode_table.h - the passthrough backend's known inodes, for one session.
 *
 * An inode is identified on the host by (st_dev, st_ino) and named towards
 * the guest by a node id that is never reused in the session.  It holds a
 * lookup count (the guest kernel's references, dropped by FORGET) and a
 * use count (operations running on it right now); it is freed when both
 * reach zero.  Its host identity is a file handle, reopened on demand
 * through the shared fd cache (fd_cache.h).
 */
#ifndef FSB_INODE_TABLE_H
#define FSB_INODE_TABLE_H

#include "backend/passthrough/fd_cache.h"
#include "common/budget.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

struct pt_inode {
    uint64_t nodeid;
    dev_t dev;
    ino_t ino;
    mode_t type;                /* S_IFMT bits: never changes for an inode */
    uint64_t nlookup;           /* guarded by the table lock */
    unsigned refs;              /* guarded by the table lock */
    int mount_fd;               /* for open_by_handle_at; owned by the table */
    struct file_handle *handle; /* NULL: the fd is permanent */
    struct fd_cache_entry fdc;
    /* The host freed this inode and reused its number for another file
     * (seen by its file handle): reachable by node id only, until the
     * guest forgets it. */
    bool stale;
    uint64_t linked_at;         /* the table's links when it joined (0: the root) */
    struct pt_inode *next_by_id, *next_by_ino;
};

#define PT_MAX_MOUNTS 64

/*
 * A forgotten inode that had a file handle, kept so that the guest can
 * still open it through a file handle of its own (open_by_handle_at in the
 * guest, after its kernel evicted the inode and sent FORGET): the guest's
 * handle holds the node id, and the kernel asks for it with a LOOKUP of
 * "." (FUSE_EXPORT_SUPPORT).  Only the last PT_GHOSTS are kept, as
 * memory and no fd.
 */
struct pt_ghost {
    uint64_t nodeid; /* 0: an empty slot */
    int mount_fd;    /* the table's, for open_by_handle_at */
    struct file_handle *handle;
};

#define PT_GHOSTS 1024

struct inode_table {
    pthread_mutex_t lock;
    struct pt_inode **by_id, **by_ino;
    size_t nbuckets;
    size_t count;
    size_t max_inodes;
    size_t permanent;       /* entries holding a permanent fd (no handle) */
    size_t max_permanent;
    uint64_t next_nodeid;
    /* Entries linked so far (written under the lock, read without it):
     * see inode_table_links. */
    atomic_uint_least64_t links;
    bool use_handles;
    struct fsb_guest *guest; /* each entry counts on its inode budget; a
                              * permanent fd on its open-file budget too */
    struct { dev_t dev; int fd; } mounts[PT_MAX_MOUNTS];
    unsigned nmounts;
    struct pt_ghost *ghosts; /* PT_GHOSTS of them, a ring; NULL without
                              * handles or ghosts (inode_table_init) */
    size_t next_ghost;
};

/* Takes ownership of ROOT_FD (an O_PATH fd of the export root).  Inodes
 * without a file handle (no CAP_DAC_READ_SEARCH, or a filesystem without
 * handles) hold a permanent fd each: at most MAX_PERMANENT of them, beyond
 * which lookups fail with ENFILE instead of taking every fd of the
 * daemon.  KEEP_GHOSTS (with USE_HANDLES) keeps the ring of forgotten
 * nodes that inode_revive brings back: only where a guest sees the node
 * ids.  Entries count on GUEST's budgets (common/budget.h; may be NULL). */
int inode_table_init(struct inode_table *t, int root_fd, size_t max_inodes, size_t max_permanent,
                     bool use_handles, bool keep_ghosts, struct fsb_guest *guest);
void inode_table_destroy(struct inode_table *t);

/* Returns the inode with a use reference, or NULL for an unknown node id. */
struct pt_inode *inode_get(struct inode_table *t, uint64_t nodeid);
void inode_put(struct inode_table *t, struct pt_inode *inode);

/*
 * How many entries have joined the table so far.  Read before a stat,
 * it tells inode_remember whether the entry it finds was in the table
 * when the stat was taken (cache=coherent: the change watcher only counts
 * changes of inodes in the table, change_watch.c).
 */
uint64_t inode_table_links(struct inode_table *t);

/*
 * Records one more guest lookup of the host inode that FD (any fd, owned by
 * the call) refers to, creating the entry if needed.  ST is its stat,
 * taken after inode_table_links returned SINCE; *SETTLED (may be NULL)
 * says whether the entry was in the table already then (so continuously
 * since before ST was taken).  Returns the node id, or -errno (-ENFILE at
 * the session's inode limit).
 */
int64_t inode_remember(struct inode_table *t, int fd, const struct stat *st, uint64_t since,
                       bool *settled);

/*
 * Brings back the forgotten node NODEID (a pt_ghost) with one guest
 * lookup, if its host file still exists (and is not deleted while held
 * open elsewhere) and has no other node id now; fills ST.  Returns NODEID,
 * or -errno: -ESTALE, -ENOMEM, -ENFILE at the inode limit or when the
 * host's fds run out, -EMFILE, or the error of the guest's budget
 * (take_budget).  A shortage of fds keeps the ghost for a later try.
 */
int64_t inode_revive(struct inode_table *t, uint64_t nodeid, struct stat *st);

/* True if the host inode (DEV, INO) has a node id in this session. */
bool inode_is_known(struct inode_table *t, dev_t dev, ino_t ino);

/* The node id of the host inode (DEV, INO) in this session, or 0. */
uint64_t inode_nodeid_of(struct inode_table *t, dev_t dev, ino_t ino);

/* Every node id of the session, in *OUT (malloc'ed; NULL when out of
 * memory, and 0 is returned). */
size_t inode_table_nodeids(struct inode_table *t, uint64_t **out);

/* Drops N lookups of NODEID (an unknown id is ignored, as FORGET has no
 * reply to carry an error). */
/* Returns whether the guest holds no lookup of NODEID now (backend.h). */
bool inode_forget(struct inode_table *t, uint64_t nodeid, uint64_t n);

/* Returns a pinned O_PATH fd for INODE or -errno; unpin with inode_unpin. */
int inode_pin(struct pt_inode *inode);
void inode_unpin(struct pt_inode *inode);

#endif
