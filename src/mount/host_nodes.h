/*
 * host_nodes.h - what the relay knows of the guest kernel's nodes, for the
 * echo of host changes (host_events.h): which node id is which name, of
 * what type, and how many of the kernel's lookups of it the relay made up
 * itself.
 *
 * It learns from the messages it relays: the kernel's requests that make or
 * remove names (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE, UNLINK, RMDIR,
 * RENAME, RENAME2) remember their parent and name by unique, and the host's
 * replies to them (and every READDIRPLUS entry) bind node ids to names.
 * A node leaves when the kernel forgets it.  Each node keeps one name (the
 * last it was bound to): a file with hard links is echoed through one.
 *
 * This file is the only place in the guest program that parses host bytes
 * beyond the reply header: replies, READDIRPLUS listings and notifications,
 * each checked against its exact size, names checked as the host's engine
 * checks the guest's (1..NAME_MAX bytes, no '/', no NUL, not "." or "..").
 * A hostile or broken host can make the table wrong (which only makes an
 * echo miss or land on another of its own names) but never make it read
 * out of bounds, loop, or grow beyond HOST_NODES_MAX.  The kernel's
 * requests are trusted as the kernel's (it validated them), but read with
 * the same bounds.  tests/fuzz/fuzz_host_nodes.c feeds both.
 *
 * Thread safe: one mutex.
 */
#ifndef FSB_MOUNT_HOST_NODES_H
#define FSB_MOUNT_HOST_NODES_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Nodes known at most; beyond, new ones are not learnt (their changes are
 * not echoed) rather than memory grown without bound. */
#define HOST_NODES_MAX (1u << 20)
/* A change the guest itself asked for, within this long, is not echoed
 * (host_nodes_own_change). */
#define HOST_NODES_OWN_WINDOW_MS 2000

struct host_nodes;

/* What an echo needs of a node. */
struct hn_entry {
    uint64_t nodeid;
    uint64_t generation;
    struct fuse_attr attr; /* as the host last said */
};

/* A host notification the echo acts on. */
enum hn_notify_kind { HN_INVAL_INODE, HN_INVAL_ENTRY, HN_DELETE };
struct hn_notify {
    enum hn_notify_kind kind;
    uint64_t nodeid;     /* INVAL_INODE: the node; else the parent */
    uint64_t child;      /* DELETE: the child named, else 0 */
    int64_t off;         /* INVAL_INODE: < 0 attributes only */
    char name[256];      /* INVAL_ENTRY, DELETE */
};

struct host_nodes *host_nodes_new(void);
void host_nodes_free(struct host_nodes *h);

/* A request on its way to the host (IOV, CNT parts, the whole frame; IH its
 * header).  ECHO: the echo's own (host_events.h), not the guest's: never
 * counted as the guest's change. */
void host_nodes_request(struct host_nodes *h, const struct fuse_in_header *ih,
                        const struct iovec *iov, int cnt, bool echo);

/* The first name of a LOOKUP, MKNOD, MKDIR, SYMLINK, UNLINK, RMDIR,
 * RENAME or RENAME2 request (IOV, CNT, IH) into OUT; false for none. */
bool host_nodes_request_name(const struct fuse_in_header *ih, const struct iovec *iov, int cnt,
                             char out[256]);

/* Whether the reply to UNIQUE is one host_nodes_reply must read (so it must
 * not be spliced past the relay). */
bool host_nodes_wants(struct host_nodes *h, uint64_t unique);

/* A reply from the host (MSG, LEN >= sizeof(fuse_out_header)) on its way
 * to the kernel.  A negative entry answering the echo's own LOOKUP is
 * edited in place to be cached for no time (host_events.h). */
void host_nodes_reply(struct host_nodes *h, void *msg, size_t len);

/* The kernel's FORGET or BATCH_FORGET (MSG, LEN: the whole request, edited
 * in place): the lookups the relay answered itself (host_nodes_lent) are
 * taken out, since the host never counted them.  Returns the new length,
 * 0 when nothing is left to send. */
size_t host_nodes_forget(struct host_nodes *h, void *msg, size_t len);

/* The relay answered a LOOKUP of E itself: the kernel counts one lookup the
 * host does not. */
void host_nodes_lent(struct host_nodes *h, const struct hn_entry *e);

/* Node NODEID, or false. */
bool host_nodes_get(struct host_nodes *h, uint64_t nodeid, struct hn_entry *out);
/* The node named NAME in PARENT, or false. */
bool host_nodes_child(struct host_nodes *h, uint64_t parent, const char *name,
                      struct hn_entry *out);
/* NODEID's path below the root ("" for the root) into BUF.  Returns 0, or
 * -ENOENT (unknown, or not reachable from the root), -ENAMETOOLONG. */
int host_nodes_path(struct host_nodes *h, uint64_t nodeid, char *buf, size_t size);

/* The echo removed or moved a name in the guest kernel. */
void host_nodes_unbind(struct host_nodes *h, uint64_t parent, const char *name);
void host_nodes_move(struct host_nodes *h, uint64_t parent, const char *name,
                     uint64_t newparent, const char *newname);

/* Whether the guest itself asked, within HOST_NODES_OWN_WINDOW_MS, for a
 * change of node NODEID (NAME NULL) or of NAME in NODEID. */
bool host_nodes_own_change(struct host_nodes *h, uint64_t nodeid, const char *name);

/* Parsers of host bytes, for host_events.c. */
/* A notification (unique 0) the echo acts on; false for any other or a
 * malformed one. */
bool host_nodes_parse_notify(const void *msg, size_t len, struct hn_notify *out);
/* A LOOKUP reply: 0 and *OUT for an entry, -ENOENT for none (error or node
 * id 0), another -errno for the host's error, -EPROTO when malformed. */
int host_nodes_parse_entry(const void *msg, size_t len, struct hn_entry *out);
/* Whether NAME (LEN bytes) is a name a node may have. */
bool host_nodes_valid_name(const char *name, size_t len);

#endif
