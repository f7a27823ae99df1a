/*
 * vu_frontend.c - see vu_frontend.h.
 */
#include "vu_frontend.h"

#include <errno.h>
#include <linux/virtio_config.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define U64_BIT(n) (1ull << (n))

/* Replies bigger than this are not ours to read. */
#define MAX_REPLY_PAYLOAD 4096u

void vu_options_default(struct vu_options *o)
{
    memset(o, 0, sizeof(*o));
    o->request_queues = 1;
    o->queue_size = 128;
    o->indirect = true;
    o->event_idx = true;
    o->reply_ack = true;
    o->timeout_ms = 2000;
    o->region_size[0] = 8u << 20;
    o->region_size[1] = 8u << 20;
    o->region_size[2] = 1u << 20;
}

int vu_fail(struct vu_frontend *fe, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fe->error, sizeof(fe->error), fmt, ap);
    va_end(ap);
    return err;
}

const char *vu_request_name(uint32_t request)
{
    static const char *const names[] = {
        [VU_GET_FEATURES] = "GET_FEATURES",
        [VU_SET_FEATURES] = "SET_FEATURES",
        [VU_SET_OWNER] = "SET_OWNER",
        [VU_RESET_OWNER] = "RESET_OWNER",
        [VU_SET_MEM_TABLE] = "SET_MEM_TABLE",
        [VU_SET_LOG_BASE] = "SET_LOG_BASE",
        [VU_SET_LOG_FD] = "SET_LOG_FD",
        [VU_SET_VRING_NUM] = "SET_VRING_NUM",
        [VU_SET_VRING_ADDR] = "SET_VRING_ADDR",
        [VU_SET_VRING_BASE] = "SET_VRING_BASE",
        [VU_GET_VRING_BASE] = "GET_VRING_BASE",
        [VU_SET_VRING_KICK] = "SET_VRING_KICK",
        [VU_SET_VRING_CALL] = "SET_VRING_CALL",
        [VU_SET_VRING_ERR] = "SET_VRING_ERR",
        [VU_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
        [VU_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
        [VU_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
        [VU_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
        [VU_SEND_RARP] = "SEND_RARP",
        [VU_NET_SET_MTU] = "NET_SET_MTU",
        [VU_SET_BACKEND_REQ_FD] = "SET_BACKEND_REQ_FD",
        [VU_IOTLB_MSG] = "IOTLB_MSG",
        [VU_SET_VRING_ENDIAN] = "SET_VRING_ENDIAN",
        [VU_GET_CONFIG] = "GET_CONFIG",
        [VU_SET_CONFIG] = "SET_CONFIG",
        [VU_RESET_DEVICE] = "RESET_DEVICE",
        [VU_VRING_KICK] = "VRING_KICK",
        [VU_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
        [VU_ADD_MEM_REG] = "ADD_MEM_REG",
        [VU_REM_MEM_REG] = "REM_MEM_REG",
        [VU_SET_STATUS] = "SET_STATUS",
        [VU_GET_STATUS] = "GET_STATUS",
    };
    if (request < sizeof(names) / sizeof(names[0]) && names[request])
        return names[request];
    return "unknown request";
}

bool vu_has_protocol(const struct vu_frontend *fe, unsigned bit)
{
    return fe->protocol & U64_BIT(bit);
}

/* ---- messages ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int send_iov(struct vu_frontend *fe, struct iovec *iov, int iovcnt, const int *fds,
                    unsigned nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 253)];
        struct cmsghdr align;
    } control;
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
    if (nfds > 253)
        return vu_fail(fe, -EINVAL, "%u fds: SCM_RIGHTS carries at most 253", nfds);
    if (nfds > 0) {
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    ssize_t n;
    do {
        n = sendmsg(fe->sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int err = errno == EPIPE ? -ECONNRESET : -errno;
        return vu_fail(fe, err, "sending to the backend: %s",
                       err == -ECONNRESET ? "it closed the connection" : strerror(errno));
    }
    if ((size_t)n != total)
        return vu_fail(fe, -EIO, "short send: %zd of %zu bytes", n, total);
    return 0;
}

int vu_send(struct vu_frontend *fe, uint32_t request, uint32_t flags, const void *payload,
            uint32_t size, const int *fds, unsigned nfds)
{
    struct vu_header h = { .request = request, .flags = flags, .size = size };
    struct iovec iov[2] = {
        { .iov_base = &h, .iov_len = sizeof(h) },
        { .iov_base = (void *)payload, .iov_len = payload ? size : 0 },
    };
    return send_iov(fe, iov, payload && size ? 2 : 1, fds, nfds);
}

int vu_send_bytes(struct vu_frontend *fe, const void *bytes, size_t len, const int *fds,
                  unsigned nfds)
{
    struct iovec iov = { .iov_base = (void *)bytes, .iov_len = len };
    return send_iov(fe, &iov, 1, fds, nfds);
}

static void close_received_fds(struct msghdr *msg)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        unsigned n = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int fds[64];
        memcpy(fds, CMSG_DATA(c), (n < 64 ? n : 64) * sizeof(int));
        for (unsigned i = 0; i < n && i < 64; i++)
            close(fds[i]);
    }
}

/* Reads exactly LEN bytes (into BUF unless NULL) before DEADLINE. */
static int read_full(struct vu_frontend *fe, void *buf, size_t len, int64_t deadline)
{
    uint8_t scratch[512];
    size_t got = 0;
    while (got < len) {
        int64_t left = deadline - now_ms();
        struct pollfd p = { .fd = fe->sock, .events = POLLIN };
        int r = poll(&p, 1, left > 0 ? (int)left : 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return vu_fail(fe, -ETIMEDOUT, "no reply from the backend");
        union {
            char b[CMSG_SPACE(sizeof(int) * 64)];
            struct cmsghdr align;
        } control;
        size_t want = len - got;
        struct iovec iov = {
            .iov_base = buf ? (uint8_t *)buf + got : scratch,
            .iov_len = buf ? want : (want < sizeof(scratch) ? want : sizeof(scratch)),
        };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.b,
                              .msg_controllen = sizeof(control.b) };
        ssize_t n = recvmsg(fe->sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vu_fail(fe, -errno, "reading from the backend: %s", strerror(errno));
        close_received_fds(&msg);
        if (n == 0)
            return vu_fail(fe, -ECONNRESET, "the backend closed the connection");
        got += (size_t)n;
    }
    return 0;
}

int vu_recv(struct vu_frontend *fe, struct vu_header *h, void *payload, size_t max, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    int r = read_full(fe, h, sizeof(*h), deadline);
    if (r < 0)
        return r;
    if (h->size > MAX_REPLY_PAYLOAD)
        return vu_fail(fe, -EPROTO, "reply to %s announces %u payload bytes",
                       vu_request_name(h->request), h->size);
    size_t keep = h->size < max ? h->size : max;
    r = read_full(fe, payload, keep, deadline);
    if (r == 0 && h->size > keep)
        r = read_full(fe, NULL, h->size - keep, deadline);
    return r;
}

int vu_wait_reply(struct vu_frontend *fe, uint32_t request, void *payload, uint32_t size)
{
    struct vu_header h;
    uint8_t buf[MAX_REPLY_PAYLOAD];
    int r = vu_recv(fe, &h, buf, sizeof(buf), fe->opt.timeout_ms);
    if (r == -ETIMEDOUT)
        return vu_fail(fe, r, "no reply to %s within %d ms", vu_request_name(request),
                       fe->opt.timeout_ms);
    if (r < 0)
        return r;
    if (h.request != request)
        return vu_fail(fe, -EPROTO, "reply to %s carries request %u (%s)",
                       vu_request_name(request), h.request, vu_request_name(h.request));
    if ((h.flags & VU_VERSION_MASK) != VU_VERSION || !(h.flags & VU_FLAG_REPLY))
        return vu_fail(fe, -EPROTO, "reply to %s has flags %#x", vu_request_name(request),
                       h.flags);
    if (h.size != size)
        return vu_fail(fe, -EPROTO, "reply to %s has %u payload bytes, expected %u",
                       vu_request_name(request), h.size, size);
    memcpy(payload, buf, size);
    return 0;
}

int vu_request(struct vu_frontend *fe, uint32_t request, const void *payload, uint32_t size,
               const int *fds, unsigned nfds)
{
    bool ack = vu_has_protocol(fe, VU_PROTOCOL_F_REPLY_ACK);
    int r = vu_send(fe, request, VU_VERSION | (ack ? VU_FLAG_NEED_REPLY : 0), payload, size, fds,
                    nfds);
    if (r < 0 || !ack)
        return r;
    uint64_t status;
    r = vu_wait_reply(fe, request, &status, sizeof(status));
    if (r == 0 && status != 0)
        r = vu_fail(fe, -EREMOTEIO, "the backend refused %s (status %llu)",
                    vu_request_name(request), (unsigned long long)status);
    return r;
}

int vu_query(struct vu_frontend *fe, uint32_t request, const void *payload, uint32_t size,
             void *reply, uint32_t reply_size)
{
    int r = vu_send(fe, request, VU_VERSION, payload, size, NULL, 0);
    return r < 0 ? r : vu_wait_reply(fe, request, reply, reply_size);
}

bool vu_peer_closed(struct vu_frontend *fe, int timeout_ms)
{
    struct pollfd p = { .fd = fe->sock, .events = POLLIN | POLLRDHUP };
    if (poll(&p, 1, timeout_ms) <= 0)
        return false;
    char c;
    ssize_t n = recv(fe->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

/* ---- set-up ------------------------------------------------------------ */

int vu_attach(struct vu_frontend *fe, int sock, const struct vu_options *opt)
{
    memset(fe, 0, sizeof(*fe));
    fe->sock = sock;
    fe->opt = *opt;
    fe->mem.fd = -1;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
        fe->backend_pid = cred.pid;
    if (opt->request_queues < 1 || opt->request_queues + 1 > VU_MAX_RINGS)
        return vu_fail(fe, -EINVAL, "%u request queues: 1 to %d", opt->request_queues,
                       VU_MAX_RINGS - 1);
    int r = vu_mem_create(&fe->mem, opt->region_size);
    if (r < 0)
        return vu_fail(fe, r, "guest memory: %s", strerror(-r));
    for (unsigned i = 0; i < opt->request_queues + 1; i++) {
        fe->nrings = i + 1; /* vu_close destroys what was created */
        r = vu_ring_create(&fe->ring[i], &fe->mem, i, opt->queue_size);
        if (r < 0)
            return vu_fail(fe, r, "ring %u: %s", i, strerror(-r));
    }
    return 0;
}

int vu_connect(struct vu_frontend *fe, const char *path, const struct vu_options *opt)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(a.sun_path))
        return vu_fail(fe, -ENAMETOOLONG, "%s: socket path too long", path);
    strcpy(a.sun_path, path);
    int64_t deadline = now_ms() + opt->timeout_ms * 5;
    for (;;) {
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
            return vu_fail(fe, -errno, "socket: %s", strerror(errno));
        if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
            return vu_attach(fe, s, opt);
        int err = errno;
        close(s);
        if ((err != ENOENT && err != ECONNREFUSED) || now_ms() > deadline) {
            memset(fe, 0, sizeof(*fe));
            fe->sock = -1;
            fe->mem.fd = -1;
            return vu_fail(fe, -err, "connect %s: %s", path, strerror(err));
        }
        usleep(10000);
    }
}

static int set_u64(struct vu_frontend *fe, uint32_t request, uint64_t v)
{
    return vu_request(fe, request, &v, sizeof(v), NULL, 0);
}

static int get_u64(struct vu_frontend *fe, uint32_t request, uint64_t *v)
{
    return vu_query(fe, request, NULL, 0, v, sizeof(*v));
}

static uint64_t wanted_protocol(const struct vu_options *o)
{
    return U64_BIT(VU_PROTOCOL_F_MQ) | U64_BIT(VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
           U64_BIT(VU_PROTOCOL_F_RESET_DEVICE) | (o->reply_ack ? U64_BIT(VU_PROTOCOL_F_REPLY_ACK) : 0);
}

int vu_handshake(struct vu_frontend *fe)
{
    int r = get_u64(fe, VU_GET_FEATURES, &fe->backend_features);
    if (r < 0)
        return r;
    if (!(fe->backend_features & U64_BIT(VIRTIO_F_VERSION_1)))
        return vu_fail(fe, -ENOTSUP, "the backend does not offer VIRTIO_F_VERSION_1");
    if (fe->backend_features & U64_BIT(VU_F_PROTOCOL_FEATURES)) {
        r = get_u64(fe, VU_GET_PROTOCOL_FEATURES, &fe->backend_protocol);
        uint64_t want = fe->backend_protocol & wanted_protocol(&fe->opt);
        /* Sent without need_reply, as QEMU does: REPLY_ACK is being
         * negotiated by this very message. */
        if (r == 0)
            r = vu_send(fe, VU_SET_PROTOCOL_FEATURES, VU_VERSION, &want, sizeof(want), NULL, 0);
        if (r < 0)
            return r;
        fe->protocol = want;
    }
    if (vu_has_protocol(fe, VU_PROTOCOL_F_MQ)) {
        r = get_u64(fe, VU_GET_QUEUE_NUM, &fe->queue_num);
        if (r < 0)
            return r;
        if (fe->queue_num < fe->nrings)
            return vu_fail(fe, -ENOTSUP, "the backend serves %llu queues, %u wanted",
                           (unsigned long long)fe->queue_num, fe->nrings);
    }
    if (vu_has_protocol(fe, VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
        r = get_u64(fe, VU_GET_MAX_MEM_SLOTS, &fe->max_mem_slots);
        if (r < 0)
            return r;
    }
    return vu_request(fe, VU_SET_OWNER, NULL, 0, NULL, 0);
}

static int region_message(struct vu_frontend *fe, uint32_t request, unsigned i)
{
    if (!vu_has_protocol(fe, VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS))
        return vu_fail(fe, -ENOTSUP, "the backend does not offer CONFIGURE_MEM_SLOTS");
    struct vu_mem_reg reg = { 0 };
    vu_mem_describe(&fe->mem, i, &reg.region);
    return vu_request(fe, request, &reg, sizeof(reg), &fe->mem.fd, request == VU_ADD_MEM_REG);
}

int vu_add_region(struct vu_frontend *fe, unsigned i)
{
    return region_message(fe, VU_ADD_MEM_REG, i);
}

int vu_remove_region(struct vu_frontend *fe, unsigned i)
{
    return region_message(fe, VU_REM_MEM_REG, i);
}

int vu_send_memory(struct vu_frontend *fe)
{
    struct vu_mem *m = &fe->mem;
    if (fe->opt.mem_slots && vu_has_protocol(fe, VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
        for (unsigned i = 0; i < m->nregions; i++) {
            int r = vu_add_region(fe, i);
            if (r < 0)
                return r;
        }
        return 0;
    }
    struct vu_mem_table t = { .nregions = m->nregions };
    int fds[VU_MEM_TABLE_MAX];
    for (unsigned i = 0; i < m->nregions; i++) {
        vu_mem_describe(m, i, &t.regions[i]);
        fds[i] = m->fd;
    }
    uint32_t size = (uint32_t)(offsetof(struct vu_mem_table, regions) +
                               m->nregions * sizeof(struct vu_region_desc));
    return vu_request(fe, VU_SET_MEM_TABLE, &t, size, fds, m->nregions);
}

static int set_state(struct vu_frontend *fe, uint32_t request, unsigned index, unsigned num)
{
    struct vhost_vring_state s = { .index = index, .num = num };
    return vu_request(fe, request, &s, sizeof(s), NULL, 0);
}

static int set_ring_fd(struct vu_frontend *fe, uint32_t request, unsigned index, int fd)
{
    uint64_t v = index;
    return vu_request(fe, request, &v, sizeof(v), &fd, 1);
}

int vu_setup_ring(struct vu_frontend *fe, unsigned i, uint16_t base)
{
    struct vu_ring *q = &fe->ring[i];
    q->event_idx = fe->features & U64_BIT(VIRTIO_RING_F_EVENT_IDX);
    q->use_indirect = fe->features & U64_BIT(VIRTIO_RING_F_INDIRECT_DESC);
    struct vhost_vring_addr a = {
        .index = i,
        .desc_user_addr = vu_mem_uva(&fe->mem, q->desc_gpa),
        .used_user_addr = vu_mem_uva(&fe->mem, q->used_gpa),
        .avail_user_addr = vu_mem_uva(&fe->mem, q->avail_gpa),
        .log_guest_addr = q->used_gpa,
    };
    int r = set_state(fe, VU_SET_VRING_NUM, i, q->num);
    if (r == 0)
        r = set_state(fe, VU_SET_VRING_BASE, i, base);
    if (r == 0)
        r = vu_request(fe, VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    if (r == 0)
        r = set_ring_fd(fe, VU_SET_VRING_KICK, i, q->kick_fd);
    if (r == 0)
        r = set_ring_fd(fe, VU_SET_VRING_CALL, i, q->call_fd);
    if (r == 0)
        r = set_ring_fd(fe, VU_SET_VRING_ERR, i, q->err_fd);
    if (r == 0 && (fe->features & U64_BIT(VU_F_PROTOCOL_FEATURES)))
        r = set_state(fe, VU_SET_VRING_ENABLE, i, 1);
    return r;
}

int vu_start(struct vu_frontend *fe)
{
    uint64_t want = U64_BIT(VIRTIO_F_VERSION_1) | U64_BIT(VU_F_PROTOCOL_FEATURES) |
                    (fe->opt.indirect ? U64_BIT(VIRTIO_RING_F_INDIRECT_DESC) : 0) |
                    (fe->opt.event_idx ? U64_BIT(VIRTIO_RING_F_EVENT_IDX) : 0);
    fe->features = fe->backend_features & want;
    int r = set_u64(fe, VU_SET_FEATURES, fe->features);
    if (r == 0)
        r = vu_send_memory(fe);
    for (unsigned i = 0; r == 0 && i < fe->nrings; i++)
        r = vu_setup_ring(fe, i, fe->ring[i].avail_idx);
    return r;
}

int vu_setup(struct vu_frontend *fe, const char *path, const struct vu_options *opt)
{
    int r = vu_connect(fe, path, opt);
    if (r == 0)
        r = vu_handshake(fe);
    if (r == 0)
        r = vu_start(fe);
    return r;
}

int vu_stop_ring(struct vu_frontend *fe, unsigned i, uint32_t *base)
{
    struct vhost_vring_state s = { .index = i }, reply;
    int r = vu_query(fe, VU_GET_VRING_BASE, &s, sizeof(s), &reply, sizeof(reply));
    if (r == 0 && base)
        *base = reply.num;
    return r;
}

int vu_restart(struct vu_frontend *fe)
{
    for (unsigned i = 0; i < fe->nrings; i++) {
        int r = vu_stop_ring(fe, i, NULL);
        if (r < 0)
            return r;
    }
    for (unsigned i = 0; i < fe->nrings; i++) {
        vu_ring_reset(&fe->ring[i]);
        vu_ring_drain_call(&fe->ring[i]);
    }
    return vu_start(fe);
}

int vu_reset_device(struct vu_frontend *fe)
{
    if (!vu_has_protocol(fe, VU_PROTOCOL_F_RESET_DEVICE))
        return vu_fail(fe, -ENOTSUP, "the backend does not offer RESET_DEVICE");
    return vu_request(fe, VU_RESET_DEVICE, NULL, 0, NULL, 0);
}

void vu_close(struct vu_frontend *fe)
{
    if (fe->sock >= 0)
        close(fe->sock);
    fe->sock = -1;
    for (unsigned i = 0; i < fe->nrings; i++)
        vu_ring_destroy(&fe->ring[i]);
    fe->nrings = 0;
    vu_mem_destroy(&fe->mem);
}
