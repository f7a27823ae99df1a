/*
 * matchlock_mount.h - fsbridge-mount --protocol=matchlock: mounting from a
 * host that speaks matchlock's CBOR path protocol (fsbridged, or an
 * unchanged matchlock host).
 *
 * Unlike the native relay, this mode answers the guest kernel itself, with
 * libfuse's low-level API (matchlock_fs.h), turning each FUSE request into
 * path requests.  fsbridge_mount.c creates the libfuse session (mount
 * options are common to both modes) and mounts; this module connects,
 * probes the host, and runs the mount:
 *
 *   m = ml_mount_new(opts, mountpoint);
 *   se = fuse_session_new(..., &ml_fs_ops, sizeof(ml_fs_ops), ml_mount_userdata(m));
 *   ml_mount_connect(m);      before mounting: a wrong address fails cleanly
 *   fuse_session_mount(se, mountpoint);
 *   exit(ml_mount_serve(m, se, signals));
 */
#ifndef FSB_MOUNT_MATCHLOCK_MOUNT_H
#define FSB_MOUNT_MATCHLOCK_MOUNT_H

#include <signal.h>

#include "mount_matchlock/matchlock_fs.h"
#include "mount/options.h"

struct ml_mount;

/* No I/O yet.  NULL after logging one line. */
struct ml_mount *ml_mount_new(const struct mount_options *o, const char *mountpoint);

/* Frees M after a start that failed (before ml_mount_serve()). */
void ml_mount_free(struct ml_mount *m);

/* What libfuse passes to the operations of ml_fs_ops. */
void *ml_mount_userdata(struct ml_mount *m);

/* Connects and probes the host.  0, or -1 after logging one line. */
int ml_mount_connect(struct ml_mount *m);

/*
 * Once mounted: says so, goes to the background unless in the foreground,
 * and serves the mount with the requested threads until it is unmounted
 * (0), one of SIGNALS arrives (unmounts, 0), or the host is lost (1: the
 * mount stays, dead, as in native mode).  Returns the exit status.
 */
int ml_mount_serve(struct ml_mount *m, struct fuse_session *se, const sigset_t *signals);

#endif
