/*
 * vhost_user.c - see vhost_user.h.
 *
 * The connection is served by one thread (the caller's): it reads a
 * message, checks its size and fds, applies it, and answers.  Ring state
 * that queue threads read is changed only while that queue is stopped, or
 * under the virtqueue's lock (call fd, memory remapping).
 */
#include "transport/vhost/vhost_user.h"
#include "common/halt_poll.h"
#include "transport/vhost/vhost_user_proto.h"
#include "common/fdio.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* Ring features we implement; VIRTIO_F_NOTIFY_ON_EMPTY is a legacy-only
 * feature (not with VERSION_1) and is left out. */
#define RING_FEATURES                                                                      \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) |                \
     (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES))

/* Not CONFIG (QEMU 7.1-8.0 crash when a backend offers it), not STATUS
 * (QEMU 7.2), not BACKEND_REQ (we have nothing to ask the frontend). */
#define PROTOCOL_FEATURES                                                                  \
    ((1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |      \
     (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE) |                                        \
     (1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS))

/* Payloads we accept are at most this long; a longer one ends the
 * connection (no message we serve is that long). */
#define MAX_PAYLOAD 4096

struct vu_queue {
    struct virtqueue vq;
    struct vu_dev *dev;
    int kick_fd;            /* -1 until SET_VRING_KICK */
    bool enabled;
    bool running;           /* THREAD exists */
    pthread_t thread;
    atomic_bool stopping;   /* THREAD must end */
    int wake_fd;            /* eventfd: stopping, or room for more requests */
    struct fsb_halt_poll poll; /* the thread's spin before it sleeps */

    pthread_mutex_t inflight_lock;
    pthread_cond_t inflight_done;
    unsigned inflight;      /* popped, not yet completed */
};

struct vu_dev {
    int sock;
    const struct vu_device_ops *ops;
    void *device;
    uint64_t features;
    uint64_t protocol_features;
    bool features_set;
    struct guest_memory *mem;
    struct vu_queue queues[VU_MAX_QUEUES];
};

struct vu_msg {
    struct vhost_user_header hdr;
    union {
        union vhost_user_payload p;
        uint8_t bytes[MAX_PAYLOAD];
    };
    int fds[VHOST_USER_MAX_FDS];
    unsigned nfds;
};

/* ---- queues ------------------------------------------------------------ */

unsigned vu_queue_index(const struct vu_queue *q)
{
    return q->vq.index;
}

void vu_complete(struct vu_queue *q, struct vq_element *e, uint32_t len)
{
    vq_push(&q->vq, e, len);
    free(e);
    pthread_mutex_lock(&q->inflight_lock);
    if (q->inflight-- == VQ_MAX_INFLIGHT)
        (void)eventfd_write(q->wake_fd, 1); /* the queue thread may pop again */
    if (q->inflight == 0)
        pthread_cond_broadcast(&q->inflight_done);
    pthread_mutex_unlock(&q->inflight_lock);
}

enum drain_result {
    DRAIN_EMPTY,    /* wait for a kick */
    DRAIN_FULL,     /* VQ_MAX_INFLIGHT popped: wait for a completion */
    DRAIN_RETRY,    /* out of memory: try again shortly */
    DRAIN_BROKEN,   /* the ring is broken: stop */
};

/* Pops and hands over the requests waiting, at most VQ_MAX_INFLIGHT at a
 * time: a guest cannot make us hold more, however it fills the ring. */
static enum drain_result drain(struct vu_queue *q)
{
    for (;;) {
        pthread_mutex_lock(&q->inflight_lock);
        bool full = q->inflight >= VQ_MAX_INFLIGHT;
        pthread_mutex_unlock(&q->inflight_lock);
        if (full)
            return DRAIN_FULL;
        struct vq_element *e = malloc(sizeof(*e));
        if (!e) {
            log_error("virtqueue %u: out of memory", q->vq.index);
            return DRAIN_RETRY;
        }
        int r = vq_pop(&q->vq, e);
        if (r <= 0) {
            free(e);
            if (r == 0 && vq_enable_notification(&q->vq))
                continue;
            return r == 0 ? DRAIN_EMPTY : DRAIN_BROKEN;
        }
        pthread_mutex_lock(&q->inflight_lock);
        q->inflight++;
        pthread_mutex_unlock(&q->inflight_lock);
        q->dev->ops->request(q->dev->device, q, e);
    }
}

static bool ring_has_work(void *arg)
{
    struct vu_queue *q = arg;
    return vq_has_avail(&q->vq) || atomic_load(&q->stopping);
}

/*
 * An empty ring: the guest's next request often comes a few microseconds
 * after the last reply, and waking from poll() costs more than that, so
 * the thread first watches the ring itself (halt_poll.h).  The guest still
 * kicks (notifications stay on), so a request caught here leaves a kick
 * behind: the next poll() returns at once, reads it, and finds the ring
 * empty.  Returns true when the ring has work without a sleep.  START:
 * when the wait began (the sleep after a failed spin counts from there).
 */
static bool spin_for_work(struct vu_queue *q, uint64_t start)
{
    if (fsb_halt_poll_spin(&q->poll, ring_has_work, q, start)) {
        fsb_halt_poll_caught(&q->poll);
        return true;
    }
    return false;
}

/* The queue thread: drains on a kick, or on a wake (a completion freed
 * room, or the queue is stopping). */
static void *queue_main(void *arg)
{
    struct vu_queue *q = arg;
    struct pollfd pfd[2] = { { .fd = q->kick_fd, .events = POLLIN },
                             { .fd = q->wake_fd, .events = POLLIN } };
    fsb_halt_poll_init(&q->poll, q->dev->ops->poll_us);
    enum drain_result r = drain(q); /* requests queued before the kick fd came */
    while (r != DRAIN_BROKEN && !atomic_load(&q->stopping)) {
        bool polling = r == DRAIN_EMPTY && q->poll.max_ns;
        uint64_t start = polling ? fsb_halt_poll_now_ns() : 0;
        if (polling && spin_for_work(q, start)) {
            r = drain(q);
            continue;
        }
        /* When full, only a completion (a wake) lets us go on. */
        pfd[0].events = r == DRAIN_FULL ? 0 : POLLIN;
        if (poll(pfd, 2, r == DRAIN_RETRY ? 10 : -1) < 0 && errno != EINTR) {
            log_error("virtqueue %u: poll: %s", q->vq.index, strerror(errno));
            break;
        }
        if (polling)
            fsb_halt_poll_slept(&q->poll, fsb_halt_poll_now_ns() - start);
        eventfd_t v;
        if (pfd[0].revents & POLLIN)
            (void)eventfd_read(q->kick_fd, &v);
        if (pfd[1].revents & POLLIN)
            (void)eventfd_read(q->wake_fd, &v);
        if (!atomic_load(&q->stopping))
            r = drain(q);
    }
    return NULL;
}

/* Starts Q's thread when the ring is complete and enabled. */
static void queue_maybe_start(struct vu_dev *d, struct vu_queue *q)
{
    if (q->running || q->kick_fd < 0 || !q->enabled || !q->vq.addr_set || q->vq.num == 0 ||
        !d->mem)
        return;
    pthread_mutex_lock(&q->vq.lock);
    bool mapped = vq_map_rings(&q->vq, d->mem);
    if (mapped) {
        q->vq.used_idx = le16toh(q->vq.vr.used->idx);
        q->vq.signalled_used_valid = false;
        q->vq.broken = false;
        q->vq.event_idx = d->features & (1ull << VIRTIO_RING_F_EVENT_IDX);
        q->vq.indirect = d->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
    }
    pthread_mutex_unlock(&q->vq.lock);
    if (!mapped) {
        log_warn("virtqueue %u: rings outside guest memory or misaligned: not started",
                 q->vq.index);
        return;
    }
    atomic_store(&q->stopping, false);
    q->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->wake_fd < 0 || pthread_create(&q->thread, NULL, queue_main, q) != 0) {
        log_error("virtqueue %u: cannot start its thread", q->vq.index);
        if (q->wake_fd >= 0)
            close(q->wake_fd);
        return;
    }
    q->running = true;
    log_debug("virtqueue %u started (size %u)", q->vq.index, q->vq.num);
}

/* Stops Q's thread and waits until every request it popped is complete;
 * the ring is unmapped afterwards (late pushes would be dropped). */
static void queue_stop(struct vu_dev *d, struct vu_queue *q)
{
    if (!q->running)
        return;
    atomic_store(&q->stopping, true);
    (void)eventfd_write(q->wake_fd, 1);
    d->ops->interrupt_waits(d->device);
    pthread_join(q->thread, NULL);
    q->running = false;
    pthread_mutex_lock(&q->inflight_lock);
    while (q->inflight) {
        d->ops->interrupt_waits(d->device);
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 100 * 1000 * 1000;
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&q->inflight_done, &q->inflight_lock, &t);
    }
    pthread_mutex_unlock(&q->inflight_lock);
    close(q->wake_fd); /* no completion can come any more */
    pthread_mutex_lock(&q->vq.lock);
    guest_memory_put(q->vq.mem);
    q->vq.mem = NULL;
    pthread_mutex_unlock(&q->vq.lock);
    log_debug("virtqueue %u stopped at %u", q->vq.index, q->vq.last_avail);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Back to the state of a new connection (RESET_DEVICE, RESET_OWNER). */
static void device_reset(struct vu_dev *d)
{
    for (unsigned i = 0; i < VU_MAX_QUEUES; i++) {
        struct vu_queue *q = &d->queues[i];
        queue_stop(d, q);
        close_fd(&q->kick_fd);
        close_fd(&q->vq.call_fd);
        close_fd(&q->vq.err_fd);
        q->vq.num = 0;
        q->vq.addr_set = false;
        q->vq.last_avail = 0;
        q->enabled = false;
    }
    d->features_set = false;
    d->ops->reset(d->device);
}

/* ---- messages ------------------------------------------------------------ */

/* What a handler tells the loop. */
enum { MSG_OK = 0, MSG_FAIL = 1, MSG_REPLIED = 2, MSG_FATAL = 3 };

static int send_reply(struct vu_dev *d, const struct vu_msg *m, const void *payload, uint32_t size)
{
    struct vhost_user_header h = { .request = m->hdr.request,
                                   .flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
                                   .size = size };
    struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
    int err = fsb_writev_full(d->sock, iov, 2);
    if (err < 0) {
        log_warn("vhost-user: reply to message %u: %s", m->hdr.request, strerror(-err));
        return MSG_FATAL;
    }
    return MSG_REPLIED;
}

static int reply_u64(struct vu_dev *d, const struct vu_msg *m, uint64_t v)
{
    return send_reply(d, m, &v, sizeof(v));
}

/* The queue a message names, or NULL (logged). */
static struct vu_queue *msg_queue(struct vu_dev *d, unsigned index)
{
    if (index >= VU_MAX_QUEUES) {
        log_warn("vhost-user: queue %u does not exist", index);
        return NULL;
    }
    return &d->queues[index];
}

static int on_get_features(struct vu_dev *d, struct vu_msg *m)
{
    return reply_u64(d, m, RING_FEATURES | d->ops->features);
}

static int on_set_features(struct vu_dev *d, struct vu_msg *m)
{
    uint64_t offered = RING_FEATURES | d->ops->features;
    if (m->p.u64 & ~offered) {
        log_warn("vhost-user: frontend set features we did not offer: %#llx",
                 (unsigned long long)(m->p.u64 & ~offered));
        return MSG_FAIL;
    }
    d->features = m->p.u64;
    d->features_set = true;
    /* Without PROTOCOL_FEATURES rings start enabled (vhost-user.rst). */
    if (!(d->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES)))
        for (unsigned i = 0; i < VU_MAX_QUEUES; i++)
            d->queues[i].enabled = true;
    return MSG_OK;
}

static int on_get_protocol_features(struct vu_dev *d, struct vu_msg *m)
{
    return reply_u64(d, m, PROTOCOL_FEATURES);
}

static int on_set_protocol_features(struct vu_dev *d, struct vu_msg *m)
{
    if (m->p.u64 & ~PROTOCOL_FEATURES) {
        log_warn("vhost-user: frontend set protocol features we did not offer");
        return MSG_FAIL;
    }
    d->protocol_features = m->p.u64;
    return MSG_OK;
}

static int on_reply_count(struct vu_dev *d, struct vu_msg *m)
{
    uint64_t n = m->hdr.request == VHOST_USER_GET_QUEUE_NUM ? VU_MAX_QUEUES
                                                            : GUEST_MEMORY_MAX_REGIONS;
    return reply_u64(d, m, n);
}

static int on_set_owner(struct vu_dev *d, struct vu_msg *m)
{
    (void)d, (void)m;
    return MSG_OK;
}

static int on_reset(struct vu_dev *d, struct vu_msg *m)
{
    (void)m;
    device_reset(d);
    return MSG_OK;
}

/* Publishes NEW as the memory table and remaps every running ring. */
static void install_memory(struct vu_dev *d, struct guest_memory *new_mem)
{
    for (unsigned i = 0; i < VU_MAX_QUEUES; i++) {
        struct vu_queue *q = &d->queues[i];
        if (!q->running)
            continue;
        /* A ring outside the new table stays on the old one, which it
         * holds (still mapped): QEMU changes a region by removing and
         * adding it again, and the ring must survive the gap. */
        pthread_mutex_lock(&q->vq.lock);
        if (!vq_map_rings(&q->vq, new_mem))
            log_debug("virtqueue %u: rings not in the new memory table (yet)", i);
        pthread_mutex_unlock(&q->vq.lock);
    }
    guest_memory_put(d->mem);
    d->mem = new_mem;
    for (unsigned i = 0; i < VU_MAX_QUEUES; i++)
        queue_maybe_start(d, &d->queues[i]);
}

/* Adds region R (backed by FD) to *MEM, replacing *MEM. */
static int add_region(struct guest_memory **mem, const struct vhost_user_region *r, int fd)
{
    int err = 0;
    struct guest_memory *n = guest_memory_with_region(*mem, r->guest_phys_addr, r->memory_size,
                                                      r->userspace_addr, r->mmap_offset, fd, &err);
    if (!n) {
        log_warn("vhost-user: memory region %#llx+%#llx: %s",
                 (unsigned long long)r->guest_phys_addr, (unsigned long long)r->memory_size,
                 strerror(-err));
        return -1;
    }
    guest_memory_put(*mem);
    *mem = n;
    return 0;
}

static int on_set_mem_table(struct vu_dev *d, struct vu_msg *m)
{
    const struct vhost_user_mem_table *t = &m->p.mem_table;
    if (m->hdr.size < 8 || t->nregions > VHOST_USER_MEM_TABLE_REGIONS ||
        m->hdr.size < 8 + t->nregions * sizeof(t->regions[0]) || m->nfds != t->nregions) {
        log_warn("vhost-user: SET_MEM_TABLE with %u regions, %u fds, %u bytes", t->nregions,
                 m->nfds, m->hdr.size);
        return MSG_FAIL;
    }
    struct guest_memory *mem = guest_memory_new();
    for (unsigned i = 0; mem && i < t->nregions; i++) {
        if (add_region(&mem, &t->regions[i], m->fds[i]) < 0) {
            guest_memory_put(mem);
            return MSG_FAIL;
        }
    }
    if (!mem)
        return MSG_FAIL;
    install_memory(d, mem);
    return MSG_OK;
}

static int on_add_mem_reg(struct vu_dev *d, struct vu_msg *m)
{
    if (m->nfds != 1) {
        log_warn("vhost-user: ADD_MEM_REG with %u fds", m->nfds);
        return MSG_FAIL;
    }
    struct guest_memory *mem = d->mem ? guest_memory_get(d->mem) : guest_memory_new();
    if (!mem || add_region(&mem, &m->p.mem_reg.region, m->fds[0]) < 0) {
        guest_memory_put(mem);
        return MSG_FAIL;
    }
    install_memory(d, mem);
    return MSG_OK;
}

static int on_rem_mem_reg(struct vu_dev *d, struct vu_msg *m)
{
    const struct vhost_user_region *r = &m->p.mem_reg.region;
    int err = -ENOENT;
    struct guest_memory *mem = d->mem ? guest_memory_without_region(d->mem, r->guest_phys_addr,
                                                                    r->memory_size,
                                                                    r->userspace_addr, &err)
                                      : NULL;
    if (!mem) {
        log_warn("vhost-user: REM_MEM_REG %#llx: %s", (unsigned long long)r->guest_phys_addr,
                 strerror(-err));
        return MSG_FAIL;
    }
    install_memory(d, mem);
    return MSG_OK;
}

static int on_set_vring_num(struct vu_dev *d, struct vu_msg *m)
{
    struct vu_queue *q = msg_queue(d, m->p.state.index);
    unsigned num = m->p.state.num;
    if (!q || q->running || num == 0 || num > VQ_MAX_SIZE || (num & (num - 1))) {
        log_warn("vhost-user: SET_VRING_NUM %u on queue %u refused", num, m->p.state.index);
        return MSG_FAIL;
    }
    q->vq.num = (uint16_t)num;
    return MSG_OK;
}

static int on_set_vring_addr(struct vu_dev *d, struct vu_msg *m)
{
    const struct vhost_vring_addr *a = &m->p.addr;
    struct vu_queue *q = msg_queue(d, a->index);
    if (!q || q->running) {
        log_warn("vhost-user: SET_VRING_ADDR on queue %u refused", a->index);
        return MSG_FAIL;
    }
    q->vq.desc_uva = a->desc_user_addr;
    q->vq.avail_uva = a->avail_user_addr;
    q->vq.used_uva = a->used_user_addr;
    q->vq.addr_set = true;
    queue_maybe_start(d, q);
    return MSG_OK;
}

static int on_set_vring_base(struct vu_dev *d, struct vu_msg *m)
{
    struct vu_queue *q = msg_queue(d, m->p.state.index);
    if (!q || q->running || m->p.state.num > 0xffff) {
        log_warn("vhost-user: SET_VRING_BASE on queue %u refused", m->p.state.index);
        return MSG_FAIL;
    }
    q->vq.last_avail = (uint16_t)m->p.state.num;
    return MSG_OK;
}

static int on_get_vring_base(struct vu_dev *d, struct vu_msg *m)
{
    struct vu_queue *q = msg_queue(d, m->p.state.index);
    if (!q)
        return MSG_FAIL; /* QEMU waits for an answer: the loop sends one */
    queue_stop(d, q);
    close_fd(&q->kick_fd);
    /* The FUSE session stays: a stopped VM resumes with it.  A guest that
     * rebooted starts over with FUSE_INIT, which virtio_fs.c notices. */
    struct vhost_vring_state st = { .index = m->p.state.index, .num = q->vq.last_avail };
    return send_reply(d, m, &st, sizeof(st));
}

/* Kick, call and error fds must be eventfds: a pipe nobody reads would
 * block a completion, a file that always polls readable would spin the
 * queue thread.  Nonblocking, so that a full counter never blocks us. */
static bool usable_eventfd(int fd)
{
    char path[32], target[32];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlinkat(AT_FDCWD, path, target, sizeof(target) - 1);
    if (n < 0)
        return false;
    target[n] = 0;
    return strcmp(target, "anon_inode:[eventfd]") == 0 &&
           fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0;
}

/* KICK, CALL and ERR: which ring, and its fd (or -1 for "no fd"). */
static struct vu_queue *vring_fd_msg(struct vu_dev *d, struct vu_msg *m, int *fd)
{
    bool nofd = m->p.u64 & VHOST_USER_VRING_NOFD_MASK;
    if (nofd != (m->nfds == 0) || m->nfds > 1) {
        log_warn("vhost-user: message %u: fd flag and %u fds disagree", m->hdr.request, m->nfds);
        return NULL;
    }
    if (!nofd && !usable_eventfd(m->fds[0])) {
        log_warn("vhost-user: message %u: the fd is not an eventfd", m->hdr.request);
        return NULL;
    }
    struct vu_queue *q = msg_queue(d, (unsigned)(m->p.u64 & VHOST_USER_VRING_IDX_MASK));
    if (!q)
        return NULL;
    *fd = nofd ? -1 : m->fds[0];
    m->nfds = 0; /* taken */
    return q;
}

static int on_set_vring_kick(struct vu_dev *d, struct vu_msg *m)
{
    int fd;
    struct vu_queue *q = vring_fd_msg(d, m, &fd);
    if (!q)
        return MSG_FAIL;
    if (fd < 0) {
        log_warn("vhost-user: queue %u: polling mode (no kick fd) is not supported",
                 vu_queue_index(q));
        return MSG_FAIL;
    }
    queue_stop(d, q);
    close_fd(&q->kick_fd);
    q->kick_fd = fd;
    queue_maybe_start(d, q);
    return MSG_OK;
}

/* CALL and ERR: switched under the ring lock, so that a completion on
 * another thread signals either the old fd or the new one, never a closed
 * one. */
static int on_set_vring_notifier(struct vu_dev *d, struct vu_msg *m)
{
    int fd;
    struct vu_queue *q = vring_fd_msg(d, m, &fd);
    if (!q)
        return MSG_FAIL;
    pthread_mutex_lock(&q->vq.lock);
    int *slot = m->hdr.request == VHOST_USER_SET_VRING_CALL ? &q->vq.call_fd : &q->vq.err_fd;
    close_fd(slot);
    *slot = fd;
    pthread_mutex_unlock(&q->vq.lock);
    return MSG_OK;
}

static int on_set_vring_enable(struct vu_dev *d, struct vu_msg *m)
{
    struct vu_queue *q = msg_queue(d, m->p.state.index);
    if (!q || m->p.state.num > 1)
        return MSG_FAIL;
    q->enabled = m->p.state.num;
    if (q->enabled)
        queue_maybe_start(d, q);
    else
        queue_stop(d, q);
    return MSG_OK;
}

struct handler {
    int (*fn)(struct vu_dev *d, struct vu_msg *m);
    uint32_t size;    /* payload bytes expected */
    bool at_least;    /* SIZE is a minimum (the memory table) */
};

static const struct handler handlers[] = {
    [VHOST_USER_GET_FEATURES] = { on_get_features, 0, false },
    [VHOST_USER_SET_FEATURES] = { on_set_features, 8, false },
    [VHOST_USER_SET_OWNER] = { on_set_owner, 0, false },
    [VHOST_USER_RESET_OWNER] = { on_reset, 0, false },
    [VHOST_USER_SET_MEM_TABLE] = { on_set_mem_table, 8, true },
    [VHOST_USER_SET_VRING_NUM] = { on_set_vring_num, sizeof(struct vhost_vring_state), false },
    [VHOST_USER_SET_VRING_ADDR] = { on_set_vring_addr, sizeof(struct vhost_vring_addr), false },
    [VHOST_USER_SET_VRING_BASE] = { on_set_vring_base, sizeof(struct vhost_vring_state), false },
    [VHOST_USER_GET_VRING_BASE] = { on_get_vring_base, sizeof(struct vhost_vring_state), false },
    [VHOST_USER_SET_VRING_KICK] = { on_set_vring_kick, 8, false },
    [VHOST_USER_SET_VRING_CALL] = { on_set_vring_notifier, 8, false },
    [VHOST_USER_SET_VRING_ERR] = { on_set_vring_notifier, 8, false },
    [VHOST_USER_GET_PROTOCOL_FEATURES] = { on_get_protocol_features, 0, false },
    [VHOST_USER_SET_PROTOCOL_FEATURES] = { on_set_protocol_features, 8, false },
    [VHOST_USER_GET_QUEUE_NUM] = { on_reply_count, 0, false },
    [VHOST_USER_SET_VRING_ENABLE] = { on_set_vring_enable, sizeof(struct vhost_vring_state), false },
    [VHOST_USER_RESET_DEVICE] = { on_reset, 0, false },
    [VHOST_USER_GET_MAX_MEM_SLOTS] = { on_reply_count, 0, false },
    [VHOST_USER_ADD_MEM_REG] = { on_add_mem_reg, sizeof(struct vhost_user_mem_reg), false },
    [VHOST_USER_REM_MEM_REG] = { on_rem_mem_reg, sizeof(struct vhost_user_mem_reg), false },
};

/* Messages whose answer is their reply, with or without REPLY_ACK. */
static bool has_own_reply(uint32_t request)
{
    switch (request) {
    case VHOST_USER_GET_FEATURES:
    case VHOST_USER_GET_PROTOCOL_FEATURES:
    case VHOST_USER_GET_QUEUE_NUM:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_GET_MAX_MEM_SLOTS:
        return true;
    default:
        return false;
    }
}

static int dispatch(struct vu_dev *d, struct vu_msg *m)
{
    uint32_t req = m->hdr.request;
    const struct handler *h = req < sizeof(handlers) / sizeof(handlers[0]) ? &handlers[req] : NULL;
    if (!h || !h->fn) {
        log_warn("vhost-user: unsupported message %u", req);
        return MSG_FAIL;
    }
    if (h->at_least ? m->hdr.size < h->size : m->hdr.size != h->size) {
        log_warn("vhost-user: message %u with %u payload bytes (expected %u)", req, m->hdr.size,
                 h->size);
        return MSG_FAIL;
    }
    return h->fn(d, m);
}

/* ---- the connection -------------------------------------------------------- */

static void close_msg_fds(struct vu_msg *m)
{
    for (unsigned i = 0; i < m->nfds; i++)
        close(m->fds[i]);
    m->nfds = 0;
}

/* Reads one message.  Returns 1, 0 at end of stream, -1 on error. */
static int read_msg(int sock, struct vu_msg *m)
{
    union {
        char buf[CMSG_SPACE(VHOST_USER_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = { &m->hdr, sizeof(m->hdr) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf) };
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    while (n < 0 && errno == EINTR);
    m->nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        unsigned cnt = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (unsigned i = 0; i < cnt && m->nfds < VHOST_USER_MAX_FDS; i++)
            memcpy(&m->fds[m->nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if (n == 0)
        return 0;
    if (n != (ssize_t)sizeof(m->hdr) || (mh.msg_flags & MSG_CTRUNC)) {
        log_warn("vhost-user: %s", n < 0 ? strerror(errno)
                                         : (mh.msg_flags & MSG_CTRUNC) ? "too many fds in a message"
                                                                       : "short message header");
        return -1;
    }
    if ((m->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION || m->hdr.size > MAX_PAYLOAD) {
        log_warn("vhost-user: bad header (request %u, flags %#x, size %u)", m->hdr.request,
                 m->hdr.flags, m->hdr.size);
        return -1;
    }
    memset(&m->p, 0, sizeof(m->p));
    if (m->hdr.size && fsb_read_full(sock, m->bytes, m->hdr.size) < 0) {
        log_warn("vhost-user: message %u: payload cut short", m->hdr.request);
        return -1;
    }
    return 1;
}

/* Answers a message after its handler ran: REPLY_ACK's u64, or for a
 * message that must answer, an all-ones value the frontend will reject. */
static int finish_msg(struct vu_dev *d, struct vu_msg *m, int r)
{
    bool ack = (d->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK)) &&
               (m->hdr.flags & VHOST_USER_NEED_REPLY_MASK);
    if (r == MSG_REPLIED || r == MSG_FATAL)
        return r;
    if (has_own_reply(m->hdr.request) || ack)
        return reply_u64(d, m, r == MSG_OK ? 0 : UINT64_MAX);
    return r;
}

static void dev_init(struct vu_dev *d, int sock, const struct vu_device_ops *ops, void *device)
{
    memset(d, 0, sizeof(*d));
    d->sock = sock;
    d->ops = ops;
    d->device = device;
    for (unsigned i = 0; i < VU_MAX_QUEUES; i++) {
        struct vu_queue *q = &d->queues[i];
        vq_init(&q->vq, i);
        q->dev = d;
        q->kick_fd = -1;
        pthread_mutex_init(&q->inflight_lock, NULL);
        pthread_cond_init(&q->inflight_done, NULL);
    }
}

static void dev_destroy(struct vu_dev *d)
{
    device_reset(d);
    for (unsigned i = 0; i < VU_MAX_QUEUES; i++) {
        vq_destroy(&d->queues[i].vq);
        pthread_mutex_destroy(&d->queues[i].inflight_lock);
        pthread_cond_destroy(&d->queues[i].inflight_done);
    }
    guest_memory_put(d->mem);
    close(d->sock);
}

/* Waits for a message or STOP_FD; true when a message is there. */
static bool wait_message(int sock, int stop_fd)
{
    struct pollfd pfd[2] = { { .fd = sock, .events = POLLIN }, { .fd = stop_fd, .events = POLLIN } };
    while (poll(pfd, stop_fd >= 0 ? 2 : 1, -1) < 0)
        if (errno != EINTR)
            return false;
    return !pfd[1].revents;
}

int vhost_user_serve(int conn_fd, const struct vu_device_ops *ops, void *device, int stop_fd)
{
    static struct vu_msg m; /* one connection per process: 4 KiB off the stack */
    struct vu_dev *d = malloc(sizeof(*d));
    if (!d) {
        close(conn_fd);
        return -ENOMEM;
    }
    dev_init(d, conn_fd, ops, device);
    int result = 0;
    while (wait_message(conn_fd, stop_fd)) {
        int r = read_msg(conn_fd, &m);
        if (r <= 0) {
            close_msg_fds(&m);
            result = r < 0 ? -EPROTO : 0;
            break;
        }
        r = finish_msg(d, &m, dispatch(d, &m));
        close_msg_fds(&m); /* fds a handler did not take */
        if (r == MSG_FATAL) {
            result = -EPROTO;
            break;
        }
    }
    dev_destroy(d);
    free(d);
    return result;
}
