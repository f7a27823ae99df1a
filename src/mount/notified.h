/*
 * notified.h - the node a host notification for the kernel (unique 0)
 * is about, for the relay's tables that must forget what it changed.
 */
#ifndef FSB_MOUNT_NOTIFIED_H
#define FSB_MOUNT_NOTIFIED_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The node notification OH (BODY: the LEN bytes after its header) names
 * in *NODE: an INVAL_INODE's inode, an INVAL_ENTRY's or a DELETE's
 * directory (the first field of each).  False for anything else, which
 * may concern any node (an epoch, a code the relay does not know). */
static inline bool fuse_notified_node(const struct fuse_out_header *oh, const void *body,
                                      size_t len, uint64_t *node)
{
    switch (oh->error) {
    case FUSE_NOTIFY_INVAL_INODE: /* fuse_notify_inval_inode_out.ino */
    case FUSE_NOTIFY_INVAL_ENTRY: /* fuse_notify_inval_entry_out.parent */
    case FUSE_NOTIFY_DELETE:      /* fuse_notify_delete_out.parent */
        if (len < sizeof(*node))
            return false;
        memcpy(node, body, sizeof(*node));
        return true;
    }
    return false;
}

#endif
