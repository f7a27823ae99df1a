/*
 * created_handles.h - the handles of files a session without opens
 * created, and the bound on how many stay open.
 *
 * Once its relay answers an OPEN with ENOSYS (open=none, the mount's
 * no_open.h), the guest kernel sends no RELEASE on that connection again,
 * not even for a file it made with CREATE or TMPFILE (fs/fuse/file.c,
 * fuse_file_put: "no_open").  Such a file keeps the handle its creation
 * opened, so that a process goes on writing a file it created 0444 (git's
 * objects) as through a local descriptor; but without RELEASE nothing
 * would ever close it, and after as many creations as the guest's budget
 * of open files every CREATE would fail with EMFILE (seen: bench.sh's
 * create loop stopped at its 101st file).
 *
 * So such a session hands out, for each created file, an id of its own
 * (FSB_CREATED_FH set, never reused in the session) and keeps the backend
 * handles of the last CREATED_OPEN_MAX creations open.  The oldest goes
 * when one more comes: its backend handle is released (by its last user,
 * never under a running request), and a request that still carries its
 * id is served as one with fh 0 (fuse_ops.c, file_handle_take): the node
 * opened for that request alone, as its caller.  A program that uses a
 * file long after it created it, past CREATED_OPEN_MAX later creations,
 * is then checked at each request that reaches the host (READ, WRITE,
 * FSYNC, a truncate) as if it had opened the file, and each costs the
 * host an open and a close: the price open=none already documents for
 * opened files.  A file with no name (unlinked, or an O_TMPFILE not yet
 * linked) lives on the host only through its open handles, so its entry
 * is never let go; every entry of a node ends at a FORGET that leaves
 * the guest no lookup of it: its kernel has no inode of it then, so no
 * file of it is open (a late FORGET, after a CREATE found the node again,
 * leaves lookups and ends nothing).
 *
 * Whether a RELEASE comes for a file created before the kernel set
 * no_open depends on the kernel (it decides at the file's last close,
 * and kernels from 6.9 until the fix that followed sent it for every
 * created file even after); when one comes it ends the id.  The guest is
 * not trusted: any id may come, with any node; an id that names no live
 * entry is "not ours" and gets fh 0's treatment, which gives nothing that
 * the node's fh 0 would not.  No other file handle exists in such a
 * session (OPEN is answered ENOSYS), so one that is neither 0 nor an id is
 * refused.
 *
 * A session gets this table only when it runs without opens: a stream
 * client of version 7 or later whose relayed INIT offers
 * FUSE_NO_OPEN_SUPPORT (fsbridge-mount withholds the offer unless
 * open=none is in force: init_filter.c), with no writeback cache.  An
 * older client relays the kernel's offer as it is, whatever its mode.
 */
#ifndef FSB_ENGINE_CREATED_HANDLES_H
#define FSB_ENGINE_CREATED_HANDLES_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"

/* Set in every id the table hands out; the backend's handles are small
 * indexes, a stream client's lazy handles have bit 63 (FSB_LAZY_FH). */
#define FSB_CREATED_FH (1ull << 62)

/* Backend handles of created files kept open at most. */
#define CREATED_OPEN_MAX 32

struct fsb_created_handles;
struct fsb_created_entry;

/* The table of a session whose handles BE gives out; NULL without memory. */
struct fsb_created_handles *fsb_created_new(struct fsb_backend *be);
/* Releases every backend handle still held (no request may run). */
void fsb_created_free(struct fsb_created_handles *t);

/* Whether FH is an id of this kind (not whether it is live). */
static inline bool fsb_created_is_id(uint64_t fh)
{
    return (fh & ~FSB_CREATED_FH) != 0 && (fh >> 62) == 1;
}

/* Keeps backend handle FH of new file NODE and returns its id.  Past
 * CREATED_OPEN_MAX handles held, the oldest whose file has a name is let
 * go.  Returns 0, or -ENOMEM (FH is then still the caller's to release). */
int fsb_created_add(struct fsb_created_handles *t, uint64_t node, uint64_t fh, uint64_t *id);

/* The backend handle of live id ID in *FH, in use (*USE) until
 * fsb_created_give; false if ID names none (let go, released, or never
 * given out). */
bool fsb_created_take(struct fsb_created_handles *t, uint64_t id, uint64_t *fh,
                      struct fsb_created_entry **use);
void fsb_created_give(struct fsb_created_handles *t, struct fsb_created_entry *use);

/* RELEASE of ID: a live entry ends, its backend handle released once its
 * last user is done; an id that names none needs nothing (its handle was
 * let go, or never existed). */
void fsb_created_release(struct fsb_created_handles *t, uint64_t id);

/* FORGET of NODE: the kernel holds no open file of it any more, so every
 * entry of NODE ends (released once its last user is done). */
void fsb_created_forget(struct fsb_created_handles *t, uint64_t node);

#endif
