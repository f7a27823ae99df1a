/*
 * init_filter.h - the relay's edits to the FUSE_INIT exchange.
 *
 * The kernel's INIT goes to the host unchanged except for the capabilities
 * a byte stream cannot carry: DAX windows need shared memory, passthrough
 * backing files need the host's file descriptors, FUSE-over-io_uring needs
 * the daemon to register rings on this /dev/fuse.  The host's reply comes
 * back with max_write and max_pages capped so that no WRITE request and no
 * READ reply can outgrow the session's largest frame.
 */
#ifndef FSB_MOUNT_INIT_FILTER_H
#define FSB_MOUNT_INIT_FILTER_H

#include <stddef.h>
#include <stdint.h>

struct init_filter {
    uint64_t offered; /* INIT flags (flags | flags2 << 32) the kernel offered */
};

/* Edits the kernel's INIT request in place (MSG: fuse_in_header and
 * fuse_init_in, LEN bytes) and remembers what it offered. */
void init_filter_request(struct init_filter *f, void *msg, size_t len);

/*
 * Edits the host's INIT reply in place (MSG: fuse_out_header and
 * fuse_init_out, LEN bytes; older protocol minors send a shorter
 * fuse_init_out, and only the fields present are touched).  Returns the
 * reply's error: 0, or the negative errno the host refused INIT with.
 */
int init_filter_reply(const struct init_filter *f, void *msg, size_t len, uint32_t max_frame);

#endif
