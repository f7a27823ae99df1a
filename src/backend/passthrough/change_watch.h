/*
 * change_watch.h - host changes of one export, mapped to the node ids of
 * the sessions that know the inodes (cache=coherent).
 *
 * The model.  One watcher per export, opened before the sandbox.  It learns
 * of changes two ways:
 *  - fanotify (preferred): one filesystem mark on the export's filesystem
 *    with FAN_REPORT_DFID_NAME | FAN_REPORT_FID, so each event names the
 *    changed inode and, for a name, its directory by file handle.  Handles
 *    are resolved with open_by_handle_at against the export root.  Events
 *    caused by fsbridged itself (its pid) are dropped: the passthrough
 *    backend of every export, watched or not, reports its own changes to
 *    every fanotify watcher with change_watch_post, naming the session
 *    that made them, whose kernel already knows.
 *  - inotify (fallback, when fanotify cannot mark the filesystem): a watch
 *    on every directory a session has looked up, within a budget (half of
 *    fs.inotify.max_user_watches, at most 65,536); directories beyond it are
 *    not tracked (logged once).  inotify cannot tell who made a change, so
 *    every session gets every change, its own ones too.
 * Each change becomes, for every subscribed session that knows the inode,
 * an invalidation handed to the session's sink (which must not block: the
 * engine queues it, see engine/notify_out.h); changes of inodes no session
 * knows (the rest of the filesystem) are dropped, their file handles
 * remembered so that the next event of the same file opens nothing.  When
 * the kernel's event queue overflowed, every sink is told to drop its
 * whole cache.
 *
 * Only what lives on the export root's filesystem is tracked: mounts below
 * the export root are not watched.
 */
#ifndef FSB_CHANGE_WATCH_H
#define FSB_CHANGE_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct inode_table;
struct change_watch;
struct change_sub;

enum change_mode { CHANGE_FANOTIFY, CHANGE_INOTIFY };

/* Where one session's invalidations go.  Called from the watcher's thread
 * or a worker (change_watch_post); must not block. */
struct change_sink {
    /* OFF < 0: attributes only; else the data from OFF, LEN bytes (0: to
     * the end), and the attributes. */
    void (*inval_inode)(void *cookie, uint64_t nodeid, int64_t off, int64_t len);
    void (*inval_entry)(void *cookie, uint64_t parent, const char *name);
    void (*inval_all)(void *cookie); /* events were lost */
    /* A change the session did not make of an inode it knows (or of a
     * directory it knows, for a name), before its invalidations; also of
     * an inode that cannot be identified any more (change_watch.c,
     * known_change, says why nothing else needs counting). */
    void (*changed)(void *cookie);
};

/* Starts watching the filesystem of ROOT_FD (the export root, duplicated;
 * NAME is for the log).  NULL, logged, when neither fanotify nor inotify
 * can be used. */
struct change_watch *change_watch_open(int root_fd, const char *name);
/* Starts the thread reading events, once the sandbox is in place: ROOT_FD
 * (duplicated) is the export root as the sandbox reopened it, against
 * which handles are opened; the thread is under the seccomp filter.
 * Returns 0 or -errno. */
int change_watch_start(struct change_watch *w, int root_fd);
void change_watch_close(struct change_watch *w);
enum change_mode change_watch_mode(const struct change_watch *w);
/* Whether W sees every change of entries of directories on device DEV,
 * whoever makes it: a fanotify watch of that filesystem.  W may be NULL. */
bool change_watch_sees_all(const struct change_watch *w, dev_t dev);

/* Sends the changes of inodes in T to SINK until change_watch_unsubscribe
 * (after which no call reaches SINK; again is a no-op).  SUB itself stays
 * valid as a post's origin until change_watch_sub_free: workers of the
 * session may still be posting.  NULL when out of memory. */
struct change_sub *change_watch_subscribe(struct change_watch *w, struct inode_table *t,
                                          const struct change_sink *sink, void *cookie);
void change_watch_unsubscribe(struct change_watch *w, struct change_sub *sub);
void change_watch_sub_free(struct change_watch *w, struct change_sub *sub);

/* fsbridged changed something on behalf of ORIGIN (may be NULL), in
 * whichever export: tell the other sessions of every export watched with
 * fanotify (which drops fsbridged's own events, whatever export they come
 * from; inotify sees them itself).  Whether there is any such watcher to
 * tell: change_watch_posts_wanted. */
bool change_watch_posts_wanted(void);
void change_watch_post_inode(const struct change_sub *origin, dev_t dev, ino_t ino, int64_t off,
                             int64_t len);
void change_watch_post_entry(const struct change_sub *origin, dev_t dir_dev, ino_t dir_ino,
                             const char *name);

/* inotify mode: a session looked up the directory FD (an O_PATH fd, not
 * consumed): watch it.  A no-op in fanotify mode. */
void change_watch_dir_seen(struct change_watch *w, int fd, dev_t dev, ino_t ino);

#endif
