/*
 * virtqueue.h - the device side of a split virtqueue (VIRTIO 1.x, 2.7).
 *
 * The rings live in guest memory, which the guest may change at any
 * moment: every descriptor is copied out before it is checked, every
 * address is translated through the memory table with its whole length,
 * chains are bounded and loops end at the bound.  A malformed chain fails
 * that request only (it is returned with length 0 and logged); a broken
 * ring (an avail index the guest cannot have written legitimately) stops
 * the queue and signals its error eventfd.
 *
 * Locking: vq->lock guards the ring state; pop (one thread per queue) and
 * push (whichever thread finished the request) take it.
 */
#ifndef FSB_VIRTQUEUE_H
#define FSB_VIRTQUEUE_H

#include "transport/vhost/guest_memory.h"

#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* Longest chain we accept, as QEMU's VIRTQUEUE_MAX_SIZE; the kernel's
 * virtio-fs uses at most max_pages + a few descriptors. */
#define VQ_MAX_CHAIN 1024
/* A descriptor may span two adjacent regions: a little slack. */
#define VQ_MAX_IOV (VQ_MAX_CHAIN + 16)
#define VQ_MAX_SIZE 32768
/* Requests popped and not yet completed, per queue: what a guest can make
 * us hold (an element is ~16 KiB) however it fills its ring. */
#define VQ_MAX_INFLIGHT 128

/* One popped request: its readable iovecs, then its writable ones. */
struct vq_element {
    uint16_t head;
    bool more;                 /* other requests were waiting behind it */
    int nreadable;
    int nwritable;
    struct guest_memory *mem;  /* the table IOV points into (a reference) */
    struct iovec iov[VQ_MAX_IOV];
};

struct virtqueue {
    pthread_mutex_t lock;
    unsigned index;             /* for log messages */

    /* Set up by the vhost-user messages. */
    uint16_t num;
    uint64_t desc_uva, avail_uva, used_uva;
    bool addr_set;
    bool event_idx;             /* VIRTIO_RING_F_EVENT_IDX negotiated */
    bool indirect;              /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
    int call_fd;                /* -1: none */
    int err_fd;                 /* -1: none */

    /* Valid while started: our addresses of the rings. */
    struct vring vr;
    struct guest_memory *mem;   /* the table the rings were translated with */
    uint16_t last_avail;
    uint16_t used_idx;
    uint16_t signalled_used;
    bool signalled_used_valid;
    bool broken;
    unsigned bad_chains;        /* logged ones, to keep a flood quiet */
};

void vq_init(struct virtqueue *vq, unsigned index);
/* Drops the memory reference and closes the eventfds. */
void vq_destroy(struct virtqueue *vq);

/* Translates the ring addresses with MEM (taking a reference).  Returns
 * false when a ring lies outside the regions or is misaligned.  Called on
 * start and whenever the memory table changes. */
bool vq_map_rings(struct virtqueue *vq, struct guest_memory *mem);

/*
 * Pops the next request into E (with a reference to the memory table).
 * Returns 1 when E holds a request, 0 when the ring is empty, -1 when the
 * ring is broken.  A malformed chain is completed with length 0 here and
 * the next one is tried.
 */
int vq_pop(struct virtqueue *vq, struct vq_element *e);

/* Returns E's buffers to the guest with LEN bytes written, notifies the
 * guest if it wants to be, and drops E's memory reference. */
void vq_push(struct virtqueue *vq, struct vq_element *e, uint32_t len);

/* With EVENT_IDX: asks for a kick for the next request, then says whether
 * one came meanwhile (the caller pops again). */
bool vq_enable_notification(struct virtqueue *vq);

/* Whether the guest has made a request available that is not popped yet
 * (or the ring is broken or gone: the caller pops and finds out). */
bool vq_has_avail(struct virtqueue *vq);

#endif
