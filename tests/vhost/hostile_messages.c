/*
 * hostile_messages.c - vhost-hostile's control-message cases: bad memory
 * tables, ring messages with bad values or for rings that do not exist,
 * fds missing or in excess, messages out of order, unknown requests,
 * garbage headers, and every message type with a payload that is too
 * short or too long.
 */
#include "hostile.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define RQ VU_REQUEST_QUEUE

static int fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- memory tables ------------------------------------------------------ */

enum table_variant {
    TABLE_NO_FDS, TABLE_FEWER_FDS, TABLE_EXTRA_FDS, TABLE_NINE, TABLE_NREGIONS_HUGE,
    TABLE_OVERLAP, TABLE_ZERO_SIZE, TABLE_GPA_WRAPS, TABLE_UVA_WRAPS, TABLE_OFFSET_BEYOND,
};

static int run_mem_table(struct env *e, const struct hcase *c)
{
    struct vu_mem *m = &e->fe.mem;
    struct {
        struct vu_mem_table t;
        struct vu_region_desc ninth;
    } p = { .t = { .nregions = m->nregions } };
    for (unsigned i = 0; i < m->nregions; i++)
        vu_mem_describe(m, i, &p.t.regions[i]);
    int fds[VU_MEM_TABLE_MAX + 1];
    for (unsigned i = 0; i <= VU_MEM_TABLE_MAX; i++)
        fds[i] = m->fd;
    unsigned nfds = m->nregions;
    uint32_t size = 8 + m->nregions * (uint32_t)sizeof(struct vu_region_desc);
    switch ((enum table_variant)c->variant) {
    case TABLE_NO_FDS: nfds = 0; break;
    case TABLE_FEWER_FDS: nfds = 1; break;
    case TABLE_EXTRA_FDS: nfds = m->nregions + 3; break;
    case TABLE_NINE:
        for (unsigned i = m->nregions; i < 9; i++) {
            vu_mem_describe(m, 2, &p.t.regions[0] + i);
            (&p.t.regions[0] + i)->guest_phys_addr += (uint64_t)i << 32;
            (&p.t.regions[0] + i)->userspace_addr += (uint64_t)i << 32;
        }
        p.t.nregions = 9;
        nfds = 9;
        size = sizeof(p);
        break;
    case TABLE_NREGIONS_HUGE: p.t.nregions = 0xffffffffu; break;
    case TABLE_OVERLAP: p.t.regions[1].guest_phys_addr = p.t.regions[0].guest_phys_addr; break;
    case TABLE_ZERO_SIZE: p.t.regions[2].memory_size = 0; break;
    case TABLE_GPA_WRAPS: p.t.regions[2].guest_phys_addr = 0xffffffffffff0000ull; break;
    case TABLE_UVA_WRAPS: p.t.regions[2].userspace_addr = 0xffffffffffff0000ull; break;
    case TABLE_OFFSET_BEYOND: p.t.regions[2].mmap_offset = 1ull << 40; break;
    }
    if (send_hostile(e, VU_SET_MEM_TABLE, 0, &p, size, fds, nfds) == 0)
        probe_region(e, 2);
    return CASE_DONE;
}

/* ---- ring messages -------------------------------------------------------- */

enum vring_variant {
    VRING_NUM_ZERO, VRING_NUM_NOT_POW2, VRING_NUM_HUGE, VRING_NUM_MAX, VRING_ADDR_OUTSIDE,
    VRING_ADDR_GPA, VRING_ADDR_MISALIGNED, VRING_ADDR_STRADDLES, VRING_BASE_HUGE,
    VRING_BASE_AHEAD,
};

static int send_state(struct env *e, uint32_t request, unsigned index, unsigned num)
{
    struct vhost_vring_state s = { .index = index, .num = num };
    return send_hostile(e, request, 0, &s, sizeof(s), NULL, 0);
}

static void ring_addr(struct env *e, unsigned i, struct vhost_vring_addr *a)
{
    const struct vu_ring *q = &e->fe.ring[i];
    *a = (struct vhost_vring_addr){
        .index = i,
        .desc_user_addr = vu_mem_uva(&e->fe.mem, q->desc_gpa),
        .used_user_addr = vu_mem_uva(&e->fe.mem, q->used_gpa),
        .avail_user_addr = vu_mem_uva(&e->fe.mem, q->avail_gpa),
        .log_guest_addr = q->used_gpa,
    };
}

/* Sends the bad value of VARIANT to the stopped request queue. */
static int send_bad_vring(struct env *e, enum vring_variant v, uint32_t base)
{
    const struct vu_ring *q = &e->fe.ring[RQ];
    const struct vu_region *r0 = &e->fe.mem.r[0];
    struct vhost_vring_addr a;
    ring_addr(e, RQ, &a);
    switch (v) {
    case VRING_NUM_ZERO: return send_state(e, VU_SET_VRING_NUM, RQ, 0);
    case VRING_NUM_NOT_POW2: return send_state(e, VU_SET_VRING_NUM, RQ, 100);
    case VRING_NUM_HUGE: return send_state(e, VU_SET_VRING_NUM, RQ, 32768);
    case VRING_NUM_MAX: return send_state(e, VU_SET_VRING_NUM, RQ, 0xffffffffu);
    case VRING_BASE_HUGE: return send_state(e, VU_SET_VRING_BASE, RQ, 0xffffffffu);
    case VRING_BASE_AHEAD: return send_state(e, VU_SET_VRING_BASE, RQ, base + 1000);
    case VRING_ADDR_OUTSIDE: a.desc_user_addr = VU_UVA_BASE - 0x100000; break;
    case VRING_ADDR_GPA:
        a.desc_user_addr = q->desc_gpa;
        a.avail_user_addr = q->avail_gpa;
        a.used_user_addr = q->used_gpa;
        break;
    case VRING_ADDR_MISALIGNED: a.desc_user_addr += 1; break;
    case VRING_ADDR_STRADDLES: a.desc_user_addr = r0->uva + r0->size - 512; break;
    }
    return send_hostile(e, VU_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
}

/* Stops the request queue, gives it a bad NUM/ADDR/BASE, starts it again
 * with a kick and sends a request through it. */
static int run_bad_vring(struct env *e, const struct hcase *c)
{
    uint32_t base = 0;
    if (vu_stop_ring(&e->fe, RQ, &base) < 0) {
        note(e, "GET_VRING_BASE: %s", e->fe.error);
        return CASE_DONE;
    }
    if (send_bad_vring(e, (enum vring_variant)c->variant, base) < 0)
        return CASE_DONE;
    uint64_t index = RQ;
    if (send_hostile(e, VU_SET_VRING_KICK, 0, &index, sizeof(index), &e->fe.ring[RQ].kick_fd, 1) < 0)
        return CASE_DONE;
    struct fuse_getattr_in in = { 0 };
    struct vu_fuse_req *r = vu_fuse_submit(&e->fs, RQ, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in),
                                           NULL, 0, 256);
    if (r) {
        vu_ring_notify(&e->fe.ring[RQ], true);
        note(e, vu_fuse_wait(&e->fs, r, 300) == 0 ? "; a request was served" : "; no request served");
    }
    return CASE_DONE;
}

/* Request C->request for ring 200 (of 2). */
static int run_ring_index(struct env *e, const struct hcase *c)
{
    const unsigned bad = 200;
    struct vhost_vring_addr a;
    uint64_t index = bad;
    int fd = e->fe.ring[RQ].kick_fd;
    switch (c->request) {
    case VU_SET_VRING_ADDR:
        ring_addr(e, RQ, &a);
        a.index = bad;
        send_hostile(e, c->request, 0, &a, sizeof(a), NULL, 0);
        break;
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR:
        send_hostile(e, c->request, 0, &index, sizeof(index), &fd, 1);
        break;
    case VU_SET_VRING_ENABLE:
        send_state(e, c->request, bad, 1);
        break;
    default:
        send_state(e, c->request, bad, 128);
        break;
    }
    return CASE_DONE;
}

/* ---- fds ------------------------------------------------------------------ */

enum fd_variant {
    FD_KICK_NONE, FD_CALL_NONE, FD_ERR_NONE, FD_KICK_NOFD_FLAG_WITH_FD, FD_ADD_REG_NONE,
    FD_REM_REG_WITH_FD, FD_REM_REG_UNKNOWN, FD_LOG_FD_NONE, FD_LOG_BASE, FD_BACKEND_REQ_NONE,
};

static int run_fds(struct env *e, const struct hcase *c)
{
    uint64_t index = RQ;
    const struct vu_region *r2 = &e->fe.mem.r[2];
    struct vu_mem_reg reg = { .region = { .guest_phys_addr = r2->gpa, .memory_size = r2->size,
                                          .userspace_addr = r2->uva, .mmap_offset = r2->offset } };
    uint64_t log[2] = { 4096, 0 };
    int fd = e->fe.ring[RQ].kick_fd;
    switch ((enum fd_variant)c->variant) {
    case FD_KICK_NONE: return send_hostile(e, VU_SET_VRING_KICK, 0, &index, 8, NULL, 0), CASE_DONE;
    case FD_CALL_NONE: return send_hostile(e, VU_SET_VRING_CALL, 0, &index, 8, NULL, 0), CASE_DONE;
    case FD_ERR_NONE: return send_hostile(e, VU_SET_VRING_ERR, 0, &index, 8, NULL, 0), CASE_DONE;
    case FD_KICK_NOFD_FLAG_WITH_FD:
        index |= VU_VRING_NOFD;
        return send_hostile(e, VU_SET_VRING_KICK, 0, &index, 8, &fd, 1), CASE_DONE;
    case FD_ADD_REG_NONE:
        reg.region.guest_phys_addr = 0x300000000ull;
        reg.region.userspace_addr = 0x700000000000ull;
        return send_hostile(e, VU_ADD_MEM_REG, 0, &reg, sizeof(reg), NULL, 0), CASE_DONE;
    case FD_REM_REG_WITH_FD:
        return send_hostile(e, VU_REM_MEM_REG, 0, &reg, sizeof(reg), &e->fe.mem.fd, 1), CASE_DONE;
    case FD_REM_REG_UNKNOWN:
        reg.region.guest_phys_addr += 0x1000;
        return send_hostile(e, VU_REM_MEM_REG, 0, &reg, sizeof(reg), NULL, 0), CASE_DONE;
    case FD_LOG_FD_NONE: return send_hostile(e, VU_SET_LOG_FD, 0, NULL, 0, NULL, 0), CASE_DONE;
    case FD_LOG_BASE:
        return send_hostile(e, VU_SET_LOG_BASE, 0, log, sizeof(log), &e->fe.mem.fd, 1), CASE_DONE;
    case FD_BACKEND_REQ_NONE:
        return send_hostile(e, VU_SET_BACKEND_REQ_FD, 0, NULL, 0, NULL, 0), CASE_DONE;
    }
    return CASE_DONE;
}

/* GET_FEATURES carrying VARIANT eventfds: none may stay open. */
static int run_extra_fds(struct env *e, const struct hcase *c)
{
    int fds[253];
    unsigned n = (unsigned)c->variant;
    for (unsigned i = 0; i < n; i++)
        fds[i] = eventfd(0, EFD_CLOEXEC);
    int before = fd_count(e->fe.backend_pid);
    send_hostile(e, VU_GET_FEATURES, 0, NULL, 0, fds, n);
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
    int after = fd_count(e->fe.backend_pid);
    if (before >= 0 && after > before)
        return case_fail(e, "the backend kept %d of %u fds sent with GET_FEATURES", after - before, n);
    return CASE_DONE;
}

/* ---- order, features, unknown requests -------------------------------------- */

enum order_variant {
    ORDER_SETUP_BEFORE_OWNER, ORDER_OWNER_TWICE, ORDER_FEATURES_NOT_OFFERED,
    ORDER_PROTOCOL_NOT_OFFERED, ORDER_GET_BASE_TWICE, ORDER_GET_BASE_BEFORE_START,
    ORDER_ENABLE_BEFORE_SETUP, ORDER_KICK_BEFORE_MEMORY,
};

static void kick_request_queue(struct env *e)
{
    uint64_t index = RQ, one = 1;
    send_hostile(e, VU_SET_VRING_KICK, 0, &index, sizeof(index), &e->fe.ring[RQ].kick_fd, 1);
    if (write(e->fe.ring[RQ].kick_fd, &one, sizeof(one)) < 0)
        note(e, "; kick: %s", strerror(errno));
}

static int run_order(struct env *e, const struct hcase *c)
{
    uint64_t all = ~0ull, features = e->fe.backend_features;
    struct vhost_vring_addr a;
    uint32_t base;
    switch ((enum order_variant)c->variant) {
    case ORDER_SETUP_BEFORE_OWNER:
        send_hostile(e, VU_SET_FEATURES, 0, &features, sizeof(features), NULL, 0);
        vu_send_memory(&e->fe);
        send_state(e, VU_SET_VRING_NUM, RQ, e->fe.ring[RQ].num);
        ring_addr(e, RQ, &a);
        send_hostile(e, VU_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
        kick_request_queue(e);
        break;
    case ORDER_OWNER_TWICE: send_hostile(e, VU_SET_OWNER, 0, NULL, 0, NULL, 0); break;
    case ORDER_FEATURES_NOT_OFFERED: send_hostile(e, VU_SET_FEATURES, 0, &all, 8, NULL, 0); break;
    case ORDER_PROTOCOL_NOT_OFFERED:
        send_hostile(e, VU_SET_PROTOCOL_FEATURES, 0, &all, 8, NULL, 0);
        break;
    case ORDER_GET_BASE_TWICE:
    case ORDER_GET_BASE_BEFORE_START:
        for (int i = 0; i < (c->variant == ORDER_GET_BASE_TWICE ? 2 : 1); i++) {
            if (vu_stop_ring(&e->fe, RQ, &base) < 0) {
                note(e, "GET_VRING_BASE: %s", e->fe.error);
                break;
            }
            note(e, "GET_VRING_BASE: %u; ", base);
        }
        break;
    case ORDER_ENABLE_BEFORE_SETUP:
        send_state(e, VU_SET_VRING_ENABLE, RQ, 1);
        kick_request_queue(e);
        break;
    case ORDER_KICK_BEFORE_MEMORY:
        send_hostile(e, VU_SET_FEATURES, 0, &features, sizeof(features), NULL, 0);
        send_state(e, VU_SET_VRING_NUM, RQ, e->fe.ring[RQ].num);
        ring_addr(e, RQ, &a);
        send_hostile(e, VU_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
        kick_request_queue(e);
        break;
    }
    return CASE_DONE;
}

static int run_unknown(struct env *e, const struct hcase *c)
{
    uint64_t zero = 0;
    send_hostile(e, c->request, 0, &zero, sizeof(zero), NULL, 0);
    return CASE_DONE;
}

/* ---- framing -------------------------------------------------------------- */

enum frame_variant {
    FRAME_VERSION_0, FRAME_VERSION_3, FRAME_REPLY_FLAG, FRAME_GARBAGE_HEADER, FRAME_GARBAGE,
    FRAME_HEADER_THEN_CLOSE, FRAME_PAYLOAD_THEN_CLOSE, FRAME_SIZE_HUGE_THEN_CLOSE,
    FRAME_SIZE_MIB,
};

static int run_frame(struct env *e, const struct hcase *c)
{
    struct vu_header h = { .request = VU_GET_FEATURES, .flags = VU_VERSION };
    static uint8_t big[1 << 20];
    switch ((enum frame_variant)c->variant) {
    case FRAME_VERSION_0: send_hostile(e, VU_GET_FEATURES, 0x0 | 0x10, NULL, 0, NULL, 0); break;
    case FRAME_VERSION_3: send_hostile(e, VU_GET_FEATURES, 0x3, NULL, 0, NULL, 0); break;
    case FRAME_REPLY_FLAG:
        send_hostile(e, VU_GET_FEATURES, VU_VERSION | VU_FLAG_REPLY, NULL, 0, NULL, 0);
        break;
    case FRAME_GARBAGE_HEADER:
        memset(&h, 0xff, sizeof(h));
        vu_send_bytes(&e->fe, &h, sizeof(h), NULL, 0);
        break;
    case FRAME_GARBAGE:
        for (size_t i = 0; i < 4096; i++)
            big[i] = (uint8_t)(i * 2654435761u >> 13);
        vu_send_bytes(&e->fe, big, 4096, NULL, 0);
        break;
    case FRAME_HEADER_THEN_CLOSE: vu_send_bytes(&e->fe, &h, 6, NULL, 0); break;
    case FRAME_PAYLOAD_THEN_CLOSE:
        h.request = VU_SET_MEM_TABLE;
        h.size = 104;
        vu_send_bytes(&e->fe, &h, sizeof(h), NULL, 0);
        vu_send_bytes(&e->fe, big, 10, NULL, 0);
        break;
    case FRAME_SIZE_HUGE_THEN_CLOSE:
        h.size = 0x7fffffff;
        vu_send_bytes(&e->fe, &h, sizeof(h), NULL, 0);
        break;
    case FRAME_SIZE_MIB:
        memset(big, 0, sizeof(big));
        h.request = VU_SET_FEATURES;
        h.size = sizeof(big);
        if (vu_send_bytes(&e->fe, &h, sizeof(h), NULL, 0) == 0 &&
            vu_send_bytes(&e->fe, big, sizeof(big), NULL, 0) == 0)
            drain_replies(e, 500);
        else
            note(e, "sending 1 MiB: %s", e->fe.error);
        break;
    }
    return CASE_DONE;
}

/* ---- every message with a payload too short or too long -------------------- */

/* The natural payload of REQUEST (and its fds); returns its size. */
static uint32_t natural_payload(struct env *e, uint32_t request, uint8_t *p, int *fds, unsigned *nfds)
{
    struct vu_mem *m = &e->fe.mem;
    uint64_t u64 = request == VU_SET_FEATURES ? e->fe.features : e->fe.protocol;
    struct vhost_vring_state s = { .index = RQ, .num = request == VU_SET_VRING_ENABLE ? 1 : 128 };
    *nfds = 0;
    switch (request) {
    case VU_SET_FEATURES:
    case VU_SET_PROTOCOL_FEATURES:
        memcpy(p, &u64, 8);
        return 8;
    case VU_SET_MEM_TABLE: {
        struct vu_mem_table t = { .nregions = m->nregions };
        for (unsigned i = 0; i < m->nregions; i++) {
            vu_mem_describe(m, i, &t.regions[i]);
            fds[(*nfds)++] = m->fd;
        }
        memcpy(p, &t, sizeof(t));
        return 8 + m->nregions * (uint32_t)sizeof(struct vu_region_desc);
    }
    case VU_SET_LOG_BASE:
        fds[(*nfds)++] = m->fd;
        memset(p, 0, 16);
        return 16;
    case VU_SET_LOG_FD:
    case VU_SET_BACKEND_REQ_FD:
        fds[(*nfds)++] = e->fe.ring[RQ].err_fd;
        return 0;
    case VU_SET_VRING_NUM:
    case VU_SET_VRING_BASE:
    case VU_GET_VRING_BASE:
    case VU_SET_VRING_ENABLE:
        if (request == VU_SET_VRING_BASE)
            s.num = e->fe.ring[RQ].avail_idx;
        memcpy(p, &s, sizeof(s));
        return sizeof(s);
    case VU_SET_VRING_ADDR: {
        struct vhost_vring_addr a;
        ring_addr(e, RQ, &a);
        memcpy(p, &a, sizeof(a));
        return sizeof(a);
    }
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR: {
        const struct vu_ring *q = &e->fe.ring[RQ];
        fds[(*nfds)++] = request == VU_SET_VRING_KICK ? q->kick_fd
                         : request == VU_SET_VRING_CALL ? q->call_fd : q->err_fd;
        uint64_t index = RQ;
        memcpy(p, &index, 8);
        return 8;
    }
    case VU_ADD_MEM_REG:
    case VU_REM_MEM_REG: {
        struct vu_mem_reg reg = { .region = { .guest_phys_addr = 0x300000000ull, .memory_size = 65536,
                                              .userspace_addr = 0x700000000000ull,
                                              .mmap_offset = m->r[2].offset } };
        if (request == VU_ADD_MEM_REG)
            fds[(*nfds)++] = m->fd;
        memcpy(p, &reg, sizeof(reg));
        return sizeof(reg);
    }
    default:
        return 0;
    }
}

static int run_size(struct env *e, const struct hcase *c)
{
    uint8_t payload[512] = { 0 };
    int fds[VU_MEM_TABLE_MAX];
    unsigned nfds;
    uint32_t size = natural_payload(e, c->request, payload, fds, &nfds);
    uint32_t wrong = (uint32_t)((int64_t)size + c->variant);
    note(e, "%u payload bytes instead of %u: ", wrong, size);
    send_hostile(e, c->request, 0, payload, wrong, fds, nfds);
    return CASE_DONE;
}

/* ---- the table ------------------------------------------------------------- */

#define SURVIVE EXPECT_SURVIVE
#define RESET EXPECT_SERVE_AFTER_RESET
#define RUNNING STAGE_RUNNING
#define NOSPEC NULL, 0

#define MSG(name, stage, expect, flags, fn, request, variant, what) \
    { name, stage, expect, flags, fn, NOSPEC, NOSPEC, request, variant, what }
#define TABLE(name, variant, what) MSG(name, RUNNING, SURVIVE, 0, run_mem_table, 0, variant, what)
#define VRING(name, variant, what) MSG(name, RUNNING, RESET, 0, run_bad_vring, 0, variant, what)
#define INDEX(name, request) \
    MSG("ring-index-out-of-range-" name, RUNNING, SURVIVE, 0, run_ring_index, request, 0, \
        "ring 200 in a device of 2 rings")
#define FDS(name, flags, variant, what) MSG(name, RUNNING, SURVIVE, flags, run_fds, 0, variant, what)
#define ORDER(name, stage, variant, what) MSG(name, stage, SURVIVE, 0, run_order, 0, variant, what)
#define UNKNOWN(name, request) \
    MSG("unknown-request-" name, RUNNING, SURVIVE, 0, run_unknown, request, 0, \
        "a request id we did not negotiate, with need_reply")
#define FRAME(name, flags, variant, what) MSG(name, RUNNING, SURVIVE, flags, run_frame, 0, variant, what)
#define SIZE_SHORT(name, request, by) \
    MSG("size-short-" name, RUNNING, SURVIVE, 0, run_size, request, -(by), "payload too short")
#define SIZE_LONG(name, request) \
    MSG("size-long-" name, RUNNING, SURVIVE, 0, run_size, request, 8, "payload 8 bytes too long")
#define SIZES(name, request, by) SIZE_SHORT(name, request, by), SIZE_LONG(name, request)

static const struct hcase cases[] = {
    TABLE("mem-table-without-fds", TABLE_NO_FDS, "SET_MEM_TABLE of 3 regions, no fd"),
    TABLE("mem-table-fewer-fds", TABLE_FEWER_FDS, "SET_MEM_TABLE of 3 regions, 1 fd"),
    TABLE("mem-table-extra-fds", TABLE_EXTRA_FDS, "SET_MEM_TABLE of 3 regions, 6 fds"),
    TABLE("mem-table-nine-regions", TABLE_NINE, "SET_MEM_TABLE of 9 regions (the limit is 8)"),
    TABLE("mem-table-nregions-huge", TABLE_NREGIONS_HUGE, "nregions 0xffffffff"),
    TABLE("mem-table-overlapping", TABLE_OVERLAP, "two regions at the same guest address"),
    TABLE("mem-table-zero-size", TABLE_ZERO_SIZE, "a region of 0 bytes"),
    TABLE("mem-table-gpa-wraps", TABLE_GPA_WRAPS, "a region whose guest range wraps past 2^64"),
    TABLE("mem-table-uva-wraps", TABLE_UVA_WRAPS, "a region whose user range wraps past 2^64"),
    TABLE("mem-table-offset-beyond-file", TABLE_OFFSET_BEYOND, "mmap_offset 1 TiB"),
    VRING("vring-num-zero", VRING_NUM_ZERO, "SET_VRING_NUM 0, then a kick"),
    VRING("vring-num-not-power-of-2", VRING_NUM_NOT_POW2, "SET_VRING_NUM 100, then a kick"),
    VRING("vring-num-32768", VRING_NUM_HUGE, "SET_VRING_NUM 32768 over a ring of 128"),
    VRING("vring-num-0xffffffff", VRING_NUM_MAX, "SET_VRING_NUM 0xffffffff"),
    VRING("vring-addr-outside", VRING_ADDR_OUTSIDE, "descriptor table below every region"),
    VRING("vring-addr-gpa-not-uva", VRING_ADDR_GPA,
          "ring addresses given as guest-physical instead of frontend-virtual"),
    VRING("vring-addr-misaligned", VRING_ADDR_MISALIGNED, "descriptor table at an odd address"),
    VRING("vring-addr-straddles", VRING_ADDR_STRADDLES, "descriptor table past the end of region 0"),
    VRING("vring-base-0xffffffff", VRING_BASE_HUGE, "SET_VRING_BASE 0xffffffff"),
    VRING("vring-base-ahead", VRING_BASE_AHEAD, "SET_VRING_BASE 1000 past the avail index"),
    INDEX("num", VU_SET_VRING_NUM),
    INDEX("addr", VU_SET_VRING_ADDR),
    INDEX("base", VU_SET_VRING_BASE),
    INDEX("get-base", VU_GET_VRING_BASE),
    INDEX("kick", VU_SET_VRING_KICK),
    INDEX("call", VU_SET_VRING_CALL),
    INDEX("err", VU_SET_VRING_ERR),
    INDEX("enable", VU_SET_VRING_ENABLE),
    FDS("kick-without-fd", 0, FD_KICK_NONE, "SET_VRING_KICK without fd or NOFD flag"),
    FDS("call-without-fd", 0, FD_CALL_NONE, "SET_VRING_CALL without fd or NOFD flag"),
    FDS("err-without-fd", 0, FD_ERR_NONE, "SET_VRING_ERR without fd or NOFD flag"),
    FDS("kick-nofd-flag-with-fd", 0, FD_KICK_NOFD_FLAG_WITH_FD, "NOFD flag and an fd"),
    FDS("add-mem-reg-without-fd", CASE_MEM_SLOTS, FD_ADD_REG_NONE, "ADD_MEM_REG without fd"),
    FDS("rem-mem-reg-with-fd", CASE_MEM_SLOTS, FD_REM_REG_WITH_FD, "REM_MEM_REG carrying an fd"),
    FDS("rem-mem-reg-unknown", CASE_MEM_SLOTS, FD_REM_REG_UNKNOWN, "REM_MEM_REG of no region"),
    FDS("log-fd-without-fd", 0, FD_LOG_FD_NONE, "SET_LOG_FD without fd"),
    FDS("log-base-not-negotiated", 0, FD_LOG_BASE, "SET_LOG_BASE without LOG_SHMFD"),
    FDS("backend-req-fd-without-fd", 0, FD_BACKEND_REQ_NONE, "SET_BACKEND_REQ_FD without fd"),
    MSG("fds-on-get-features", RUNNING, SURVIVE, 0, run_extra_fds, 0, 2, "2 fds on GET_FEATURES"),
    MSG("too-many-fds", RUNNING, SURVIVE, 0, run_extra_fds, 0, 200, "200 fds on GET_FEATURES"),
    ORDER("setup-before-owner", STAGE_CONNECTED, ORDER_SETUP_BEFORE_OWNER,
          "memory table and a ring before SET_OWNER"),
    ORDER("owner-twice", RUNNING, ORDER_OWNER_TWICE, "SET_OWNER again"),
    ORDER("features-not-offered", RUNNING, ORDER_FEATURES_NOT_OFFERED, "SET_FEATURES of all 64 bits"),
    ORDER("protocol-features-not-offered", RUNNING, ORDER_PROTOCOL_NOT_OFFERED,
          "SET_PROTOCOL_FEATURES of all 64 bits"),
    ORDER("get-vring-base-twice", RUNNING, ORDER_GET_BASE_TWICE, "GET_VRING_BASE twice"),
    ORDER("get-vring-base-before-start", STAGE_OWNED, ORDER_GET_BASE_BEFORE_START,
          "GET_VRING_BASE of a ring never set up"),
    ORDER("enable-before-setup", STAGE_OWNED, ORDER_ENABLE_BEFORE_SETUP,
          "SET_VRING_ENABLE and a kick with no memory, size or address"),
    ORDER("kick-before-mem-table", STAGE_OWNED, ORDER_KICK_BEFORE_MEMORY,
          "a ring set up and kicked before any memory table"),
    UNKNOWN("0", 0),
    UNKNOWN("send-rarp", VU_SEND_RARP),
    UNKNOWN("iotlb", VU_IOTLB_MSG),
    UNKNOWN("get-config", VU_GET_CONFIG),
    UNKNOWN("set-config", VU_SET_CONFIG),
    UNKNOWN("vring-kick", VU_VRING_KICK),
    UNKNOWN("set-status", VU_SET_STATUS),
    UNKNOWN("get-status", VU_GET_STATUS),
    UNKNOWN("41", 41),
    UNKNOWN("1000", 1000),
    UNKNOWN("0xffffffff", 0xffffffffu),
    FRAME("header-version-0", 0, FRAME_VERSION_0, "GET_FEATURES with version 0"),
    FRAME("header-version-3", 0, FRAME_VERSION_3, "GET_FEATURES with version 3"),
    FRAME("header-reply-flag", 0, FRAME_REPLY_FLAG, "GET_FEATURES flagged as a reply"),
    FRAME("garbage-header", CASE_ENDS_SESSION, FRAME_GARBAGE_HEADER, "12 bytes of 0xff, then close"),
    FRAME("garbage-bytes", CASE_ENDS_SESSION, FRAME_GARBAGE, "4 KiB of noise, then close"),
    FRAME("header-then-close", CASE_ENDS_SESSION, FRAME_HEADER_THEN_CLOSE, "half a header, then close"),
    FRAME("payload-then-close", CASE_ENDS_SESSION, FRAME_PAYLOAD_THEN_CLOSE,
          "SET_MEM_TABLE announcing 104 bytes, 10 sent, then close"),
    FRAME("size-huge-then-close", CASE_ENDS_SESSION, FRAME_SIZE_HUGE_THEN_CLOSE,
          "a header announcing 2 GiB of payload, then close"),
    FRAME("size-1mib", 0, FRAME_SIZE_MIB, "SET_FEATURES with 1 MiB of payload"),
    SIZE_LONG("get-features", VU_GET_FEATURES),
    SIZES("set-features", VU_SET_FEATURES, 4),
    SIZE_LONG("set-owner", VU_SET_OWNER),
    SIZE_LONG("reset-owner", VU_RESET_OWNER),
    SIZE_SHORT("set-mem-table", VU_SET_MEM_TABLE, 32),
    SIZE_SHORT("set-mem-table-4-bytes", VU_SET_MEM_TABLE, 100),
    SIZE_LONG("set-mem-table", VU_SET_MEM_TABLE),
    SIZES("set-log-base", VU_SET_LOG_BASE, 8),
    SIZE_LONG("set-log-fd", VU_SET_LOG_FD),
    SIZES("set-vring-num", VU_SET_VRING_NUM, 4),
    SIZES("set-vring-addr", VU_SET_VRING_ADDR, 8),
    SIZES("set-vring-base", VU_SET_VRING_BASE, 4),
    SIZES("get-vring-base", VU_GET_VRING_BASE, 4),
    SIZES("set-vring-kick", VU_SET_VRING_KICK, 4),
    SIZES("set-vring-call", VU_SET_VRING_CALL, 4),
    SIZES("set-vring-err", VU_SET_VRING_ERR, 4),
    SIZE_LONG("get-protocol-features", VU_GET_PROTOCOL_FEATURES),
    SIZES("set-protocol-features", VU_SET_PROTOCOL_FEATURES, 4),
    SIZE_LONG("get-queue-num", VU_GET_QUEUE_NUM),
    SIZES("set-vring-enable", VU_SET_VRING_ENABLE, 4),
    SIZE_LONG("set-backend-req-fd", VU_SET_BACKEND_REQ_FD),
    SIZE_LONG("reset-device", VU_RESET_DEVICE),
    SIZE_LONG("get-max-mem-slots", VU_GET_MAX_MEM_SLOTS),
    SIZES("add-mem-reg", VU_ADD_MEM_REG, 8),
    SIZES("rem-mem-reg", VU_REM_MEM_REG, 8),
};

size_t hostile_message_cases(const struct hcase **out)
{
    *out = cases;
    return sizeof(cases) / sizeof(cases[0]);
}
