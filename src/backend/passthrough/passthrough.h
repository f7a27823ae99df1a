/*
 * passthrough.h - the backend that exports a host directory.
 *
 * This is the security boundary of fsbridge: see the design notes at the
 * top of passthrough.c.
 */
#ifndef FSB_PASSTHROUGH_H
#define FSB_PASSTHROUGH_H

#include "backend/backend.h"
#include "common/budget.h"

#include <stddef.h>
#include <stdint.h>

struct change_watch;
struct change_sink;

struct passthrough_config {
    int root_fd;          /* O_PATH fd of the export root; duplicated */
    size_t max_inodes;    /* per session */
    unsigned max_handles; /* open files and directories per session */
    bool writeback;       /* the guest runs a writeback cache (see open) */
    bool allow_devices;   /* MKNOD of character and block devices */
    bool trust_guest_groups; /* the guest kernel checks permissions itself */
    struct fsb_guest *guest; /* whose budgets open files and inodes count on */
    struct change_watch *watch; /* the export's (cache=coherent), or NULL */
    bool stacked;         /* a layer under another backend (the overlay),
                           * whose node ids no guest sees: no ring of
                           * forgotten nodes for guest file handles */
    /* xattr=map: the host name of the guest's security.capability, whose
     * removal follows security.capability's rule (see passthrough.c); NULL
     * without the mapping. */
    const char *mapped_caps_xattr;
    /* Tests only (FSBRIDGE_TEST_JOIN_DELAY_MS, engine/session.c): a new
     * node of a tracked session waits this long between its first stat
     * and its joining the inode table (passthrough.c, restat_joined). */
    unsigned test_join_delay_ms;
};

/* Opens the process-wide state (the /proc/self/fd directory) and sizes the
 * fd cache from RLIMIT_NOFILE.  Returns 0 or -errno. */
int passthrough_global_init(void);

/* The most open files and directories one session may hold, from
 * RLIMIT_NOFILE (after passthrough_global_init). */
unsigned passthrough_session_handle_limit(void);

/* The fds all guests together may hold open (common/budget.h's pool):
 * RLIMIT_NOFILE less the daemon's reserve, the inode fd cache (a quarter),
 * *CONN_FDS for connections (cut to a third of what is left) and the
 * OPEN_NOW fds the daemon holds already (exports, listeners).  After
 * passthrough_global_init. */
unsigned passthrough_guest_fd_pool(unsigned open_now, unsigned *conn_fds);

/* A backend instance for one session, or NULL with *err set. */
/* True if DIRFD's filesystem keeps directory offsets valid across opens
 * (host_fs.c has the list and why): READDIR may then reopen the
 * directory each time instead of keeping the guest's open. */
bool passthrough_dir_offsets_stable(int dirfd);

/* Whether FD's filesystem encodes file handles as FILEID_INO32_GEN(_PARENT)
 * with the inode number first (ext2/3/4, xfs with 32-bit inodes; tmpfs
 * uses the same types with another layout), so that a handle of a gone
 * inode still names its number (change_watch.c, gone_handle_inode). */
bool passthrough_handles_start_with_ino(int fd);

/* True if a FLUSH of any file below ROOT_FD only drops record locks: its
 * filesystem has no ->flush method and nothing is mounted below it
 * (host_fs.c).  Call once the mount table below it cannot change any more
 * (inside the sandbox's private namespace).  WHY gets the reason either
 * way, for the log. */
bool passthrough_close_quiet(int root_fd, char *why, size_t size);

struct fsb_backend *passthrough_new(const struct passthrough_config *cfg, int *err);

/*
 * cache=coherent (change_watch.h): from now on SINK gets the changes of
 * the inodes this instance knows, made by the host or by other sessions;
 * its own changes are posted to the others.  Returns 0, or -ENOTSUP when
 * its export has no watcher.  passthrough_untrack stops the calls of
 * SINK; the backend's destroy does it too.
 */
int passthrough_track(struct fsb_backend *be, const struct change_sink *sink, void *cookie);
void passthrough_untrack(struct fsb_backend *be);

/* Every node id the instance knows, for dropping a whole cache: *IDS is
 * malloc'ed (NULL and 0 when out of memory). */
size_t passthrough_known_nodes(struct fsb_backend *be, uint64_t **ids);

/*
 * For backends stacked on passthrough instances (the overlay backend): the
 * host side of a node, with the same guarantees as the instance's own
 * operations (reached by beneath-lookups, never a path string).
 *
 * passthrough_pin returns a pinned O_PATH fd of NODEID (and its S_IFMT type
 * in *type) or -errno; *pin goes back through passthrough_unpin.
 */
int passthrough_pin(struct fsb_backend *be, uint64_t nodeid, mode_t *type, void **pin);
void passthrough_unpin(struct fsb_backend *be, void *pin);

/* Opens the inode behind the O_PATH fd FD with FLAGS (through
 * /proc/self/fd, so a symlink is not followed: FD is the inode). */
int passthrough_reopen(int fd, int flags);

#endif
