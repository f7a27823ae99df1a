/*
 * held_forgets.h - the FORGETs the relay holds back, to send with the next
 * request.
 *
 * The guest kernel forgets a node after the unlink of its last name and
 * whenever it drops an inode.  A FORGET has no reply, but sent by itself it
 * wakes the host's connection thread for one close(): in an unlink loop a
 * wake-up and a write, read and poll per file on top of the unlink's own
 * (bench/README.md, "held forgets").  The relay keeps the (node, count)
 * pairs instead and sends them as one BATCH_FORGET in the writev of the
 * next request it forwards, on that request's connection, ahead of it;
 * at once when they would not fit; and, when no request comes to carry
 * them, from a thread of its own within two HELD_FORGETS_MS, so that an
 * idle mount still lets the host close what the kernel forgot (the space
 * of a file unlinked while the host held its node is freed then).  An
 * idle mount with nothing held costs no wake-up.
 *
 * Order: a held FORGET reaches the host after requests the kernel sent
 * after it.  That is safe: the host counts lookups per node and a FORGET
 * subtracts its count, whenever it comes (a LOOKUP that finds the node
 * again before the held FORGET arrives only keeps the node alive), the
 * connections of a session reorder FORGETs against other requests
 * already, and node ids are never reused within a session.
 */
#ifndef FSB_MOUNT_HELD_FORGETS_H
#define FSB_MOUNT_HELD_FORGETS_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#define HELD_FORGETS_MAX 128 /* pairs held at most */
#define HELD_FORGETS_MS 10

/* One BATCH_FORGET message, built by held_forgets_take. */
struct held_batch {
    struct fuse_in_header ih;
    struct fuse_batch_forget_in in;
    struct fuse_forget_one one[HELD_FORGETS_MAX];
};

struct held_forgets;

/* SEND(ARG, IOV, CNT) writes a message to the host: the flushing thread's
 * way out.  NULL when out of memory or without a thread. */
struct held_forgets *held_forgets_new(void (*send)(void *arg, struct iovec *iov, int cnt),
                                      void *arg);

/* Stops the thread; what is still held is dropped. */
void held_forgets_free(struct held_forgets *h);

/* Request IH (its argument ARG, LEN bytes) is a FORGET or BATCH_FORGET
 * the relay keeps: true.  False for any other request, for a malformed
 * one and for one that does not fit beside what is held: the caller
 * sends it (after what is held, held_forgets_take).  H may be NULL. */
bool held_forgets_hold(struct held_forgets *h, const struct fuse_in_header *ih, const void *arg,
                       size_t len);

/* Moves what is held into *B as one BATCH_FORGET and returns its length
 * (0: nothing held; then *B is untouched).  H may be NULL. */
size_t held_forgets_take(struct held_forgets *h, struct held_batch *b);

#endif
