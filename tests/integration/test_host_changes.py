"""
test_host_changes.py - the host changes the exported tree under a guest
that still holds node ids.
"""

import errno
import os
import resource

import pytest

from fuse_client import FuseClient

EXPORT = "hc"
NOFILE = 512   # a small fd cache, so old inodes lose their cached fds


def test_reused_inode_number_is_a_new_node(fsb_workdir, daemon_factory):
    """A host file is deleted while the guest still knows it, and the host
    gives its inode number to a new file: the new file must get a new node
    id (not the old one's), and the old node id must not reach the new file."""
    host = fsb_workdir / "export"
    host.mkdir()
    (host / "old").write_bytes(b"old contents")
    for i in range(600):
        (host / f"filler{i}").write_bytes(b"")
    d = daemon_factory([f"{EXPORT}={host}"],
                       rlimits={resource.RLIMIT_NOFILE: (NOFILE, NOFILE)})
    with FuseClient(d.socket, export=EXPORT) as c:
        err, old = c.lookup(1, "old")
        assert err == 0
        old_ino = os.stat(host / "old").st_ino
        # Push the old inode's fd out of the daemon's fd cache, so nothing
        # keeps the deleted inode allocated on the host.
        for i in range(600):
            assert c.lookup(1, f"filler{i}")[0] == 0
        os.unlink(host / "old")
        new = None
        for i in range(200):        # ext4 hands a freed number out again soon
            path = host / f"new{i}"
            path.write_bytes(b"new file, other contents")
            if os.stat(path).st_ino == old_ino:
                new = path
                break
        if new is None:
            pytest.skip("the host filesystem did not reuse the inode number")
        err, fresh = c.lookup(1, new.name)
        assert err == 0
        assert fresh["nodeid"] != old["nodeid"], "the old node id now names another file"
        err, attr = c.getattr(fresh["nodeid"])
        assert err == 0 and attr["size"] == len(b"new file, other contents")
        err, _ = c.getattr(old["nodeid"])
        assert err in (errno.ESTALE, errno.ENOENT), f"old node id reaches: {err}"
