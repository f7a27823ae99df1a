/*
 * notify_out.h - a session's outgoing FUSE notifications (cache=coherent).
 *
 * The export's change watcher (backend/passthrough/change_watch.h) hands
 * invalidations to the session from its own thread or from another
 * session's worker; neither may wait for this guest.  So they go into a
 * bounded queue, and a thread of the session's own sends them (unique 0)
 * through the transport.  When the queue is full the pending ones are
 * dropped and the whole cache of the guest is invalidated instead:
 * FUSE_NOTIFY_INC_EPOCH (kernels with FUSE 7.44, Linux 6.16: every cached
 * name is looked up again) and FUSE_NOTIFY_INVAL_INODE of every node the
 * session knows (attributes and data).  A lost event would leave the
 * guest stale for a day; a dropped cache only costs lookups.
 */
#ifndef FSB_NOTIFY_OUT_H
#define FSB_NOTIFY_OUT_H

#include <stddef.h>
#include <stdint.h>

struct fsb_session;
struct fsb_notify_out;

/* Notifications queued per session before the queue overflows. */
#define FSB_NOTIFY_QUEUE_MAX 1024

/* Writes one notification of LEN bytes to the guest; may block. */
typedef void (*fsb_notify_send_fn)(void *cookie, const void *msg, size_t len);

/* Subscribes S to its export's change watcher and starts the sending
 * thread.  Returns 0, or -errno (-ENOTSUP: the export has no watcher;
 * overlay exports never get here, cache=coherent is refused for them at
 * start), and S is served with cache=auto's rules.  LOG_ID names
 * the session in the log. */
int fsb_notify_out_start(struct fsb_session *s, unsigned log_id, fsb_notify_send_fn send,
                         void *cookie);
/* Unsubscribes S and ends the thread (before the transport closes what
 * SEND writes to).  Logs how many notifications went out. */
void fsb_notify_out_stop(struct fsb_session *s);

#endif
