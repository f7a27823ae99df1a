/*
 * caps_shortcut.c - see caps_shortcut.h.  One mutex; the tables are the
 * relay's usual fixed hash tables (common/u64_table.h).
 */
#include "mount/caps_shortcut.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/u64_table.h"

#define CAPS_NAME "security.capability"
#define CREATE_SLOTS 256   /* creates in flight: at most 128 */
#define NODE_SLOTS 16384   /* files known to carry none: at most 8192 */

struct caps_shortcut {
    pthread_mutex_t lock;
    struct fsb_u64_table creates; /* uniques of CREATE, MKNOD, TMPFILE in flight */
    struct fsb_u64_table nodes;   /* node ids that carry no capability */
    struct fsb_u64_slot create_slots[CREATE_SLOTS];
    struct fsb_u64_slot node_slots[NODE_SLOTS];
};

struct caps_shortcut *caps_shortcut_new(void)
{
    struct caps_shortcut *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    fsb_u64_table_init(&c->creates, c->create_slots, CREATE_SLOTS);
    fsb_u64_table_init(&c->nodes, c->node_slots, NODE_SLOTS);
    return c;
}

void caps_shortcut_free(struct caps_shortcut *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static bool creates_a_file(uint32_t opcode)
{
    return opcode == FUSE_CREATE || opcode == FUSE_MKNOD || opcode == FUSE_TMPFILE;
}

/* A GETXATTR of security.capability: fuse_getxattr_in, then the name. */
static bool asks_for_caps(const struct fuse_in_header *ih, const void *arg, size_t len)
{
    size_t head = sizeof(struct fuse_getxattr_in);
    return ih->opcode == FUSE_GETXATTR && len >= head + sizeof(CAPS_NAME) &&
           memcmp((const char *)arg + head, CAPS_NAME, sizeof(CAPS_NAME)) == 0;
}

bool caps_shortcut_answers(struct caps_shortcut *c, const struct fuse_in_header *ih,
                           const void *arg, size_t len)
{
    if (!c || !asks_for_caps(ih, arg, len))
        return false;
    pthread_mutex_lock(&c->lock);
    bool known = fsb_u64_table_find(&c->nodes, ih->nodeid) != NULL;
    pthread_mutex_unlock(&c->lock);
    return known;
}

static void forget_node(struct caps_shortcut *c, uint64_t nodeid)
{
    pthread_mutex_lock(&c->lock);
    fsb_u64_table_remove(&c->nodes, nodeid, NULL);
    pthread_mutex_unlock(&c->lock);
}

/* BATCH_FORGET: fuse_batch_forget_in, then COUNT fuse_forget_one. */
static void forget_batch(struct caps_shortcut *c, const void *arg, size_t len)
{
    struct fuse_batch_forget_in in;
    struct fuse_forget_one one;
    if (len < sizeof(in))
        return;
    memcpy(&in, arg, sizeof(in));
    const char *p = (const char *)arg + sizeof(in);
    for (uint32_t i = 0; i < in.count && (size_t)(p - (const char *)arg) + sizeof(one) <= len;
         i++, p += sizeof(one)) {
        memcpy(&one, p, sizeof(one));
        forget_node(c, one.nodeid);
    }
}

void caps_shortcut_forwarding(struct caps_shortcut *c, const struct fuse_in_header *ih,
                              const void *arg, size_t len)
{
    if (!c)
        return;
    switch (ih->opcode) {
    case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR:
    case FUSE_FORGET:
        forget_node(c, ih->nodeid);
        break;
    case FUSE_BATCH_FORGET:
        forget_batch(c, arg, len);
        break;
    default:
        if (creates_a_file(ih->opcode)) {
            pthread_mutex_lock(&c->lock);
            fsb_u64_table_add(&c->creates, ih->unique, NULL); /* full: not shortcut */
            pthread_mutex_unlock(&c->lock);
        }
    }
}

void caps_shortcut_reply(struct caps_shortcut *c, const struct fuse_out_header *oh,
                         const void *body, size_t len)
{
    uint64_t nodeid = 0;
    if (!c)
        return;
    if (oh->error == 0 && len >= sizeof(nodeid))
        memcpy(&nodeid, body, sizeof(nodeid)); /* fuse_entry_out begins with it */
    pthread_mutex_lock(&c->lock);
    if (fsb_u64_table_remove(&c->creates, oh->unique, NULL) && nodeid) {
        /* a full table starts over: forwarding is always right */
        if (fsb_u64_table_add(&c->nodes, nodeid, NULL) == -ENOSPC) {
            fsb_u64_table_clear(&c->nodes, NULL, NULL);
            fsb_u64_table_add(&c->nodes, nodeid, NULL);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

void caps_shortcut_host_message(struct caps_shortcut *c, const void *msg, size_t len)
{
    struct fuse_out_header oh;
    struct fuse_notify_inval_inode_out in;
    if (!c || len < sizeof(oh) + sizeof(in))
        return;
    memcpy(&oh, msg, sizeof(oh));
    if (oh.error != FUSE_NOTIFY_INVAL_INODE)
        return;
    memcpy(&in, (const char *)msg + sizeof(oh), sizeof(in));
    forget_node(c, in.ino);
}
