/*
 * overlay.h - the copy-on-write backend: LOWER with the changes in UPPER.
 *
 * The guest sees LOWER merged with UPPER, and every change lands in UPPER,
 * written in Linux overlayfs's own format (copied-up files, whiteouts as
 * 0/0 character devices, opaque directories marked by the xattr
 * trusted.overlay.opaque, or user.overlay.opaque when the daemon is not
 * root, as overlayfs's `userxattr` mount option reads them).  LOWER is
 * never written: the backend only looks up, reads and opens read-only
 * there.  See docs/architecture.md ("Copy-on-write exports").
 *
 * Each layer is a passthrough instance of its own (passthrough.h), so both
 * keep that backend's rules (beneath-lookups, no host symlink followed,
 * file handles, per-caller credentials); the overlay decides which layer
 * answers, and copies a file up before its first change.
 */
#ifndef FSB_OVERLAY_H
#define FSB_OVERLAY_H

#include "backend/passthrough/passthrough.h"

#include <pthread.h>

/* What every session of one overlay export shares: each session has an
 * overlay instance of its own, on the same UPPER. */
struct overlay_shared {
    /* Serialises the changes of the export's merged namespace (copy-up,
     * create, remove, rename) across its sessions: two of them must not
     * copy up one file twice or race a whiteout against a create.  It is
     * the export's, not the process's: exports never share an UPPER or a
     * work dir (refused at start), so changes of different exports touch
     * disjoint host trees and cannot race. */
    pthread_mutex_t change_lock;
    unsigned long staging_seq; /* names in the staging directory; under change_lock */
};

/* One overlay export's host directories, opened at start-up. */
struct overlay_dirs {
    int upper_fd; /* O_PATH fd of UPPER */
    int work_fd;  /* O_PATH fd of the work dir's staging directory */
    int lock_fd;  /* the work dir's lock file, flock()ed */
    struct overlay_shared *shared; /* for the process's life */
};

/* LAYERS.root_fd is LOWER; the other fields apply to both layers. */
struct fsb_backend *overlay_new(const struct passthrough_config *layers,
                                const struct overlay_dirs *dirs, int *err);

/*
 * Start-up, before serving: WORK_PATH's lock file is taken (flock
 * LOCK_EX, held for the process's life: fsbridge-overlay refuses to commit
 * or discard while it is held, and a second daemon for the same UPPER is
 * refused), and what a killed daemon left in the staging directory is
 * removed (an unfinished copy-up is never visible: it is renamed into UPPER
 * only when complete).  Fills DIRS.  Returns 0 or -errno with a message in
 * WHY.
 */
int overlay_open_dirs(const char *upper_path, const char *work_path, struct overlay_dirs *dirs,
                      const char **why);

/* The work dir's name for UPPER when none is given: "UPPER.work". */
int overlay_default_work(const char *upper_path, char *out, size_t size);

#endif
