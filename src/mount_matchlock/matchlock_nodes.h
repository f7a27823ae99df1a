/*
 * matchlock_nodes.h - the node table of fsbridge-mount --protocol=matchlock:
 * which guest path each FUSE node id stands for.
 *
 * matchlock's requests name files by absolute guest path, the kernel by
 * node id.  A node has one or more names, each (parent node, name); its
 * path is the prefix (the mount point as the guest sees it) followed by
 * the names up to the root, through its first name.  A rename therefore
 * moves a name and everything below it at once, and paths are built when
 * a request needs one.
 *
 * One node per host inode: a name that the host reports with the inode
 * number of a known node (a file with several links, nlink > 1) becomes
 * another name of that node, so that the guest kernel sees a hard link as
 * one inode (one page cache, one set of attributes).  Directories always
 * have a single name.  A name whose inode number changed (the host
 * replaced the file) is taken from its old node.
 *
 * A node lives while the kernel holds lookups on it (FORGET drops them) or
 * names hang below it.  Unlinking, removing or renaming over its last name
 * detaches it: it keeps serving open handles (Read/Write go by handle), and
 * its last attributes answer GETATTR, since it has no path any more.
 *
 * Node ids are the node's address (the root is FUSE_ROOT_ID): the kernel
 * only sends ids it was given and has not forgotten.  Thread safe.
 */
#ifndef FSB_MOUNT_MATCHLOCK_NODES_H
#define FSB_MOUNT_MATCHLOCK_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

typedef uint64_t ml_ino_t; /* fuse_ino_t */

struct ml_nodes;

/* PREFIX: "/" or a clean absolute path without a trailing slash.  NULL
 * when out of memory. */
struct ml_nodes *ml_nodes_new(const char *prefix);

/* Frees a table that holds no node but the root (a start that failed). */
void ml_nodes_free(struct ml_nodes *t);

/*
 * The guest path of INO, or of its child NAME when name is not NULL, into
 * buf.  Returns 0, -ENOENT for a detached node, -ENAMETOOLONG.
 */
int ml_nodes_path(struct ml_nodes *t, ml_ino_t ino, const char *name, char *buf, size_t size);

/* After a successful lookup (or create, mkdir, link...) of NAME in PARENT
 * with attributes ATTR: finds or makes its node, counts one lookup, keeps
 * ATTR.  Returns the id, or 0 when out of memory. */
ml_ino_t ml_nodes_remember(struct ml_nodes *t, ml_ino_t parent, const char *name,
                           const struct stat *attr);

void ml_nodes_forget(struct ml_nodes *t, ml_ino_t ino, uint64_t nlookup);

/* The host renamed or removed a name: move or drop it. */
void ml_nodes_moved(struct ml_nodes *t, ml_ino_t olddir, const char *oldname, ml_ino_t newdir,
                    const char *newname);
void ml_nodes_removed(struct ml_nodes *t, ml_ino_t dir, const char *name);

/* Attributes kept for a node: fresh ones replace them; a write or a
 * truncation changes the kept size (a write only ever extends it). */
void ml_nodes_set_attr(struct ml_nodes *t, ml_ino_t ino, const struct stat *attr);
void ml_nodes_resized(struct ml_nodes *t, ml_ino_t ino, off_t size, bool only_grow);

/* For a detached node: its last attributes (nlink 0) in *attr, true. */
bool ml_nodes_detached_attr(struct ml_nodes *t, ml_ino_t ino, struct stat *attr);

#endif
