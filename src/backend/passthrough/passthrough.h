/*
 * passthrough.h - the backend that exports a host directory.
 *
 * This is the security boundary of fsbridge: see the design notes at the
 * top of passthrough.c.
 */
#ifndef FSB_PASSTHROUGH_H
#define FSB_PASSTHROUGH_H

#include "backend/backend.h"

#include <stddef.h>

struct passthrough_config {
    int root_fd;          /* O_PATH fd of the export root; duplicated */
    size_t max_inodes;    /* per session */
    unsigned max_handles; /* open files and directories per session */
    bool writeback;       /* the guest runs a writeback cache (see open) */
    bool allow_devices;   /* MKNOD of character and block devices */
    bool trust_guest_groups; /* the guest kernel checks permissions itself */
};

/* Opens the process-wide state (the /proc/self/fd directory) and sizes the
 * fd cache from RLIMIT_NOFILE.  Returns 0 or -errno. */
int passthrough_global_init(void);

/* The most open files and directories one session may hold, from
 * RLIMIT_NOFILE (after passthrough_global_init). */
unsigned passthrough_session_handle_limit(void);

/* A backend instance for one session, or NULL with *err set. */
struct fsb_backend *passthrough_new(const struct passthrough_config *cfg, int *err);

#endif
