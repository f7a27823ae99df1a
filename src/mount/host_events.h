/*
 * host_events.h - the echo of host changes, so that guest programs that
 * watch files with inotify (dev servers: vite, webpack, nodemon) see them.
 *
 * The guest kernel raises inotify events only for changes made through its
 * own VFS; a host change reaches it as a FUSE notification, which only
 * drops caches.  So after a notification of the host's (cache=coherent)
 * has reached the kernel, the echo thread repeats the change through the
 * mount, and the kernel's VFS raises the event itself:
 *
 *   notification                      echo (through the mount)    event
 *   INVAL_INODE, data (off >= 0)      truncate to the host's size IN_MODIFY
 *   INVAL_INODE, attributes only      chown to the host's owner   IN_ATTRIB
 *   INVAL_ENTRY / DELETE, name gone   unlink / rmdir              IN_DELETE
 *   INVAL_ENTRY, name there, new node mknod / mkdir / symlink     IN_CREATE
 *   a name gone + its node elsewhere  rename                      IN_MOVED_*
 *
 * (which case an INVAL_ENTRY is, the echo asks the host with a LOOKUP of
 * its own).  The requests these make the kernel send, recognised by the pid
 * in their header being the echo thread's, never change the host:
 *   - SETATTR goes to the host as a GETATTR of the same node (same unique:
 *     both replies are a fuse_attr_out), so the kernel installs the host's
 *     attributes as they are;
 *   - MKNOD, MKDIR and SYMLINK go as a LOOKUP of the name (both replies
 *     are a fuse_entry_out): the host's own entry, or ENOENT if the name is
 *     gone again, so nothing that the host does not have can appear;
 *   - the LOOKUPs the echo planned are answered by the relay: the name it
 *     is about to create as missing, the name it is about to remove (or
 *     move) as the node the kernel knew (host_nodes.h counts that lookup,
 *     which the host never made, and takes it out of the kernel's FORGET);
 *   - UNLINK, RMDIR and RENAME of the planned names are answered 0, others
 *     EPERM; every other modifying opcode is answered EPERM;
 *   - reads (LOOKUP of other names, GETATTR, GETXATTR, READLINK...) go to
 *     the host as they are.
 * So the echo, running as root in the guest, cannot create, remove or
 * change anything on the host: a request of its pid that could is never
 * sent.
 *
 * Notifications go to the kernel exactly as without the echo
 * (notify_queue.h); only after one was written is its echo queued, in a
 * bounded queue (HOST_EVENTS_QUEUE: beyond, echoes are dropped, logged
 * once), so a slow or stuck echo never delays a notification or a reply.
 * A change the guest made itself (host_nodes_own_change: the daemon's
 * inotify tracking sends those back too) is not echoed.
 */
#ifndef FSB_MOUNT_HOST_EVENTS_H
#define FSB_MOUNT_HOST_EVENTS_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "mount/host_nodes.h"

/* Echoes queued at most. */
#define HOST_EVENTS_QUEUE 1024
/* How long the echo waits for the host's answer to its own LOOKUP. */
#define HOST_EVENTS_LOOKUP_TIMEOUT_MS 2000
/* How long one echo's system calls may take (host_events.c, arm_timer). */
#define HOST_EVENTS_SYSCALL_TIMEOUT_S 2
/* The echo thread's timer signal; no other thread of the program gets it. */
#define HOST_EVENTS_SIGNAL (SIGRTMIN + 1)

struct relay_conn;
struct reply_dest;
struct host_events;

struct host_events_config {
    const char *mountpoint;  /* absolute */
    struct host_nodes *nodes;
    struct relay_conn *conn; /* where the echo's own requests go */
    const bool *writeback;   /* the session caches writes (no truncate echo) */
};

/* Starts the echo thread.  Returns 0 or -errno. */
int host_events_start(const struct host_events_config *cfg, struct host_events **out);

/* A notification (MSG, LEN bytes) was written to the kernel, which answered
 * RESULT (0 or -errno; ENOENT: it had no such node or name cached): queue
 * its echo.  Never blocks. */
void host_events_notified(struct host_events *he, const void *msg, size_t len, int result);

/* A request of the kernel's (as relay_forward gets it).  True when it is
 * the echo's and has been answered or sent here; false: relay it as usual. */
bool host_events_intercept(struct host_events *he, struct relay_conn *c, struct reply_dest *dest,
                           const struct fuse_in_header *ih, struct iovec *iov, int cnt);

#endif
