/*
 * pt_changes.c - the passthrough backend's side of cache=coherent
 * (change_watch.h): subscribing a session to its export's watcher, and
 * telling the other sessions what this one changed.  fanotify drops the
 * events fsbridged causes itself, so these notes are how one guest's
 * changes reach another's cache (of this export or of any other export
 * of the same files, coherent or not), and why they never come back to
 * the session that made them.
 */
#include "backend/passthrough/change_watch.h"
#include "backend/passthrough/pt_internal.h"

#include <errno.h>

void pt_note_inode(struct passthrough *pt, dev_t dev, ino_t ino, int64_t off, int64_t len)
{
    change_watch_post_inode(pt->sub, dev, ino, off, len);
}

void pt_note_entry(struct passthrough *pt, const struct pt_inode *dir, const char *name)
{
    change_watch_post_entry(pt->sub, dir->dev, dir->ino, name);
}

void pt_note_handle(struct passthrough *pt, uint64_t fh, int64_t off, int64_t len)
{
    if (!change_watch_posts_wanted()) /* also an export not watched itself */
        return;
    pthread_mutex_lock(&pt->handles_lock);
    bool ok = fh < pt->nhandles;
    dev_t dev = ok ? pt->handles[fh].dev : 0;
    ino_t ino = ok ? pt->handles[fh].ino : 0;
    pthread_mutex_unlock(&pt->handles_lock);
    if (ok)
        pt_note_inode(pt, dev, ino, off, len);
}

/*
 * Only a fanotify watch of the directory's filesystem sees every change
 * (inotify watches directories as they are looked up, from a budget, and
 * a filesystem mounted below the export root is not watched at all), and
 * only a name made before the directory joined the session's table can
 * go unpushed: the change watcher drops changes of inodes no session
 * knows.  The caller made the directory and its node, so any such name
 * is in it now.
 */
enum fsb_dir_state pt_empty_dir(struct fsb_backend *be, uint64_t nodeid)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return FSB_DIR_NOT_EMPTY;
    enum fsb_dir_state s = !pt_dir_is_empty(fd)                               ? FSB_DIR_NOT_EMPTY
                           : pt->sub && change_watch_sees_all(pt->watch, in->dev) ? FSB_DIR_EMPTY_WATCHED
                                                                              : FSB_DIR_EMPTY;
    pt_unpin(pt, in);
    return s;
}

int passthrough_track(struct fsb_backend *be, const struct change_sink *sink, void *cookie)
{
    struct passthrough *pt = pt_of(be);
    if (!pt->watch)
        return -ENOTSUP;
    pt->sub = change_watch_subscribe(pt->watch, &pt->inodes, sink, cookie);
    if (!pt->sub)
        return -ENOMEM;
    struct pt_inode *root;
    int fd = pt_pin(pt, FSB_ROOT_NODEID, &root);
    if (fd >= 0) {
        change_watch_dir_seen(pt->watch, fd, root->dev, root->ino);
        pt_unpin(pt, root);
    }
    return 0;
}

void passthrough_untrack(struct fsb_backend *be)
{
    struct passthrough *pt = pt_of(be);
    if (pt->sub)
        change_watch_unsubscribe(pt->watch, pt->sub);
}

void pt_untrack_free(struct passthrough *pt)
{
    if (pt->sub)
        change_watch_sub_free(pt->watch, pt->sub);
    pt->sub = NULL;
}

size_t passthrough_known_nodes(struct fsb_backend *be, uint64_t **ids)
{
    return inode_table_nodeids(&pt_of(be)->inodes, ids);
}
