/*
 * pending.h - the set of requests the relay has sent to the host and not
 * yet seen answered.
 *
 * Each entry maps a request's unique to the queue it came from (its
 * struct reply_dest, relay_internal.h): with cloned fds every fd has its own
 * processing queue in the kernel, so a reply is only accepted on the fd
 * that carried the request, and an io_uring request is answered through
 * its ring entry.  The set also
 * bounds how many requests are in flight (a slow host then stalls the
 * reader threads instead of growing memory), and when the connection is
 * lost it is the list of requests the relay must fail itself, so that no
 * guest process waits forever.
 */
#ifndef FSB_MOUNT_PENDING_H
#define FSB_MOUNT_PENDING_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/u64_table.h"

/* Most requests in flight at once.  The kernel's own default congestion
 * threshold is far lower for background requests; 256 keeps a fast host
 * busy without letting a stalled one pin unbounded memory. */
#define PENDING_MAX 256
/* Open addressing at load <= 1/4: probes stay short. */
#define PENDING_SLOTS (4 * PENDING_MAX)

struct reply_dest;

struct pending {
    pthread_mutex_t lock;
    pthread_cond_t room; /* signalled when an entry leaves or the set closes */
    bool closed;
    struct fsb_u64_table table; /* unique -> struct reply_dest */
    struct fsb_u64_slot slots[PENDING_SLOTS];
};

void pending_init(struct pending *p);

/*
 * Records that request UNIQUE, from DEST, awaits a reply.  Blocks while
 * PENDING_MAX requests are in flight.  Returns 0, -ENOTCONN once the set is
 * closed (the connection is gone: answer the request locally), or -EEXIST
 * for a unique already in flight (a kernel bug; never expected).
 */
int pending_add(struct pending *p, uint64_t unique, struct reply_dest *dest);

/* pending_add() that does not wait: -EAGAIN while the set is full. */
int pending_try_add(struct pending *p, uint64_t unique, struct reply_dest *dest);

/* Removes UNIQUE and returns its destination, or NULL if it is not in
 * flight. */
struct reply_dest *pending_take(struct pending *p, uint64_t unique);

/* Makes DEST where UNIQUE's reply goes; returns where it went, or NULL
 * (nothing done) if UNIQUE is not in flight. */
struct reply_dest *pending_swap(struct pending *p, uint64_t unique, struct reply_dest *dest);

/* Returns the destination of UNIQUE without removing it, or NULL. */
struct reply_dest *pending_find(struct pending *p, uint64_t unique);

/*
 * Closes the set: later pending_add() calls fail with -ENOTCONN.  Calls
 * FAIL(unique, dest, arg) for every entry still in flight, under the lock (so
 * no reply can race with it), then empties the set.
 */
void pending_close(struct pending *p,
                   void (*fail)(uint64_t unique, struct reply_dest *dest, void *arg),
                   void *arg);

#endif
