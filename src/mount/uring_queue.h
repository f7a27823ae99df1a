/*
 * uring_queue.h - one FUSE-over-io_uring queue of the relay: the kernel
 * side of a per-CPU queue (relay.h has the whole picture).
 *
 * The contract (Linux fs/fuse/dev_uring.c,
 * Documentation/filesystems/fuse/fuse-io-uring.rst):
 *
 *   - the INIT reply sets FUSE_OVER_IO_URING (init_filter.h); from then on
 *     the kernel holds new requests back until every queue has an entry;
 *   - one queue per possible CPU (qid = CPU number); a program's request
 *     goes to the queue of the CPU it runs on;
 *   - each queue registers DEPTH entries, each an IORING_OP_URING_CMD on
 *     the /dev/fuse fd (128-byte SQEs: the command struct is in the SQE)
 *     with an iovec pair, a header and a payload buffer (fuse_uring_abi.h);
 *   - the command completes when the kernel has put a request in the entry;
 *     the reply goes back in the same buffers with COMMIT_AND_FETCH, which
 *     also hands the entry back for the next request.
 *
 * Per queue one thread owns the ring and is its only submitter (the kernel
 * copies a request into the entry in the task that submitted the entry's
 * command: the thread that waits on the ring, so nothing else is woken).
 * It reads requests from completions and sends them to the host on the
 * queue's connection.  When the connection is the queue's own, the thread
 * also reads the replies, through a poll of the socket in the same ring,
 * and commits each entry as its reply comes: one thread, one CPU, end to
 * end.  When queues share connections (fewer than rings), the replies
 * arrive on the connection's reader thread, which copies them into the
 * entry and marks it done; an eventfd polled through the ring wakes the
 * queue thread, which commits every done entry.
 *
 * While the host owes the queue replies, the thread first looks for a
 * completion without sleeping, for an adaptive window of at most poll_us
 * (halt_poll.h), then sleeps in io_uring_enter as before: a reply caught
 * in the spin costs no wake-up.  With no reply owed (an idle mount, or
 * requests yet to come) it sleeps at once.
 *
 * Errors at setup (no io_uring, a kernel that refuses the registration)
 * are returned so the relay can fall back to /dev/fuse queues, which the
 * kernel itself does when a REGISTER fails.
 */
#ifndef FSB_MOUNT_URING_QUEUE_H
#define FSB_MOUNT_URING_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "mount/relay_internal.h"

/*
 * Entries per queue: requests one CPU may have in flight; more wait in the
 * kernel until an entry is committed.  A request that blocks on the host
 * holds its entry, so a ring full of lock waits would hold back the
 * unlock that ends them: a deadlock.  The host lets a connection have at
 * most 64 lock waits (more fail with ENOLCK at once) and a ring sends on
 * one connection, so a ring of 64 + 16 can never fill with them.  Payload buffers are reserved, not committed,
 * memory (MAP_NORESERVE): an entry costs RAM only for what it carried.
 */
#define URING_QUEUE_DEPTH 80

struct uring_queue_config {
    unsigned qid;            /* the CPU the queue serves */
    int dev_fd;              /* the session's /dev/fuse fd */
    size_t payload_size;     /* per entry: >= the kernel's max payload */
    unsigned poll_us;        /* reply spin limit (halt_poll.h), 0: sleep at once */
};

struct uring_queue;

/* Queues the kernel wants (its possible CPUs), or -errno. */
int uring_queue_count(void);

/* Starts the queue's thread and its ring, registering nothing yet.
 * Returns 0 or -errno (e.g. io_uring unavailable). */
int uring_queue_create(const struct uring_queue_config *cfg, struct uring_queue **out);

/* Once the INIT reply enabled FUSE_OVER_IO_URING: registers the entries;
 * their requests go to the host on CONN, and with READS_CONN the queue's
 * thread reads CONN's replies (CONN is the queue's alone, with no reader
 * thread).  Returns 0 or the kernel's -errno (the kernel then uses
 * /dev/fuse). */
int uring_queue_register(struct uring_queue *q, struct relay_conn *conn, bool reads_conn);

/* Instead of registering: lets the thread end. */
void uring_queue_discard(struct uring_queue *q);

/* On a queue's thread: submits the commits prepared so far (replies read
 * while the thread waits inside a forward, relay.c); elsewhere nothing. */
void uring_queue_submit_here(void);

#endif
