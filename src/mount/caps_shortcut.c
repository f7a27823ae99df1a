/*
 * caps_shortcut.c - see caps_shortcut.h.  One mutex; the tables are the
 * relay's usual fixed hash tables (common/u64_table.h).
 */
#include "mount/caps_shortcut.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/u64_table.h"
#include "mount/forgets.h"

#define CAPS_NAME "security.capability"
#define CREATE_SLOTS 256   /* creates in flight: at most 128 */
#define NODE_SLOTS 16384   /* files known to carry none: at most 8192 */

struct caps_shortcut {
    pthread_mutex_t lock;
    /* creates.count, read without the lock by every reply; set before the
     * create is sent, so its reply sees it */
    _Atomic size_t creates_in_flight;
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
    atomic_init(&c->creates_in_flight, 0);
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

/* A GETXATTR of security.capability (NAME: LEN bytes, its NUL among them). */
static bool asks_for_caps(const struct fuse_in_header *ih, const void *name, size_t len)
{
    return ih->opcode == FUSE_GETXATTR && len >= sizeof(CAPS_NAME) &&
           memcmp(name, CAPS_NAME, sizeof(CAPS_NAME)) == 0;
}

bool caps_shortcut_answers(struct caps_shortcut *c, const struct fuse_in_header *ih,
                           const void *name, size_t len)
{
    if (!c || !asks_for_caps(ih, name, len))
        return false;
    pthread_mutex_lock(&c->lock);
    bool known = fsb_u64_table_find(&c->nodes, ih->nodeid) != NULL;
    pthread_mutex_unlock(&c->lock);
    return known;
}

/* Caller holds the lock. */
static void forget_locked(void *arg, uint64_t nodeid)
{
    struct caps_shortcut *c = arg;
    fsb_u64_table_remove(&c->nodes, nodeid, NULL);
}

void caps_shortcut_forwarding(struct caps_shortcut *c, const struct fuse_in_header *ih,
                              const void *arg, size_t len)
{
    uint32_t op = ih->opcode;
    bool forgets = op == FUSE_FORGET || op == FUSE_BATCH_FORGET;
    if (!c || !(forgets || op == FUSE_SETXATTR || op == FUSE_REMOVEXATTR || creates_a_file(op)))
        return;
    pthread_mutex_lock(&c->lock);
    if (forgets)
        fuse_each_forgotten(ih, arg, len, forget_locked, c);
    else if (!creates_a_file(op))
        forget_locked(c, ih->nodeid);
    else if (fsb_u64_table_add(&c->creates, ih->unique, NULL) == 0) /* full: not shortcut */
        atomic_store_explicit(&c->creates_in_flight, c->creates.count, memory_order_release);
    pthread_mutex_unlock(&c->lock);
}

void caps_shortcut_reply(struct caps_shortcut *c, const struct fuse_out_header *oh,
                         const void *body, size_t len)
{
    uint64_t nodeid = 0;
    /* every reply passes here: most find no create in flight unlocked */
    if (!c || !atomic_load_explicit(&c->creates_in_flight, memory_order_acquire))
        return;
    if (oh->error == 0 && len >= sizeof(nodeid))
        memcpy(&nodeid, body, sizeof(nodeid)); /* fuse_entry_out begins with it */
    pthread_mutex_lock(&c->lock);
    bool created = fsb_u64_table_remove(&c->creates, oh->unique, NULL);
    atomic_store_explicit(&c->creates_in_flight, c->creates.count, memory_order_relaxed);
    if (created && nodeid) {
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
    pthread_mutex_lock(&c->lock);
    forget_locked(c, in.ino);
    pthread_mutex_unlock(&c->lock);
}
