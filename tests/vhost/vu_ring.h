/*
 * vu_ring.h - the driver side of a split virtqueue (VIRTIO 1.x, 2.7), as a
 * guest kernel drives it: a descriptor table, the avail ring we write and
 * the used ring the backend writes, all in the shared guest memory.
 *
 * We keep our own free list and chain records instead of trusting what is
 * in the descriptor table when a chain comes back: the hostile tests make
 * backends scribble over rings, and this side must stay sane to tell.
 *
 * Hostile tests bypass vu_ring_add: they take descriptors with
 * vu_ring_reserve, write them raw and publish any head with
 * vu_ring_publish.
 */
#ifndef VU_RING_H
#define VU_RING_H

#include "vu_mem.h"

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdint.h>

/* Longest chain we put in one indirect table, and in the ring. */
#define VU_INDIRECT_MAX 64
#define VU_MAX_CHAIN 1024

struct vu_buf {
    uint64_t gpa;
    uint32_t len;
};

struct vu_used {
    uint16_t id;
    uint32_t len;
    void *token;     /* what vu_ring_add was given; NULL for raw heads */
    bool known;      /* ID was a chain we had in flight */
};

struct vu_chain {
    void *token;
    uint16_t ndesc;  /* ring descriptors the chain holds */
    bool in_flight;
};

struct vu_ring {
    unsigned index;
    uint16_t num;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct vring vr;
    uint64_t indirect_gpa;          /* NUM tables of VU_INDIRECT_MAX entries */
    struct vring_desc *indirect;
    int kick_fd, call_fd, err_fd;
    bool event_idx, use_indirect;

    uint16_t avail_idx;             /* what we last published */
    uint16_t kicked_idx;            /* avail_idx at the last notify */
    uint16_t last_used;             /* next used entry to read */
    uint16_t free_head, num_free;
    uint16_t *free_next;            /* our free list / chain links */
    struct vu_chain *chains;        /* by head */

    unsigned missed_notifications;  /* used entries that came without a call */
    unsigned unknown_used;          /* used ids we never had in flight */
};

/* Allocates a ring of NUM (a power of two) entries in region 0 of MEM and
 * its eventfds.  Returns 0 or -errno. */
int vu_ring_create(struct vu_ring *r, struct vu_mem *mem, unsigned index, uint16_t num);
void vu_ring_destroy(struct vu_ring *r);
/* Zeroes the ring memory and forgets every chain: a fresh ring, as after a
 * guest reset.  The eventfds stay. */
void vu_ring_reset(struct vu_ring *r);

/* Adds a chain of NREAD device-readable then NWRITE device-writable
 * buffers; through an indirect table when USE_INDIRECT and the chain has
 * more than one buffer.  Publishes it.  Returns the head, or -ENOSPC. */
int vu_ring_add(struct vu_ring *r, const struct vu_buf *bufs, unsigned nread, unsigned nwrite,
                void *token);
/* Kicks the backend if it asked for it (EVENT_IDX, or no NO_NOTIFY flag),
 * or always with FORCE. */
void vu_ring_notify(struct vu_ring *r, bool force);

/* Takes N descriptors out of the free list for good; writes their
 * indices to IDX.  Returns 0 or -ENOSPC. */
int vu_ring_reserve(struct vu_ring *r, unsigned n, uint16_t *idx);
/* Puts HEAD (any value) in the next avail slot and publishes it. */
void vu_ring_publish(struct vu_ring *r, uint16_t head);
/* Publishes a chain the caller wrote into the reserved descriptors IDX[0..N)
 * (IDX[0] the head): when it comes back, they return to the free list and
 * vu_ring_get_used hands back TOKEN. */
void vu_ring_publish_raw(struct vu_ring *r, const uint16_t *idx, unsigned n, void *token);
/* Sets avail->idx to IDX without adding entries (hostile). */
void vu_ring_set_avail_idx(struct vu_ring *r, uint16_t idx);

/* Reads the next used entry into U and frees its chain.  Returns 1, or 0
 * when there is none. */
int vu_ring_get_used(struct vu_ring *r, struct vu_used *u);
bool vu_ring_has_used(struct vu_ring *r);
/* Asks for a call on the next used entry (used_event with EVENT_IDX). */
void vu_ring_want_call(struct vu_ring *r);
/* Consumes pending calls on the call eventfd; returns how many. */
uint64_t vu_ring_drain_call(struct vu_ring *r);
/* Waits up to TIMEOUT_MS for a used entry.  Returns 1 when there is one,
 * 0 on timeout, -errno when poll fails.  An entry that is there without a call counts in
 * missed_notifications. */
int vu_ring_wait(struct vu_ring *r, int timeout_ms);

/* The indirect table reserved for head H, and its guest address. */
struct vring_desc *vu_ring_indirect_table(struct vu_ring *r, uint16_t h, uint64_t *gpa);

#endif
