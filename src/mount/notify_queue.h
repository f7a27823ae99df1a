/*
 * notify_queue.h - hands the host's notifications (FUSE_NOTIFY_*, unique 0)
 * to the kernel from a thread of their own.
 *
 * Writing an invalidation to /dev/fuse can block: the kernel waits for page
 * or inode locks, and the task holding them may itself be waiting for a
 * reply from the host.  If the thread that delivers replies also wrote
 * notifications, that reply would never be delivered: a deadlock (libfuse
 * warns about the same thing for fuse_lowlevel_notify_inval_*).  So replies
 * and notifications travel separately; the order between them was never
 * guaranteed by FUSE anyway.
 */
#ifndef FSB_MOUNT_NOTIFY_QUEUE_H
#define FSB_MOUNT_NOTIFY_QUEUE_H

#include <stddef.h>

/* Bytes of notifications queued at most.  The reader that pushes them must
 * never wait for room: the delivery thread may be blocked in the kernel
 * until a reply that this reader has still to deliver arrives, so waiting
 * would be a deadlock.  The host bounds its own queue per session (and
 * drops the guest's whole cache when that overflows, engine/notify_out.h),
 * so this bound is only reached by a host gone wrong: notifications beyond
 * it are dropped, with a warning. */
#define NOTIFY_QUEUE_MAX_BYTES (64u << 20)

struct notify_queue;

/* Called by the delivery thread after it wrote a notification (MSG, LEN
 * bytes) to the kernel, with the write's result (0 or -errno); must not
 * block for long. */
typedef void notify_delivered_fn(void *arg, const void *msg, size_t len, int result);

/* Starts the delivery thread writing to DEV_FD; DELIVERED (may be NULL)
 * with ARG after each.  Returns 0 or -errno. */
int notify_queue_start(struct notify_queue **out, int dev_fd, notify_delivered_fn *delivered,
                       void *arg);

/* Queues a copy of MSG (LEN bytes).  Never blocks: drops the message
 * (logged) beyond NOTIFY_QUEUE_MAX_BYTES or when out of memory. */
void notify_queue_push(struct notify_queue *q, const void *msg, size_t len);

#endif
