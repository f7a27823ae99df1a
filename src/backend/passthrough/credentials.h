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
 * on success cred_leave() must follow, on failure the thread is already as
 * cred_leave() leaves it (the daemon's ids and capabilities). */
int cred_enter(const struct fsb_ctx *ctx, bool enabled);
/* The same for an operation that makes a new inode with a mode (create,
 * mknod, mkdir, tmpfile): this thread takes CTX's umask first, and keeps
 * it after cred_leave() (see credentials.c). */
int cred_enter_creating(const struct fsb_ctx *ctx, bool enabled);
/* Back to the daemon's own ids; drops lent groups. */
void cred_leave(bool enabled);

/*
 * A caller without CAP_FSETID (fsb_ctx.kill_suidgid) writing or truncating
 * a set-user-ID file loses the bit on a local filesystem.  The host kernel
 * does that itself when the thread lacks CAP_FSETID, which a non-zero
 * fsuid already implies; for guest root without it, and for writes (which
 * run as the daemon), cred_drop_fsetid() takes CAP_FSETID out of this
 * thread's effective set until cred_restore_fsetid() (cred_leave() calls
 * it too).  Only for a daemon that switches ids: others have no CAP_FSETID.
 */
void cred_drop_fsetid(void);
void cred_restore_fsetid(void);

/*
 * CAP_SYS_ADMIN, which overlayfs's trusted.overlay.* xattrs need, is kept
 * in the permitted set only (sandbox.c): a guest's getxattr or setxattr of
 * trusted.* on any export meets a thread without it.  The overlay raises
 * it in the calling thread's effective set around its own metadata calls:
 * cred_raise_admin() returns whether it raised it (false: it was
 * effective already, or is not permitted), and cred_lower_admin() takes
 * back only what was raised.
 */
bool cred_raise_admin(void);
void cred_lower_admin(bool raised);

/* Gives the switched thread GROUPS as supplementary groups until
 * cred_leave().  Returns 0 or -errno. */
int cred_lend_groups(const gid_t *groups, int n);

#endif
