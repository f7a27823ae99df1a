/*
 * flush_shortcut.h - the FLUSH requests the relay answers itself.
 *
 * The guest kernel sends FLUSH at every close(2), and the caller waits for
 * the reply.  On the host a FLUSH does two things (passthrough_files.c,
 * pt_flush): it gives the host filesystem the close-time write-back of the
 * handle (NFS and the like report errors there), and it drops the record
 * locks that the closing process holds on the file, through any of its
 * descriptors (POSIX).  For a handle opened read-only, closed by a process
 * (lock owner) that has never asked for a record lock on this mount,
 * neither has anything to do: the relay answers such a FLUSH at once, and
 * a program that opens, reads and closes files (grep -r, a compiler
 * reading headers, git status) saves one round trip to the host a file.
 *
 * Where the host says its close is quiet (FSB_TERMS_QUIET_CLOSE: ext4,
 * xfs, btrfs or tmpfs, nothing mounted below; host_fs.c), a FLUSH there
 * only drops locks, whatever the handle: the guest kernel has written
 * back the file's dirty pages, and seen their errors, before it sends
 * the FLUSH (fs/fuse/file.c, fuse_flush), with or without writeback
 * cache.  Then the relay answers the FLUSH of any handle (a CREATE's, a
 * written one) whose owner never locked, and create, untar, cp or git
 * checkout save a round trip a file too.  Handles need not be learnt.
 *
 * What the relay learns for this, from the requests and replies it
 * forwards (and the OPENs and RELEASEs it answers itself): the uniques of
 * read-only OPENs in flight, the handles their replies name (until their
 * RELEASE; not with a quiet close), and the owners of every SETLK and
 * SETLKW (for good: a process that locked once may still hold locks).
 * Whatever does not fit in these bounded tables, and anything unclear
 * (a handle opened some other way, an owner once seen locking), is
 * forwarded as before; once the owners' table is full, or a RELEASE or a
 * lock request could not be read, every FLUSH is (for good: the tables
 * could no longer be trusted).
 */
#ifndef FSB_MOUNT_FLUSH_SHORTCUT_H
#define FSB_MOUNT_FLUSH_SHORTCUT_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct flush_shortcut;

/* QUIET_CLOSE: the host's FLUSH only drops locks (the session's terms). */
struct flush_shortcut *flush_shortcut_new(bool quiet_close);
void flush_shortcut_free(struct flush_shortcut *f);

/*
 * Whether the relay answers request IH itself (with 0): a FLUSH with
 * nothing to do on the host.  ARG: the LEN bytes of its argument, after
 * the header.  Asked of every request before anything else.
 */
bool flush_shortcut_answers(struct flush_shortcut *f, const struct fuse_in_header *ih,
                            const void *arg, size_t len);

/* Learns from request IH (OPEN, RELEASE, SETLK, SETLKW) once it is
 * recorded as pending, just before it is sent to the host. */
void flush_shortcut_forwarding(struct flush_shortcut *f, const struct fuse_in_header *ih,
                               const void *arg, size_t len);

/* The relay answered the OPEN (OPENED true) or the RELEASE of handle FH
 * itself (lazy_open.h): a read-only handle from the one until the other. */
void flush_shortcut_own_handle(struct flush_shortcut *f, uint64_t fh, bool opened);

/* Looks at reply OH as the relay takes its request out of the pending set
 * (BODY: the LEN bytes after the header it has read, maybe none): the
 * handle of a read-only OPEN. */
void flush_shortcut_reply(struct flush_shortcut *f, const struct fuse_out_header *oh,
                          const void *body, size_t len);

#endif
