/*
 * caps_shortcut.h - the GETXATTR "security.capability" requests the relay
 * answers itself.
 *
 * Before the first write to a file after it learned the file's attributes,
 * and before every chown, the guest kernel asks whether the file carries
 * file capabilities, which a write or chown must drop (file_remove_privs:
 * S_NOSEC goes at every attribute refresh, fs/fuse/inode.c), and the
 * caller waits for the answer: two round trips per file an untar extracts
 * (bench/README.md, requests.sh), which a local filesystem answers from
 * its inode.  FUSE has no way to say "none here" short of failing every
 * GETXATTR with ENOSYS, which turns off all extended attributes.
 *
 * A file this session just created carries none: the relay learns the
 * node of every successful CREATE, MKNOD and TMPFILE reply and answers
 * that node's GETXATTR of security.capability with ENODATA itself, until
 * anything may have given it one: a SETXATTR or REMOVEXATTR of the node
 * forwarded from this guest (forgotten before it is sent), a host change
 * notification naming it (the host, or another guest, set one: the
 * daemon's change watcher reports xattr changes as attribute changes), or
 * its FORGET.  A capability the host sets between a create and its
 * notification's arrival can be answered "none" once; that changes
 * nothing on the host, where the host kernel drops capabilities at every
 * write and chown by itself (cap_inode_need_killpriv), whatever the guest
 * kernel believed.  Bounded tables: what does not fit is forwarded.
 */
#ifndef FSB_MOUNT_CAPS_SHORTCUT_H
#define FSB_MOUNT_CAPS_SHORTCUT_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>

struct caps_shortcut;

struct caps_shortcut *caps_shortcut_new(void);
void caps_shortcut_free(struct caps_shortcut *c);

/* Whether the relay answers request IH with ENODATA itself; for a
 * GETXATTR, NAME is the LEN bytes after its fuse_getxattr_in (apart from
 * it in a ring entry's payload).  C may be NULL (caps=host): then never. */
bool caps_shortcut_answers(struct caps_shortcut *c, const struct fuse_in_header *ih,
                           const void *name, size_t len);

/* Learns from request IH just before it is sent to the host: the uniques
 * of creates, the nodes whose xattrs a request may change or that the
 * kernel forgets. */
void caps_shortcut_forwarding(struct caps_shortcut *c, const struct fuse_in_header *ih,
                              const void *arg, size_t len);

/* Looks at reply OH as its request leaves the pending set (BODY: the LEN
 * bytes after the header, maybe none): the node of a create. */
void caps_shortcut_reply(struct caps_shortcut *c, const struct fuse_out_header *oh,
                         const void *body, size_t len);

/* A host notification (unique 0, MSG of LEN bytes): the node it names, if
 * any, may have changed. */
void caps_shortcut_host_message(struct caps_shortcut *c, const void *msg, size_t len);

#endif
