"""
matchlock_limits.py - what the `fs` tests cannot check over
fsbridge-mount --protocol=matchlock, with the reason: what matchlock's path
protocol (docs/matchlock-protocol.md, and fsbridge's additions in
docs/matchlock.md) cannot express.  docs/matchlock.md, "Guest side", lists
the same items.

conftest.py marks the tests of SKIPS skipped when it collects the
"matchlock" parameter of `fs`; test_conformance.py passes the groups of
CONFORMANCE_SKIPS to fsb-conformance --skip.
"""

import pytest

NO_XATTRS = "no extended attribute operations (getxattr/setxattr/listxattr/removexattr)"
NO_RENAME_FLAGS = "Rename has no flags: RENAME_NOREPLACE and RENAME_EXCHANGE give EINVAL"
NO_LSEEK = "no lseek: SEEK_DATA/SEEK_HOLE see the whole file as data"
NO_FALLOCATE = "no fallocate (allocation, FALLOC_FL_PUNCH_HOLE)"
NO_STATFS = "no statfs: the mount reports no sizes"
NO_MKNOD = "no mknod: FIFOs, sockets and device nodes cannot be made (EPERM)"
NO_GROUPS = ("requests carry the caller's uid and gid only, not its supplementary groups "
             "(and fsbridged lends no groups to matchlock clients: an unchanged matchlock "
             "guest checks no permissions itself)")
NO_KILL_SUIDGID = ("Write and Setattr carry no kill-suid flag: the guest kernel clears the "
                   "set-user-ID bit with a chmod as the writer, which the host refuses to a "
                   "non-owner (EPERM)")

NO_HANDLES = ("no file handles: a node the guest kernel has evicted (FORGET) has no path "
              "left to be found by, so open_by_handle_at after drop_caches is ESTALE")

# test function name -> why the protocol cannot express what it checks
SKIPS = {
    "test_xattrs": NO_XATTRS,
    "test_xattr_too_big_value_reports_erange": NO_XATTRS,
    "test_user_attribute_changes": NO_XATTRS + " (its last step is a setxattr)",
    "test_rename_noreplace": NO_RENAME_FLAGS,
    "test_rename_exchange": NO_RENAME_FLAGS,
    "test_seek_data_seek_hole": NO_LSEEK,
    "test_posix_fallocate": NO_FALLOCATE,
    "test_fallocate_punch_hole": NO_FALLOCATE,
    "test_statvfs_matches_host": NO_STATFS,
    "test_fifo": NO_MKNOD,
    "test_user_creates_files_owned_by_user": NO_MKNOD + " (one of its steps is a mkfifo)",
    "test_supplementary_group_can_create": NO_GROUPS,
    "test_supplementary_group_can_read_and_write": NO_GROUPS,
    "test_non_owner_modification_clears_setid_bits": NO_KILL_SUIDGID,
}

# fsb-conformance groups (it skips whole groups) -> why
CONFORMANCE_SKIPS = {
    "seek": NO_LSEEK,
    "statfs": NO_STATFS,
    "fifo": NO_MKNOD,
    "handles": NO_HANDLES,
    "rename": NO_RENAME_FLAGS + " (rename_noreplace, rename_exchange; the other renames "
              "run in test_dirs.py)",
    "perms": NO_MKNOD + " (perms_owner makes a FIFO; the other permission checks run in "
             "test_perms.py)",
    "groups": NO_GROUPS,
    "acl": NO_XATTRS,
}


def mark(item):
    """Skip ITEM (an fs[matchlock] test) if the protocol cannot express it."""
    reason = SKIPS.get(item.originalname)
    if reason:
        item.add_marker(pytest.mark.skip(reason=f"matchlock protocol: {reason}"))


def conformance_args():
    """fsb-conformance options for a matchlock mount."""
    for group, reason in CONFORMANCE_SKIPS.items():
        print(f"skip group {group} over matchlock: {reason}")
    return ("--skip", ",".join(CONFORMANCE_SKIPS))
