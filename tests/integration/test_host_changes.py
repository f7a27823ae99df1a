"""
test_host_changes.py - the host changes the exported tree under a guest
that still holds node ids.
"""

import errno
import os
import resource

import pytest

import helpers
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


def test_inodes_without_handles_have_an_fd_budget(fsb_workdir, daemon_factory):
    """Not root, the daemon cannot reopen file handles and keeps one fd per
    known inode: one session gets a bounded number of them (ENFILE beyond),
    and forgetting gives them back."""
    host = fsb_workdir / "export"
    host.mkdir()
    for i in range(200):
        (host / f"f{i}").write_bytes(b"")
    os.chown(host, 65534, 65534)

    def as_nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    rundir = fsb_workdir / "run"
    rundir.mkdir()
    os.chown(rundir, 65534, 65534)
    sock = rundir / "d.sock"
    d = daemon_factory([f"{EXPORT}={host}"], preexec_fn=as_nobody, listen=[f"unix:{sock}"],
                       rlimits={resource.RLIMIT_NOFILE: (256, 256)})
    helpers.poll_until(lambda: helpers.listening(sock), what="the daemon's socket")
    with FuseClient(sock, export=EXPORT) as c:
        nodes, refused = [], 0
        for i in range(200):
            err, e = c.lookup(1, f"f{i}")
            if err == 0:
                nodes.append(e["nodeid"])
            else:
                assert err == errno.ENFILE, err
                refused += 1
        assert nodes and refused, f"{len(nodes)} looked up, {refused} refused"
        assert len(os.listdir(f"/proc/{d.pid}/fd")) < 200
        with FuseClient(sock, export=EXPORT) as other:       # the daemon still serves
            assert other.alive()
        for n in nodes:
            c.forget(n, 1)
        helpers.poll_until(lambda: c.lookup(1, "f199")[0] == 0, what="fds back after FORGET")


def forget_and_wait(c, nodeid):
    """FORGET has no reply: wait until the daemon no longer knows NODEID."""
    c.forget(nodeid)
    helpers.poll_until(lambda: c.getattr(nodeid)[0] != 0, what=f"node {nodeid} forgotten")


def test_forgotten_node_comes_back_under_its_id_unless_deleted(fsb_workdir, daemon_factory):
    """LOOKUP "." of a node the guest forgot (its kernel turning a file
    handle back into an inode) revives it under the same id; a file deleted
    on the host meanwhile is ESTALE, even while the host holds it open (the
    host filesystem can still open it by handle then)."""
    host = fsb_workdir / "export"
    host.mkdir()
    (host / "kept").write_bytes(b"kept")
    (host / "held").write_bytes(b"held")
    d = daemon_factory([f"{EXPORT}={host}"])
    with FuseClient(d.socket, export=EXPORT) as c:
        ids = {}
        for name in ("kept", "held"):
            err, entry = c.lookup(1, name)
            assert err == 0
            ids[name] = entry["nodeid"]
            forget_and_wait(c, entry["nodeid"])
        err, entry = c.lookup(ids["kept"], ".")
        assert err == 0 and entry["nodeid"] == ids["kept"]
        assert c.getattr(ids["kept"])[1]["size"] == len(b"kept")
        fd = os.open(host / "held", os.O_RDONLY)
        try:
            os.unlink(host / "held")
            err, _ = c.lookup(ids["held"], ".")
            assert err == errno.ESTALE, f"a deleted file came back: {err}"
        finally:
            os.close(fd)
        for bad in (0, 1 << 40):
            assert c.lookup(bad, ".")[0] in (errno.ESTALE, errno.ENOENT, errno.EINVAL)
        assert c.alive()
