/*
 * credentials.h - acting as the guest caller on the host.
 *
 * When fsbridged runs as root, each operation that checks permissions or
 * creates something runs with the caller's fsuid/fsgid, switched for the
 * calling thread only (raw syscalls: glibc's wrappers would change every
 * thread).  A non-zero fsuid drops the filesystem capabilities
 * (CAP_DAC_OVERRIDE, CAP_FOWNER, ...), so the host kernel refuses exactly
 * what it would refuse a local process of that uid, and new files are owned
 * by the caller.  Switching back to fsuid 0 restores them.
 */
#ifndef FSB_CREDENTIALS_H
#define FSB_CREDENTIALS_H

#include "backend/backend.h"

#include <stdbool.h>

/* True when the process can switch (it is root). */
bool cred_can_switch(void);

/* Switches this thread to CTX's uid/gid when ENABLED.  Returns 0 or -errno;
 * on success cred_leave() must follow. */
int cred_enter(const struct fsb_ctx *ctx, bool enabled);
/* Back to the daemon's own ids; drops lent groups. */
void cred_leave(bool enabled);

/* Gives the switched thread GROUPS as supplementary groups until
 * cred_leave().  Returns 0 or -errno. */
int cred_lend_groups(const gid_t *groups, int n);

#endif
