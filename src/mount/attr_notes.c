/*
 * attr_notes.c - see attr_notes.h.  Two bounded tables under one mutex:
 * the nodes that have a note or a changing request in flight, and the
 * changing requests in flight.  The lock is taken for GETATTRs, for
 * requests that may change a directory and their replies, and for the
 * host's notifications; never across a system call.
 */
#include "mount/attr_notes.h"
#include "mount/forgets.h"
#include "mount/notified.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/u64_table.h"
#include "mount/pending.h"
#include "transport/stream_hello.h"

/* Nodes with a note or a change in flight; past half of this, the notes
 * nobody asked for are dropped to make room. */
#define NODE_SLOTS 4096
/* Changing requests in flight: at most the relay's requests in flight. */
#define REQUEST_SLOTS (2 * PENDING_MAX)

struct node {
    unsigned in_flight; /* changing requests forwarded, not answered */
    /* bumped by every changing request forwarded and by every message
     * that spoils the node's notes (a host notification, a FORGET; a
     * listing, which may move its atime, is a changing request): a note is
     * kept only if nothing bumped
     * it since its own request was forwarded */
    uint64_t epoch;
    bool noted;
    struct fuse_attr_out attr;
    struct timespec taken; /* when the note came (CLOCK_MONOTONIC) */
};

/* A changing request in flight: the (at most two) nodes it may change,
 * and for each whether it was the only change in flight when forwarded
 * and the node's epoch then. */
struct change {
    uint64_t nodeid[2];
    uint64_t epoch[2];
    bool alone[2];
    uint64_t spoiled_all; /* attr_notes.spoiled_all when forwarded */
};

struct attr_notes {
    pthread_mutex_t lock;
    bool off;
    /* bumped whenever every note goes (a rename, an rmdir, a notification
     * that may concern any node): notes of changes forwarded before are
     * refused too */
    uint64_t spoiled_all;
    _Atomic size_t changes_in_flight; /* changes.count, read without the lock */
    struct fsb_u64_table nodes, changes;
    struct fsb_u64_slot node_slots[NODE_SLOTS];
    struct fsb_u64_slot change_slots[REQUEST_SLOTS];
};

struct attr_notes *attr_notes_new(void)
{
    struct attr_notes *a = malloc(sizeof(*a));
    if (!a)
        return NULL;
    pthread_mutex_init(&a->lock, NULL);
    a->off = false;
    a->spoiled_all = 0;
    atomic_init(&a->changes_in_flight, 0);
    fsb_u64_table_init(&a->nodes, a->node_slots, NODE_SLOTS);
    fsb_u64_table_init(&a->changes, a->change_slots, REQUEST_SLOTS);
    return a;
}

static void free_value(uint64_t key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    free(value);
}

void attr_notes_free(struct attr_notes *a)
{
    if (!a)
        return;
    fsb_u64_table_clear(&a->nodes, free_value, NULL);
    fsb_u64_table_clear(&a->changes, free_value, NULL);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* ---- nodes ------------------------------------------------------------ */

static struct node *node_of(struct attr_notes *a, uint64_t nodeid)
{
    struct fsb_u64_slot *s = fsb_u64_table_find(&a->nodes, nodeid);
    return s ? s->value : NULL;
}

/* Forgets NODEID's entry if nothing is left in it. */
static void node_tidy(struct attr_notes *a, uint64_t nodeid, struct node *n)
{
    if (n->in_flight == 0 && !n->noted) {
        fsb_u64_table_remove(&a->nodes, nodeid, NULL);
        free(n);
    }
}

/* NODEID's note goes, and so does one still to come for a change in
 * flight (it may have been taken before what spoils it). */
static void drop_note(struct attr_notes *a, uint64_t nodeid)
{
    struct node *n = node_of(a, nodeid);
    if (n) {
        n->noted = false;
        n->epoch++;
        node_tidy(a, nodeid, n);
    }
}

/* Every note goes, those still to come included (the entries of changes
 * in flight stay). */
static void drop_all_notes(struct attr_notes *a)
{
    a->spoiled_all++;
    uint64_t spare[NODE_SLOTS / 2];
    size_t nspare = 0;
    for (size_t i = 0; i < NODE_SLOTS; i++) {
        struct fsb_u64_slot *s = &a->node_slots[i];
        if (s->used) {
            struct node *n = s->value;
            n->noted = false;
            if (n->in_flight == 0 && nspare < NODE_SLOTS / 2)
                spare[nspare++] = s->key;
        }
    }
    for (size_t i = 0; i < nspare; i++)
        drop_note(a, spare[i]);
}

/* NODEID's entry, made if needed (NULL: no room even without notes). */
static struct node *node_get(struct attr_notes *a, uint64_t nodeid)
{
    struct node *n = node_of(a, nodeid);
    if (n)
        return n;
    if (a->nodes.count >= a->nodes.limit)
        drop_all_notes(a);
    n = calloc(1, sizeof(*n));
    if (n && fsb_u64_table_add(&a->nodes, nodeid, n) != 0) {
        free(n);
        n = NULL;
    }
    return n;
}

static void turn_off(struct attr_notes *a, const char *why)
{
    if (a->off)
        return;
    a->off = true;
    drop_all_notes(a);
    log_warn("directory attributes after changes come from the host from now on (%s)", why);
}

/* ---- the kernel's requests --------------------------------------------- */

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* OUT's timeout, less AGE seconds; false once it has run out. */
static bool age_timeout(struct fuse_attr_out *out, double age)
{
    double left = (double)out->attr_valid + out->attr_valid_nsec / 1e9 - age;
    if (left <= 0)
        return false;
    out->attr_valid = (uint64_t)left;
    out->attr_valid_nsec = (uint32_t)((left - (double)out->attr_valid) * 1e9);
    return true;
}

bool attr_notes_answer(struct attr_notes *a, const struct fuse_in_header *ih,
                       struct fuse_attr_out *out)
{
    if (!a || ih->opcode != FUSE_GETATTR)
        return false;
    pthread_mutex_lock(&a->lock);
    struct node *n = node_of(a, ih->nodeid);
    bool answered = n && n->noted;
    if (answered) {
        *out = n->attr;
        answered = age_timeout(out, seconds_since(&n->taken));
        n->noted = false;
        node_tidy(a, ih->nodeid, n);
    }
    pthread_mutex_unlock(&a->lock);
    return answered;
}

/* The nodes request IH may change the attributes of: the node it names
 * and, for a rename, the new directory.  0 if it changes none. */
static unsigned changed_nodes(const struct fuse_in_header *ih, const void *arg, size_t len,
                              uint64_t nodes[2])
{
    switch (ih->opcode) {
    case FUSE_RENAME:
    case FUSE_RENAME2:
        nodes[0] = ih->nodeid;
        if (len < sizeof(uint64_t))
            return 1; /* the kernel never sends this; the host refuses it */
        memcpy(&nodes[1], arg, sizeof(uint64_t)); /* fuse_rename(2)_in.newdir */
        return 2;
    case FUSE_SETATTR:
    case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR:
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_LINK:
    case FUSE_SYMLINK:
    case FUSE_CREATE:
    case FUSE_TMPFILE:
    case FUSE_READDIR:     /* a listing may move the directory's atime */
    case FUSE_READDIRPLUS:
        nodes[0] = ih->nodeid;
        return 1;
    }
    return 0;
}

static void drop_forgotten(void *arg, uint64_t nodeid)
{
    drop_note(arg, nodeid);
}

/* FORGET and BATCH_FORGET: a node id the kernel no longer holds may name
 * another inode later. */
static void forget_nodes(struct attr_notes *a, const struct fuse_in_header *ih, const void *arg,
                         size_t len)
{
    if (!fuse_each_forgotten(ih, arg, len, drop_forgotten, a))
        drop_all_notes(a);
}

/* Records CH (request UNIQUE, changing COUNT nodes) as in flight. */
static void start_change(struct attr_notes *a, uint64_t unique, struct change *ch, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        struct node *n = node_get(a, ch->nodeid[i]);
        if (!n) {
            turn_off(a, "too many directories changing at once");
            return;
        }
        n->noted = false;
        ch->alone[i] = n->in_flight == 0;
        n->in_flight++;
        ch->epoch[i] = ++n->epoch;
    }
    ch->spoiled_all = a->spoiled_all;
    if (fsb_u64_table_add(&a->changes, unique, ch) != 0) {
        turn_off(a, "too many changes in flight");
        return;
    }
    atomic_fetch_add(&a->changes_in_flight, 1);
}

void attr_notes_forwarding(struct attr_notes *a, const struct fuse_in_header *ih,
                           const void *arg, size_t len)
{
    if (!a)
        return;
    bool forget = ih->opcode == FUSE_FORGET || ih->opcode == FUSE_BATCH_FORGET;
    struct change *ch = NULL;
    unsigned count = 0;
    if (!forget) {
        uint64_t nodes[2] = { 0, 0 };
        count = changed_nodes(ih, arg, len, nodes);
        if (!count)
            return;
        ch = calloc(1, sizeof(*ch));
        if (ch)
            memcpy(ch->nodeid, nodes, sizeof(nodes));
    }
    pthread_mutex_lock(&a->lock);
    if (forget)
        forget_nodes(a, ih, arg, len);
    else if (!ch)
        turn_off(a, "out of memory");
    else if (!a->off) {
        /* a rename moves a directory whose own ctime changes, an rmdir
         * ends one (nlink 0): neither is the node the request names */
        if (ih->opcode == FUSE_RENAME || ih->opcode == FUSE_RENAME2 || ih->opcode == FUSE_RMDIR)
            drop_all_notes(a);
        start_change(a, ih->unique, ch, count);
        ch = a->off ? ch : NULL; /* kept by the table, unless it was refused */
    }
    pthread_mutex_unlock(&a->lock);
    free(ch);
}

void attr_notes_replied(struct attr_notes *a, uint64_t unique)
{
    if (!a || atomic_load(&a->changes_in_flight) == 0)
        return;
    pthread_mutex_lock(&a->lock);
    void *value;
    if (fsb_u64_table_remove(&a->changes, unique, &value)) {
        struct change *ch = value;
        atomic_fetch_sub(&a->changes_in_flight, 1);
        for (unsigned i = 0; i < 2 && ch->nodeid[i]; i++) {
            struct node *n = node_of(a, ch->nodeid[i]);
            if (n && n->in_flight) {
                n->in_flight--;
                node_tidy(a, ch->nodeid[i], n);
            }
        }
        free(ch);
    }
    pthread_mutex_unlock(&a->lock);
}

/* ---- the host's messages ----------------------------------------------- */

/* Keeps note NOTE if its request was the only change of the node in
 * flight, from its forwarding until now. */
static void take_note(struct attr_notes *a, const struct fsb_attr_note *note)
{
    struct fsb_u64_slot *s = fsb_u64_table_find(&a->changes, note->unique);
    struct node *n = node_of(a, note->nodeid);
    if (!s || !n)
        return;
    const struct change *ch = s->value;
    if (ch->spoiled_all != a->spoiled_all)
        return;
    for (unsigned i = 0; i < 2; i++) {
        if (ch->nodeid[i] == note->nodeid && ch->alone[i] && ch->epoch[i] == n->epoch &&
            n->in_flight == 1) {
            n->noted = true;
            n->attr = note->attr;
            clock_gettime(CLOCK_MONOTONIC, &n->taken);
        }
    }
}

/* A notification for the kernel: the notes of the nodes it names go. */
static void notified(struct attr_notes *a, const struct fuse_out_header *oh, const void *body,
                     size_t len)
{
    uint64_t node;
    if (fuse_notified_node(oh, body, len, &node))
        drop_note(a, node);
    else
        drop_all_notes(a); /* anything else may concern any node */
}

bool attr_notes_host_message(struct attr_notes *a, const void *msg, size_t len)
{
    struct fuse_out_header oh;
    memcpy(&oh, msg, sizeof(oh)); /* the reader checked the length */
    bool is_note = oh.error == FSB_NOTIFY_ATTRS;
    if (!a)
        return is_note;
    struct fsb_attr_note note;
    bool good = is_note && fsb_attr_note_decode(msg, len, &note);
    pthread_mutex_lock(&a->lock);
    if (good && !a->off)
        take_note(a, &note);
    else if (!is_note)
        notified(a, &oh, (const char *)msg + sizeof(oh), len - sizeof(oh));
    pthread_mutex_unlock(&a->lock);
    if (is_note && !good)
        log_debug("malformed attribute note of %zu bytes dropped", len);
    return is_note;
}
