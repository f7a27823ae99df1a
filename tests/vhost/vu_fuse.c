/*
 * vu_fuse.c - see vu_fuse.h.
 */
#include "vu_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE 4096u
/* Descriptors of one chain at most: header, payload pages, reply pages. */
#define MAX_BUFS 160

int vu_fuse_create(struct vu_fuse *fs, struct vu_frontend *fe, unsigned nreqs, uint32_t in_cap,
                   uint32_t out_cap)
{
    memset(fs, 0, sizeof(*fs));
    fs->fe = fe;
    fs->next_unique = 2;
    fs->in_cap = in_cap;
    fs->out_cap = out_cap;
    fs->reqs = calloc(nreqs, sizeof(*fs->reqs));
    if (!fs->reqs)
        return vu_fail(fe, -ENOMEM, "out of memory");
    fs->nreqs = nreqs;
    for (unsigned i = 0; i < nreqs; i++) {
        struct vu_fuse_req *r = &fs->reqs[i];
        void *in, *out;
        r->in_gpa = vu_mem_alloc(&fe->mem, 1, in_cap, PAGE, &in);
        r->out_gpa = vu_mem_alloc(&fe->mem, 1, out_cap, PAGE, &out);
        if (!r->in_gpa || !r->out_gpa)
            return vu_fail(fe, -ENOMEM, "%u request slots do not fit in guest memory", nreqs);
        r->in = in;
        r->out = out;
    }
    return 0;
}

void vu_fuse_destroy(struct vu_fuse *fs)
{
    free(fs->reqs);
    fs->reqs = NULL;
    fs->nreqs = 0;
}

static struct vu_fuse_req *free_slot(struct vu_fuse *fs)
{
    for (unsigned i = 0; i < fs->nreqs; i++)
        if (!fs->reqs[i].busy)
            return &fs->reqs[i];
    return NULL;
}

/* Appends LEN bytes at GPA as descriptors, page-sized when SPLIT. */
static unsigned add_bufs(struct vu_buf *bufs, unsigned n, uint64_t gpa, uint32_t len, bool split)
{
    while (len > 0 && n < MAX_BUFS) {
        uint32_t piece = split && len > PAGE ? PAGE : len;
        if (split && n + 1 == MAX_BUFS)
            piece = len;
        bufs[n++] = (struct vu_buf){ .gpa = gpa, .len = piece };
        gpa += piece;
        len -= piece;
    }
    return n;
}

struct vu_fuse_req *vu_fuse_submit(struct vu_fuse *fs, unsigned ring, uint32_t opcode,
                                   uint64_t nodeid, const void *arg, uint32_t arglen,
                                   const void *data, uint32_t datalen, uint32_t reply_cap)
{
    struct vu_frontend *fe = fs->fe;
    uint32_t head_len = (uint32_t)sizeof(struct fuse_in_header) + arglen;
    if (head_len + datalen > fs->in_cap || reply_cap > fs->out_cap || ring >= fe->nrings) {
        vu_fail(fe, -EINVAL, "request of %u+%u bytes, reply %u: too big for a slot", head_len,
                datalen, reply_cap);
        return NULL;
    }
    struct vu_fuse_req *r = free_slot(fs);
    if (!r) {
        vu_fail(fe, -ENOSPC, "all %u request slots in flight", fs->nreqs);
        return NULL;
    }
    struct fuse_in_header h = {
        .len = head_len + datalen, .opcode = opcode, .unique = fs->next_unique,
        .nodeid = nodeid, .uid = 0, .gid = 0, .pid = (uint32_t)getpid(),
    };
    fs->next_unique += 2; /* the kernel's uniques are even; odd ones mark interrupts */
    memcpy(r->in, &h, sizeof(h));
    if (arglen)
        memcpy(r->in + sizeof(h), arg, arglen);
    if (datalen)
        memcpy(r->in + head_len, data, datalen);
    memset(r->out, 0, sizeof(struct fuse_out_header));

    struct vu_buf bufs[MAX_BUFS];
    unsigned n = add_bufs(bufs, 0, r->in_gpa, head_len, false);
    n = add_bufs(bufs, n, r->in_gpa + head_len, datalen, fs->split_pages);
    unsigned nread = n;
    if (reply_cap > 0) {
        uint32_t first = reply_cap < sizeof(struct fuse_out_header) ? reply_cap
                                                                     : sizeof(struct fuse_out_header);
        n = add_bufs(bufs, n, r->out_gpa, first, false);
        n = add_bufs(bufs, n, r->out_gpa + first, reply_cap - first, fs->split_pages);
    }
    r->ring = ring;
    r->opcode = opcode;
    r->unique = h.unique;
    r->in_len = h.len;
    r->out_len = reply_cap;
    r->busy = true;
    r->done = false;
    r->used_len = 0;
    int head = vu_ring_add(&fe->ring[ring], bufs, nread, n - nread, r);
    if (head < 0) {
        r->busy = false;
        vu_fail(fe, head, "ring %u is full", ring);
        return NULL;
    }
    vu_ring_notify(&fe->ring[ring], false);
    return r;
}

int vu_fuse_harvest(struct vu_fuse *fs, unsigned ring)
{
    struct vu_used u;
    int count = 0;
    while (vu_ring_get_used(&fs->fe->ring[ring], &u) == 1) {
        if (!u.known)
            return vu_fail(fs->fe, VU_FUSE_BROKEN,
                           "ring %u: the backend returned descriptor %u, which was not in flight",
                           ring, u.id);
        struct vu_fuse_req *r = u.token;
        uintptr_t first = (uintptr_t)fs->reqs, end = (uintptr_t)(fs->reqs + fs->nreqs);
        if ((uintptr_t)r < first || (uintptr_t)r >= end) {
            fs->foreign_used++;
            continue;
        }
        r->done = true;
        r->used_len = u.len;
        count++;
    }
    return count;
}

int vu_fuse_wait(struct vu_fuse *fs, struct vu_fuse_req *req, int timeout_ms)
{
    struct vu_ring *q = &fs->fe->ring[req->ring];
    while (!req->done) {
        if (vu_fuse_harvest(fs, req->ring) < 0)
            return VU_FUSE_BROKEN;
        if (req->done)
            break;
        int w = vu_ring_wait(q, timeout_ms);
        if (w <= 0) {
            bool closed = vu_peer_closed(fs->fe, 0);
            return vu_fail(fs->fe, VU_FUSE_BROKEN, "no reply to FUSE opcode %u on queue %u within %d ms%s",
                           req->opcode, req->ring, timeout_ms,
                           closed ? " (the backend closed the connection)" : "");
        }
    }
    return 0;
}

int vu_fuse_reply(struct vu_fuse *fs, const struct vu_fuse_req *req, const uint8_t **body,
                  uint32_t *body_len)
{
    struct vu_frontend *fe = fs->fe;
    struct fuse_out_header h;
    if (req->used_len < sizeof(h) || req->used_len > req->out_len)
        return vu_fail(fe, VU_FUSE_BROKEN, "FUSE opcode %u: used length %u (offered %u)",
                       req->opcode, req->used_len, req->out_len);
    memcpy(&h, req->out, sizeof(h));
    if (h.len != req->used_len || h.unique != req->unique)
        return vu_fail(fe, VU_FUSE_BROKEN,
                       "FUSE opcode %u: reply len %u unique %llu, used length %u unique %llu",
                       req->opcode, h.len, (unsigned long long)h.unique, req->used_len,
                       (unsigned long long)req->unique);
    if (h.error > 0 || h.error < -4095 || (h.error != 0 && h.len != sizeof(h)))
        return vu_fail(fe, VU_FUSE_BROKEN, "FUSE opcode %u: error %d with %u bytes",
                       req->opcode, h.error, h.len);
    if (body)
        *body = req->out + sizeof(h);
    if (body_len)
        *body_len = h.len - (uint32_t)sizeof(h);
    return h.error;
}

void vu_fuse_put(struct vu_fuse_req *req)
{
    req->busy = false;
}

void vu_fuse_reset(struct vu_fuse *fs)
{
    for (unsigned i = 0; i < fs->nreqs; i++)
        fs->reqs[i].busy = false;
}

int vu_fuse_call(struct vu_fuse *fs, unsigned ring, uint32_t opcode, uint64_t nodeid,
                 const void *arg, uint32_t arglen, const void *data, uint32_t datalen,
                 void *reply, uint32_t reply_size, uint32_t *reply_len)
{
    uint32_t cap = (uint32_t)sizeof(struct fuse_out_header) + reply_size;
    struct vu_fuse_req *r = vu_fuse_submit(fs, ring, opcode, nodeid, arg, arglen, data, datalen, cap);
    if (!r)
        return VU_FUSE_BROKEN;
    int err = vu_fuse_wait(fs, r, fs->fe->opt.timeout_ms);
    if (err == 0) {
        const uint8_t *body;
        uint32_t len;
        err = vu_fuse_reply(fs, r, &body, &len);
        if (err == 0 && reply)
            memcpy(reply, body, len < reply_size ? len : reply_size);
        if (err == 0 && reply_len)
            *reply_len = len;
    }
    /* A request that never came back keeps its slot: the backend may still
     * write into it. */
    if (r->done)
        vu_fuse_put(r);
    return err;
}

/* ---- operations ---------------------------------------------------------- */

int vu_fuse_init(struct vu_fuse *fs)
{
    struct fuse_init_in in = {
        .major = FUSE_KERNEL_VERSION,
        .minor = FUSE_KERNEL_MINOR_VERSION,
        .max_readahead = 128 * 1024,
        .flags = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS | FUSE_BIG_WRITES |
                 FUSE_MAX_PAGES,
    };
    memset(&fs->init, 0, sizeof(fs->init));
    int err = vu_fuse_call(fs, VU_REQUEST_QUEUE, FUSE_INIT, 0, &in, sizeof(in), NULL, 0,
                           &fs->init, sizeof(fs->init), &fs->init_len);
    if (err == 0 && (fs->init_len < FUSE_COMPAT_22_INIT_OUT_SIZE || fs->init.major != FUSE_KERNEL_VERSION))
        return vu_fail(fs->fe, VU_FUSE_BROKEN, "INIT reply of %u bytes, major %u", fs->init_len,
                       fs->init.major);
    return err;
}

static int call_named(struct vu_fuse *fs, uint32_t opcode, uint64_t parent, const void *arg,
                      uint32_t arglen, const char *name, void *reply, uint32_t reply_size)
{
    return vu_fuse_call(fs, VU_REQUEST_QUEUE, opcode, parent, arg, arglen, name,
                        (uint32_t)strlen(name) + 1, reply, reply_size, NULL);
}

int vu_fuse_lookup(struct vu_fuse *fs, uint64_t parent, const char *name, struct fuse_entry_out *e)
{
    return call_named(fs, FUSE_LOOKUP, parent, NULL, 0, name, e, sizeof(*e));
}

int vu_fuse_getattr(struct vu_fuse *fs, uint64_t nodeid, struct fuse_attr_out *a)
{
    struct fuse_getattr_in in = { 0 };
    return vu_fuse_call(fs, VU_REQUEST_QUEUE, FUSE_GETATTR, nodeid, &in, sizeof(in), NULL, 0, a,
                        sizeof(*a), NULL);
}

int vu_fuse_create_file(struct vu_fuse *fs, uint64_t parent, const char *name, uint32_t mode,
                        struct fuse_entry_out *e, uint64_t *fh)
{
    struct fuse_create_in in = { .flags = O_RDWR | O_CREAT | O_TRUNC, .mode = S_IFREG | mode,
                                 .umask = 022 };
    struct {
        struct fuse_entry_out entry;
        struct fuse_open_out open;
    } out;
    int err = call_named(fs, FUSE_CREATE, parent, &in, sizeof(in), name, &out, sizeof(out));
    if (err == 0) {
        *e = out.entry;
        *fh = out.open.fh;
    }
    return err;
}

int vu_fuse_open(struct vu_fuse *fs, uint64_t nodeid, uint32_t flags, uint64_t *fh)
{
    struct fuse_open_in in = { .flags = flags };
    struct fuse_open_out out;
    int err = vu_fuse_call(fs, VU_REQUEST_QUEUE, FUSE_OPEN, nodeid, &in, sizeof(in), NULL, 0, &out,
                           sizeof(out), NULL);
    if (err == 0)
        *fh = out.fh;
    return err;
}

int vu_fuse_release(struct vu_fuse *fs, uint64_t nodeid, uint64_t fh)
{
    struct fuse_release_in in = { .fh = fh };
    return vu_fuse_call(fs, VU_REQUEST_QUEUE, FUSE_RELEASE, nodeid, &in, sizeof(in), NULL, 0, NULL,
                        0, NULL);
}

int vu_fuse_read(struct vu_fuse *fs, uint64_t nodeid, uint64_t fh, uint64_t offset, uint32_t size,
                 void *buf, uint32_t *got)
{
    struct fuse_read_in in = { .fh = fh, .offset = offset, .size = size };
    return vu_fuse_call(fs, VU_REQUEST_QUEUE, FUSE_READ, nodeid, &in, sizeof(in), NULL, 0, buf,
                        size, got);
}

int vu_fuse_write(struct vu_fuse *fs, uint64_t nodeid, uint64_t fh, uint64_t offset,
                  const void *data, uint32_t size, uint32_t *written)
{
    struct fuse_write_in in = { .fh = fh, .offset = offset, .size = size };
    struct fuse_write_out out = { 0 };
    int err = vu_fuse_call(fs, VU_REQUEST_QUEUE, FUSE_WRITE, nodeid, &in, sizeof(in), data, size,
                           &out, sizeof(out), NULL);
    if (err == 0)
        *written = out.size;
    return err;
}

int vu_fuse_forget(struct vu_fuse *fs, uint64_t nodeid, uint64_t nlookup)
{
    struct fuse_forget_in in = { .nlookup = nlookup };
    struct vu_fuse_req *r = vu_fuse_submit(fs, VU_HIPRIO, FUSE_FORGET, nodeid, &in, sizeof(in),
                                           NULL, 0, 0);
    if (!r)
        return VU_FUSE_BROKEN;
    if (vu_fuse_wait(fs, r, fs->fe->opt.timeout_ms) < 0)
        return VU_FUSE_BROKEN;
    vu_fuse_put(r);
    if (r->used_len != 0)
        return vu_fail(fs->fe, VU_FUSE_BROKEN, "FORGET came back with length %u", r->used_len);
    return 0;
}
