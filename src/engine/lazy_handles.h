/*
 * lazy_handles.h - file handles a stream client made up itself.
 *
 * A client whose session terms carry FSB_TERMS_LAZY_OPEN (stream_hello.h)
 * answers a plain read-only OPEN of a file itself, with a handle of its
 * own that has FSB_LAZY_FH set, and sends no OPEN: a warm grep -r or a
 * compiler reading headers then costs the host nothing per file but what
 * the guest's page cache cannot answer.  The host opens the file when a
 * request first uses such a handle (fuse_ops.c, file_handle_take): the
 * request's node, read-only, as the request's caller, with the same checks
 * and the same budget as an OPEN.  This module keeps, per session, which
 * lazy handle stands for which backend handle.
 *
 * The guest is not trusted: any fh value, any node id, requests racing on
 * one handle, a RELEASE racing its READs.  So each entry counts its users:
 * a RELEASE takes the entry out of the map at once, and the backend handle
 * is released by whoever uses it last (never under a running request,
 * whose host fd could otherwise be closed and its number reused).  The map
 * holds at most MAX entries (the session's budget of open handles); each
 * entry holds one backend handle, which counts on the guest's budget of
 * open files like any other.
 */
#ifndef FSB_LAZY_HANDLES_H
#define FSB_LAZY_HANDLES_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "transport/stream_hello.h" /* FSB_LAZY_FH */

struct fsb_lazy_handles;
struct fsb_lazy_entry;

/* Opens the file a lazy handle stands for: *FH gets a backend handle.
 * Returns 0 or -errno. */
typedef int (*fsb_lazy_open_fn)(void *arg, uint64_t *fh);

/* The map of one session whose handles BE gives out; NULL without memory. */
struct fsb_lazy_handles *fsb_lazy_handles_new(struct fsb_backend *be, size_t max);
/* Releases every backend handle still mapped (no request may run). */
void fsb_lazy_handles_free(struct fsb_lazy_handles *lh);

/*
 * The backend handle for lazy handle LAZY used on node NODE, in *FH, and a
 * use of it in *USE that fsb_lazy_give ends.  Absent: opened with
 * OPEN(ARG) (NODE's file) and mapped, or -ENOENT when OPEN is NULL.  The
 * host sees a lazy handle first at its first use, so that use binds it to
 * its node: a use with another node is -EBADF (else a guest could read
 * node B through a handle opened for node A, past B's own open checks).
 * Returns 0, -EBADF, -EMFILE when the map is full, or OPEN's error.  Two
 * requests that open the same absent handle at once both open; the second
 * to map it releases its own and uses the first's (or gets -EBADF if the
 * first's node is another).
 */
int fsb_lazy_take(struct fsb_lazy_handles *lh, uint64_t lazy, uint64_t node,
                  fsb_lazy_open_fn open, void *arg, uint64_t *fh, struct fsb_lazy_entry **use);
void fsb_lazy_give(struct fsb_lazy_handles *lh, struct fsb_lazy_entry *use);

/* RELEASE of LAZY: unmapped, its backend handle released once its last
 * use ends.  Always 0: a lazy handle no request used was never opened. */
int fsb_lazy_release(struct fsb_lazy_handles *lh, uint64_t lazy);

/* Handles mapped now (tests). */
size_t fsb_lazy_count(struct fsb_lazy_handles *lh);

#endif
