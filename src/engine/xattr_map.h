/*
 * xattr_map.h - the export option xattr=map: guest trusted.* and security.*
 * names stored on the host in a user.* namespace the guest may own.
 *
 * A guest `trusted.X` is the host's `user.fsbridge.trusted.X`, a guest
 * `security.X` the host's `user.fsbridge.security.X` (security.capability
 * and security.selinux included: neither may ever be the host's own).
 * user.*, system.* (POSIX ACLs) and names of no known namespace pass
 * unchanged.  The host's own trusted.* and security.* names and anything
 * else under user.fsbridge. are never shown to the guest, and a guest
 * request naming user.fsbridge.* directly is refused with EPERM, so the
 * mapped space can be reached only through the guest names it maps.
 * See docs/architecture.md, "Extended attributes".
 *
 * Guest names enter through fuse_ops.c's strict readers, then here; host
 * lists leave through here.  No state: a pure translation.
 */
#ifndef FSB_XATTR_MAP_H
#define FSB_XATTR_MAP_H

#include <stdbool.h>
#include <stddef.h>

#define FSB_XATTR_MAP_PREFIX "user.fsbridge."
/* The host name of a guest's security.capability (the daemon drops it on
 * a write, truncate or chown, as the host kernel drops its own). */
#define FSB_XATTR_MAPPED_CAPS FSB_XATTR_MAP_PREFIX "security.capability"

/* The host name of the guest name GUEST (NUL-terminated) in HOST, which
 * holds SIZE bytes.  Returns 0, -EPERM for a name in the private prefix,
 * or -ERANGE when the mapped name would not fit (the host's XATTR_NAME_MAX
 * is SIZE - 1 for callers that pass XATTR_NAME_MAX + 1). */
int xattr_map_to_host(const char *guest, char *host, size_t size);

/* Rewrites the host's list LIST of LEN bytes (NUL-terminated names) in
 * place into the list the guest sees; returns its length (never more than
 * LEN).  Mapped trusted.* names are shown to a privileged caller only, as
 * a local filesystem lists trusted.* to CAP_SYS_ADMIN only. */
size_t xattr_map_list_to_guest(char *list, size_t len, bool privileged);

#endif
