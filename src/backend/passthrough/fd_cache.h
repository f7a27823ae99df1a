/*
 * fd_cache.h - a process-wide, bounded LRU of open O_PATH fds.
 *
 * Inodes are remembered as file handles, not as open fds: a guest may keep
 * far more inodes looked up than the process may open files (RLIMIT_NOFILE
 * is often 1,024 or 20,000 and cannot be raised).  The fds of recently used
 * inodes are kept here; the least recently used unpinned one is closed when
 * the cache is full.  An fd is pinned while an operation uses it, so it is
 * never closed (and its number reused) under a running syscall.
 *
 * Entries whose inode has no file handle (filesystems without export
 * support, or no CAP_DAC_READ_SEARCH) are "permanent": they hold their fd
 * until the inode is forgotten and are never evicted.
 */
#ifndef FSB_FD_CACHE_H
#define FSB_FD_CACHE_H

#include <stdbool.h>

struct fd_cache_entry {
    int fd;           /* -1 when not open */
    unsigned pins;    /* operations using fd right now */
    bool permanent;   /* never evicted */
    bool in_lru;
    struct fd_cache_entry *lru_prev, *lru_next;
};

/* Reopens the entry's fd (an O_PATH fd for the inode); returns fd or -errno. */
typedef int (*fd_cache_reopen_fn)(void *arg);

void fd_cache_init(unsigned capacity);
unsigned fd_cache_capacity(void);

void fd_cache_entry_init(struct fd_cache_entry *e, int fd, bool permanent);

/* Returns a pinned fd for E, reopening it with REOPEN(ARG) if it was
 * evicted, or -errno. */
int fd_cache_pin(struct fd_cache_entry *e, fd_cache_reopen_fn reopen, void *arg);
void fd_cache_unpin(struct fd_cache_entry *e);

/* Gives E the fd FD if it has none (returns true: the cache owns FD now). */
bool fd_cache_offer(struct fd_cache_entry *e, int fd);

/* Closes E's fd; E must not be pinned. */
void fd_cache_entry_destroy(struct fd_cache_entry *e);

/* Closes about half of the evictable fds; true if any was closed.  Called
 * when an open fails with EMFILE/ENFILE, before retrying once. */
bool fd_cache_shrink(void);

/* Runs OPEN_CALL (an expression yielding an fd or -1 with errno set) again
 * after shrinking the cache if it failed for lack of file descriptors. */
#define FD_RETRY_EMFILE(fd_var, open_call)                                     \
    do {                                                                       \
        fd_var = (open_call);                                                  \
        if (fd_var < 0 && (errno == EMFILE || errno == ENFILE) &&              \
            fd_cache_shrink())                                                 \
            fd_var = (open_call);                                              \
    } while (0)

#endif
