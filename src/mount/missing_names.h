/*
 * missing_names.h - the LOOKUPs of missing names the relay answers itself.
 *
 * The guest kernel looks a name up before it creates it (fs/fuse/dir.c,
 * fuse_atomic_open and the lookup of every mknod, mkdir, symlink, link
 * and rename target): a round trip that finds nothing, once per file an
 * untar or a compiler writes.  A local filesystem answers it from its
 * directory; the relay can too, for a directory this session has just
 * made, whose names it sees being created.
 *
 * The host tells which directories qualify: an empty-directory note
 * (stream_hello.h, FSB_NOTIFY_EMPTY_DIR) before a MKDIR's reply says the
 * new directory was empty once the session knew it, and that every later
 * change of its entries the session does not make itself will be pushed
 * (cache=coherent with a fanotify watch of the filesystem).  From then on
 * the relay answers a LOOKUP in that directory with a negative entry, of
 * the note's timeout, unless the name may exist: the names this session
 * asks the host to create there (CREATE, MKNOD, MKDIR, SYMLINK, LINK, and
 * a RENAME or RENAME2 into it) are remembered, before they are sent, by a
 * hash of directory and name; a LOOKUP of one of them, or of a name whose
 * hash collides with one, goes to the host.  Remembered names are never
 * forgotten one by one (an unlink's name just keeps going to the host).
 *
 * Where nothing pushes (cache=auto, always, metadata: stream protocol 7),
 * the host's note is bounded (FSB_EMPTY_DIR_BOUNDED): "empty" holds for
 * the note's timeout, the one a LOOKUP of a missing name there would have
 * let the kernel keep, counted from the MKDIR's forwarding (before the
 * host made the directory, so the time is never overstated).  The relay
 * answers for it until then only, each negative entry with what is left
 * of that time: a name the host or another guest adds shows within the
 * mode's timeout, as after any LOOKUP.
 *
 * The directory stops qualifying at a host notification naming it (an
 * INVAL_ENTRY or DELETE in it, an INVAL_INODE of it; any notification the
 * relay cannot place ends them all), at its FORGET and at any request on
 * it the relay does not know to leave its names alone.  A note is taken
 * only if no host notification at all came between the MKDIR's forwarding
 * and the note: the host pushes changes on its first connection, so one
 * about the new directory may overtake the note that comes on another.
 * Bounded tables: when the directories or the names fill theirs, every
 * directory goes (forwarding is always right), as all bounded ones do once
 * the last of their times has run out.
 */
#ifndef FSB_MOUNT_MISSING_NAMES_H
#define FSB_MOUNT_MISSING_NAMES_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>

struct missing_names;

struct missing_names *missing_names_new(void);
void missing_names_free(struct missing_names *m);

/* Whether the relay answers request IH (NAME: the LEN bytes of a LOOKUP's
 * name) itself: then *OUT is the negative entry to reply.  M may be NULL
 * (lookups=host): never. */
bool missing_names_answer(struct missing_names *m, const struct fuse_in_header *ih,
                          const void *name, size_t len, struct fuse_entry_out *out);

/* Request IH is about to go to the host: ARG (ARG_LEN bytes) is its
 * argument, NAME (LEN bytes) what follows the op's struct (a created
 * name; a rename's two names). */
void missing_names_forwarding(struct missing_names *m, const struct fuse_in_header *ih,
                              const void *arg, size_t arg_len, const void *name, size_t len);

/* The reply to UNIQUE came from the host. */
void missing_names_replied(struct missing_names *m, uint64_t unique);

/* MSG, LEN bytes from the host with unique 0 and the code
 * FSB_NOTIFY_EMPTY_DIR: an empty-directory note, the relay's alone (M may
 * be NULL: dropped). */
void missing_names_note(struct missing_names *m, const void *msg, size_t len);

/* MSG, LEN bytes from the host with unique 0: a notification for the
 * kernel (no note), whose directory stops qualifying. */
void missing_names_notified(struct missing_names *m, const void *msg, size_t len);

#endif
