/*
 * budget.h - what one guest may hold of the daemon, and the fd pool all
 * guests share.
 *
 * Limits per session do not protect guests from each other: a guest opens
 * as many sessions as it likes (a mount opens one connection per queue).
 * So everything a guest can make the daemon hold is counted on the guest:
 * open files and directories (fds), looked-up inodes (memory), request and
 * reply bytes in flight (memory), worker and lock-wait threads, and
 * connections.  A session points at its guest; a connection that joins a
 * session counts on that session's guest.
 *
 * On top of the per-guest budgets, the fds of every guest together come
 * from one pool sized at start-up from RLIMIT_NOFILE, less a reserve the
 * daemon keeps for itself (accept, logging, the signalfd, control paths):
 * however the budgets are set, guests cannot take those fds.
 *
 * A guest pointer may be NULL (unit tests, the fuzzers): then only the
 * pool applies.
 */
#ifndef FSB_BUDGET_H
#define FSB_BUDGET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fsb_budget_kind {
    FSB_BUDGET_OPEN,     /* open files, directories, permanent inode fds */
    FSB_BUDGET_INODES,   /* looked-up inodes */
    FSB_BUDGET_QUEUED,   /* bytes of requests and replies in flight */
    FSB_BUDGET_THREADS,  /* worker and lock-wait threads */
    FSB_BUDGET_SESSIONS, /* connections (native, joined, matchlock) */
    FSB_BUDGET_KINDS
};

/* The most a guest may hold of each kind; 0 means no limit. */
struct fsb_budget_limits {
    size_t max[FSB_BUDGET_KINDS];
};

struct fsb_guest {
    char name[64];                          /* for log lines */
    const struct fsb_budget_limits *limits;
    _Atomic size_t used[FSB_BUDGET_KINDS];
    _Atomic int64_t last_log[FSB_BUDGET_KINDS]; /* rate limit, monotonic s */
    _Atomic unsigned refused[FSB_BUDGET_KINDS]; /* since the last log line */
    /* Readers waiting for the guest's queued bytes to drain. */
    pthread_mutex_t lock;
    pthread_cond_t drained;
};

void fsb_guest_init(struct fsb_guest *g, const char *name, const struct fsb_budget_limits *l);
void fsb_guest_destroy(struct fsb_guest *g);

/* Takes N of kind K.  Returns 0, or (nothing taken) -EMFILE when an fd
 * would pass the guest's budget or -ENFILE the shared pool, -ENFILE for
 * inodes, -EAGAIN for threads and sessions.  Each refusal is logged, at
 * most once per 10 s per guest and kind. */
int fsb_guest_take(struct fsb_guest *g, enum fsb_budget_kind k, size_t n);
void fsb_guest_give(struct fsb_guest *g, enum fsb_budget_kind k, size_t n);

/* Queued bytes are not refused but waited for: charges N always (a frame
 * already read must be run), and fsb_guest_wait_room() blocks the
 * guest's readers while the guest is over its budget. */
void fsb_guest_charge(struct fsb_guest *g, size_t n);
/* Waits until the guest's queued bytes are under its budget or STOP is
 * set (fsb_guest_wake_all() makes it look). */
void fsb_guest_wait_room(struct fsb_guest *g, const atomic_bool *stop);
void fsb_guest_wake_all(struct fsb_guest *g);
size_t fsb_guest_used(const struct fsb_guest *g, enum fsb_budget_kind k);

/*
 * The fd pool shared by every guest.  RLIMIT_NOFILE less the daemon's
 * reserve is split as fd_cache.c and passthrough.c use it: a quarter for
 * cached inode fds, the rest (the pool) for what guests hold open.
 * fsb_fd_pool_init(0) means no pool (unlimited).
 */
void fsb_fd_pool_init(size_t size);
size_t fsb_fd_pool_size(void);

#endif
