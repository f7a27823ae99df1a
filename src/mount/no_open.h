/*
 * no_open.h - open=none: files the guest kernel opens without asking.
 *
 * Once an OPEN is answered ENOSYS, the FUSE kernel sends no OPEN (and no
 * RELEASE) for a file again on that connection, and opens every file with
 * fh 0 and FOPEN_KEEP_CACHE (fs/fuse/file.c, fuse_file_open: no_open);
 * once a FLUSH is answered ENOSYS it sends no FLUSH either (no_flush).  A
 * warm grep -r then costs no round trip per file at all, where open=auto
 * still costs three that the relay answers (OPEN, FLUSH, RELEASE: about
 * 13 us each on the machine of bench/README.md, all of it wake-ups).  A
 * version-5 host takes fh 0 as "open the request's node for this request
 * alone, as its caller" (FSB_TERMS_NO_OPEN, docs/stream-protocol.md).
 *
 * What it needs, else the mount falls back to open=auto (logged):
 * - a host of version 7, which bounds the host files of created files
 *   (engine/created_handles.h; an older one keeps each open for good);
 * - the host's terms NO_OPEN and PUSHES: FOPEN_KEEP_CACHE on every open is
 *   true only where host changes are pushed (cache=coherent);
 * - QUIET_CLOSE: a host file closed after each request, and no FLUSH,
 *   must lose no error a close would report (NFS write-back);
 * - default_permissions: the guest kernel is then the one that checks an
 *   open (the host checks the caller again at each request that reaches
 *   it; a write-back of a shared mapping carries no caller, and is the
 *   guest kernel's own: done as guest root, as with any handle-less write);
 * - the kernel's FUSE_NO_OPEN_SUPPORT offer and no writeback cache (the
 *   guest would then write most data back from its cache, as root).
 * What changes, in the INIT reply the kernel sees (init_filter.c):
 * - no FUSE_POSIX_LOCKS, FUSE_FLOCK_LOCKS: with no host file kept open,
 *   no host lock can be held for the guest, so the guest kernel keeps
 *   fcntl and flock locks itself; they exclude the processes of this
 *   guest only, not the host's nor another guest's;
 * - no FUSE_ATOMIC_O_TRUNC: the O_TRUNC of an open then comes as a
 *   SETATTR, which an OPEN would have carried.
 * CREATE (and TMPFILE) still open on the
 * host: their handles are real ones, but no RELEASE comes for them either,
 * so the host keeps the last few open (engine/created_handles.h), told by
 * the offer of FUSE_NO_OPEN_SUPPORT the relay makes only here
 * (init_filter.c).  An error the host
 * would have given at open(2) comes at the first read or write, and a
 * file made unreadable or unwritable after a guest process opened it is
 * refused at its next uncached read or write (a local file descriptor
 * would go on).
 */
#ifndef FSB_MOUNT_NO_OPEN_H
#define FSB_MOUNT_NO_OPEN_H

#include <linux/fuse.h>
#include <stdbool.h>

#include "mount/relay.h"

/* For a mount with open=none: NULL if the relay may ask for it at INIT
 * (init_filter.want_no_open), else why not, for the log. */
const char *no_open_refusal(const struct relay_config *cfg);

/* Whether the relay answers request IH with ENOSYS itself: OPEN and FLUSH,
 * while open=none is in force (IN_FORCE). */
bool no_open_answers(bool in_force, const struct fuse_in_header *ih);

#endif
