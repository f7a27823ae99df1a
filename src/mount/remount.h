/*
 * remount.h - `mount -o remount,...` of a directory fsbridge-mount serves.
 */
#ifndef FSB_MOUNT_REMOUNT_H
#define FSB_MOUNT_REMOUNT_H

/*
 * Remounts MOUNTPOINT (resolved), which must be a FUSE mount (-EINVAL
 * otherwise), changing the VFS flags it has now by those OPTIONS (a
 * comma-separated list, may be NULL) names: ro/rw, nosuid, nodev, noexec,
 * nosymfollow, the atime and sync options; a flag not named stays.  Other
 * names (FUSE's user_id=, allow_other, ...) cannot change after a mount
 * and are skipped.  Returns 0 or -errno after logging one line.
 */
int mount_remount(const char *mountpoint, const char *options);

#endif
