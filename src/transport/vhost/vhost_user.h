/*
 * vhost_user.h - the backend side of the vhost-user protocol: one frontend
 * connection (QEMU, Cloud Hypervisor), its memory table and virtqueues, one
 * thread per running queue.  It knows nothing of FUSE: each request popped
 * from a queue goes to the device (virtio_fs.c), which completes it now or
 * later, from any thread.
 */
#ifndef FSB_VHOST_USER_H
#define FSB_VHOST_USER_H

#include "transport/vhost/virtqueue.h"

#include <stdint.h>

/* Queue 0 (hiprio) and up to 16 request queues. */
#define VU_MAX_QUEUES 17

struct vu_queue;

struct vu_device_ops {
    /* Virtio feature bits of the device, beyond the ring features. */
    uint64_t features;
    /* A queue thread with nothing to do watches the ring this long at most
     * before it sleeps for the kick (common/halt_poll.h); 0: never. */
    unsigned poll_us;
    /* Request E arrived on queue Q (e->more: others wait in the ring behind
     * it, and may run in parallel).  The device owns E and must pass it to
     * vu_complete exactly once, from any thread. */
    void (*request)(void *dev, struct vu_queue *q, struct vq_element *e);
    /* A queue is stopping: wake requests waiting for something the guest
     * may never send (a lock holder's unlock), so that they complete. */
    void (*interrupt_waits)(void *dev);
    /* The frontend reset the device (RESET_DEVICE, RESET_OWNER) or went
     * away: forget the guest's state. */
    void (*reset)(void *dev);
};

/* Returns E to the guest with LEN reply bytes and frees it. */
void vu_complete(struct vu_queue *q, struct vq_element *e, uint32_t len);
unsigned vu_queue_index(const struct vu_queue *q);

/*
 * Serves the frontend connected on CONN_FD until it disconnects (returns
 * 0), breaks the protocol beyond recovery (returns -EPROTO), or STOP_FD
 * becomes readable (returns 0).  Stops every queue and waits for every
 * request before returning; closes CONN_FD.
 */
int vhost_user_serve(int conn_fd, const struct vu_device_ops *ops, void *dev, int stop_fd);

#endif
