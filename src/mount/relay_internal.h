/*
 * relay_internal.h - what relay.c shares with its queue kinds
 * (uring_queue.c): where a reply goes, and a host connection.
 */
#ifndef FSB_MOUNT_RELAY_INTERNAL_H
#define FSB_MOUNT_RELAY_INTERNAL_H

#include <linux/fuse.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "common/fdio.h"
#include "common/halt_poll.h"
#include "common/splice_io.h"

/* The queue a request came from, as the pending set records it. */
struct reply_dest {
    /* Hands the kernel one whole reply, LEN >= sizeof(fuse_out_header):
     * the host's, or an error the relay makes up.  Called from a
     * connection's reader thread. */
    void (*deliver)(struct reply_dest *d, const void *msg, size_t len);
    /* The /dev/fuse fd for replies to this request's INTERRUPTs (which the
     * kernel sends through /dev/fuse whatever the queue). */
    int dev_fd;
    /* The reply itself goes to dev_fd (a /dev/fuse queue), so a large one
     * may be spliced there from the socket (relay.c, splice_reply). */
    bool to_dev_fd;
    /* Optional (a ring entry, whose buffers the kernel reads): the buffer
     * for a reply's PAYLOAD bytes, or NULL when they do not fit, so that
     * the reader reads a large payload from the socket straight into it
     * instead of copying it there; then deliver_in_place with the header. */
    void *(*payload_buf)(struct reply_dest *d, size_t payload);
    void (*deliver_in_place)(struct reply_dest *d, const struct fuse_out_header *oh,
                             size_t payload);
};

struct relay;

/* One stream connection to the host. */
struct relay_conn {
    struct relay *relay;
    int sock;
    pthread_mutex_t send_lock; /* one frame at a time */
    /* The reader's; max_frame bytes, so every message fits and is handed
     * to the kernel straight from it. */
    struct fsb_frame_reader replies;
    struct fsb_halt_poll poll; /* the reader's spin before sleeping */
    /* The reader's, for large replies: socket -> pipe -> /dev/fuse.
     * rd < 0: none (it could not be made, or the socket refused a
     * splice), every reply is copied. */
    struct fsb_pipe pipe;
};

/*
 * Sends the request IOV (CNT parts, the first starting with IH, the whole
 * frame IH->len bytes) to the host on C, after recording DEST as where its
 * reply goes.  Answers the request itself with an error when the host is
 * gone.  May block while the pending set is full.
 */
void relay_forward(struct relay_conn *c, struct reply_dest *dest,
                   const struct fuse_in_header *ih, struct iovec *iov, int cnt);

/* relay_forward without the echo's interception and the node table's
 * bookkeeping: for requests that are the relay's own or already seen
 * (host_events.c). */
void relay_send(struct relay_conn *c, struct reply_dest *dest, const struct fuse_in_header *ih,
                struct iovec *iov, int cnt);

/* Answers request UNIQUE (sent on C) with -ERROR now, if it is still in
 * flight, and sends the host's reply to DISCARD when it comes.  Returns
 * whether it was in flight. */
bool relay_abandon(struct relay_conn *c, uint64_t unique, struct reply_dest *discard, int error);

/* For a queue thread that reads its own connection C (uring_queue.c): C's
 * socket is readable; reads the reply there and every one buffered after
 * it, and hands each to its queue.  Returns 0, or -errno when the
 * connection failed (then the relay has ended as a lost host). */
int relay_conn_read_ready(struct relay_conn *c);

/* The calling thread reads C's replies itself (relay_conn_read_ready) and
 * sends on it: then it reads C whenever sending on it or recording a
 * request in flight would wait (relay.c, send_reading), since what it
 * waits for may be its own unread replies. */
void relay_conn_read_here(struct relay_conn *c);

/* Builds the error reply for UNIQUE (-ERROR) and delivers it to DEST. */
void relay_reply_error(struct reply_dest *dest, uint64_t unique, int error);

#endif
