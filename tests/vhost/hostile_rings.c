/*
 * hostile_rings.c - vhost-hostile's descriptor and ring cases: chains out of
 * every region, straddling a hole, overlapping the rings, wrapping,
 * looping, too long; indirect tables out of range, nested, of odd
 * lengths; avail indexes the guest cannot have written; replies with no
 * room; memory removed under a running ring.
 *
 * Most cases are data: a list of ring descriptors (and an indirect table)
 * written raw into the request queue.  Their buffers lie in a scratch area
 * of guest memory whose every byte is compared after the case: the backend
 * may write only where a writable descriptor let it.
 */
#include "hostile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The scratch area. */
#define GOOD_OFF 0u
#define BADLEN_OFF 512u
#define OUT_OFF 4096u
#define OUT_SIZE 4096u
#define TABLE_OFF 65536u
#define TABLE_SIZE 65536u

#define GOOD_LEN ((uint32_t)(sizeof(struct fuse_in_header) + sizeof(struct fuse_getattr_in)))
#define ATTR_REPLY_LEN ((uint32_t)(sizeof(struct fuse_out_header) + sizeof(struct fuse_attr_out)))
#define RAW_UNIQUE 0x7770ull

#define R VRING_DESC_F_NEXT
#define W VRING_DESC_F_WRITE
#define IND VRING_DESC_F_INDIRECT

static struct vu_ring *ring_of(struct env *e, const struct hcase *c)
{
    return &e->fe.ring[c->flags & CASE_HIPRIO ? VU_HIPRIO : VU_REQUEST_QUEUE];
}

static uint64_t where_gpa(struct env *e, enum where at)
{
    const struct vu_ring *q = &e->fe.ring[VU_REQUEST_QUEUE];
    switch (at) {
    case AT_GOOD: return e->scratch_gpa + GOOD_OFF;
    case AT_BADLEN: return e->scratch_gpa + BADLEN_OFF;
    case AT_OUT: return e->scratch_gpa + OUT_OFF;
    case AT_TABLE: return e->scratch_gpa + TABLE_OFF;
    case AT_HOLE: return vu_mem_hole(&e->fe.mem);
    case AT_HIGH: return 0xffffffff00000000ull;
    case AT_ZERO: return 0;
    case AT_WRAP: return 0xfffffffffffff000ull;
    case AT_DESC: return q->desc_gpa;
    case AT_AVAIL: return q->avail_gpa;
    case AT_USED: return q->used_gpa;
    }
    return 0;
}

static uint8_t *scratch(struct env *e)
{
    return vu_mem_ptr(&e->fe.mem, e->scratch_gpa, SCRATCH_SIZE);
}

/* A GETATTR of the root at GPA whose header claims CLAIMED bytes. */
static void write_getattr(struct env *e, uint64_t gpa, uint32_t claimed)
{
    struct {
        struct fuse_in_header h;
        struct fuse_getattr_in a;
    } req = { .h = { .len = claimed, .opcode = FUSE_GETATTR, .unique = RAW_UNIQUE,
                     .nodeid = FUSE_ROOT_ID, .pid = (uint32_t)getpid() } };
    vu_mem_write(&e->fe.mem, gpa, &req, sizeof(req));
}

static void prepare_scratch(struct env *e)
{
    memset(scratch(e), 0x5a, SCRATCH_SIZE);
    memset(e->writable_map, 0, SCRATCH_SIZE);
    write_getattr(e, where_gpa(e, AT_GOOD), GOOD_LEN);
    write_getattr(e, where_gpa(e, AT_BADLEN), 4096);
}

/* Lets the backend write LEN bytes at GPA, as far as that is scratch. */
static void allow_write(struct env *e, uint64_t gpa, uint64_t len)
{
    if (gpa < e->scratch_gpa || gpa - e->scratch_gpa >= SCRATCH_SIZE)
        return;
    uint64_t start = gpa - e->scratch_gpa;
    uint64_t end = len > SCRATCH_SIZE - start ? SCRATCH_SIZE : start + len;
    memset(e->writable_map + start, 1, end - start);
}

static uint16_t resolve_next(int next, const uint16_t *idx, unsigned n)
{
    if (next >= ABS(0))
        return (uint16_t)(next - ABS(0));
    return next >= 0 && (unsigned)next < n ? idx[next] : 0;
}

static void write_desc(struct env *e, struct vring_desc *d, const struct dspec *s, uint16_t next)
{
    d->addr = where_gpa(e, s->at) + (uint64_t)s->offset;
    d->len = s->len;
    d->flags = s->flags;
    d->next = next;
    if (s->flags & VRING_DESC_F_WRITE)
        allow_write(e, d->addr, d->len);
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits up to LIMIT_MS for HEAD to come back on Q; true (and *LEN) when it
 * did.  Other used entries are dropped. */
static bool wait_raw(struct env *e, struct vu_ring *q, uint16_t head, int limit_ms, uint32_t *len)
{
    int64_t deadline = now_ms() + limit_ms;
    for (int64_t left = limit_ms; left > 0; left = deadline - now_ms()) {
        if (vu_ring_wait(q, (int)left) <= 0)
            break;
        struct vu_used u;
        while (vu_ring_get_used(q, &u) == 1) {
            if (u.id == head && (!u.known || u.token == &e->raw_token)) {
                *len = u.len;
                return true;
            }
        }
    }
    return false;
}

/* Waits for HEAD to come back on Q; notes its length or that it did not.
 * Only a case that wants the chain back waits the whole timeout. */
static void await_raw(struct env *e, const struct hcase *c, struct vu_ring *q, uint16_t head)
{
    int limit = c->flags & CASE_RETURNS ? e->timeout_ms : e->quick_ms;
    e->raw_returned = wait_raw(e, q, head, limit, &e->raw_len);
    if (e->raw_returned)
        note(e, "bad request returned (length %u)", e->raw_len);
    else
        note(e, "bad request not returned within %d ms", limit);
}

/* Publishes the chain in IDX (already written) and waits for it. */
static int publish_and_wait(struct env *e, const struct hcase *c, struct vu_ring *q,
                            const uint16_t *idx, unsigned n)
{
    memcpy(e->scratch_copy, scratch(e), SCRATCH_SIZE);
    e->raw_sent = true;
    vu_ring_publish_raw(q, idx, n, &e->raw_token);
    vu_ring_notify(q, true);
    await_raw(e, c, q, idx[0]);
    return CASE_DONE;
}

/* Writes C's chain (and indirect table) and sends it. */
static int send_spec(struct env *e, const struct hcase *c)
{
    struct vu_ring *q = ring_of(e, c);
    uint16_t idx[16];
    if (c->nchain > 16 || vu_ring_reserve(q, c->nchain, idx) < 0)
        return case_fail(e, "no room for %u descriptors", c->nchain);
    prepare_scratch(e);
    for (unsigned i = 0; i < c->nchain; i++)
        write_desc(e, &q->vr.desc[idx[i]], &c->chain[i], resolve_next(c->chain[i].next, idx, c->nchain));
    struct vring_desc *table = (struct vring_desc *)(scratch(e) + TABLE_OFF);
    for (unsigned i = 0; i < c->ntable; i++) {
        int next = c->table[i].next;
        write_desc(e, &table[i], &c->table[i], (uint16_t)(next >= ABS(0) ? next - ABS(0) : next < 0 ? 0 : next));
    }
    return publish_and_wait(e, c, q, idx, c->nchain);
}

static int run_spec(struct env *e, const struct hcase *c)
{
    return send_spec(e, c);
}

/* The GETATTR reply at GPA must be right: the chain was legal. */
static int check_attr_reply(struct env *e, uint64_t gpa)
{
    if (!e->raw_returned)
        return case_fail(e, "a legal request was not answered");
    struct {
        struct fuse_out_header h;
        struct fuse_attr_out a;
    } r;
    vu_mem_read(&e->fe.mem, gpa, &r, sizeof(r));
    if (e->raw_len != ATTR_REPLY_LEN || r.h.len != ATTR_REPLY_LEN || r.h.unique != RAW_UNIQUE ||
        r.h.error != 0 || !S_ISDIR(r.a.attr.mode))
        return case_fail(e, "a legal request got a wrong reply: used length %u, len %u, "
                            "unique %#llx, error %d, mode %o",
                         e->raw_len, r.h.len, (unsigned long long)r.h.unique, r.h.error,
                         r.a.attr.mode);
    note(e, ", answered correctly");
    return CASE_DONE;
}

static int run_spec_legal(struct env *e, const struct hcase *c)
{
    int r = send_spec(e, c);
    return r == CASE_DONE ? check_attr_reply(e, where_gpa(e, AT_OUT)) : r;
}

void probe_region(struct env *e, unsigned region)
{
    struct vu_ring *q = &e->fe.ring[VU_REQUEST_QUEUE];
    void *p;
    uint64_t req = vu_mem_alloc(&e->fe.mem, region, GOOD_LEN + OUT_SIZE, 4096, &p);
    uint16_t idx[2];
    if (!req || vu_ring_reserve(q, 2, idx) < 0) {
        note(e, "; no room for a probe in region %u", region);
        return;
    }
    write_getattr(e, req, GOOD_LEN);
    q->vr.desc[idx[0]] = (struct vring_desc){ .addr = req, .len = GOOD_LEN, .flags = R, .next = idx[1] };
    q->vr.desc[idx[1]] = (struct vring_desc){ .addr = req + GOOD_LEN, .len = OUT_SIZE, .flags = W };
    vu_ring_publish_raw(q, idx, 2, &e->raw_token);
    vu_ring_notify(q, true);
    uint32_t len;
    bool back = wait_raw(e, q, idx[0], e->timeout_ms, &len);
    if (back)
        note(e, "; a request in region %u came back (length %u)", region, len);
    else
        note(e, "; a request in region %u did not come back", region);
}

/* ---- cases with code of their own ---------------------------------------- */

/* A legal chain as long as the ring: the request, then 16-byte pieces. */
static int run_whole_ring(struct env *e, const struct hcase *c)
{
    (void)c;
    struct vu_ring *q = &e->fe.ring[VU_REQUEST_QUEUE];
    unsigned n = q->num;
    uint16_t idx[1024];
    if (n > 1024 || (n - 1) * 16 > OUT_SIZE || vu_ring_reserve(q, n, idx) < 0)
        return case_skip(e, "needs all %u descriptors free and a queue of at most 257", n);
    prepare_scratch(e);
    struct dspec s = { AT_GOOD, 0, GOOD_LEN, R, 0 };
    write_desc(e, &q->vr.desc[idx[0]], &s, idx[1]);
    for (unsigned i = 1; i < n; i++) {
        struct dspec piece = { AT_OUT, (int64_t)(i - 1) * 16, 16, (uint16_t)(W | (i + 1 < n ? R : 0)), 0 };
        write_desc(e, &q->vr.desc[idx[i]], &piece, i + 1 < n ? idx[i + 1] : 0);
    }
    publish_and_wait(e, c, q, idx, n);
    return check_attr_reply(e, where_gpa(e, AT_OUT));
}

/* An indirect table of VARIANT entries (0: twice the queue size plus
 * one): the request, then writable pieces as small as it takes. */
static int run_long_indirect(struct env *e, const struct hcase *c)
{
    struct vu_ring *q = &e->fe.ring[VU_REQUEST_QUEUE];
    unsigned n = c->variant ? (unsigned)c->variant : 2u * q->num + 1;
    unsigned piece = OUT_SIZE / (n - 1) < 16 ? OUT_SIZE / (n - 1) : 16;
    uint16_t head;
    if (piece == 0 || n * 16 > TABLE_SIZE || vu_ring_reserve(q, 1, &head) < 0)
        return case_skip(e, "a table of %u entries does not fit the scratch area", n);
    prepare_scratch(e);
    struct vring_desc *table = (struct vring_desc *)(scratch(e) + TABLE_OFF);
    struct dspec s = { AT_GOOD, 0, GOOD_LEN, R, 1 };
    write_desc(e, &table[0], &s, 1);
    for (unsigned i = 1; i < n; i++) {
        struct dspec out = { AT_OUT, (int64_t)(i - 1) * piece, piece,
                             (uint16_t)(W | (i + 1 < n ? R : 0)), 0 };
        write_desc(e, &table[i], &out, (uint16_t)(i + 1 < n ? i + 1 : 0));
    }
    struct dspec ring_desc = { AT_TABLE, 0, n * 16, IND, -1 };
    write_desc(e, &q->vr.desc[head], &ring_desc, 0);
    return publish_and_wait(e, c, q, &head, 1);
}

/* Two free descriptors of the request queue into IDX, the scratch area
 * prepared: the queue, or NULL when the case failed (said). */
static struct vu_ring *two_request_descriptors(struct env *e, uint16_t idx[2])
{
    struct vu_ring *q = &e->fe.ring[VU_REQUEST_QUEUE];
    if (vu_ring_reserve(q, 2, idx) < 0) {
        case_fail(e, "no free descriptors");
        return NULL;
    }
    prepare_scratch(e);
    return q;
}

/* Legal: the request spans the end of region 0 and the start of region 1
 * (adjacent guest-physical ranges, not adjacent in the memfd). */
static int run_request_straddles(struct env *e, const struct hcase *c)
{
    (void)c;
    uint16_t idx[2];
    struct vu_ring *q = two_request_descriptors(e, idx);
    if (!q)
        return CASE_FAILED;
    uint64_t req = vu_mem_straddling(&e->fe.mem, GOOD_LEN);
    write_getattr(e, req, GOOD_LEN);
    q->vr.desc[idx[0]] = (struct vring_desc){ .addr = req, .len = GOOD_LEN, .flags = R, .next = idx[1] };
    struct dspec out = { AT_OUT, 0, OUT_SIZE, W, -1 };
    write_desc(e, &q->vr.desc[idx[1]], &out, 0);
    publish_and_wait(e, c, q, idx, 2);
    return check_attr_reply(e, where_gpa(e, AT_OUT));
}

/* Legal: the reply buffer spans region 0 and region 1. */
static int run_reply_straddles(struct env *e, const struct hcase *c)
{
    (void)c;
    uint16_t idx[2];
    struct vu_ring *q = two_request_descriptors(e, idx);
    if (!q)
        return CASE_FAILED;
    uint64_t out = vu_mem_straddling(&e->fe.mem, ATTR_REPLY_LEN);
    struct dspec good = { AT_GOOD, 0, GOOD_LEN, R, -1 };
    write_desc(e, &q->vr.desc[idx[0]], &good, idx[1]);
    q->vr.desc[idx[1]] = (struct vring_desc){ .addr = out, .len = ATTR_REPLY_LEN, .flags = W };
    publish_and_wait(e, c, q, idx, 2);
    return check_attr_reply(e, out);
}

/* A memory table whose region 1 claims 64 MiB of a memfd that ends long
 * before: touching the missing part is SIGBUS unless the backend checked
 * the fd's size.  Then a reply buffer there. */
static int run_region_beyond_file(struct env *e, const struct hcase *c)
{
    (void)c;
    struct vu_mem *m = &e->fe.mem;
    struct vu_mem_table t = { .nregions = m->nregions };
    int fds[VU_MEM_TABLE_MAX];
    for (unsigned i = 0; i < m->nregions; i++) {
        vu_mem_describe(m, i, &t.regions[i]);
        fds[i] = m->fd;
    }
    const uint64_t claimed = 64u << 20;
    t.regions[1].memory_size = claimed;
    t.regions[1].userspace_addr = 0x680000000000ull; /* clear of the other regions */
    uint32_t size = 8 + m->nregions * (uint32_t)sizeof(struct vu_region_desc);
    if (send_hostile(e, VU_SET_MEM_TABLE, 0, &t, size, fds, m->nregions) < 0)
        return CASE_DONE;
    uint16_t idx[2];
    struct vu_ring *q = two_request_descriptors(e, idx);
    if (!q)
        return CASE_FAILED;
    struct dspec good = { AT_GOOD, 0, GOOD_LEN, R, -1 };
    write_desc(e, &q->vr.desc[idx[0]], &good, idx[1]);
    q->vr.desc[idx[1]] = (struct vring_desc){ .addr = m->r[1].gpa + claimed / 2, .len = OUT_SIZE,
                                              .flags = W };
    return publish_and_wait(e, c, q, idx, 2);
}

/* avail->idx moved by more than the queue size (VARIANT: how far). */
static int run_avail_jump(struct env *e, const struct hcase *c)
{
    struct vu_ring *q = &e->fe.ring[VU_REQUEST_QUEUE];
    int delta = c->variant ? c->variant : q->num + 5;
    vu_ring_set_avail_idx(q, (uint16_t)(q->avail_idx + delta));
    vu_ring_notify(q, true);
    usleep(200 * 1000);
    note(e, "avail idx moved by %d", delta);
    if (vu_ring_has_used(q))
        note(e, "; the backend used entries nobody made");
    /* Our own view must go back for the restart: the ring is reset then. */
    return CASE_DONE;
}

static int run_head_out_of_range(struct env *e, const struct hcase *c)
{
    (void)c;
    struct vu_ring *q = &e->fe.ring[VU_REQUEST_QUEUE];
    uint16_t head = (uint16_t)(q->num + 72);
    memcpy(e->scratch_copy, scratch(e), SCRATCH_SIZE);
    memset(e->writable_map, 0, SCRATCH_SIZE);
    e->raw_sent = true;
    vu_ring_publish(q, head);
    vu_ring_notify(q, true);
    await_raw(e, c, q, head);
    return CASE_DONE;
}

/* A 64 KiB READ with room for 100 bytes of reply. */
static int run_short_read_reply(struct env *e, const struct hcase *c)
{
    (void)c;
    struct fuse_entry_out entry;
    uint64_t fh;
    static uint8_t data[65536];
    memset(data, 0xab, sizeof(data));
    uint32_t written;
    char name[64];
    snprintf(name, sizeof(name), "hostile-read-%d.dat", (int)getpid());
    int err = vu_fuse_create_file(&e->fs, FUSE_ROOT_ID, name, 0644, &entry, &fh);
    if (err == 0)
        err = vu_fuse_write(&e->fs, entry.nodeid, fh, 0, data, sizeof(data), &written);
    if (err)
        return case_fail(e, "preparing a file: %s", err == VU_FUSE_BROKEN ? e->fe.error : strerror(-err));
    uint16_t idx[2];
    struct vu_ring *q = two_request_descriptors(e, idx);
    if (!q)
        return CASE_FAILED;
    struct {
        struct fuse_in_header h;
        struct fuse_read_in r;
    } req = { .h = { .len = sizeof(req), .opcode = FUSE_READ, .unique = RAW_UNIQUE, .nodeid = entry.nodeid },
              .r = { .fh = fh, .offset = 0, .size = sizeof(data) } };
    vu_mem_write(&e->fe.mem, where_gpa(e, AT_GOOD), &req, sizeof(req));
    struct dspec in = { AT_GOOD, 0, sizeof(req), R, -1 };
    struct dspec out = { AT_OUT, 0, 100, W, -1 };
    write_desc(e, &q->vr.desc[idx[0]], &in, idx[1]);
    write_desc(e, &q->vr.desc[idx[1]], &out, 0);
    publish_and_wait(e, c, q, idx, 2);
    if (e->raw_returned && e->raw_len > 100)
        return case_fail(e, "used length %u for a 100-byte reply buffer", e->raw_len);
    vu_fuse_call(&e->fs, VU_REQUEST_QUEUE, FUSE_UNLINK, FUSE_ROOT_ID, NULL, 0, name,
                 (uint32_t)strlen(name) + 1, NULL, 0, NULL);
    return CASE_DONE;
}

static int run_before_init(struct env *e, const struct hcase *c)
{
    (void)c;
    struct fuse_attr_out a;
    int err = vu_fuse_getattr(&e->fs, FUSE_ROOT_ID, &a);
    note(e, "GETATTR before INIT: %s", err == 0 ? "answered" : err == VU_FUSE_BROKEN ? e->fe.error : strerror(-err));
    return CASE_DONE;
}

/* Requests in flight, then RESET_DEVICE (VARIANT 0) or the memory table
 * sent again (VARIANT 1). */
static int run_in_flight(struct env *e, const struct hcase *c)
{
    struct fuse_getattr_in in = { 0 };
    unsigned sent = 0;
    while (sent < e->fs.nreqs &&
           vu_fuse_submit(&e->fs, VU_REQUEST_QUEUE, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in),
                          NULL, 0, ATTR_REPLY_LEN))
        sent++;
    if (c->variant == 0) {
        send_hostile(e, VU_RESET_DEVICE, 0, NULL, 0, NULL, 0);
        vu_fuse_reset(&e->fs); /* the rings start over */
        return CASE_DONE;
    }
    int r = vu_send_memory(&e->fe);
    note(e, "SET_MEM_TABLE with %u requests in flight: %s", sent, r < 0 ? e->fe.error : "accepted");
    unsigned answered = 0;
    for (unsigned i = 0; i < e->fs.nreqs; i++) {
        struct vu_fuse_req *req = &e->fs.reqs[i];
        if (req->busy && vu_fuse_wait(&e->fs, req, e->timeout_ms) == 0 &&
            vu_fuse_reply(&e->fs, req, NULL, NULL) == 0) {
            answered++;
            vu_fuse_put(req);
        }
    }
    note(e, "; %u of them answered", answered);
    return CASE_DONE;
}

static int send_region(struct env *e, uint32_t request, uint64_t gpa, uint64_t size, uint64_t uva,
                       uint64_t offset, bool with_fd)
{
    struct vu_mem_reg reg = { .region = { .guest_phys_addr = gpa, .memory_size = size,
                                          .userspace_addr = uva, .mmap_offset = offset } };
    return send_hostile(e, request, 0, &reg, sizeof(reg), &e->fe.mem.fd, with_fd ? 1 : 0);
}

/* REM_MEM_REG of region VARIANT while the rings run, then a request. */
static int run_remove_region(struct env *e, const struct hcase *c)
{
    const struct vu_region *r = &e->fe.mem.r[c->variant];
    if (send_region(e, VU_REM_MEM_REG, r->gpa, r->size, r->uva, 0, false) < 0)
        return CASE_DONE;
    struct fuse_getattr_in in = { 0 };
    struct vu_fuse_req *req = vu_fuse_submit(&e->fs, VU_REQUEST_QUEUE, FUSE_GETATTR, FUSE_ROOT_ID,
                                             &in, sizeof(in), NULL, 0, ATTR_REPLY_LEN);
    if (req && vu_fuse_wait(&e->fs, req, 300) == 0)
        note(e, "; a request after it came back (length %u)", req->used_len);
    return CASE_DONE;
}

static int run_add_overlapping(struct env *e, const struct hcase *c)
{
    (void)c;
    const struct vu_region *r0 = &e->fe.mem.r[0];
    send_region(e, VU_ADD_MEM_REG, r0->gpa + 4096, 65536, 0x700000000000ull,
                e->fe.mem.r[2].offset, true);
    return CASE_DONE;
}

static int run_add_until_full(struct env *e, const struct hcase *c)
{
    (void)c;
    unsigned added = 0;
    size_t mark = strlen(e->note);
    for (; added < 600; added++) {
        uint64_t step = (uint64_t)added << 20;
        e->note[mark] = '\0';
        if (send_region(e, VU_ADD_MEM_REG, 0x200000000ull + step, 65536, 0x700000000000ull + step,
                        e->fe.mem.r[2].offset, true) < 0 ||
            strstr(e->note + mark, "NACK"))
            break;
    }
    note(e, " after %u regions added (GET_MAX_MEM_SLOTS %llu)", added,
         (unsigned long long)e->fe.max_mem_slots);
    return CASE_DONE;
}

/* ---- random chains --------------------------------------------------------- */

static uint64_t rnd(struct env *e)
{
    e->rng ^= e->rng << 13;
    e->rng ^= e->rng >> 7;
    e->rng ^= e->rng << 17;
    return e->rng;
}

static uint64_t random_addr(struct env *e)
{
    switch (rnd(e) % 10) {
    case 0: return where_gpa(e, AT_GOOD);
    case 1:
    case 2: return where_gpa(e, AT_OUT) + rnd(e) % OUT_SIZE;
    case 3: return e->scratch_gpa + rnd(e) % SCRATCH_SIZE;
    case 4: return where_gpa(e, AT_HOLE) - rnd(e) % 256;
    case 5: return vu_mem_straddling(&e->fe.mem, 0) - rnd(e) % 512;
    case 6: return where_gpa(e, AT_TABLE);
    case 7: return rnd(e);
    case 8: return where_gpa(e, rnd(e) % 2 ? AT_USED : AT_DESC);
    default: return where_gpa(e, AT_WRAP) + rnd(e) % 8192;
    }
}

static uint32_t random_len(struct env *e)
{
    static const uint32_t lens[] = { 0, 1, 16, GOOD_LEN, 4096, 0xffffffffu };
    uint64_t r = rnd(e);
    return r % 8 < 6 ? lens[r % 8] : (uint32_t)(r >> 16) % (r % 8 == 6 ? 65536u : 0xffffffffu);
}

/* One descriptor of random shape; NEXT points at a random neighbour or
 * the following one.  The first of a chain is usually a good request, so
 * that the backend gets past the header into the rest. */
static void random_desc(struct env *e, struct vring_desc *d, unsigned i, unsigned n,
                        const uint16_t *idx)
{
    bool good = i == 0 && rnd(e) % 4 != 0;
    d->addr = good ? where_gpa(e, AT_GOOD) : random_addr(e);
    d->len = good ? GOOD_LEN : random_len(e);
    d->flags = good ? R : (uint16_t)(rnd(e) & (R | W | (rnd(e) % 8 == 0 ? IND : 0)));
    if (i + 1 < n && rnd(e) % 4 != 0)
        d->flags |= R;
    uint64_t r = rnd(e);
    d->next = r % 8 == 0 ? (uint16_t)(r >> 8) : idx[(i + 1 + (r % 16 == 1)) % n];
    if (d->flags & W)
        allow_write(e, d->addr, d->len);
}

/* A chain the way a driver builds one (the request, more readable
 * buffers, then writable ones, linked in order, all in scratch), with one
 * field of one descriptor changed at random a third of the time. */
static void structured_chain(struct env *e, struct vring_desc *desc, const uint16_t *idx,
                             unsigned n)
{
    unsigned nread = 1 + (unsigned)(rnd(e) % n);
    for (unsigned i = 0; i < n; i++) {
        struct vring_desc *d = &desc[idx[i]];
        uint64_t r = rnd(e);
        d->addr = i == 0 ? where_gpa(e, AT_GOOD) : where_gpa(e, AT_OUT) + r % OUT_SIZE;
        d->len = i == 0 ? GOOD_LEN : (r >> 16) % 2 ? 16u << (r >> 20) % 9 : (uint32_t)(r >> 24) % 4096;
        d->flags = (uint16_t)((i >= nread ? W : 0) | (i + 1 < n ? R : 0));
        d->next = i + 1 < n ? idx[i + 1] : 0;
    }
    if (rnd(e) % 3 == 0) {
        struct vring_desc *d = &desc[idx[rnd(e) % n]];
        switch (rnd(e) % 4) {
        case 0: d->addr = random_addr(e); break;
        case 1: d->len = random_len(e); break;
        case 2: d->flags ^= (uint16_t)(1u << rnd(e) % 3); break;
        default: d->next = (uint16_t)rnd(e); break;
        }
    }
    for (unsigned i = 0; i < n; i++)
        if (desc[idx[i]].flags & W)
            allow_write(e, desc[idx[i]].addr, desc[idx[i]].len);
}

/* Fills the indirect table area with random descriptors. */
static void random_table(struct env *e)
{
    struct vring_desc *table = (struct vring_desc *)(scratch(e) + TABLE_OFF);
    uint16_t idx[8];
    for (unsigned i = 0; i < 8; i++)
        idx[i] = (uint16_t)i;
    for (unsigned i = 0; i < 8; i++)
        random_desc(e, &table[i], i, 8, idx);
}

/* VARIANT random chains (seeded by --seed), each waited for; the rings are
 * restarted when chains stop coming back. */
static int run_random_chains(struct env *e, const struct hcase *c)
{
    unsigned returned = 0, answered = 0, restarts = 0, missing = 0, sent = 0;
    prepare_scratch(e);
    memcpy(e->scratch_copy, scratch(e), SCRATCH_SIZE);
    for (; sent < (unsigned)c->variant; sent++) {
        struct vu_ring *q = &e->fe.ring[VU_REQUEST_QUEUE];
        unsigned n = 1 + (unsigned)(rnd(e) % 8);
        uint16_t idx[8];
        if (missing > 3 || vu_ring_reserve(q, n, idx) < 0) {
            if (vu_restart(&e->fe) < 0)
                break;
            restarts++;
            missing = 0;
            if (vu_ring_reserve(q, n, idx) < 0)
                break;
        }
        random_table(e);
        if (rnd(e) % 2)
            structured_chain(e, q->vr.desc, idx, n);
        else
            for (unsigned i = 0; i < n; i++)
                random_desc(e, &q->vr.desc[idx[i]], i, n, idx);
        /* The table and the request are ours to change between chains. */
        memcpy(e->scratch_copy + TABLE_OFF, scratch(e) + TABLE_OFF, TABLE_SIZE);
        e->raw_sent = true;
        vu_ring_publish_raw(q, idx, n, &e->raw_token);
        vu_ring_notify(q, true);
        uint32_t len;
        if (wait_raw(e, q, idx[0], 200, &len)) {
            returned++;
            answered += len > 0;
        } else {
            missing++;
        }
        if (vu_peer_closed(&e->fe, 0))
            break;
    }
    note(e, "%u random chains (seed %llu): %u came back, %u with a reply, %u ring restarts%s",
         sent, (unsigned long long)e->seed, returned, answered, restarts,
         sent < (unsigned)c->variant ? "; the session ended" : "");
    vu_fuse_reset(&e->fs);
    return CASE_DONE;
}

/* ---- the table ----------------------------------------------------------- */

#define GOOD_R { AT_GOOD, 0, GOOD_LEN, R, 1 }
#define OUT_W { AT_OUT, 0, OUT_SIZE, W, -1 }
#define SPEC(list) list, sizeof(list) / sizeof(list[0])
#define NOSPEC NULL, 0

static const struct dspec c_outside[] = { { AT_HOLE, 0, GOOD_LEN, R, 1 }, OUT_W };
static const struct dspec c_high[] = { { AT_HIGH, 0, GOOD_LEN, R, 1 }, OUT_W };
static const struct dspec c_zero[] = { { AT_ZERO, 0, GOOD_LEN, R, 1 }, OUT_W };
static const struct dspec c_w_outside[] = { GOOD_R, { AT_HOLE, 0, OUT_SIZE, W, -1 } };
static const struct dspec c_w_straddle_hole[] = { GOOD_R, { AT_HOLE, -64, OUT_SIZE, W, -1 } };
static const struct dspec c_r_straddle_hole[] = { { AT_HOLE, -28, GOOD_LEN, R, 1 }, OUT_W };
static const struct dspec c_wrap[] = { { AT_WRAP, 0, 0x2000, R, 1 }, OUT_W };
static const struct dspec c_w_wrap[] = { GOOD_R, { AT_WRAP, 0xf00, 0x1000, W, -1 } };
static const struct dspec c_len_huge[] = { { AT_GOOD, 0, 0xffffffffu, R, 1 }, OUT_W };
static const struct dspec c_w_len_huge[] = { GOOD_R, { AT_OUT, 0, 0xffffffffu, W, -1 } };
static const struct dspec c_zero_len[] = {
    { AT_GOOD, 0, 0, R, 1 }, { AT_GOOD, 0, GOOD_LEN, R, 2 },
    { AT_OUT, 0, 0, W | R, 3 }, { AT_OUT, 0, OUT_SIZE, W, -1 },
};
static const struct dspec c_over_desc[] = { GOOD_R, { AT_DESC, 0, OUT_SIZE, W, -1 } };
static const struct dspec c_over_avail[] = { GOOD_R, { AT_AVAIL, 0, 256, W, -1 } };
static const struct dspec c_over_used[] = { GOOD_R, { AT_USED, 0, OUT_SIZE, W, -1 } };
static const struct dspec c_self_overlap[] = { GOOD_R, { AT_GOOD, 0, OUT_SIZE, W, -1 } };
static const struct dspec c_r_after_w[] = {
    GOOD_R, { AT_OUT, 0, 2048, W | R, 2 }, { AT_GOOD, 0, GOOD_LEN, 0, -1 },
};
static const struct dspec c_loop_self[] = { { AT_GOOD, 0, GOOD_LEN, R, 0 } };
static const struct dspec c_loop_back[] = {
    GOOD_R, { AT_OUT, 0, 64, W | R, 2 }, { AT_OUT, 64, 64, W | R, 1 },
};
static const struct dspec c_next_range[] = { { AT_GOOD, 0, GOOD_LEN, R, ABS(200) } };
static const struct dspec c_next_max[] = { GOOD_R, { AT_OUT, 0, OUT_SIZE, W | R, ABS(0xffff) } };
static const struct dspec c_reply_short[] = { GOOD_R, { AT_OUT, 0, 8, W, -1 } };
static const struct dspec c_reply_missing[] = { { AT_GOOD, 0, GOOD_LEN, 0, -1 } };
static const struct dspec c_request_short[] = { { AT_GOOD, 0, 10, R, 1 }, OUT_W };
static const struct dspec c_len_lies[] = { { AT_BADLEN, 0, GOOD_LEN, R, 1 }, OUT_W };
static const struct dspec c_split_header[] = {
    { AT_GOOD, 0, 8, R, 1 }, { AT_GOOD, 8, 8, R, 2 }, { AT_GOOD, 16, 8, R, 3 },
    { AT_GOOD, 24, 16, R, 4 }, { AT_GOOD, 40, GOOD_LEN - 40, R, 5 }, OUT_W,
};
static const struct dspec c_split_reply[] = {
    GOOD_R, { AT_OUT, 0, 3, W | R, 2 }, { AT_OUT, 3, 5, W | R, 3 },
    { AT_OUT, 8, 100, W | R, 4 }, { AT_OUT, 108, OUT_SIZE - 108, W, -1 },
};
/* Indirect: the ring descriptor, then the table. */
static const struct dspec c_ind[] = { { AT_TABLE, 0, 32, IND, -1 } };
static const struct dspec t_good[] = { GOOD_R, OUT_W };
static const struct dspec c_ind_outside[] = { { AT_HOLE, 0, 32, IND, -1 } };
static const struct dspec c_ind_straddle[] = { { AT_HOLE, -16, 32, IND, -1 } };
static const struct dspec c_ind_len24[] = { { AT_TABLE, 0, 24, IND, -1 } };
static const struct dspec c_ind_len0[] = { { AT_TABLE, 0, 0, IND, -1 } };
static const struct dspec c_ind_huge[] = { { AT_TABLE, 0, 0x80000000u, IND, -1 } };
static const struct dspec t_nested[] = { GOOD_R, { AT_TABLE, 0, 32, IND, -1 } };
static const struct dspec c_ind_next[] = { { AT_TABLE, 0, 32, IND | R, 1 }, OUT_W };
static const struct dspec t_loop[] = { GOOD_R, { AT_OUT, 0, 64, W | R, 0 } };
static const struct dspec t_next_out[] = { { AT_GOOD, 0, GOOD_LEN, R, 5 }, OUT_W };
static const struct dspec c_ind3[] = { { AT_TABLE, 0, 48, IND, -1 } };
static const struct dspec t_r_after_w[] = {
    GOOD_R, { AT_OUT, 0, 2048, W | R, 2 }, { AT_GOOD, 0, GOOD_LEN, 0, -1 },
};
static const struct dspec c_hiprio_getattr[] = { GOOD_R, OUT_W };

#define KEEP EXPECT_KEEP_SERVING
#define RESET EXPECT_SERVE_AFTER_RESET
#define SURVIVE EXPECT_SURVIVE
#define RUNNING STAGE_RUNNING
#define BAD CASE_RETURNS

#define CHAIN(name, expect, list, what) \
    { name, RUNNING, expect, BAD, run_spec, SPEC(list), NOSPEC, 0, 0, what }
#define LEGAL(name, list, what) \
    { name, RUNNING, KEEP, BAD, run_spec_legal, SPEC(list), NOSPEC, 0, 0, what }
#define INDIRECT(name, expect, ring, table, what) \
    { name, RUNNING, expect, BAD | CASE_INDIRECT, run_spec, SPEC(ring), SPEC(table), 0, 0, what }
#define SPECIAL(name, stage, expect, flags, fn, variant, what) \
    { name, stage, expect, flags, fn, NOSPEC, NOSPEC, 0, variant, what }

static const struct hcase cases[] = {
    CHAIN("desc-outside-regions", KEEP, c_outside, "readable descriptor in the hole above region 1"),
    CHAIN("desc-above-all-regions", KEEP, c_high, "readable descriptor at 0xffffffff00000000"),
    CHAIN("desc-at-address-zero", KEEP, c_zero, "readable descriptor at guest-physical 0 (no region)"),
    CHAIN("desc-writable-outside", KEEP, c_w_outside, "the reply descriptor lies in the hole"),
    CHAIN("desc-writable-straddles-hole", KEEP, c_w_straddle_hole,
          "reply descriptor from the last 64 bytes of region 1 into the hole"),
    CHAIN("desc-readable-straddles-hole", KEEP, c_r_straddle_hole,
          "request descriptor from region 1 into the hole"),
    CHAIN("desc-addr-wraps", KEEP, c_wrap, "addr + len wraps past 2^64 (readable)"),
    CHAIN("desc-writable-addr-wraps", KEEP, c_w_wrap, "addr + len wraps past 2^64 (writable)"),
    CHAIN("desc-len-huge", KEEP, c_len_huge, "readable descriptor of 4 GiB - 1 in region 1"),
    CHAIN("desc-writable-len-huge", KEEP, c_w_len_huge, "writable descriptor of 4 GiB - 1"),
    CHAIN("desc-zero-length", KEEP, c_zero_len, "zero-length descriptors inside the chain"),
    CHAIN("desc-overlaps-desc-table", SURVIVE, c_over_desc, "the reply would overwrite the descriptor table"),
    CHAIN("desc-overlaps-avail-ring", SURVIVE, c_over_avail, "the reply would overwrite the avail ring"),
    CHAIN("desc-overlaps-used-ring", SURVIVE, c_over_used, "the reply would overwrite the used ring"),
    CHAIN("desc-reply-over-request", KEEP, c_self_overlap, "the reply buffer is the request's own memory"),
    CHAIN("desc-readable-after-writable", KEEP, c_r_after_w, "a readable descriptor after a writable one"),
    CHAIN("chain-loops-on-itself", KEEP, c_loop_self, "a descriptor whose next is itself"),
    CHAIN("chain-loops-back", KEEP, c_loop_back, "writable descriptors 1 -> 2 -> 1 ..."),
    CHAIN("chain-next-out-of-range", KEEP, c_next_range, "next = 200 in a queue of 128"),
    CHAIN("chain-next-0xffff", KEEP, c_next_max, "next = 0xffff"),
    SPECIAL("chain-uses-whole-ring", RUNNING, KEEP, BAD, run_whole_ring, 0,
            "legal: one chain of every descriptor of the queue, answered right"),
    CHAIN("reply-too-short", KEEP, c_reply_short, "8 writable bytes: no room for fuse_out_header"),
    CHAIN("reply-missing", KEEP, c_reply_missing, "GETATTR without a writable descriptor"),
    CHAIN("request-too-short", KEEP, c_request_short, "10 readable bytes: half a fuse_in_header"),
    CHAIN("request-len-lies", KEEP, c_len_lies, "fuse_in_header.len 4096, 56 bytes readable"),
    LEGAL("request-header-split", c_split_header, "legal: the header in five descriptors"),
    LEGAL("reply-split-odd", c_split_reply, "legal: the reply in pieces of 3, 5, 100, ... bytes"),
    SPECIAL("request-straddles-regions", RUNNING, KEEP, BAD, run_request_straddles, 0,
            "legal: the request spans regions 0 and 1 (adjacent guest ranges)"),
    SPECIAL("reply-straddles-regions", RUNNING, KEEP, BAD, run_reply_straddles, 0,
            "legal: the reply spans regions 0 and 1"),
    SPECIAL("reply-shorter-than-read", RUNNING, KEEP, BAD, run_short_read_reply, 0,
            "READ of 64 KiB with 100 writable bytes"),
    { "indirect-basic", RUNNING, KEEP, BAD | CASE_INDIRECT, run_spec_legal, SPEC(c_ind), SPEC(t_good),
      0, 0, "legal: request and reply through an indirect table" },
    INDIRECT("indirect-outside-regions", KEEP, c_ind_outside, t_good, "indirect table in the hole"),
    INDIRECT("indirect-straddles-hole", KEEP, c_ind_straddle, t_good,
             "indirect table from region 1 into the hole"),
    INDIRECT("indirect-len-not-multiple", KEEP, c_ind_len24, t_good, "indirect table of 24 bytes"),
    INDIRECT("indirect-len-zero", KEEP, c_ind_len0, t_good, "indirect table of 0 bytes"),
    INDIRECT("indirect-len-huge", KEEP, c_ind_huge, t_good, "indirect table of 2 GiB"),
    INDIRECT("indirect-nested", KEEP, c_ind, t_nested, "an indirect descriptor inside the table"),
    INDIRECT("indirect-with-next", KEEP, c_ind_next, t_good, "INDIRECT and NEXT on one descriptor"),
    INDIRECT("indirect-loop", KEEP, c_ind, t_loop, "table entries 1 -> 0 -> 1 ..."),
    INDIRECT("indirect-next-out-of-table", KEEP, c_ind, t_next_out, "next = 5 in a table of 2"),
    INDIRECT("indirect-readable-after-writable", KEEP, c_ind3, t_r_after_w,
             "readable after writable inside the table"),
    SPECIAL("indirect-longer-than-queue", RUNNING, KEEP, BAD | CASE_INDIRECT, run_long_indirect, 0,
            "a table of 2 * queue size + 1 entries"),
    SPECIAL("indirect-4096-entries", RUNNING, KEEP, BAD | CASE_INDIRECT, run_long_indirect, 4096,
            "a table of 4096 entries (1-byte reply pieces)"),
    { "indirect-not-negotiated", RUNNING, KEEP, BAD | CASE_NO_INDIRECT, run_spec, SPEC(c_ind),
      SPEC(t_good), 0, 0, "an indirect descriptor without INDIRECT_DESC negotiated" },
    SPECIAL("random-chains", RUNNING, SURVIVE, 0, run_random_chains, 3000,
            "3000 random chains (addresses, lengths, flags, next, indirect tables; --seed)"),
    SPECIAL("mem-region-beyond-file", RUNNING, SURVIVE, 0, run_region_beyond_file, 0,
            "a region 64 MiB long on a 17 MiB memfd, a reply buffer past the file's end"),
    SPECIAL("avail-idx-jumps", RUNNING, RESET, 0, run_avail_jump, 0,
            "avail->idx moves by queue size + 5"),
    SPECIAL("avail-idx-backwards", RUNNING, RESET, 0, run_avail_jump, -1, "avail->idx moves back by 1"),
    SPECIAL("avail-head-out-of-range", RUNNING, RESET, 0, run_head_out_of_range, 0,
            "an avail entry naming descriptor queue size + 72"),
    { "hiprio-regular-request", RUNNING, KEEP, BAD | CASE_HIPRIO, run_spec, SPEC(c_hiprio_getattr),
      NOSPEC, 0, 0, "a GETATTR on the hiprio queue" },
    SPECIAL("request-before-init", STAGE_STARTED, KEEP, 0, run_before_init, 0,
            "GETATTR before FUSE_INIT"),
    SPECIAL("reset-device-in-flight", RUNNING, RESET, CASE_RESET_DEVICE, run_in_flight, 0,
            "RESET_DEVICE with requests in flight"),
    SPECIAL("mem-table-again-in-flight", RUNNING, KEEP, 0, run_in_flight, 1,
            "the same SET_MEM_TABLE again with requests in flight"),
    SPECIAL("rem-mem-reg-of-rings", RUNNING, SURVIVE, CASE_MEM_SLOTS, run_remove_region, 0,
            "REM_MEM_REG of the region holding the rings, then a kick"),
    SPECIAL("rem-mem-reg-of-buffers", RUNNING, SURVIVE, CASE_MEM_SLOTS, run_remove_region, 1,
            "REM_MEM_REG of the region holding the buffers, then a request"),
    SPECIAL("add-mem-reg-overlapping", RUNNING, KEEP, CASE_MEM_SLOTS, run_add_overlapping, 0,
            "ADD_MEM_REG overlapping region 0"),
    SPECIAL("add-mem-reg-until-full", RUNNING, SURVIVE, CASE_MEM_SLOTS, run_add_until_full, 0,
            "ADD_MEM_REG of 64 KiB regions until refused (at most 600)"),
};

size_t hostile_ring_cases(const struct hcase **out)
{
    *out = cases;
    return sizeof(cases) / sizeof(cases[0]);
}
