/*
 * init_filter.h - the relay's edits to the FUSE_INIT exchange.
 *
 * The kernel's INIT goes to the host unchanged except for the capabilities
 * a byte stream cannot carry: DAX windows need shared memory, passthrough
 * backing files need the host's file descriptors.  FUSE-over-io_uring is
 * the relay's own business (its rings are on this side of the stream): the
 * host never sees the offer, and the reply grants it when the relay has
 * rings ready (want_uring) and the kernel offered it.  The host's reply comes
 * back with max_write and max_pages capped so that no WRITE request and no
 * READ reply can outgrow the session's largest frame.
 *
 * A mount without default_permissions leaves every permission check to the
 * host, which makes it when a directory is opened: the kernel's offer of
 * FUSE_NO_OPENDIR_SUPPORT is then withheld, so the host never answers
 * OPENDIR with ENOSYS (the kernel would list a cached directory to anyone
 * without asking; engine/fuse_ops.c, dirs_without_open).
 *
 * open=none (no_open.h) is decided here too, where the kernel's offer and
 * the host's reply are both known: when the relay wants it, the kernel
 * offered FUSE_NO_OPEN_SUPPORT and the host asked for no writeback cache,
 * the reply loses FUSE_POSIX_LOCKS, FUSE_FLOCK_LOCKS and
 * FUSE_ATOMIC_O_TRUNC on its way to the kernel.  The host sees the offer
 * of FUSE_NO_OPEN_SUPPORT only when the relay wants open=none: to the
 * host it says that no RELEASE will come once the writeback cache is
 * off, so it keeps only the last few created files' handles open
 * (engine/created_handles.h).
 */
#ifndef FSB_MOUNT_INIT_FILTER_H
#define FSB_MOUNT_INIT_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct init_filter {
    uint64_t offered; /* INIT flags (flags | flags2 << 32) the kernel offered */
    bool want_uring;  /* set by the relay: its io_uring queues are ready */
    bool host_checks_permissions; /* set by the relay: no default_permissions */
    bool uring;       /* result: the reply granted FUSE_OVER_IO_URING */
    bool writeback;   /* result: the reply asked for (offered) FUSE_WRITEBACK_CACHE */
    bool want_no_open; /* set by the relay: open=none may be in force (no_open.h) */
    bool no_open;     /* result: it is; the relay answers OPEN with ENOSYS */
};

/* Whether the kernel's INIT offered FUSE-over-io_uring. */
bool init_filter_offers_uring(const struct init_filter *f);

/* Edits the kernel's INIT request in place (MSG: fuse_in_header and
 * fuse_init_in, LEN bytes) and remembers what it offered. */
void init_filter_request(struct init_filter *f, void *msg, size_t len);

/*
 * Edits the host's INIT reply in place (MSG: fuse_out_header and
 * fuse_init_out, LEN bytes; older protocol minors send a shorter
 * fuse_init_out, and only the fields present are touched).  Returns the
 * reply's error: 0, or the negative errno the host refused INIT with.
 */
int init_filter_reply(struct init_filter *f, void *msg, size_t len, uint32_t max_frame);

#endif
