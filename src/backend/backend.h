/*
 * backend.h - the interface every filesystem backend implements.
 *
 * Inode based, like the FUSE low-level API: objects are named by node ids
 * that the backend hands out in lookup-like calls (struct fsb_entry) and
 * takes back with forget().  One backend instance serves one session, so a
 * node id is only meaningful inside the session that received it: a forged
 * or foreign id is unknown to the instance and gets -ESTALE.
 *
 * Frontends (the FUSE engine; later the matchlock frontend) validate guest
 * input before calling in: names are single components (no '/', no NUL,
 * not empty, at most NAME_MAX bytes), sizes are bounded.  Every call
 * returns 0 or a byte count on success and a negative errno on failure.
 * All calls are thread safe.
 */
#ifndef FSB_BACKEND_H
#define FSB_BACKEND_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>

#define FSB_ROOT_NODEID 1

struct fsb_pipe; /* common/splice_io.h */

/* Who is asking: the guest process's credentials. */
struct fsb_ctx {
    uint32_t uid;
    uint32_t gid;
    uint32_t pid;
    /* The caller lacks CAP_FSETID (the guest kernel said so with a
     * KILL_SUIDGID flag): a write or truncate must clear the file's
     * set-user-ID and set-group-ID bits, as a local filesystem does. */
    bool kill_suidgid;
    /* The caller's umask, for a creation the guest kernel did not mask
     * (FUSE_DONT_MASK): applied by the host kernel, which skips it when
     * the parent has a default ACL.  0 when the guest already applied it. */
    uint32_t umask;
    /* FUSE_CREATE_SUPP_GROUP: the parent directory's group, which the
     * caller is in through a supplementary group (has_create_gid). */
    bool has_create_gid;
    uint32_t create_gid;
};

struct fsb_entry {
    uint64_t nodeid;
    uint64_t generation;
    struct stat attr;
};

/* Which fields of struct fsb_setattr to apply. */
enum {
    FSB_SET_MODE = 1 << 0,
    FSB_SET_UID = 1 << 1,
    FSB_SET_GID = 1 << 2,
    FSB_SET_SIZE = 1 << 3,
    FSB_SET_ATIME = 1 << 4,
    FSB_SET_MTIME = 1 << 5,
    FSB_SET_ATIME_NOW = 1 << 6,
    FSB_SET_MTIME_NOW = 1 << 7,
    /* The guest kernel's own time update (writeback cache: it records
     * mtime/ctime locally and flushes them through an open handle). */
    FSB_SET_KERNEL_TIMES = 1 << 8,
};

struct fsb_setattr {
    unsigned valid;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    off_t size;
    struct timespec atime;
    struct timespec mtime;
};

/* "No open handle": getattr and setattr may come with or without one. */
#define FSB_NO_FH UINT64_MAX
/* The kernel's __FMODE_EXEC (include/linux/fs.h), in open flags: an open to
 * run the file. */
#define FSB_OPEN_EXEC 040

/* readdir hands each entry to a filler; it returns false when the reply
 * buffer is full (the entry was not taken). */
struct fsb_dirent {
    const char *name;
    uint64_t ino;
    uint32_t type; /* DT_* */
    uint64_t next_offset;
    const struct fsb_entry *entry; /* readdirplus only; NULL for . and .. */
};
typedef bool (*fsb_dir_filler)(void *cookie, const struct fsb_dirent *d);

/* For lock waits: the backend polls this so that INTERRUPT and session end
 * can stop a blocked SETLKW. */
typedef bool (*fsb_cancelled_fn)(void *cookie);

#define FSB_LOCK_TO_EOF INT64_MAX

struct fsb_lock {
    int type; /* F_RDLCK, F_WRLCK, F_UNLCK */
    off_t start;
    off_t end; /* inclusive; FSB_LOCK_TO_EOF for "to end of file" */
    pid_t pid;
    /* The guest's lock owner (its kernel's files_struct, hashed): what a
     * process's record locks have in common, so that any close of that
     * process can drop them (flush). */
    uint64_t owner;
};

struct fsb_backend;

struct fsb_backend_ops {
    void (*destroy)(struct fsb_backend *be);

    int (*lookup)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                  const char *name, struct fsb_entry *out);
    /* Returns whether the guest now holds no lookup of NODEID (none known
     * included): its kernel has no inode of it, so no file of it is open. */
    bool (*forget)(struct fsb_backend *be, uint64_t nodeid, uint64_t nlookup);
    int (*getattr)(struct fsb_backend *be, uint64_t nodeid, uint64_t fh, struct stat *out);
    int (*setattr)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                   uint64_t fh, const struct fsb_setattr *set, struct stat *out);
    int (*readlink)(struct fsb_backend *be, uint64_t nodeid, char *buf, size_t size);

    int (*mknod)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                 const char *name, mode_t mode, dev_t rdev, struct fsb_entry *out);
    int (*mkdir)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                 const char *name, mode_t mode, struct fsb_entry *out);
    /* Optional (NULL: never).  Whether directory NODEID, which the session
     * has just made, holds no entry now and finds names by their exact
     * bytes only (FSB_DIR_EMPTY), and also every later change of its
     * entries that the session does not make itself will be pushed to the
     * session (FSB_DIR_EMPTY_WATCHED: cache=coherent with a change watch
     * that sees the whole filesystem): then the session may take a name
     * it has not created there for missing, for good or for a timeout
     * (stream_hello.h, FSB_NOTIFY_EMPTY_DIR). */
    enum fsb_dir_state (*empty_dir)(struct fsb_backend *be, uint64_t nodeid);
    int (*symlink)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                   const char *name, const char *target, struct fsb_entry *out);
    int (*link)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                uint64_t newparent, const char *newname, struct fsb_entry *out);
    int (*unlink)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                  const char *name);
    int (*rmdir)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                 const char *name);
    int (*rename)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                  const char *name, uint64_t newparent, const char *newname,
                  unsigned flags);

    /* FLAGS: the guest's open flags; with FSB_OPEN_EXEC, an open to run
     * the file, which needs execute permission rather than read. */
    int (*open)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                int flags, uint64_t *fh);
    int (*create)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                  const char *name, mode_t mode, int flags, struct fsb_entry *out,
                  uint64_t *fh);
    /* An unnamed file in PARENT (O_TMPFILE), open; LINK may name it later. */
    int (*tmpfile)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t parent,
                   mode_t mode, int flags, struct fsb_entry *out, uint64_t *fh);
    ssize_t (*read)(struct fsb_backend *be, uint64_t fh, off_t off, const struct iovec *iov,
                    int cnt);
    /* Optional (NULL: the engine uses read).  The same read, into the pipe
     * P (empty, with room for SIZE bytes at OFF: fsb_pipe_file_slots)
     * without copying: splice(2) from the host file.  Returns the bytes
     * moved (fewer than SIZE only at end of file) or -errno, with nothing
     * left in the pipe then; -EINVAL when the file cannot be spliced, so
     * that the engine reads it instead. */
    ssize_t (*read_to_pipe)(struct fsb_backend *be, uint64_t fh, off_t off, size_t size,
                            struct fsb_pipe *p);
    ssize_t (*write)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh, off_t off,
                     const struct iovec *iov, int cnt);
    /* At every close(2) in the guest: the record locks LOCK_OWNER holds on
     * the file go, through whichever handle they were taken (POSIX). */
    int (*flush)(struct fsb_backend *be, uint64_t fh, uint64_t lock_owner);
    /* The same for a close of a file the host never opened (a lazy
     * handle no request used): LOCK_OWNER's record locks on NODEID's file
     * go, and nothing else happens. */
    int (*drop_locks)(struct fsb_backend *be, uint64_t nodeid, uint64_t lock_owner);
    int (*release)(struct fsb_backend *be, uint64_t fh);
    int (*fsync)(struct fsb_backend *be, uint64_t fh, bool datasync);
    int (*fallocate)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t fh, int mode,
                     off_t off, off_t len);
    off_t (*lseek)(struct fsb_backend *be, uint64_t fh, off_t off, int whence);
    ssize_t (*copy_file_range)(struct fsb_backend *be, const struct fsb_ctx *ctx,
                               uint64_t fh_in, off_t off_in, uint64_t fh_out, off_t off_out,
                               size_t len);

    int (*opendir)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                   uint64_t *fh);
    int (*readdir)(struct fsb_backend *be, uint64_t nodeid, uint64_t fh, uint64_t offset,
                   bool plus, fsb_dir_filler fill, void *cookie);
    int (*releasedir)(struct fsb_backend *be, uint64_t fh);
    int (*fsyncdir)(struct fsb_backend *be, uint64_t fh, bool datasync);

    int (*statfs)(struct fsb_backend *be, uint64_t nodeid, struct statvfs *out);
    int (*access)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                  int mask);
    int (*setxattr)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                    const char *name, const void *value, size_t size, int flags);
    /* getxattr/listxattr: size 0 asks for the needed size; returns bytes. */
    ssize_t (*getxattr)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                        const char *name, void *value, size_t size);
    ssize_t (*listxattr)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                         char *list, size_t size);
    int (*removexattr)(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                       const char *name);

    /* POSIX record locks (per open handle) and flock(). */
    int (*getlk)(struct fsb_backend *be, uint64_t fh, struct fsb_lock *lock);
    int (*setlk)(struct fsb_backend *be, uint64_t fh, const struct fsb_lock *lock, bool wait,
                 fsb_cancelled_fn cancelled, void *cookie);
    int (*flock)(struct fsb_backend *be, uint64_t fh, int op, bool wait,
                 fsb_cancelled_fn cancelled, void *cookie);
    int (*syncfs)(struct fsb_backend *be);
};

enum fsb_dir_state { FSB_DIR_NOT_EMPTY, FSB_DIR_EMPTY, FSB_DIR_EMPTY_WATCHED };

struct fsb_backend {
    const struct fsb_backend_ops *ops;
};

#endif
