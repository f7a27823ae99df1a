/*
 * vu_ring.c - see vu_ring.h.
 *
 * Memory ordering follows the Linux virtio driver: a chain's descriptors
 * and its avail entry are written before avail->idx (release store); the
 * kick decision reads avail_event after a full fence, and so does the
 * check for used entries after asking for a call.
 */
#include "vu_ring.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define RING_ALIGN 4096

static uint16_t load_u16(const uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store_u16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static void full_fence(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void free_list_init(struct vu_ring *r)
{
    for (uint16_t i = 0; i < r->num; i++)
        r->free_next[i] = (uint16_t)(i + 1);
    r->free_head = 0;
    r->num_free = r->num;
}

int vu_ring_create(struct vu_ring *r, struct vu_mem *mem, unsigned index, uint16_t num)
{
    memset(r, 0, sizeof(*r));
    r->kick_fd = r->call_fd = r->err_fd = -1;
    r->index = index;
    r->num = num;
    void *p;
    uint64_t gpa = vu_mem_alloc(mem, 0, vring_size(num, RING_ALIGN), RING_ALIGN, &p);
    void *ind;
    r->indirect_gpa = vu_mem_alloc(mem, 0, (uint64_t)num * VU_INDIRECT_MAX * sizeof(struct vring_desc),
                                   16, &ind);
    r->free_next = calloc(num, sizeof(*r->free_next));
    r->chains = calloc(num, sizeof(*r->chains));
    if (!gpa || !r->indirect_gpa || !r->free_next || !r->chains)
        return -ENOMEM;
    r->indirect = ind;
    vring_init(&r->vr, num, p, RING_ALIGN);
    r->desc_gpa = gpa;
    r->avail_gpa = gpa + (uint64_t)((uint8_t *)r->vr.avail - (uint8_t *)p);
    r->used_gpa = gpa + (uint64_t)((uint8_t *)r->vr.used - (uint8_t *)p);
    r->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->err_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->kick_fd < 0 || r->call_fd < 0 || r->err_fd < 0)
        return -errno;
    vu_ring_reset(r);
    return 0;
}

void vu_ring_destroy(struct vu_ring *r)
{
    int *fds[] = { &r->kick_fd, &r->call_fd, &r->err_fd };
    for (unsigned i = 0; i < 3; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
    free(r->free_next);
    free(r->chains);
    r->free_next = NULL;
    r->chains = NULL;
}

void vu_ring_reset(struct vu_ring *r)
{
    memset(r->vr.desc, 0, vring_size(r->num, RING_ALIGN));
    memset(r->chains, 0, r->num * sizeof(*r->chains));
    r->avail_idx = r->kicked_idx = r->last_used = 0;
    r->missed_notifications = r->unknown_used = 0;
    free_list_init(r);
}

static uint16_t take_desc(struct vu_ring *r)
{
    uint16_t d = r->free_head;
    r->free_head = r->free_next[d];
    r->num_free--;
    return d;
}

/* Writes the N buffers of BUFS into DESC at the indices IDX, linked in
 * that order; the first NREAD are device-readable. */
static void write_chain(struct vring_desc *desc, const uint16_t *idx, const struct vu_buf *bufs,
                        unsigned nread, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct vring_desc *d = &desc[idx[i]];
        d->addr = bufs[i].gpa;
        d->len = bufs[i].len;
        d->flags = (uint16_t)((i >= nread ? VRING_DESC_F_WRITE : 0) |
                              (i + 1 < n ? VRING_DESC_F_NEXT : 0));
        d->next = i + 1 < n ? idx[i + 1] : 0;
    }
}

static int add_indirect(struct vu_ring *r, const struct vu_buf *bufs, unsigned nread, unsigned n)
{
    if (r->num_free < 1)
        return -ENOSPC;
    uint16_t head = take_desc(r);
    uint16_t idx[VU_INDIRECT_MAX];
    for (unsigned i = 0; i < n; i++)
        idx[i] = (uint16_t)i;
    uint64_t table_gpa;
    struct vring_desc *table = vu_ring_indirect_table(r, head, &table_gpa);
    write_chain(table, idx, bufs, nread, n);
    struct vring_desc *d = &r->vr.desc[head];
    d->addr = table_gpa;
    d->len = (uint32_t)(n * sizeof(struct vring_desc));
    d->flags = VRING_DESC_F_INDIRECT;
    d->next = 0;
    r->free_next[head] = head;
    r->chains[head].ndesc = 1;
    return head;
}

static int add_direct(struct vu_ring *r, const struct vu_buf *bufs, unsigned nread, unsigned n)
{
    uint16_t idx[VU_MAX_CHAIN];
    if (n == 0 || n > r->num_free || n > VU_MAX_CHAIN)
        return -ENOSPC;
    for (unsigned i = 0; i < n; i++) {
        idx[i] = take_desc(r);
        if (i > 0)
            r->free_next[idx[i - 1]] = idx[i]; /* our record of the chain */
    }
    write_chain(r->vr.desc, idx, bufs, nread, n);
    uint16_t head = idx[0];
    r->chains[head].ndesc = (uint16_t)n;
    return head;
}

int vu_ring_add(struct vu_ring *r, const struct vu_buf *bufs, unsigned nread, unsigned nwrite,
                void *token)
{
    unsigned n = nread + nwrite;
    bool indirect = r->use_indirect && n > 1 && n <= VU_INDIRECT_MAX;
    int head = indirect ? add_indirect(r, bufs, nread, n) : add_direct(r, bufs, nread, n);
    if (head < 0)
        return head;
    r->chains[head].token = token;
    r->chains[head].in_flight = true;
    vu_ring_publish(r, (uint16_t)head);
    return head;
}

void vu_ring_publish(struct vu_ring *r, uint16_t head)
{
    r->vr.avail->ring[r->avail_idx % r->num] = head;
    r->avail_idx++;
    store_u16(&r->vr.avail->idx, r->avail_idx);
}

void vu_ring_publish_raw(struct vu_ring *r, const uint16_t *idx, unsigned n, void *token)
{
    for (unsigned i = 1; i < n; i++)
        r->free_next[idx[i - 1]] = idx[i];
    r->chains[idx[0]] = (struct vu_chain){ .token = token, .ndesc = (uint16_t)n, .in_flight = true };
    vu_ring_publish(r, idx[0]);
}

void vu_ring_set_avail_idx(struct vu_ring *r, uint16_t idx)
{
    r->avail_idx = idx;
    store_u16(&r->vr.avail->idx, idx);
}

void vu_ring_notify(struct vu_ring *r, bool force)
{
    full_fence();
    bool kick;
    if (r->event_idx)
        kick = vring_need_event(load_u16(&vring_avail_event(&r->vr)), r->avail_idx, r->kicked_idx);
    else
        kick = !(load_u16(&r->vr.used->flags) & VRING_USED_F_NO_NOTIFY);
    r->kicked_idx = r->avail_idx;
    if (kick || force) {
        uint64_t one = 1;
        if (write(r->kick_fd, &one, sizeof(one)) < 0) {
            /* an eventfd write fails only when the counter is full: the
             * backend has a kick pending anyway */
        }
    }
}

int vu_ring_reserve(struct vu_ring *r, unsigned n, uint16_t *idx)
{
    if (n > r->num_free)
        return -ENOSPC;
    for (unsigned i = 0; i < n; i++)
        idx[i] = take_desc(r);
    return 0;
}

bool vu_ring_has_used(struct vu_ring *r)
{
    return load_u16(&r->vr.used->idx) != r->last_used;
}

static void free_chain(struct vu_ring *r, uint16_t head)
{
    struct vu_chain *c = &r->chains[head];
    uint16_t d = head;
    for (uint16_t i = 0; i < c->ndesc; i++) {
        uint16_t next = r->free_next[d];
        r->free_next[d] = r->free_head;
        r->free_head = d;
        r->num_free++;
        d = next;
    }
    memset(c, 0, sizeof(*c));
}

int vu_ring_get_used(struct vu_ring *r, struct vu_used *u)
{
    if (!vu_ring_has_used(r))
        return 0;
    struct vring_used_elem e = r->vr.used->ring[r->last_used % r->num];
    r->last_used++;
    memset(u, 0, sizeof(*u));
    u->id = (uint16_t)e.id;
    u->len = e.len;
    if (e.id < r->num && r->chains[e.id].in_flight) {
        u->known = true;
        u->token = r->chains[e.id].token;
        free_chain(r, (uint16_t)e.id);
    } else {
        r->unknown_used++;
    }
    return 1;
}

void vu_ring_want_call(struct vu_ring *r)
{
    if (r->event_idx)
        store_u16(&vring_used_event(&r->vr), r->last_used);
    full_fence();
}

uint64_t vu_ring_drain_call(struct vu_ring *r)
{
    uint64_t n = 0;
    if (read(r->call_fd, &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int vu_ring_wait(struct vu_ring *r, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        vu_ring_want_call(r);
        if (vu_ring_has_used(r))
            return 1;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = r->call_fd, .events = POLLIN };
        int n = poll(&p, 1, (int)left);
        if (n > 0) {
            vu_ring_drain_call(r);
        } else if (n == 0) {
            if (!vu_ring_has_used(r))
                return 0;
            r->missed_notifications++;
            return 1;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
}

struct vring_desc *vu_ring_indirect_table(struct vu_ring *r, uint16_t h, uint64_t *gpa)
{
    uint64_t offset = (uint64_t)h * VU_INDIRECT_MAX;
    if (gpa)
        *gpa = r->indirect_gpa + offset * sizeof(struct vring_desc);
    return r->indirect + offset;
}
