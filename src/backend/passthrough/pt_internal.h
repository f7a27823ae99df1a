/*
 * pt_internal.h - what the passthrough backend's files share.
 */
#ifndef FSB_PT_INTERNAL_H
#define FSB_PT_INTERNAL_H

#include "backend/passthrough/credentials.h"
#include "backend/passthrough/inode_table.h"
#include "backend/passthrough/passthrough.h"

#include <pthread.h>

/* An open file or directory of the guest. */
struct pt_handle {
    int fd;
    unsigned refs;   /* the open itself + operations using fd now */
    bool is_dir;
    bool closed;     /* released by the guest; freed when refs reach 0 */
    dev_t dev;       /* the inode, for finding lock holders */
    ino_t ino;
    pid_t lock_pid;  /* guest pid of the last record lock taken, or 0 */
    uint64_t lock_owner; /* guest lock owner of that lock (fsb_lock.owner) */
    bool has_locked; /* took a record lock: on its inode's locker list */
    uint64_t next_locker; /* that list: the next handle, or PT_NO_HANDLE */
    uint64_t next_free;
};

#define PT_NO_HANDLE UINT64_MAX
/* Buckets of the locker lists (a power of two): handles that took record
 * locks, chained by inode, so that FLUSH and GETLK look only at the
 * handles of their own inode (and the few that share its bucket). */
#define PT_LOCKER_BUCKETS 256

struct passthrough {
    struct fsb_backend base;
    struct inode_table inodes;
    bool switch_creds;
    bool trust_guest_groups;
    bool writeback;
    bool allow_devices;
    const char *mapped_caps_xattr; /* passthrough_config's */
    struct fsb_guest *guest;   /* budgets (common/budget.h); may be NULL */
    struct change_watch *watch; /* cache=coherent: the export's, else NULL */
    struct change_sub *sub;     /* set by passthrough_track */
    unsigned test_join_delay_ms; /* passthrough_config's */

    pthread_mutex_t handles_lock;
    struct pt_handle *handles; /* index = fh */
    unsigned nhandles, capacity, max_handles, open_handles;
    uint64_t free_head;        /* PT_NO_HANDLE: none */
    uint64_t lockers[PT_LOCKER_BUCKETS]; /* heads of the locker lists */
};

static inline struct passthrough *pt_of(struct fsb_backend *be)
{
    return (struct passthrough *)be;
}

/*
 * PT_AS_CALLER(pt, ctx, err, stmt, fd...) runs STMT, which sets ERR, as the
 * guest caller (credentials.h).  FUSE carries the caller's uid and gid but
 * not its supplementary groups, so an access the caller has only through
 * one of them fails on the host with EACCES.  When the session's guest
 * checks permissions itself (fsbridge-mount mounts with
 * default_permissions), STMT then runs once more with the groups of the
 * inodes behind the FDs lent to the caller: the guest kernel already
 * decided that the caller may use them, and this is no new power, since a
 * hostile guest root may take any uid and gid anyway.
 */
#define PT_AS_CALLER(pt, ctx, err, stmt, ...)                                  \
    PT_ENTERED_AS_CALLER(cred_enter, pt, ctx, err, stmt, __VA_ARGS__)
/* For a creation of an inode with a mode: the caller's umask applies. */
#define PT_CREATING_AS_CALLER(pt, ctx, err, stmt, ...)                         \
    PT_ENTERED_AS_CALLER(cred_enter_creating, pt, ctx, err, stmt, __VA_ARGS__)
#define PT_ENTERED_AS_CALLER(enter, pt, ctx, err, stmt, ...)                   \
    do {                                                                       \
        const int group_fds_[] = { __VA_ARGS__ };                              \
        (err) = enter((ctx), (pt)->switch_creds);                              \
        if ((err) == 0) {                                                      \
            stmt;                                                              \
            if ((err) == -EACCES &&                                            \
                pt_lend_groups((pt), (ctx), group_fds_,                        \
                               (int)(sizeof(group_fds_) / sizeof(int))))       \
                stmt;                                                          \
            cred_leave((pt)->switch_creds);                                    \
        }                                                                      \
    } while (0)

/* Lends the groups owning FDS' inodes (see PT_AS_CALLER); true if any. */
bool pt_lend_groups(struct passthrough *pt, const struct fsb_ctx *ctx, const int *fds, int n);

/* Tell the export's other sessions (change_watch.h) what this one
 * changed: the data from OFF, LEN bytes (0: to the end; OFF < 0: only
 * attributes) of an inode, or a name in directory DIR.  No-ops without a
 * watcher. */
void pt_note_inode(struct passthrough *pt, dev_t dev, ino_t ino, int64_t off, int64_t len);
void pt_note_entry(struct passthrough *pt, const struct pt_inode *dir, const char *name);
/* The same for the inode of open file FH. */
void pt_note_handle(struct passthrough *pt, uint64_t fh, int64_t off, int64_t len);
/* Ends passthrough_track's subscription for good (before the inode table
 * goes). */
void pt_untrack_free(struct passthrough *pt);

/* The /proc/self/fd directory, for reopening O_PATH fds with real flags. */
extern int pt_proc_self_fd;

/* Resolves NODEID to a pinned O_PATH fd; *inode must go back through
 * pt_unpin().  Returns the fd or -errno (-ESTALE for unknown ids). */
int pt_pin(struct passthrough *pt, uint64_t nodeid, struct pt_inode **inode);
void pt_unpin(struct passthrough *pt, struct pt_inode *inode);

/* Opens the inode behind O_PATH fd FD with FLAGS, as the caller. */
int pt_reopen(int fd, int flags);

/* Whether the directory behind O_PATH fd FD holds no name but "." and
 * "..", and no name can be found there but by its exact bytes (false
 * when it cannot be read, or is casefolded: passthrough_dirs.c). */
bool pt_dir_is_empty(int fd);

/* The backend's empty_dir (pt_changes.c). */
enum fsb_dir_state pt_empty_dir(struct fsb_backend *be, uint64_t nodeid);

/* Looks NAME up in DIRFD and records it: fills OUT. */
int pt_lookup_at(struct passthrough *pt, int dirfd, const char *name, struct fsb_entry *out);

/* Records the inode of the open fd FD (not consumed) in the table. */
int pt_remember_fd(struct passthrough *pt, int fd, struct fsb_entry *out);

/* Open-handle table.  The fd of a new handle is granted from the guest's
 * budget before it is opened (so the budget holds even while opens run):
 * pt_handle_grant() returns 0 or -EMFILE/-ENFILE; a grant is used up by
 * pt_handle_add (given back if that fails) or returned with
 * pt_handle_ungrant when the open fails. */
int pt_handle_grant(struct passthrough *pt);
void pt_handle_ungrant(struct passthrough *pt);
int64_t pt_handle_add(struct passthrough *pt, int fd, bool is_dir, const struct stat *st);
/* Returns the fd of FH with a use reference, or -EBADF. */
int pt_handle_get(struct passthrough *pt, uint64_t fh, bool want_dir);
void pt_handle_put(struct passthrough *pt, uint64_t fh);
/* Called with handles_lock held.  FH took a record lock as guest OWNER,
 * PID: it joins its inode's locker list (or updates its place there). */
void pt_handle_note_locker(struct passthrough *pt, uint64_t fh, uint64_t owner, pid_t pid);
/* Called with handles_lock held: FH's lock owner (and pid) forgotten, and
 * FH off its locker list. */
void pt_handle_forget_locker(struct passthrough *pt, uint64_t fh);
/* Called with handles_lock held: the first handle on the locker list of
 * the inode DEV, INO (and of the other inodes of its bucket: check
 * dev/ino), then the next with ->next_locker, up to PT_NO_HANDLE. */
uint64_t pt_first_locker(const struct passthrough *pt, dev_t dev, ino_t ino);
/* fsync(2), or fdatasync(2) when DATASYNC, of FH (a directory's if IS_DIR):
 * FSYNC and FSYNCDIR.  Returns 0 or -errno. */
int pt_handle_fsync(struct passthrough *pt, uint64_t fh, bool is_dir, bool datasync);
int pt_handle_close(struct passthrough *pt, uint64_t fh, bool want_dir);
/* Before the first handle; 0 or -ENOMEM (then pt_handles_destroy). */
int pt_handles_init(struct passthrough *pt);
void pt_handles_destroy(struct passthrough *pt);

/* Operations of passthrough_files.c and passthrough_dirs.c. */
int pt_open(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid, int flags,
            uint64_t *fh);
int pt_create(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
              const char *name, mode_t mode, int flags, struct fsb_entry *out, uint64_t *fh);
int pt_tmpfile(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent, mode_t mode,
               int flags, struct fsb_entry *out, uint64_t *fh);
ssize_t pt_read(struct fsb_backend *be, uint64_t fh, off_t off, const struct iovec *iov,
                int cnt);
ssize_t pt_read_to_pipe(struct fsb_backend *be, uint64_t fh, off_t off, size_t size,
                        struct fsb_pipe *p);
ssize_t pt_write(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh, off_t off,
                 const struct iovec *iov, int cnt);
int pt_flush(struct fsb_backend *be, uint64_t fh, uint64_t lock_owner);
int pt_drop_locks(struct fsb_backend *be, uint64_t nodeid, uint64_t lock_owner);
int pt_release(struct fsb_backend *be, uint64_t fh);
int pt_fsync(struct fsb_backend *be, uint64_t fh, bool datasync);
int pt_fallocate(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh, int mode,
                 off_t off, off_t len);
off_t pt_lseek(struct fsb_backend *be, uint64_t fh, off_t off, int whence);
ssize_t pt_copy_file_range(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh_in,
                           off_t off_in,
                           uint64_t fh_out, off_t off_out, size_t len);
int pt_getlk(struct fsb_backend *be, uint64_t fh, struct fsb_lock *lock);
int pt_setlk(struct fsb_backend *be, uint64_t fh, const struct fsb_lock *lock, bool wait,
             fsb_cancelled_fn cancelled, void *cookie);
int pt_flock(struct fsb_backend *be, uint64_t fh, int op, bool wait, fsb_cancelled_fn cancelled,
             void *cookie);

int pt_opendir(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
               uint64_t *fh);
int pt_readdir(struct fsb_backend *be, uint64_t nodeid, uint64_t fh, uint64_t offset, bool plus,
               fsb_dir_filler fill, void *cookie);
int pt_releasedir(struct fsb_backend *be, uint64_t fh);
int pt_fsyncdir(struct fsb_backend *be, uint64_t fh, bool datasync);

#endif
