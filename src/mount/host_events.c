/*
 * host_events.c - see host_events.h.  One echo thread, a bounded ring of
 * echo work under a mutex, the plan of the echo's next system call (which
 * names the relay answers for it, and how), and the echo's own LOOKUPs to
 * the host, one at a time.
 */
#include "mount/host_events.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "mount/relay_internal.h"

/* Uniques of the echo's own requests: above any the kernel will reach
 * (it counts up by 2 from 0), even (bit 0 marks interrupts). */
#define OWN_UNIQUE_BASE (1ULL << 62)
/* Echoes handled together: a rename shows as a name gone and a name come
 * in one burst of notifications, paired within a batch. */
#define BATCH_MAX 64
/* How long a batch with names waits for the rest of its burst: the
 * notifications of one rename come one by one (and through two paths,
 * relay.c), and a rename whose new name is not in the batch of its old
 * one would be echoed as a removal and a creation. */
#define SETTLE_MS 20
#define FUSE_SUPER_MAGIC 0x65735546 /* <linux/magic.h> */

/* What the relay answers for the echo's next system call. */
struct echo_plan {
    bool pos;            /* LOOKUP of pos_parent/pos_name: the node entry */
    bool neg;            /* LOOKUP of neg_parent/neg_name: ENOENT */
    uint64_t pos_parent, neg_parent;
    char pos_name[256], neg_name[256];
    struct hn_entry entry;
};

/* Where the host's reply to an echo request goes once the relay answered
 * it itself (relay_abandon). */
struct discard {
    struct reply_dest dest; /* first */
    struct host_events *he;
};

/* The echo's LOOKUP to the host, one in flight at a time. */
struct own_call {
    struct reply_dest dest; /* first: the reply's deliver finds the call */
    struct host_events *he;
    pthread_mutex_t lock;
    pthread_cond_t answered;
    uint64_t awaited; /* 0: none (a late reply is forgotten) */
    bool done;
    int result;
    struct hn_entry entry;
};

struct host_events {
    struct host_events_config cfg;
    int root_fd;      /* the mount's root while an echo runs, else -1 */
    dev_t root_dev;   /* the mount's device, once known */
    _Atomic int tid; /* the echo thread's, once it runs */
    _Atomic uint64_t next_unique;

    pthread_mutex_t lock; /* the ring */
    pthread_cond_t wake;
    struct hn_notify ring[HOST_EVENTS_QUEUE];
    unsigned head, count;
    bool overflow_logged;

    pthread_mutex_t plan_lock;
    struct echo_plan plan;

    struct own_call call;

    /* Bounding the echo's system calls (arm_timer) */
    timer_t timer;
    bool timer_ok;
    _Atomic uint64_t inflight; /* the unique of the echo's request last sent */
    struct discard discard;
};

/* One name a burst of notifications was about, as the host has it now. */
struct name_change {
    uint64_t parent;
    const char *name;
    bool present, known, done;
    struct hn_entry host; /* present: the host's node */
    struct hn_entry was;  /* known: the node the kernel had there */
};

/* ---- the echo's own requests ------------------------------------------ */

static uint64_t own_unique(struct host_events *he)
{
    return OWN_UNIQUE_BASE + 2 * atomic_fetch_add(&he->next_unique, 1);
}

/* Gives the host back the lookup of NODEID its LOOKUP counted. */
static void send_forget(struct host_events *he, uint64_t nodeid)
{
    struct {
        struct fuse_in_header ih;
        struct fuse_forget_in f;
    } m = { .ih = { .len = sizeof(m), .opcode = FUSE_FORGET, .unique = own_unique(he),
                    .nodeid = nodeid },
            .f = { .nlookup = 1 } };
    struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
    relay_send(he->cfg.conn, &he->call.dest, &m.ih, &iov, 1);
}

/* The host's reply to the echo's LOOKUP (from a connection's reader). */
static void own_reply(struct reply_dest *d, const void *msg, size_t len)
{
    struct own_call *c = (struct own_call *)d;
    struct fuse_out_header oh;
    memcpy(&oh, msg, sizeof(oh));
    struct hn_entry e;
    int result = host_nodes_parse_entry(msg, len, &e);
    pthread_mutex_lock(&c->lock);
    bool awaited = c->awaited && oh.unique == c->awaited;
    if (awaited) {
        c->result = result;
        c->entry = e;
        c->done = true;
        pthread_cond_signal(&c->answered);
    }
    pthread_mutex_unlock(&c->lock);
    if (!awaited && result == 0)
        send_forget(c->he, e.nodeid); /* it came after the echo gave up */
}

/* Asks the host what NAME in PARENT is now: 0 and *OUT (one lookup the
 * host counts: send_forget it), -ENOENT, or another -errno. */
static int host_lookup(struct host_events *he, uint64_t parent, const char *name,
                       struct hn_entry *out)
{
    size_t n = strlen(name) + 1;
    struct {
        struct fuse_in_header ih;
        char name[NAME_MAX + 1];
    } m = { .ih = { .len = (uint32_t)(sizeof(m.ih) + n), .opcode = FUSE_LOOKUP,
                    .unique = own_unique(he), .nodeid = parent } };
    memcpy(m.name, name, n);
    struct own_call *c = &he->call;
    pthread_mutex_lock(&c->lock);
    c->awaited = m.ih.unique;
    c->done = false;
    pthread_mutex_unlock(&c->lock);
    struct iovec iov = { .iov_base = &m, .iov_len = m.ih.len };
    relay_send(he->cfg.conn, &c->dest, &m.ih, &iov, 1);

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += HOST_EVENTS_LOOKUP_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&c->lock);
    int err = 0;
    while (!c->done && err != ETIMEDOUT)
        err = pthread_cond_timedwait(&c->answered, &c->lock, &deadline);
    int result = c->done ? c->result : -ETIMEDOUT;
    *out = c->entry;
    c->awaited = 0;
    pthread_mutex_unlock(&c->lock);
    return result;
}

/* ---- the kernel's requests of the echo --------------------------------- */

static void set_plan(struct host_events *he, const struct echo_plan *p)
{
    pthread_mutex_lock(&he->plan_lock);
    he->plan = *p;
    pthread_mutex_unlock(&he->plan_lock);
}

static void clear_plan(struct host_events *he)
{
    set_plan(he, &(struct echo_plan){ 0 });
}

/* The answer the plan has for a LOOKUP or a removal of NAME in PARENT:
 * 1 the node (ENTRY), 0 none (ENOENT), -1 not planned. */
static int planned(struct host_events *he, uint64_t parent, const char *name,
                   struct hn_entry *entry)
{
    pthread_mutex_lock(&he->plan_lock);
    const struct echo_plan *p = &he->plan;
    int answer = -1;
    if (p->pos && p->pos_parent == parent && strcmp(p->pos_name, name) == 0) {
        *entry = p->entry;
        answer = 1;
    } else if (p->neg && p->neg_parent == parent && strcmp(p->neg_name, name) == 0) {
        answer = 0;
    }
    pthread_mutex_unlock(&he->plan_lock);
    return answer;
}

/* A LOOKUP the plan answers: the node as the kernel knew it, to be
 * revalidated at its next use (timeouts 0), or ENOENT. */
static bool answer_lookup(struct host_events *he, struct reply_dest *dest,
                          const struct fuse_in_header *ih, const char *name)
{
    struct hn_entry e;
    int answer = planned(he, ih->nodeid, name, &e);
    if (answer < 0)
        return false;
    if (answer == 0) {
        relay_reply_error(dest, ih->unique, -ENOENT);
        return true;
    }
    struct {
        struct fuse_out_header oh;
        struct fuse_entry_out eo;
    } r = { .oh = { .len = sizeof(r), .unique = ih->unique },
            .eo = { .nodeid = e.nodeid, .generation = e.generation, .attr = e.attr } };
    host_nodes_lent(he->cfg.nodes, &e);
    dest->deliver(dest, &r, sizeof(r));
    return true;
}

/* Sends the echo's request IH (IOV, CNT) to the host. */
static void send_echo(struct host_events *he, struct relay_conn *c, struct reply_dest *dest,
                      const struct fuse_in_header *ih, struct iovec *iov, int cnt)
{
    atomic_store(&he->inflight, ih->unique);
    relay_send(c, dest, ih, iov, cnt);
}

/* The request IH (IOV, CNT) sent as it is. */
static void send_read(struct host_events *he, struct relay_conn *c, struct reply_dest *dest,
                      const struct fuse_in_header *ih, struct iovec *iov, int cnt)
{
    host_nodes_request(he->cfg.nodes, ih, iov, cnt, true);
    send_echo(he, c, dest, ih, iov, cnt);
}

/* A SETATTR sent as a GETATTR of its node: the same reply, the host's
 * attributes as they are. */
static void send_as_getattr(struct host_events *he, struct relay_conn *c, struct reply_dest *dest,
                            const struct fuse_in_header *ih)
{
    struct {
        struct fuse_in_header ih;
        struct fuse_getattr_in g;
    } m = { .ih = *ih };
    m.ih.len = sizeof(m);
    m.ih.opcode = FUSE_GETATTR;
    m.ih.total_extlen = 0;
    struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
    send_echo(he, c, dest, &m.ih, &iov, 1);
}

/* A MKNOD, MKDIR or SYMLINK of NAME sent as a LOOKUP of it: the same
 * reply, the host's node or ENOENT. */
static void send_as_lookup(struct host_events *he, struct relay_conn *c, struct reply_dest *dest,
                           const struct fuse_in_header *ih, const char *name)
{
    size_t n = strlen(name) + 1;
    struct {
        struct fuse_in_header ih;
        char name[NAME_MAX + 1];
    } m = { .ih = *ih };
    m.ih.len = (uint32_t)(sizeof(m.ih) + n);
    m.ih.opcode = FUSE_LOOKUP;
    m.ih.total_extlen = 0;
    memcpy(m.name, name, n);
    struct iovec iov = { .iov_base = &m, .iov_len = m.ih.len };
    host_nodes_request(he->cfg.nodes, &m.ih, &iov, 1, true);
    send_echo(he, c, dest, &m.ih, &iov, 1);
}

/* The host's late reply to an echo request the relay answered EINTR: a
 * lookup it counted goes back. */
static void discard_reply(struct reply_dest *d, const void *msg, size_t len)
{
    struct discard *x = (struct discard *)d;
    struct hn_entry e;
    if (host_nodes_parse_entry(msg, len, &e) == 0)
        send_forget(x->he, e.nodeid);
}

/* The kernel's INTERRUPT (the echo's timer went off, arm_timer): an echo
 * request still waiting for the host is answered EINTR at once, so that
 * the echo's system call returns.  True: not for the host. */
static bool interrupted(struct host_events *he, struct relay_conn *c,
                        const struct fuse_in_header *ih, struct iovec *iov, int cnt)
{
    struct fuse_interrupt_in in;
    if (ih->len != sizeof(*ih) + sizeof(in) || cnt < 1 || iov[0].iov_len < ih->len)
        return false;
    memcpy(&in, (const char *)iov[0].iov_base + sizeof(*ih), sizeof(in));
    return in.unique && in.unique == atomic_load(&he->inflight) &&
           relay_abandon(c, in.unique, &he->discard.dest, EINTR);
}

bool host_events_intercept(struct host_events *he, struct relay_conn *c, struct reply_dest *dest,
                           const struct fuse_in_header *ih, struct iovec *iov, int cnt)
{
    if (ih->opcode == FUSE_INTERRUPT)
        return interrupted(he, c, ih, iov, cnt);
    int tid = atomic_load(&he->tid);
    if (!tid || ih->pid != (uint32_t)tid)
        return false;
    char name[256];
    struct hn_entry e;
    bool named = host_nodes_request_name(ih, iov, cnt, name);
    switch (ih->opcode) {
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_NOTIFY_REPLY:
    case FUSE_INIT:
        return false; /* the kernel's, whoever caused them */
    case FUSE_LOOKUP:
        if (!named || !answer_lookup(he, dest, ih, name))
            send_read(he, c, dest, ih, iov, cnt);
        return true;
    case FUSE_GETATTR:
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR:
    case FUSE_READLINK:
    case FUSE_ACCESS:
    case FUSE_STATFS:
        send_read(he, c, dest, ih, iov, cnt);
        return true;
    case FUSE_SETATTR:
        send_as_getattr(he, c, dest, ih);
        return true;
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_SYMLINK:
        if (named)
            send_as_lookup(he, c, dest, ih, name);
        else
            relay_reply_error(dest, ih->unique, -EPERM);
        return true;
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_RENAME:
    case FUSE_RENAME2:
        /* the name the plan removes or moves: the host has done it */
        relay_reply_error(dest, ih->unique,
                          named && planned(he, ih->nodeid, name, &e) == 1 ? 0 : -EPERM);
        return true;
    default:
        relay_reply_error(dest, ih->unique, -EPERM);
        return true;
    }
}

/* ---- echoes ----------------------------------------------------------- */

/* NAME in PARENT as a path below the mount root. */
static int entry_path(struct host_events *he, uint64_t parent, const char *name, char *buf,
                      size_t size)
{
    int err = host_nodes_path(he->cfg.nodes, parent, buf, size);
    if (err)
        return err;
    size_t used = strlen(buf);
    int n = snprintf(buf + used, size - used, "%s%s", used ? "/" : "", name);
    return n < 0 || (size_t)n >= size - used ? -ENAMETOOLONG : 0;
}

/*
 * Opens the mount's root for one echo, as he->root_fd.  Only for the echo's
 * duration: an fd kept open would make every plain umount of the mount fail
 * (EBUSY).  The path could lead elsewhere by then (a mount over the
 * mountpoint): it must be a FUSE filesystem, the device the first echo found
 * (the first comes after a notification, so the mount is live).
 */
/*
 * Bounds the echo's system calls: SECONDS from now a signal interrupts
 * the one running (0: disarms).  The kernel then stops waiting for a
 * request it has not sent, and sends an INTERRUPT for one it has, which
 * the relay answers EINTR for the host (interrupted()).  What no signal
 * ends is a wait for an inode lock that a guest process holds while it
 * waits for the host: as long as the host answers, that ends too.
 */
static void arm_timer(struct host_events *he, int seconds)
{
    struct itimerspec t = { .it_value = { .tv_sec = seconds } };
    if (he->timer_ok)
        timer_settime(he->timer, 0, &t, NULL);
}

static bool root_open(struct host_events *he)
{
    arm_timer(he, HOST_EVENTS_SYSCALL_TIMEOUT_S);
    int fd = open(he->cfg.mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct statfs sf;
    struct stat st;
    bool ours = fd >= 0 && fstatfs(fd, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC &&
                fstat(fd, &st) == 0 && (!he->root_dev || st.st_dev == he->root_dev);
    if (!ours) {
        log_debug("echo: %s is not the mount any more", he->cfg.mountpoint);
        if (fd >= 0)
            close(fd);
        arm_timer(he, 0);
        return false;
    }
    he->root_dev = st.st_dev;
    he->root_fd = fd;
    return true;
}

static void root_close(struct host_events *he)
{
    arm_timer(he, 0);
    close(he->root_fd);
    he->root_fd = -1;
}

static void echo_failed(const char *what, const char *path)
{
    log_debug("host change not echoed (%s %s): %s", what, path, strerror(errno));
}

/* A content or attribute change of node N: IN_MODIFY or IN_ATTRIB. */
static void echo_inode(struct host_events *he, const struct hn_notify *n)
{
    struct hn_entry e;
    char path[PATH_MAX], full[PATH_MAX + 32]; /* /proc/self/fd/N/path */
    struct stat st;
    if (host_nodes_own_change(he->cfg.nodes, n->nodeid, NULL) ||
        !host_nodes_get(he->cfg.nodes, n->nodeid, &e) || S_ISDIR(e.attr.mode) ||
        host_nodes_path(he->cfg.nodes, n->nodeid, path, sizeof(path)) < 0 || !root_open(he))
        return;
    /* The kernel asks the host (the notification dropped its attributes):
     * the host's size and owner, and whether the path is still the node. */
    if (fstatat(he->root_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino == e.attr.ino) {
        bool data = n->off >= 0 && S_ISREG(st.st_mode) && !*he->cfg.writeback;
        /* truncate has no *at form: through the root fd's magic link */
        int len = snprintf(full, sizeof(full), "/proc/self/fd/%d/%s", he->root_fd, path);
        if (data && len > 0 && (size_t)len < sizeof(full)) {
            if (truncate(full, st.st_size) < 0)
                echo_failed("truncate", path);
        } else if (fchownat(he->root_fd, path, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0) {
            echo_failed("chown", path);
        }
    }
    root_close(he);
}

/* C's name, gone on the host, removed in the guest: IN_DELETE. */
static void echo_remove(struct host_events *he, const struct name_change *c)
{
    char path[PATH_MAX];
    if (entry_path(he, c->parent, c->name, path, sizeof(path)) < 0 || !root_open(he))
        return;
    struct echo_plan p = { .pos = true, .pos_parent = c->parent, .entry = c->was };
    snprintf(p.pos_name, sizeof(p.pos_name), "%s", c->name);
    set_plan(he, &p);
    int flags = S_ISDIR(c->was.attr.mode) ? AT_REMOVEDIR : 0;
    if (unlinkat(he->root_fd, path, flags) == 0)
        host_nodes_unbind(he->cfg.nodes, c->parent, c->name);
    else
        echo_failed("unlink", path);
    clear_plan(he);
    root_close(he);
}

/* C's name, new on the host, made in the guest: IN_CREATE. */
static void echo_create(struct host_events *he, const struct name_change *c)
{
    char path[PATH_MAX];
    if (entry_path(he, c->parent, c->name, path, sizeof(path)) < 0 || !root_open(he))
        return;
    struct echo_plan p = { .neg = true, .neg_parent = c->parent };
    snprintf(p.neg_name, sizeof(p.neg_name), "%s", c->name);
    set_plan(he, &p);
    mode_t type = c->host.attr.mode & S_IFMT;
    int err = 0;
    if (type == S_IFDIR)
        err = mkdirat(he->root_fd, path, 0700);
    else if (type == S_IFLNK) /* the target is the host's: SYMLINK goes as a LOOKUP */
        err = symlinkat(".", he->root_fd, path);
    else
        err = mknodat(he->root_fd, path, type | 0600, (dev_t)c->host.attr.rdev);
    if (err < 0)
        echo_failed("create", path);
    clear_plan(he);
    root_close(he);
}

/* FROM's node, now TO's name on the host, moved in the guest:
 * IN_MOVED_FROM and IN_MOVED_TO. */
static void echo_rename(struct host_events *he, const struct name_change *from,
                        const struct name_change *to)
{
    char old[PATH_MAX], new[PATH_MAX];
    if (entry_path(he, from->parent, from->name, old, sizeof(old)) < 0 ||
        entry_path(he, to->parent, to->name, new, sizeof(new)) < 0 || !root_open(he))
        return;
    struct echo_plan p = { .pos = true, .pos_parent = from->parent, .entry = from->was,
                           .neg = true, .neg_parent = to->parent };
    snprintf(p.pos_name, sizeof(p.pos_name), "%s", from->name);
    snprintf(p.neg_name, sizeof(p.neg_name), "%s", to->name);
    set_plan(he, &p);
    if (renameat(he->root_fd, old, he->root_fd, new) == 0)
        host_nodes_move(he->cfg.nodes, from->parent, from->name, to->parent, to->name);
    else
        echo_failed("rename", old);
    clear_plan(he);
    root_close(he);
}

/* Whether the batch's names before C already name C's. */
static bool seen_before(const struct name_change *all, const struct name_change *c)
{
    for (const struct name_change *o = all; o < c; o++) {
        if (o->parent == c->parent && strcmp(o->name, c->name) == 0)
            return true;
    }
    return false;
}

/* Whether the batch B has an echo of N's node and kind before N. */
static bool seen_inode(const struct hn_notify *b, const struct hn_notify *n)
{
    for (const struct hn_notify *o = b; o < n; o++) {
        if (o->kind == HN_INVAL_INODE && o->nodeid == n->nodeid && (o->off < 0) == (n->off < 0))
            return true;
    }
    return false;
}

/* What the host and the kernel have at C's name.  False: nothing to do. */
static bool look_at(struct host_events *he, struct name_change *c)
{
    if (host_nodes_own_change(he->cfg.nodes, c->parent, c->name))
        return false;
    int err = host_lookup(he, c->parent, c->name, &c->host);
    if (err && err != -ENOENT)
        return false;
    c->present = !err;
    c->known = host_nodes_child(he->cfg.nodes, c->parent, c->name, &c->was);
    log_debug("echo: %llu/%s: on the host %s, in the guest %s", (unsigned long long)c->parent,
              c->name, c->present ? "yes" : "no", c->known ? "yes" : "no");
    /* the same node at the same name: nothing the guest must see */
    return c->present != c->known || (c->present && c->host.nodeid != c->was.nodeid);
}

/* Whether A and B are one host file.  By inode number, not node id: the
 * kernel forgets the node of a name the host moved as soon as the name's
 * invalidation leaves it unused, and the host's node id of the new name
 * is then a new one. */
static bool same_file(const struct hn_entry *a, const struct hn_entry *b)
{
    return a->nodeid == b->nodeid ||
           (a->attr.ino == b->attr.ino && ((a->attr.mode ^ b->attr.mode) & S_IFMT) == 0);
}

/* A name gone whose file came back under another name of the batch. */
static struct name_change *moved_to(struct name_change *all, size_t n,
                                    const struct name_change *gone)
{
    for (size_t i = 0; i < n; i++) {
        if (!all[i].done && all[i].present && same_file(&all[i].host, &gone->was))
            return &all[i];
    }
    return NULL;
}

static void echo_names(struct host_events *he, struct name_change *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].done || c[i].present || !c[i].known)
            continue;
        struct name_change *to = moved_to(c, n, &c[i]);
        if (to) {
            echo_rename(he, &c[i], to);
            to->done = true;
        } else {
            echo_remove(he, &c[i]);
        }
        c[i].done = true;
    }
    for (size_t i = 0; i < n; i++) {
        if (!c[i].done && c[i].present)
            echo_create(he, &c[i]);
    }
}

static void echo_batch(struct host_events *he, const struct hn_notify *b, size_t n)
{
    struct name_change c[BATCH_MAX];
    size_t names = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i].kind == HN_INVAL_INODE)
            continue; /* after the names: a name gone must be echoed first */
        c[names] = (struct name_change){ .parent = b[i].nodeid, .name = b[i].name };
        if (!seen_before(c, &c[names]) && look_at(he, &c[names]))
            names++;
        else if (c[names].present)
            send_forget(he, c[names].host.nodeid);
    }
    echo_names(he, c, names);
    for (size_t i = 0; i < names; i++) {
        if (c[i].present)
            send_forget(he, c[i].host.nodeid);
    }
    for (size_t i = 0; i < n; i++) {
        if (b[i].kind == HN_INVAL_INODE && !seen_inode(b, &b[i]))
            echo_inode(he, &b[i]);
    }
}

/* ---- the queue and the thread ----------------------------------------- */

/* Whether the ring already holds the echo N would be; under the lock.  A
 * host writing a file in a loop queues one echo, not one per write. */
static bool queued(const struct host_events *he, const struct hn_notify *n)
{
    for (unsigned i = 0; i < he->count; i++) {
        const struct hn_notify *o = &he->ring[(he->head + i) % HOST_EVENTS_QUEUE];
        if (o->kind != n->kind || o->nodeid != n->nodeid)
            continue;
        if (n->kind == HN_INVAL_INODE ? (o->off < 0) == (n->off < 0)
                                      : strcmp(o->name, n->name) == 0)
            return true;
    }
    return false;
}

void host_events_notified(struct host_events *he, const void *msg, size_t len, int result)
{
    struct hn_notify n;
    if (!host_nodes_parse_notify(msg, len, &n))
        return;
    /* A name the kernel had not cached may still be new to it (the echo
     * asks); a node it does not have has nothing to echo. */
    if (result && (n.kind == HN_INVAL_INODE || result != -ENOENT))
        return;
    pthread_mutex_lock(&he->lock);
    bool full = he->count == HOST_EVENTS_QUEUE;
    bool first = full && !he->overflow_logged;
    if (!full && !queued(he, &n)) {
        he->ring[(he->head + he->count++) % HOST_EVENTS_QUEUE] = n;
        pthread_cond_signal(&he->wake);
    }
    he->overflow_logged |= full;
    pthread_mutex_unlock(&he->lock);
    if (first)
        log_warn("host changes come faster than they can be echoed: some are not (guest "
                 "programs watching files with inotify miss their events)");
}

/* Whether the ring holds an echo of a name; under the lock. */
static bool names_queued(const struct host_events *he)
{
    for (unsigned i = 0; i < he->count; i++) {
        if (he->ring[(he->head + i) % HOST_EVENTS_QUEUE].kind != HN_INVAL_INODE)
            return true;
    }
    return false;
}

/* Takes up to MAX queued echoes into B, waiting for one (and, when names
 * are among them, SETTLE_MS for more). */
static size_t pop_batch(struct host_events *he, struct hn_notify *b, size_t max)
{
    pthread_mutex_lock(&he->lock);
    while (he->count == 0)
        pthread_cond_wait(&he->wake, &he->lock);
    if (he->count < max && names_queued(he)) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += SETTLE_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (he->count < max &&
               pthread_cond_timedwait(&he->wake, &he->lock, &until) != ETIMEDOUT)
            ;
    }
    size_t n = 0;
    for (; n < max && he->count; n++, he->count--) {
        b[n] = he->ring[he->head];
        he->head = (he->head + 1) % HOST_EVENTS_QUEUE;
    }
    pthread_mutex_unlock(&he->lock);
    return n;
}

static void on_timer(int sig)
{
    (void)sig; /* only there to interrupt a system call */
}

/* The echo thread's timer (arm_timer): a signal of its own, to it alone,
 * whose handler does not restart system calls. */
static void start_timer(struct host_events *he)
{
    struct sigaction sa = { .sa_handler = on_timer };
    sigemptyset(&sa.sa_mask);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, HOST_EVENTS_SIGNAL);
    struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = HOST_EVENTS_SIGNAL };
    ev._sigev_un._tid = gettid();
    he->timer_ok = sigaction(HOST_EVENTS_SIGNAL, &sa, NULL) == 0 &&
                   pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0 &&
                   timer_create(CLOCK_MONOTONIC, &ev, &he->timer) == 0;
    if (!he->timer_ok)
        log_warn("echoes of host changes are not bounded in time: %s", strerror(errno));
}

static void *echo_main(void *arg)
{
    struct host_events *he = arg;
    start_timer(he);
    atomic_store(&he->tid, (int)gettid());
    static struct hn_notify batch[BATCH_MAX]; /* one echo thread per process */
    for (;;) {
        size_t n = pop_batch(he, batch, BATCH_MAX);
        echo_batch(he, batch, n);
    }
    return NULL;
}

int host_events_start(const struct host_events_config *cfg, struct host_events **out)
{
    struct host_events *he = calloc(1, sizeof(*he));
    if (!he)
        return -ENOMEM;
    he->cfg = *cfg;
    he->root_fd = -1;
    pthread_mutex_init(&he->lock, NULL);
    pthread_mutex_init(&he->plan_lock, NULL);
    he->discard = (struct discard){ .dest = { .deliver = discard_reply, .dev_fd = -1 }, .he = he };
    struct own_call *c = &he->call;
    c->dest = (struct reply_dest){ .deliver = own_reply, .dev_fd = -1 };
    c->he = he;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->answered, &ca);
    pthread_cond_init(&he->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t tid;
    int err = pthread_create(&tid, NULL, echo_main, he);
    if (err) {
        free(he);
        return -err;
    }
    pthread_detach(tid);
    *out = he;
    return 0;
}
