/*
 * init_filter.c - see init_filter.h.  Every field is touched only after
 * checking that the message is long enough to hold it: a kernel or host of
 * an older protocol minor sends shorter INIT structs.
 */
#include "mount/init_filter.h"

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <unistd.h>

#include "common/log.h"

/*
 * Flag bits newer than Debian 12's <linux/fuse.h> (protocol 7.38), as
 * numbered in the upstream include/uapi/linux/fuse.h: FUSE_PASSTHROUGH
 * arrived in 7.40, FUSE_OVER_IO_URING in 7.42.  Both are flags2 bits.
 */
#ifndef FUSE_PASSTHROUGH
#define FUSE_PASSTHROUGH (1ULL << 37)
#endif
#ifndef FUSE_OVER_IO_URING
#define FUSE_OVER_IO_URING (1ULL << 41)
#endif

/* The kernel's default when FUSE_MAX_PAGES is not negotiated
 * (FUSE_DEFAULT_MAX_PAGES_PER_REQ in fs/fuse/fuse_i.h). */
#define KERNEL_DEFAULT_MAX_PAGES 32

/* What a relay over a byte stream cannot carry, and what the relay decides
 * itself (see init_filter.h): none of it reaches the host. */
static const uint64_t uncarried =
    FUSE_MAP_ALIGNMENT | FUSE_HAS_INODE_DAX | FUSE_PASSTHROUGH | FUSE_OVER_IO_URING;

bool init_filter_offers_uring(const struct init_filter *f)
{
    return (f->offered & FUSE_OVER_IO_URING) != 0;
}

/* Bytes of the INIT struct present after the header, if LEN covers the
 * header at all; 0 otherwise. */
static size_t body_len(size_t len, size_t header)
{
    return len > header ? len - header : 0;
}

static bool has_field(size_t body, size_t offset, size_t size)
{
    return body >= offset + size;
}

void init_filter_request(struct init_filter *f, void *msg, size_t len)
{
    struct fuse_init_in *in = (void *)((char *)msg + sizeof(struct fuse_in_header));
    size_t body = body_len(len, sizeof(struct fuse_in_header));

    f->offered = 0;
    f->uring = false;
    if (!has_field(body, offsetof(struct fuse_init_in, flags), sizeof(in->flags)))
        return;
    f->offered = in->flags;
    in->flags &= ~(uint32_t)uncarried;
    if (f->host_checks_permissions)
        in->flags &= ~(uint32_t)FUSE_NO_OPENDIR_SUPPORT;
    /* The host bounds the handles of created files when the offer says
     * that no RELEASE will come (engine/created_handles.h). */
    if (!f->want_no_open)
        in->flags &= ~(uint32_t)FUSE_NO_OPEN_SUPPORT;
    if ((in->flags & FUSE_INIT_EXT) &&
        has_field(body, offsetof(struct fuse_init_in, flags2), sizeof(in->flags2))) {
        f->offered |= (uint64_t)in->flags2 << 32;
        in->flags2 &= ~(uint32_t)(uncarried >> 32);
    }
    log_debug("INIT from kernel: protocol 7.%u, flags %#llx", in->minor,
              (unsigned long long)f->offered);
}

/* Largest WRITE payload whose request still fits in MAX_FRAME, in whole
 * pages when there is room for one. */
static uint32_t max_write_cap(uint32_t max_frame, uint32_t page)
{
    uint32_t headers = sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in);
    uint32_t cap = max_frame > headers ? max_frame - headers : 0;
    return cap >= page ? cap - cap % page : cap;
}

static void mask_reply_flags(struct fuse_init_out *out, size_t body)
{
    if (!has_field(body, offsetof(struct fuse_init_out, flags), sizeof(out->flags)))
        return;
    out->flags &= ~(uint32_t)uncarried;
    if ((out->flags & FUSE_INIT_EXT) &&
        has_field(body, offsetof(struct fuse_init_out, flags2), sizeof(out->flags2)))
        out->flags2 &= ~(uint32_t)(uncarried >> 32);
}

/* FUSE_OVER_IO_URING is a flags2 bit: it needs FUSE_INIT_EXT, which the
 * kernel offers along with it, and a reply long enough for flags2. */
static void grant_uring(struct init_filter *f, struct fuse_init_out *out, size_t body)
{
    if (!f->want_uring || !init_filter_offers_uring(f) ||
        !has_field(body, offsetof(struct fuse_init_out, flags2), sizeof(out->flags2)))
        return;
    if (!(out->flags & FUSE_INIT_EXT)) {
        out->flags |= FUSE_INIT_EXT;
        out->flags2 = 0;
    }
    out->flags2 |= (uint32_t)(FUSE_OVER_IO_URING >> 32);
    f->uring = true;
}

/* Without FUSE_MAX_PAGES the kernel sends READs of up to 32 pages: when the
 * frame is smaller than that, negotiate a smaller max_pages (if the kernel
 * offered the flag at all). */
static void cap_max_pages(const struct init_filter *f, struct fuse_init_out *out, size_t body,
                          uint32_t pages)
{
    if (!has_field(body, offsetof(struct fuse_init_out, max_pages), sizeof(out->max_pages)))
        return;
    if (pages > UINT16_MAX)
        pages = UINT16_MAX;
    if (out->flags & FUSE_MAX_PAGES) {
        if (out->max_pages > pages)
            out->max_pages = (uint16_t)pages;
    } else if ((f->offered & FUSE_MAX_PAGES) && pages < KERNEL_DEFAULT_MAX_PAGES) {
        out->flags |= FUSE_MAX_PAGES;
        out->max_pages = (uint16_t)pages;
    }
}

/* open=none (no_open.h): what no host file kept open cannot do is left
 * to the kernel (locks) or moved where a request still comes (O_TRUNC, as
 * a SETATTR).  Called once f->writeback is known. */
static void grant_no_open(struct init_filter *f, struct fuse_init_out *out, size_t body)
{
    f->no_open = f->want_no_open && (f->offered & FUSE_NO_OPEN_SUPPORT) && !f->writeback &&
                 has_field(body, offsetof(struct fuse_init_out, flags), sizeof(out->flags));
    if (f->no_open)
        out->flags &= ~(uint32_t)(FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS | FUSE_ATOMIC_O_TRUNC);
}

/* FUSE_ABORT_ERROR: after an abort through fusectl every read of
 * /dev/fuse fails with ECONNABORTED, not the ENODEV of an unmount, so the
 * relay can tell a dead mount left behind from one that is gone
 * (relay.c, fd_queue_main).  It changes nothing for the mount's callers,
 * and nothing the host sees. */
static void grant_abort_error(const struct init_filter *f, struct fuse_init_out *out,
                              size_t body)
{
    if ((f->offered & FUSE_ABORT_ERROR) &&
        has_field(body, offsetof(struct fuse_init_out, flags), sizeof(out->flags)))
        out->flags |= FUSE_ABORT_ERROR;
}

int init_filter_reply(struct init_filter *f, void *msg, size_t len, uint32_t max_frame)
{
    const struct fuse_out_header *oh = msg;
    struct fuse_init_out *out = (void *)((char *)msg + sizeof(*oh));
    size_t body = body_len(len, sizeof(*oh));
    uint32_t page = (uint32_t)sysconf(_SC_PAGESIZE);

    if (oh->error != 0)
        return oh->error;
    mask_reply_flags(out, body);
    grant_uring(f, out, body);
    f->writeback = has_field(body, offsetof(struct fuse_init_out, flags), sizeof(out->flags)) &&
                   (out->flags & FUSE_WRITEBACK_CACHE) && (f->offered & FUSE_WRITEBACK_CACHE);
    grant_no_open(f, out, body);
    grant_abort_error(f, out, body);
    if (!has_field(body, offsetof(struct fuse_init_out, max_write), sizeof(out->max_write)))
        return 0;
    uint32_t cap = max_write_cap(max_frame, page);
    if (out->max_write == 0 || out->max_write > cap)
        out->max_write = cap;
    cap_max_pages(f, out, body, cap / page ? cap / page : 1);
    log_debug("INIT from host: protocol %u.%u, max_write %u", out->major, out->minor,
              out->max_write);
    return 0;
}
