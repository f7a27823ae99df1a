/*
 * lazy_open.h - the read-only OPENs the relay answers itself.
 *
 * A warm grep -r, a compiler reading headers, git status: each file is
 * opened, read from the guest's page cache, closed.  FLUSH is answered by
 * the relay (flush_shortcut.h) and RELEASE is asynchronous, but the OPEN
 * is a round trip to the host a file, and the caller waits for it.  When
 * the host's session terms allow it (FSB_TERMS_LAZY_OPEN, stream_hello.h),
 * the relay answers a plain read-only OPEN of a file at once, with a
 * handle of its own (FSB_LAZY_FH and a counter) and the open flags the
 * host would have given (terms.open_flags); the host opens the file when
 * a request first uses the handle (engine/lazy_handles.h).  What the
 * guest sees differs in one way: an error the host's open would have had
 * (the file removed on the host since the guest looked it up, the host's
 * own permission check) comes at the first read instead.
 *
 * Only under default_permissions: then the guest kernel has checked the
 * caller's permission before it sends the OPEN, as the host would have.
 * Without it the host is the only one that checks, and every OPEN must
 * reach it (the mount is set up so: relay_config.host_checks_permissions).
 *
 * "Plain" read-only: O_RDONLY with no flag but O_LARGEFILE, O_NONBLOCK,
 * O_NOFOLLOW and O_CLOEXEC (which change nothing of a regular file's open
 * on the host).  O_TRUNC writes, O_DIRECT and O_SYNC/O_DSYNC change how the
 * host fd reads, O_NOATIME is the host's to refuse, an exec open
 * (__FMODE_EXEC) has its own permission rule on the host: all go to the
 * host, as does any flag not known here.
 *
 * RELEASE: the relay notes which of its handles a forwarded request
 * carried (carried_fh: one function that knows where each opcode keeps
 * its handle, for the requests the host may open one for).  The RELEASE
 * of a handle no such request carried is answered here: the host opened
 * nothing for it.  Any other goes to the host, which releases what it
 * opened.  The table of carried handles is bounded; once it is full,
 * every lazy RELEASE goes to the host (the host answers one it never
 * opened with 0).
 */
#ifndef FSB_MOUNT_LAZY_OPEN_H
#define FSB_MOUNT_LAZY_OPEN_H

#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>

struct lazy_open;

/* OPEN_FLAGS: the host's FOPEN_* for a read-only open (session terms). */
struct lazy_open *lazy_open_new(uint32_t open_flags);
void lazy_open_free(struct lazy_open *lo);

enum lazy_answer {
    LAZY_FORWARD,  /* the host answers */
    LAZY_OPENED,   /* an OPEN answered here: reply with *OUT */
    LAZY_RELEASED, /* a RELEASE answered here: reply 0 */
};

/* What the relay does with request IH (ARG: its LEN argument bytes).
 * Asked of every request; LO may be NULL (open=host, or a host without
 * the term): then everything is forwarded. */
enum lazy_answer lazy_open_answers(struct lazy_open *lo, const struct fuse_in_header *ih,
                                   const void *arg, size_t len, struct fuse_open_out *out);

/* Notes the lazy handle request IH carries, if any, before it is sent. */
void lazy_open_forwarding(struct lazy_open *lo, const struct fuse_in_header *ih,
                          const void *arg, size_t len);

#endif
