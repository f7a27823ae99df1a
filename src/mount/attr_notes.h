/*
 * attr_notes.h - the directory GETATTRs the relay answers itself.
 *
 * The guest kernel forgets a directory's attributes whenever it changes
 * the directory's entries (fs/fuse/dir.c, fuse_dir_changed) and asks for
 * them again at its next path walk through it, for the permission check:
 * a GETATTR round trip per file that an untar creates or an rm -rf
 * removes (a third of rm -rf's requests); it forgets the atime after each
 * listing too (fs/fuse/readdir.c, fuse_invalidate_atime), and a find that
 * walks the tree again costs a GETATTR per directory.  The host knows the
 * answer when it makes the change or the listing, and sends it right
 * before the reply as an
 * attribute note (stream_hello.h, FSB_NOTIFY_ATTRS); the relay answers the
 * next GETATTR of that directory with it, once, within the note's timeout
 * (counted from the note's arrival, a moment after the host took it), and
 * forwards every other.
 *
 * A note is kept only when it is the directory's latest word: the request
 * it follows was the only one that could change the directory in flight
 * from its forwarding to the note (another one, before or after, may have
 * run on the host after the note's stat, and its reply may reach the
 * kernel first: the note would then undo what the caller already saw).
 * It is dropped, and so is one still to come for a change in flight, by
 * any later request that may change the directory (a listing, which may
 * move its atime, counts as one), by a host notification about it
 * (cache=coherent: the notification may even overtake the note, on
 * another connection), by the kernel forgetting the node, and by any
 * rename or rmdir (a moved directory's own ctime changes, a removed one's
 * nlink drops, under a node the request does not name).  Tables are bounded; when the
 * in-flight bookkeeping does not fit, notes are off for good (one
 * warning): a note judged without it could be stale.
 */
#ifndef FSB_MOUNT_ATTR_NOTES_H
#define FSB_MOUNT_ATTR_NOTES_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>

struct attr_notes;

struct attr_notes *attr_notes_new(void);
void attr_notes_free(struct attr_notes *a);

/* Request IH: a GETATTR of a node with a live note?  Then *OUT is the
 * reply's body (its timeout what is left of the note's) and the note is
 * used up.  A may be NULL (notes off): false. */
bool attr_notes_answer(struct attr_notes *a, const struct fuse_in_header *ih,
                       struct fuse_attr_out *out);

/* Request IH, its argument ARG of LEN bytes, is about to go to the host:
 * counts the nodes it may change as changing, drops notes it ends. */
void attr_notes_forwarding(struct attr_notes *a, const struct fuse_in_header *ih,
                           const void *arg, size_t len);

/* The reply to UNIQUE came from the host. */
void attr_notes_replied(struct attr_notes *a, uint64_t unique);

/* MSG, LEN bytes from the host with unique 0: true for an attribute note
 * (kept or not: it is the relay's, never the kernel's); false for a
 * notification for the kernel, whose nodes lose their notes. */
bool attr_notes_host_message(struct attr_notes *a, const void *msg, size_t len);

#endif
