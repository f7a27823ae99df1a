/*
 * host_nodes.c - see host_nodes.h.  Two chained hash tables over one set
 * of nodes (by node id, by parent and name), a chained table of the
 * requests whose replies bind names, and a direct-mapped table of the
 * guest's recent changes.  Everything under one mutex.
 */
#include "mount/host_nodes.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Hash buckets of the two node indexes.  The fuzz target makes a fresh
 * table for every input, and zeroing and then walking (host_nodes_free) a
 * megabyte of new buckets was nearly all of its time: 3.4 ms an input,
 * 36 us with 64 buckets.  Its builds define FSB_SMALL_NODE_TABLE, which
 * makes the chains longer (more collisions for the fuzzer to walk) and
 * changes nothing else: the counts only pick a bucket. */
#ifdef FSB_SMALL_NODE_TABLE
#define ID_BUCKETS (1u << 6)
#define NAME_BUCKETS (1u << 6)
#else
#define ID_BUCKETS (1u << 16)
#define NAME_BUCKETS (1u << 16)
#endif
#define REQ_BUCKETS 1024u
/* Requests remembered at most: the relay has at most PENDING_MAX (256) in
 * flight, so this is only reached if replies went missing. */
#define REQS_MAX 4096u
#define OWN_SLOTS 4096u
/* A node the kernel forgot stays known this long (at most GHOSTS_MAX of
 * them): a host unlink invalidates the name, the kernel then forgets the
 * node (nothing else held it), and only after that does the echo come to
 * remove the name, for which it needs the node. */
#define GHOST_MS 10000u
#define GHOSTS_MAX 4096u
/* A path is at most this many names deep (a host that makes the parents
 * loop ends here). */
#define PATH_DEPTH_MAX 512
/* The largest request prefix read: header, a 16-byte argument, two names. */
#define REQUEST_COPY_MAX (sizeof(struct fuse_in_header) + 16 + 2 * 256)
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1) /* renameat2(2); in <linux/fs.h> */
#endif

struct hn_node {
    struct hn_entry e;
    uint64_t parent;  /* with name: where it is bound */
    char *name;       /* NULL: no name */
    uint64_t nlookup; /* the kernel's lookups, as far as seen */
    uint64_t lent;    /* of which the relay answered itself */
    struct hn_node *next_id, *next_name;
    /* Forgotten by the kernel (a ghost) since forgot_ms, in the ghost list
     * (oldest first); ghost_prev NULL and not the head: not a ghost. */
    struct hn_node *ghost_prev, *ghost_next;
    uint64_t forgot_ms;
    bool ghost;
};

/* A request whose reply binds or unbinds names. */
struct hn_req {
    uint64_t unique;
    uint32_t opcode;
    uint32_t flags;        /* RENAME2's */
    bool echo;             /* the echo's (host_events.h) */
    uint64_t parent, parent2;
    char name[256], name2[256];
    struct hn_req *next;
};

struct own_slot {
    uint64_t key;
    uint64_t when_ms;
};

struct host_nodes {
    pthread_mutex_t lock;
    unsigned nodes, reqs, ghosts;
    struct hn_node *ghost_head, *ghost_tail;
    struct hn_node *by_id[ID_BUCKETS];
    struct hn_node *by_name[NAME_BUCKETS];
    struct hn_req *req[REQ_BUCKETS];
    struct own_slot own[OWN_SLOTS];
};

/* ---- hashing ---------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static uint64_t name_hash(uint64_t parent, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    return mix(h ^ mix(parent));
}

static unsigned id_bucket(uint64_t nodeid)
{
    return (unsigned)(mix(nodeid) % ID_BUCKETS);
}

/* ---- the node table ---------------------------------------------------- */

static struct hn_node *node_find(struct host_nodes *h, uint64_t nodeid)
{
    struct hn_node *n = h->by_id[id_bucket(nodeid)];
    while (n && n->e.nodeid != nodeid)
        n = n->next_id;
    return n;
}

static struct hn_node *node_child(struct host_nodes *h, uint64_t parent, const char *name)
{
    struct hn_node *n = h->by_name[name_hash(parent, name) % NAME_BUCKETS];
    while (n && (n->parent != parent || strcmp(n->name, name) != 0))
        n = n->next_name;
    return n;
}

static void node_unname(struct host_nodes *h, struct hn_node *n)
{
    if (!n->name)
        return;
    struct hn_node **p = &h->by_name[name_hash(n->parent, n->name) % NAME_BUCKETS];
    while (*p != n)
        p = &(*p)->next_name;
    *p = n->next_name;
    free(n->name);
    n->name = NULL;
    n->parent = 0;
}

/* Binds N to NAME in PARENT, which no other node keeps. */
static void node_name(struct host_nodes *h, struct hn_node *n, uint64_t parent, const char *name)
{
    struct hn_node *other = node_child(h, parent, name);
    if (other == n)
        return;
    if (other)
        node_unname(h, other);
    char *copy = strdup(name);
    node_unname(h, n);
    if (!copy)
        return;
    n->parent = parent;
    n->name = copy;
    struct hn_node **b = &h->by_name[name_hash(parent, name) % NAME_BUCKETS];
    n->next_name = *b;
    *b = n;
}

static void ghost_unlist(struct host_nodes *h, struct hn_node *n);

static void node_drop(struct host_nodes *h, struct hn_node *n)
{
    ghost_unlist(h, n);
    node_unname(h, n);
    struct hn_node **p = &h->by_id[id_bucket(n->e.nodeid)];
    while (*p != n)
        p = &(*p)->next_id;
    *p = n->next_id;
    free(n);
    h->nodes--;
}

static uint64_t now_ms(void);

static void ghost_unlist(struct host_nodes *h, struct hn_node *n)
{
    if (!n->ghost)
        return;
    *(n->ghost_prev ? &n->ghost_prev->ghost_next : &h->ghost_head) = n->ghost_next;
    *(n->ghost_next ? &n->ghost_next->ghost_prev : &h->ghost_tail) = n->ghost_prev;
    n->ghost_prev = n->ghost_next = NULL;
    n->ghost = false;
    h->ghosts--;
}

/* Frees the ghosts that are too old or too many. */
static void ghosts_trim(struct host_nodes *h)
{
    uint64_t now = now_ms();
    while (h->ghost_head && (h->ghosts > GHOSTS_MAX || now - h->ghost_head->forgot_ms > GHOST_MS))
        node_drop(h, h->ghost_head);
}

/* The kernel forgot N: a ghost for a while. */
static void ghost_add(struct host_nodes *h, struct hn_node *n)
{
    n->ghost = true;
    n->forgot_ms = now_ms();
    n->ghost_prev = h->ghost_tail;
    n->ghost_next = NULL;
    *(h->ghost_tail ? &h->ghost_tail->ghost_next : &h->ghost_head) = n;
    h->ghost_tail = n;
    h->ghosts++;
    ghosts_trim(h);
}

static void unbind(struct host_nodes *h, uint64_t parent, const char *name)
{
    struct hn_node *n = node_child(h, parent, name);
    if (n)
        node_unname(h, n);
}

/* The kernel took one lookup of E, named NAME in PARENT. */
static void node_learn(struct host_nodes *h, const struct hn_entry *e, uint64_t parent,
                       const char *name)
{
    if (e->nodeid == FUSE_ROOT_ID)
        return;
    struct hn_node *n = node_find(h, e->nodeid);
    if (!n && h->nodes < HOST_NODES_MAX && (n = calloc(1, sizeof(*n)))) {
        n->e.nodeid = e->nodeid;
        struct hn_node **b = &h->by_id[id_bucket(e->nodeid)];
        n->next_id = *b;
        *b = n;
        h->nodes++;
    }
    if (!n)
        return;
    ghost_unlist(h, n);
    n->e = *e;
    n->nlookup++;
    node_name(h, n, parent, name);
}

/* The kernel forgot COUNT lookups of N. */
static void node_forgotten(struct host_nodes *h, struct hn_node *n, uint64_t count)
{
    n->nlookup = n->nlookup > count ? n->nlookup - count : 0;
    if (n->nlookup == 0 && n->lent == 0 && !n->ghost)
        ghost_add(h, n);
}

/* ---- the guest's own changes ------------------------------------------ */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t own_key(uint64_t nodeid, const char *name)
{
    return (name ? name_hash(nodeid, name) : mix(nodeid)) | 1;
}

static void own_note(struct host_nodes *h, uint64_t nodeid, const char *name)
{
    uint64_t key = own_key(nodeid, name);
    h->own[key % OWN_SLOTS] = (struct own_slot){ .key = key, .when_ms = now_ms() };
}

/* ---- requests --------------------------------------------------------- */

bool host_nodes_valid_name(const char *name, size_t len)
{
    if (len == 0 || len > NAME_MAX || memchr(name, '/', len) || memchr(name, '\0', len))
        return false;
    return !(name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')));
}

/* The NUL-terminated name at *POS of BODY (LEN bytes) into OUT; advances
 * *POS past it.  False when there is none or it is not a valid name. */
static bool take_name(const char *body, size_t len, size_t *pos, char out[256])
{
    if (*pos >= len)
        return false;
    const char *end = memchr(body + *pos, '\0', len - *pos);
    if (!end)
        return false;
    size_t n = (size_t)(end - (body + *pos));
    if (!host_nodes_valid_name(body + *pos, n))
        return false;
    memcpy(out, body + *pos, n + 1);
    *pos += n + 1;
    return true;
}

/* Copies the first bytes of the frame IOV (CNT parts) into BUF. */
static size_t copy_frame(const struct iovec *iov, int cnt, char *buf, size_t size)
{
    size_t got = 0;
    for (int i = 0; i < cnt && got < size; i++) {
        size_t n = iov[i].iov_len < size - got ? iov[i].iov_len : size - got;
        if (n)
            memcpy(buf + got, iov[i].iov_base, n);
        got += n;
    }
    return got;
}

/* Bytes of the opcode's fixed argument before its first name, or -1 for
 * an opcode whose reply binds nothing. */
static long name_offset(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_LOOKUP:
    case FUSE_SYMLINK:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_READDIRPLUS:
        return 0;
    case FUSE_MKDIR:
        return sizeof(struct fuse_mkdir_in);
    case FUSE_LINK:
        return sizeof(struct fuse_link_in);
    case FUSE_MKNOD:
        return sizeof(struct fuse_mknod_in);
    case FUSE_CREATE:
        return sizeof(struct fuse_create_in);
    case FUSE_RENAME:
        return sizeof(struct fuse_rename_in);
    case FUSE_RENAME2:
        return sizeof(struct fuse_rename2_in);
    default:
        return -1;
    }
}

/* Fills R's names from BODY (LEN bytes).  False when they are not there. */
static bool parse_names(struct hn_req *r, const char *body, size_t len)
{
    size_t pos = (size_t)name_offset(r->opcode);
    if (pos > len)
        return false;
    if (r->opcode == FUSE_RENAME || r->opcode == FUSE_RENAME2) {
        memcpy(&r->parent2, body, sizeof(r->parent2)); /* newdir comes first in both */
        if (r->opcode == FUSE_RENAME2)
            memcpy(&r->flags, body + sizeof(uint64_t), sizeof(r->flags));
        return take_name(body, len, &pos, r->name) && take_name(body, len, &pos, r->name2);
    }
    return r->opcode == FUSE_READDIRPLUS || take_name(body, len, &pos, r->name);
}

/* The guest's own change (not the echo's), by what it will change. */
static void note_own_change(struct host_nodes *h, const struct hn_req *r,
                            const struct fuse_in_header *ih, const char *body, size_t len)
{
    switch (ih->opcode) {
    case FUSE_SETATTR:
    case FUSE_WRITE:
    case FUSE_FALLOCATE:
    case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR:
        own_note(h, ih->nodeid, NULL);
        return;
    case FUSE_OPEN: {
        struct fuse_open_in o;
        if (len >= sizeof(o)) {
            memcpy(&o, body, sizeof(o));
            if (o.flags & O_TRUNC) /* a plain open changes nothing */
                own_note(h, ih->nodeid, NULL);
        }
        return;
    }
    case FUSE_COPY_FILE_RANGE: {
        struct fuse_copy_file_range_in c;
        if (len >= sizeof(c)) {
            memcpy(&c, body, sizeof(c));
            own_note(h, c.nodeid_out, NULL);
        }
        return;
    }
    default:
        break;
    }
    if (!r || r->opcode == FUSE_LOOKUP || r->opcode == FUSE_READDIRPLUS)
        return;
    own_note(h, r->parent, r->name);
    if (r->opcode == FUSE_RENAME || r->opcode == FUSE_RENAME2)
        own_note(h, r->parent2, r->name2);
    if (r->opcode == FUSE_LINK) {
        struct fuse_link_in l;
        memcpy(&l, body, sizeof(l)); /* parse_names checked the length */
        own_note(h, l.oldnodeid, NULL);
    }
}

static void req_insert(struct host_nodes *h, struct hn_req *r)
{
    struct hn_req **b = &h->req[mix(r->unique) % REQ_BUCKETS];
    r->next = *b;
    *b = r;
    h->reqs++;
}

static struct hn_req *req_take(struct host_nodes *h, uint64_t unique)
{
    struct hn_req **p = &h->req[mix(unique) % REQ_BUCKETS];
    while (*p && (*p)->unique != unique)
        p = &(*p)->next;
    struct hn_req *r = *p;
    if (r) {
        *p = r->next;
        h->reqs--;
    }
    return r;
}

/* Whether the guest changes something with opcode OP (note_own_change). */
static bool changes(uint32_t op)
{
    return op == FUSE_SETATTR || op == FUSE_WRITE || op == FUSE_FALLOCATE ||
           op == FUSE_SETXATTR || op == FUSE_REMOVEXATTR || op == FUSE_OPEN ||
           op == FUSE_COPY_FILE_RANGE;
}

void host_nodes_request(struct host_nodes *h, const struct fuse_in_header *ih,
                        const struct iovec *iov, int cnt, bool echo)
{
    if (name_offset(ih->opcode) < 0 && (echo || !changes(ih->opcode)))
        return; /* READ, GETATTR, ...: nothing to learn */
    char buf[REQUEST_COPY_MAX];
    size_t got = copy_frame(iov, cnt, buf, sizeof(buf));
    if (got < sizeof(*ih))
        return;
    const char *body = buf + sizeof(*ih);
    size_t len = got - sizeof(*ih);
    struct hn_req *r = NULL;
    if (name_offset(ih->opcode) >= 0 && (r = calloc(1, sizeof(*r)))) {
        *r = (struct hn_req){ .unique = ih->unique, .opcode = ih->opcode,
                              .parent = ih->nodeid, .echo = echo };
        if (!parse_names(r, body, len)) {
            free(r);
            r = NULL;
        }
    }
    pthread_mutex_lock(&h->lock);
    if (!echo)
        note_own_change(h, r, ih, body, len);
    if (r && h->reqs < REQS_MAX)
        req_insert(h, r);
    else
        free(r);
    pthread_mutex_unlock(&h->lock);
}

bool host_nodes_request_name(const struct fuse_in_header *ih, const struct iovec *iov, int cnt,
                             char out[256])
{
    char buf[REQUEST_COPY_MAX];
    size_t got = copy_frame(iov, cnt, buf, sizeof(buf));
    long off = name_offset(ih->opcode);
    if (got < sizeof(*ih) || off < 0 || ih->opcode == FUSE_READDIRPLUS)
        return false;
    size_t pos = (size_t)off;
    return take_name(buf + sizeof(*ih), got - sizeof(*ih), &pos, out);
}

bool host_nodes_wants(struct host_nodes *h, uint64_t unique)
{
    pthread_mutex_lock(&h->lock);
    struct hn_req *r = h->req[mix(unique) % REQ_BUCKETS];
    while (r && r->unique != unique)
        r = r->next;
    pthread_mutex_unlock(&h->lock);
    return r != NULL;
}

/* ---- replies ---------------------------------------------------------- */

int host_nodes_parse_entry(const void *msg, size_t len, struct hn_entry *out)
{
    struct fuse_out_header oh;
    struct fuse_entry_out eo;
    if (len < sizeof(oh))
        return -EPROTO;
    memcpy(&oh, msg, sizeof(oh));
    if (oh.error)
        return oh.error < 0 && oh.error > -4096 && len == sizeof(oh) ? oh.error : -EPROTO;
    if (len != sizeof(oh) + sizeof(eo))
        return -EPROTO;
    memcpy(&eo, (const char *)msg + sizeof(oh), sizeof(eo));
    if (eo.nodeid == 0)
        return -ENOENT;
    *out = (struct hn_entry){ .nodeid = eo.nodeid, .generation = eo.generation,
                              .attr = eo.attr };
    return 0;
}

/* An entry at the start of BODY (LEN bytes, at least a fuse_entry_out). */
static bool body_entry(const char *body, struct hn_entry *out)
{
    struct fuse_entry_out eo;
    memcpy(&eo, body, sizeof(eo));
    *out = (struct hn_entry){ .nodeid = eo.nodeid, .generation = eo.generation,
                              .attr = eo.attr };
    return eo.nodeid != 0;
}

/* A READDIRPLUS listing of directory PARENT: every entry the kernel links
 * counts a lookup (fs/fuse/readdir.c, fuse_direntplus_link: not "." and
 * "..", not node id 0).  A malformed record ends the walk, as it ends the
 * kernel's. */
static void learn_listing(struct host_nodes *h, uint64_t parent, const char *body, size_t len)
{
    size_t pos = 0;
    while (len - pos >= FUSE_NAME_OFFSET_DIRENTPLUS) {
        struct fuse_direntplus d;
        memcpy(&d, body + pos, FUSE_NAME_OFFSET_DIRENTPLUS);
        size_t rec = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + (size_t)d.dirent.namelen);
        if (d.dirent.namelen == 0 || d.dirent.namelen > NAME_MAX || rec > len - pos)
            return;
        char name[NAME_MAX + 1];
        memcpy(name, body + pos + FUSE_NAME_OFFSET_DIRENTPLUS, d.dirent.namelen);
        name[d.dirent.namelen] = '\0';
        struct hn_entry e;
        if (host_nodes_valid_name(name, d.dirent.namelen) && body_entry(body + pos, &e))
            node_learn(h, &e, parent, name);
        pos += rec;
    }
}

static void renamed(struct host_nodes *h, const struct hn_req *r)
{
    struct hn_node *from = node_child(h, r->parent, r->name);
    struct hn_node *to = node_child(h, r->parent2, r->name2);
    if (to)
        node_unname(h, to);
    if (from)
        node_name(h, from, r->parent2, r->name2);
    if (to && r->flags & RENAME_EXCHANGE)
        node_name(h, to, r->parent, r->name);
}

/* Bytes of a successful entry reply's body to R. */
static size_t entry_reply_size(const struct hn_req *r)
{
    return sizeof(struct fuse_entry_out) +
           (r->opcode == FUSE_CREATE ? sizeof(struct fuse_open_out) : 0);
}

/* The echo's path walk found a name gone that its echo is about to
 * remove: the kernel must not cache that it is missing (as the host's
 * negative entry says), or the removal would find nothing to remove. */
static void uncache_negative(char *body)
{
    struct fuse_entry_out eo;
    memcpy(&eo, body, sizeof(eo));
    eo.entry_valid = 0;
    eo.entry_valid_nsec = 0;
    memcpy(body, &eo, sizeof(eo));
}

static void apply_reply(struct host_nodes *h, const struct hn_req *r, int error,
                        char *body, size_t len)
{
    struct hn_entry e;
    switch (r->opcode) {
    case FUSE_READDIRPLUS:
        if (!error)
            learn_listing(h, r->parent, body, len);
        return;
    case FUSE_UNLINK:
    case FUSE_RMDIR:
        if (!error)
            unbind(h, r->parent, r->name);
        return;
    case FUSE_RENAME:
    case FUSE_RENAME2:
        if (!error)
            renamed(h, r);
        return;
    default:
        break;
    }
    /* LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE */
    bool negative = !error && len == entry_reply_size(r) && !body_entry(body, &e);
    if (r->echo && negative)
        uncache_negative(body);
    /* A name the echo finds gone stays bound: the echo is about to remove
     * it from the kernel, and needs the node for that. */
    if (r->echo && (negative || error == -ENOENT))
        return;
    if (error == -ENOENT || negative)
        unbind(h, r->parent, r->name);
    else if (!error && len == entry_reply_size(r))
        node_learn(h, &e, r->parent, r->name);
}

void host_nodes_reply(struct host_nodes *h, void *msg, size_t len)
{
    struct fuse_out_header oh;
    if (len < sizeof(oh))
        return;
    memcpy(&oh, msg, sizeof(oh));
    pthread_mutex_lock(&h->lock);
    struct hn_req *r = h->reqs ? req_take(h, oh.unique) : NULL;
    if (r && (oh.error == 0 || len == sizeof(oh)))
        apply_reply(h, r, oh.error, (char *)msg + sizeof(oh), len - sizeof(oh));
    pthread_mutex_unlock(&h->lock);
    free(r);
}

/* ---- forgets ---------------------------------------------------------- */

/* One forget of NLOOKUP lookups of NODEID: returns what is left for the
 * host. */
static uint64_t forget_one(struct host_nodes *h, uint64_t nodeid, uint64_t nlookup)
{
    struct hn_node *n = node_find(h, nodeid);
    if (!n)
        return nlookup;
    uint64_t repay = n->lent < nlookup ? n->lent : nlookup;
    n->lent -= repay;
    node_forgotten(h, n, nlookup);
    return nlookup - repay;
}

static size_t batch_forget(struct host_nodes *h, char *msg, size_t len, struct fuse_in_header *ih)
{
    struct fuse_batch_forget_in b;
    size_t head = sizeof(*ih) + sizeof(b);
    if (len < head)
        return len;
    memcpy(&b, msg + sizeof(*ih), sizeof(b));
    size_t max = (len - head) / sizeof(struct fuse_forget_one);
    size_t count = b.count < max ? b.count : max;
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        struct fuse_forget_one f;
        memcpy(&f, msg + head + i * sizeof(f), sizeof(f));
        f.nlookup = forget_one(h, f.nodeid, f.nlookup);
        if (f.nlookup)
            memcpy(msg + head + kept++ * sizeof(f), &f, sizeof(f));
    }
    if (!kept)
        return 0;
    b.count = (uint32_t)kept;
    memcpy(msg + sizeof(*ih), &b, sizeof(b));
    ih->len = (uint32_t)(head + kept * sizeof(struct fuse_forget_one));
    memcpy(msg, ih, sizeof(*ih));
    return ih->len;
}

size_t host_nodes_forget(struct host_nodes *h, void *msg, size_t len)
{
    struct fuse_in_header ih;
    if (len < sizeof(ih))
        return len;
    memcpy(&ih, msg, sizeof(ih));
    pthread_mutex_lock(&h->lock);
    size_t out = len;
    if (ih.opcode == FUSE_BATCH_FORGET) {
        out = batch_forget(h, msg, len, &ih);
    } else if (ih.opcode == FUSE_FORGET && len == sizeof(ih) + sizeof(struct fuse_forget_in)) {
        struct fuse_forget_in f;
        memcpy(&f, (char *)msg + sizeof(ih), sizeof(f));
        f.nlookup = forget_one(h, ih.nodeid, f.nlookup);
        memcpy((char *)msg + sizeof(ih), &f, sizeof(f));
        out = f.nlookup ? len : 0;
    }
    pthread_mutex_unlock(&h->lock);
    return out;
}

/* ---- the echo's questions --------------------------------------------- */

void host_nodes_lent(struct host_nodes *h, const struct hn_entry *e)
{
    pthread_mutex_lock(&h->lock);
    struct hn_node *n = node_find(h, e->nodeid);
    if (n) {
        ghost_unlist(h, n);
        n->nlookup++;
        n->lent++;
    }
    pthread_mutex_unlock(&h->lock);
}

bool host_nodes_get(struct host_nodes *h, uint64_t nodeid, struct hn_entry *out)
{
    pthread_mutex_lock(&h->lock);
    struct hn_node *n = node_find(h, nodeid);
    if (n)
        *out = n->e;
    pthread_mutex_unlock(&h->lock);
    return n != NULL;
}

bool host_nodes_child(struct host_nodes *h, uint64_t parent, const char *name,
                      struct hn_entry *out)
{
    pthread_mutex_lock(&h->lock);
    struct hn_node *n = node_child(h, parent, name);
    if (n)
        *out = n->e;
    pthread_mutex_unlock(&h->lock);
    return n != NULL;
}

/* The names from the root down to N into BUF; under the lock. */
static int build_path(struct host_nodes *h, struct hn_node *n, char *buf, size_t size)
{
    const char *names[PATH_DEPTH_MAX];
    int depth = 0;
    for (; n; n = n->parent == FUSE_ROOT_ID ? NULL : node_find(h, n->parent)) {
        if (!n->name || depth == PATH_DEPTH_MAX)
            return -ENOENT;
        names[depth++] = n->name;
        if (n->parent == FUSE_ROOT_ID)
            break;
    }
    if (!n)
        return -ENOENT; /* a parent the table does not have */
    size_t used = 0;
    for (int i = depth - 1; i >= 0; i--) {
        size_t l = strlen(names[i]);
        if (used + l + 2 > size)
            return -ENAMETOOLONG;
        memcpy(buf + used, names[i], l);
        used += l;
        buf[used++] = i ? '/' : '\0';
    }
    return 0;
}

int host_nodes_path(struct host_nodes *h, uint64_t nodeid, char *buf, size_t size)
{
    if (size == 0)
        return -ENAMETOOLONG;
    if (nodeid == FUSE_ROOT_ID) {
        buf[0] = '\0';
        return 0;
    }
    pthread_mutex_lock(&h->lock);
    struct hn_node *n = node_find(h, nodeid);
    int err = n ? build_path(h, n, buf, size) : -ENOENT;
    pthread_mutex_unlock(&h->lock);
    return err;
}

void host_nodes_unbind(struct host_nodes *h, uint64_t parent, const char *name)
{
    pthread_mutex_lock(&h->lock);
    unbind(h, parent, name);
    pthread_mutex_unlock(&h->lock);
}

void host_nodes_move(struct host_nodes *h, uint64_t parent, const char *name,
                     uint64_t newparent, const char *newname)
{
    pthread_mutex_lock(&h->lock);
    struct hn_node *n = node_child(h, parent, name);
    if (n)
        node_name(h, n, newparent, newname);
    pthread_mutex_unlock(&h->lock);
}

bool host_nodes_own_change(struct host_nodes *h, uint64_t nodeid, const char *name)
{
    uint64_t key = own_key(nodeid, name);
    pthread_mutex_lock(&h->lock);
    struct own_slot s = h->own[key % OWN_SLOTS];
    pthread_mutex_unlock(&h->lock);
    return s.key == key && now_ms() - s.when_ms < HOST_NODES_OWN_WINDOW_MS;
}

/* ---- notifications ---------------------------------------------------- */

/* NAME of NAMELEN bytes and its NUL, the last bytes of a message of LEN
 * bytes whose fixed part is HEAD bytes. */
static bool notify_name(const char *msg, size_t len, size_t head, uint32_t namelen, char out[256])
{
    if (len < head || namelen > NAME_MAX || len - head != (size_t)namelen + 1 ||
        msg[head + namelen] != '\0' || !host_nodes_valid_name(msg + head, namelen))
        return false;
    memcpy(out, msg + head, (size_t)namelen + 1);
    return true;
}

bool host_nodes_parse_notify(const void *msg, size_t len, struct hn_notify *out)
{
    const char *m = msg;
    struct fuse_out_header oh;
    if (len < sizeof(oh))
        return false;
    memcpy(&oh, m, sizeof(oh));
    size_t head = sizeof(oh);
    *out = (struct hn_notify){ 0 };
    if (oh.unique != 0)
        return false;
    if (oh.error == FUSE_NOTIFY_INVAL_INODE) {
        struct fuse_notify_inval_inode_out a;
        if (len != head + sizeof(a))
            return false;
        memcpy(&a, m + head, sizeof(a));
        *out = (struct hn_notify){ .kind = HN_INVAL_INODE, .nodeid = a.ino, .off = a.off };
        return true;
    }
    if (oh.error == FUSE_NOTIFY_INVAL_ENTRY) {
        struct fuse_notify_inval_entry_out a;
        if (len < head + sizeof(a))
            return false;
        memcpy(&a, m + head, sizeof(a));
        out->kind = HN_INVAL_ENTRY;
        out->nodeid = a.parent;
        return notify_name(m, len, head + sizeof(a), a.namelen, out->name);
    }
    if (oh.error == FUSE_NOTIFY_DELETE) {
        struct fuse_notify_delete_out a;
        if (len < head + sizeof(a))
            return false;
        memcpy(&a, m + head, sizeof(a));
        out->kind = HN_DELETE;
        out->nodeid = a.parent;
        out->child = a.child;
        return notify_name(m, len, head + sizeof(a), a.namelen, out->name);
    }
    return false;
}

/* ---- life ------------------------------------------------------------- */

struct host_nodes *host_nodes_new(void)
{
    struct host_nodes *h = calloc(1, sizeof(*h));
    if (h)
        pthread_mutex_init(&h->lock, NULL);
    return h;
}

void host_nodes_free(struct host_nodes *h)
{
    if (!h)
        return;
    for (unsigned i = 0; i < ID_BUCKETS; i++) {
        while (h->by_id[i])
            node_drop(h, h->by_id[i]);
    }
    for (unsigned i = 0; i < REQ_BUCKETS; i++) {
        while (h->req[i]) {
            struct hn_req *r = h->req[i];
            h->req[i] = r->next;
            free(r);
        }
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
}
