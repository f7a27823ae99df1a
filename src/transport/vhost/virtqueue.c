/*
 * virtqueue.c - see virtqueue.h.
 */
#include "transport/vhost/virtqueue.h"
#include "common/log.h"

#include <endian.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

void vq_init(struct virtqueue *vq, unsigned index)
{
    memset(vq, 0, sizeof(*vq));
    pthread_mutex_init(&vq->lock, NULL);
    vq->index = index;
    vq->call_fd = -1;
    vq->err_fd = -1;
}

void vq_destroy(struct virtqueue *vq)
{
    guest_memory_put(vq->mem);
    vq->mem = NULL;
    if (vq->call_fd >= 0)
        close(vq->call_fd);
    if (vq->err_fd >= 0)
        close(vq->err_fd);
    vq->call_fd = vq->err_fd = -1;
    pthread_mutex_destroy(&vq->lock);
}

/* The rings' sizes (VIRTIO 1.x 2.7.4-2.7.8), event fields included. */
static uint64_t desc_bytes(uint16_t num) { return 16ull * num; }
static uint64_t avail_bytes(uint16_t num) { return 4 + 2ull * num + 2; }
static uint64_t used_bytes(uint16_t num) { return 4 + 8ull * num + 2; }

bool vq_map_rings(struct virtqueue *vq, struct guest_memory *mem)
{
    void *desc = guest_memory_uva(mem, vq->desc_uva, desc_bytes(vq->num));
    void *avail = guest_memory_uva(mem, vq->avail_uva, avail_bytes(vq->num));
    void *used = guest_memory_uva(mem, vq->used_uva, used_bytes(vq->num));
    if (!desc || !avail || !used || (uintptr_t)desc % 16 || (uintptr_t)avail % 2 ||
        (uintptr_t)used % 4)
        return false;
    guest_memory_put(vq->mem);
    vq->mem = guest_memory_get(mem);
    vq->vr.num = vq->num;
    vq->vr.desc = desc;
    vq->vr.avail = avail;
    vq->vr.used = used;
    return true;
}

/* Reads of fields the guest writes concurrently: once, atomically. */
static uint16_t read_u16(const __virtio16 *p)
{
    return le16toh(atomic_load_explicit((_Atomic uint16_t *)p, memory_order_acquire));
}

static void write_u16(__virtio16 *p, uint16_t v)
{
    atomic_store_explicit((_Atomic uint16_t *)p, htole16(v), memory_order_release);
}

static void signal_fd(int fd)
{
    if (fd >= 0 && eventfd_write(fd, 1) < 0 && errno != EAGAIN)
        log_debug("eventfd write: %s", strerror(errno));
}

static void mark_broken(struct virtqueue *vq, const char *why, unsigned value)
{
    log_warn("virtqueue %u: %s (%u): queue stopped", vq->index, why, value);
    vq->broken = true;
    signal_fd(vq->err_fd);
}

/* Where the walk is: the direct table or one indirect table. */
struct chain_walk {
    const struct vring_desc *table;
    unsigned size;       /* entries in TABLE */
    unsigned seen;       /* descriptors visited in this table */
    bool indirect;
};

static const char *add_buffer(struct vq_element *e, const struct guest_memory *mem,
                              const struct vring_desc *d)
{
    uint16_t flags = le16toh(d->flags);
    uint32_t len = le32toh(d->len);
    if (!(flags & VRING_DESC_F_WRITE) && e->nwritable)
        return "readable descriptor after a writable one";
    if (len == 0)
        return NULL;
    int used = e->nreadable + e->nwritable;
    int n = guest_memory_map(mem, le64toh(d->addr), len, &e->iov[used], VQ_MAX_IOV - used);
    if (n < 0)
        return "buffer outside guest memory";
    if (flags & VRING_DESC_F_WRITE)
        e->nwritable += n;
    else
        e->nreadable += n;
    return NULL;
}

/* Switches the walk to the indirect table D describes. */
static const char *enter_indirect(struct chain_walk *w, const struct guest_memory *mem,
                                  const struct vring_desc *d)
{
    uint32_t len = le32toh(d->len);
    if (w->indirect)
        return "nested indirect table";
    if (le16toh(d->flags) & VRING_DESC_F_NEXT)
        return "indirect descriptor with NEXT";
    if (len == 0 || len % sizeof(struct vring_desc) || len / sizeof(struct vring_desc) > VQ_MAX_CHAIN)
        return "bad indirect table length";
    const void *table = guest_memory_gpa(mem, le64toh(d->addr), len);
    if (!table)
        return "indirect table outside guest memory";
    *w = (struct chain_walk){ .table = table, .size = len / sizeof(struct vring_desc),
                              .indirect = true };
    return NULL;
}

/* Walks the chain starting at HEAD into E; returns NULL or what is wrong. */
static const char *walk_chain(const struct virtqueue *vq, uint16_t head, struct vq_element *e)
{
    struct chain_walk w = { .table = vq->vr.desc, .size = vq->num };
    unsigned i = head;
    for (;;) {
        struct vring_desc d;
        if (w.seen++ >= w.size || w.seen > VQ_MAX_CHAIN)
            return "chain longer than its table (a loop?)";
        memcpy(&d, &w.table[i], sizeof(d)); /* the guest may change it: copy, then check */
        uint16_t flags = le16toh(d.flags);
        if (flags & VRING_DESC_F_INDIRECT) {
            if (!vq->indirect)
                return "indirect descriptor, not negotiated";
            if (i != head || w.indirect)
                return w.indirect ? "nested indirect table" : "indirect descriptor inside a chain";
            const char *err = enter_indirect(&w, vq->mem, &d);
            if (err)
                return err;
            i = 0;
            continue;
        }
        const char *err = add_buffer(e, vq->mem, &d);
        if (err)
            return err;
        if (!(flags & VRING_DESC_F_NEXT))
            return NULL;
        i = le16toh(d.next);
        if (i >= w.size)
            return "next index out of the table";
    }
}

static void push_locked(struct virtqueue *vq, uint16_t head, uint32_t len);

int vq_pop(struct virtqueue *vq, struct vq_element *e)
{
    pthread_mutex_lock(&vq->lock);
    for (;;) {
        if (vq->broken || !vq->mem) {
            pthread_mutex_unlock(&vq->lock);
            return -1;
        }
        uint16_t avail_idx = read_u16(&vq->vr.avail->idx);
        if (avail_idx == vq->last_avail) {
            pthread_mutex_unlock(&vq->lock);
            return 0;
        }
        if ((uint16_t)(avail_idx - vq->last_avail) > vq->num) {
            mark_broken(vq, "avail index ran ahead by more than the queue size", avail_idx);
            continue;
        }
        uint16_t head = read_u16(&vq->vr.avail->ring[vq->last_avail % vq->num]);
        if (head >= vq->num) {
            mark_broken(vq, "avail ring names a descriptor out of the table", head);
            continue;
        }
        vq->last_avail++;
        e->head = head;
        e->more = avail_idx != vq->last_avail; /* as the ring was when we looked */
        e->nreadable = e->nwritable = 0;
        const char *err = walk_chain(vq, head, e);
        if (!err) {
            e->mem = guest_memory_get(vq->mem);
            pthread_mutex_unlock(&vq->lock);
            return 1;
        }
        if (vq->bad_chains++ < 10)
            log_warn("virtqueue %u: request %u failed: %s", vq->index, head, err);
        push_locked(vq, head, 0);
    }
}

/* Whether the guest wants an interrupt now (VIRTIO 1.x 2.7.10). */
static bool should_notify(struct virtqueue *vq)
{
    atomic_thread_fence(memory_order_seq_cst); /* used idx before the guest's flags/event */
    if (!vq->event_idx)
        return !(read_u16(&vq->vr.avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
    uint16_t old = vq->signalled_used, now = vq->used_idx;
    bool valid = vq->signalled_used_valid;
    vq->signalled_used = now;
    vq->signalled_used_valid = true;
    return !valid || vring_need_event(read_u16(&vring_used_event(&vq->vr)), now, old);
}

static void push_locked(struct virtqueue *vq, uint16_t head, uint32_t len)
{
    struct vring_used_elem *u = &vq->vr.used->ring[vq->used_idx % vq->num];
    u->id = htole32(head);
    u->len = htole32(len);
    vq->used_idx++;
    write_u16(&vq->vr.used->idx, vq->used_idx); /* release: the element first */
    if (should_notify(vq))
        signal_fd(vq->call_fd);
}

void vq_push(struct virtqueue *vq, struct vq_element *e, uint32_t len)
{
    pthread_mutex_lock(&vq->lock);
    if (vq->mem) /* not stopped meanwhile */
        push_locked(vq, e->head, len);
    pthread_mutex_unlock(&vq->lock);
    guest_memory_put(e->mem);
    e->mem = NULL;
}

bool vq_has_avail(struct virtqueue *vq)
{
    pthread_mutex_lock(&vq->lock);
    bool avail = !vq->mem || vq->broken || read_u16(&vq->vr.avail->idx) != vq->last_avail;
    pthread_mutex_unlock(&vq->lock);
    return avail;
}

bool vq_enable_notification(struct virtqueue *vq)
{
    pthread_mutex_lock(&vq->lock);
    bool more = false;
    if (vq->mem && !vq->broken) {
        if (vq->event_idx)
            write_u16(&vring_avail_event(&vq->vr), vq->last_avail);
        atomic_thread_fence(memory_order_seq_cst);
        more = read_u16(&vq->vr.avail->idx) != vq->last_avail;
    }
    pthread_mutex_unlock(&vq->lock);
    return more;
}
