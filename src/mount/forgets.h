/*
 * forgets.h - the node ids a FORGET or BATCH_FORGET lets go, for the
 * relay's tables that must not outlive a node id (the host may give the
 * number to another inode later).
 */
#ifndef FSB_MOUNT_FORGETS_H
#define FSB_MOUNT_FORGETS_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Calls FN(ARG, NODEID) for each node request IH (ITS argument BODY, LEN
 * bytes) forgets: a FORGET's own node, a BATCH_FORGET's entries, as many
 * of its count as its bytes hold.  False for a BATCH_FORGET too short for
 * its header: the nodes it meant are unknown. */
static inline bool fuse_each_forgotten(const struct fuse_in_header *ih, const void *body,
                                       size_t len, void (*fn)(void *arg, uint64_t nodeid),
                                       void *arg)
{
    if (ih->opcode == FUSE_FORGET) {
        fn(arg, ih->nodeid);
        return true;
    }
    struct fuse_batch_forget_in in;
    if (len < sizeof(in))
        return false;
    memcpy(&in, body, sizeof(in)); /* the request's bytes may not be aligned */
    const char *p = (const char *)body + sizeof(in);
    size_t count = (len - sizeof(in)) / sizeof(struct fuse_forget_one);
    for (size_t i = 0; i < count && i < in.count; i++) {
        struct fuse_forget_one one;
        memcpy(&one, p + i * sizeof(one), sizeof(one));
        fn(arg, one.nodeid);
    }
    return true;
}

#endif
