"""
test_lazy_open.py - the read-only OPENs the relay answers itself
(src/mount/lazy_open.h) and the lazy handles the daemon opens at their
first use (src/engine/lazy_handles.h).

With open=auto (the default) a plain read-only open costs no round trip:
the daemon's debug log, which names every request it serves, shows no
OPEN; the file is opened on the host when a request first needs it (READ,
a lock, LSEEK, ...), so locks still conflict with the host's and other
guests', and an error of the host's open comes at that request instead.
open=host, and a mount without default_permissions, send every OPEN.

The protocol tests speak to the daemon directly (fuse_client.py), as a
hostile guest could: lazy handles it never announced, on old sessions,
for writes, beyond the budget, released while in use.
"""

import errno
import fcntl
import mmap
import os
import select
import subprocess
import sys

import pytest

import helpers
from fuse_client import (FUSE_READ, FUSE_RELEASE, LAZY_FH, READ_IN, RELEASE_IN,
                         TERMS_LAZY_OPEN, FuseClient)

EXPORT = "test"
OPEN = "FUSE_OPEN"
READ = "FUSE_READ"
RELEASE = "FUSE_RELEASE"
FLUSH = "FUSE_FLUSH"
SETATTR = "FUSE_SETATTR"
FILES = 20


def content(i):
    return b"file %d\n" % i * (i + 1)


@pytest.fixture(params=["auto", "coherent"])
def cache(request):
    return request.param


@pytest.fixture
def daemon(export_dir, daemon_factory, cache):
    for i in range(FILES):
        (export_dir / f"f{i}").write_bytes(content(i))
    return daemon_factory([f"{EXPORT}={export_dir},cache={cache}"], log_level="debug")


def read_all(m):
    for i in range(FILES):
        with open(m.path / f"f{i}", "rb") as f:
            assert f.read() == content(i), f"f{i}"


@pytest.mark.parametrize("mode", ["auto", "host"])
def test_reading_files_opens_them_on_the_host_only_with_open_host(daemon, mount_factory, mode):
    m = mount_factory(daemon, options=[f"export={EXPORT}", f"open={mode}"])
    read_all(m)
    helpers.poll_until(lambda: helpers.served(daemon, READ) >= FILES, what="the READs")
    assert helpers.served(daemon, OPEN) == (0 if mode == "auto" else FILES)
    read_all(m)  # warm: from the guest's page cache
    assert helpers.served(daemon, OPEN) == (0 if mode == "auto" else 2 * FILES)


def test_a_warm_open_and_close_costs_the_host_nothing(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    for _ in range(10):
        os.close(os.open(m.path / "f1", os.O_RDONLY))
    m.umount(expect_rc=0)  # every RELEASE the kernel had is out now
    for opcode in (OPEN, READ, FLUSH, RELEASE):
        assert helpers.served(daemon, opcode) == 0, f"{opcode} reached the host"


def test_contents_follow_host_changes(daemon, mount_factory, export_dir, cache):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    assert (m.path / "f2").read_bytes() == content(2)
    (export_dir / "f2").write_bytes(b"new bytes")
    # coherent: pushed at once; auto: the attributes time out within 1 s
    helpers.poll_until(lambda: (m.path / "f2").read_bytes() == b"new bytes", timeout=5,
                       what="the host's new contents in the guest")
    assert helpers.served(daemon, OPEN) == 0


def test_no_default_permissions_sends_every_open(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "no_default_permissions"])
    read_all(m)
    assert helpers.served(daemon, OPEN) == FILES


def test_the_open_mode_is_in_the_relays_log(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "open=host"], extra_args=["-d"])
    helpers.poll_until(lambda: "every open goes to the host (open=host)" in m.stderr_text(),
                       what="the open mode in the relay's log")


# ---- what a read-only fd does: the host file is opened when needed ------

HOLD_LOCK = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
if sys.argv[2] == "flock":
    fcntl.flock(fd, fcntl.LOCK_EX)
else:
    fcntl.lockf(fd, fcntl.LOCK_EX, 0, 0)
print("locked", flush=True)
sys.stdin.read()
"""


def hold_lock(path, kind):
    p = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), kind],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def try_shared_lock(fd, kind):
    try:
        if kind == "flock":
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        else:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 0, 0)
        return 0
    except OSError as e:
        return e.errno


@pytest.mark.parametrize("where", ["host", "other mount"])
@pytest.mark.parametrize("kind", ["fcntl", "flock"])
def test_locks_through_a_read_only_fd_conflict(daemon, mount_factory, export_dir, kind, where):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    other = export_dir / "f3" if where == "host" else \
        mount_factory(daemon, options=[f"export={EXPORT}"]).path / "f3"
    (m.path / "f3").stat()  # the node's own fd is the host's from here on
    other.stat()
    base = helpers.settled_fd_count(daemon.proc.pid)
    holder = hold_lock(other, kind)
    try:
        fd = os.open(m.path / "f3", os.O_RDONLY)
        try:
            assert try_shared_lock(fd, kind) in (errno.EAGAIN, errno.EWOULDBLOCK)
        finally:
            os.close(fd)
    finally:
        holder.stdin.close()
        holder.wait(timeout=20)
    fd = os.open(m.path / "f3", os.O_RDONLY)
    try:
        assert try_shared_lock(fd, kind) == 0, "no lock once the holder is gone"
    finally:
        os.close(fd)
    if where == "host":
        assert helpers.served(daemon, OPEN) == 0
    host_fds_back_to(daemon, base)


def host_fds_back_to(d, base):
    """Every host fd a lazy handle got is closed once the guest closed it:
    a request that opens one but is missing from the relay's list of those
    that carry a handle (lazy_open.c carried_offset) leaks one here.  The
    RELEASEs are asynchronous: wait for them."""
    helpers.poll_until(lambda: helpers.fd_count(d.proc.pid) == base, timeout=10,
                       what=f"the daemon's fds back to {base}")


HOST_LOCK = r"""
import fcntl, sys
fd = open(sys.argv[1], "r+b")
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0)
except OSError:
    sys.exit(1)
"""


def host_can_lock(path):
    return subprocess.run([sys.executable, "-c", HOST_LOCK, str(path)], timeout=20).returncode == 0


@pytest.mark.parametrize("flush", ["auto", "host"])
def test_closing_an_unread_fd_drops_the_process_locks_and_opens_nothing(
        daemon, mount_factory, export_dir, flush):
    """POSIX: any close by a process drops its record locks on the file.
    The FLUSH of a read-only fd nothing was read through drops them by the
    node on the host (engine fuse_ops.c op_flush) and opens nothing: a
    dup()ed fd is closed, so no RELEASE comes and the host fd count shows
    what the FLUSH opened while the fd stays open."""
    m = mount_factory(daemon, options=[f"export={EXPORT}", f"flush={flush}"])
    path = m.path / "f10"
    rw = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(rw, fcntl.LOCK_EX, 0, 0)
        assert not host_can_lock(export_dir / "f10")
        base = helpers.settled_fd_count(daemon.proc.pid)
        ro = os.open(path, os.O_RDONLY)
        try:
            os.close(os.dup(ro))  # a FLUSH, not a RELEASE
            assert host_can_lock(export_dir / "f10"), "the close kept the process's lock"
            assert helpers.settled_fd_count(daemon.proc.pid) == base, "the FLUSH opened a file"
        finally:
            os.close(ro)
    finally:
        os.close(rw)
    assert helpers.served(daemon, OPEN) == 1  # the writable one


def test_a_close_with_flush_host_of_an_unread_fd_sends_no_release(daemon, mount_factory):
    """flush=host sends every FLUSH; that of a lazy handle nothing was read
    through opens nothing on the host (op_flush), so the relay does not
    note the handle for it (lazy_open.c carried_offset) and answers its
    RELEASE itself."""
    m = mount_factory(daemon, options=[f"export={EXPORT}", "flush=host", "open=auto"])
    path = m.path / "f13"
    path.stat()  # the node's own fd is the host's from here on
    base = helpers.settled_fd_count(daemon.proc.pid)
    os.close(os.open(path, os.O_RDONLY))
    helpers.poll_until(lambda: helpers.served(daemon, FLUSH) >= 1, what="the FLUSH")
    assert helpers.served(daemon, FLUSH) == 1
    assert helpers.settled_fd_count(daemon.proc.pid) == base, "the close left a host fd"
    m.umount(expect_rc=0)  # every RELEASE the kernel had is out now
    assert helpers.served(daemon, RELEASE) == 0, "the RELEASE reached the host"
    assert helpers.served(daemon, OPEN) == 0


def ftruncate_errno(path):
    """The errno of an ftruncate() of PATH opened read-only (0: none)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.ftruncate(fd, 0)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def test_ftruncate_of_a_read_only_fd_fails_as_natively_and_opens_nothing(
        daemon, mount_factory, export_dir, fsb_workdir):
    """Linux refuses it (EINVAL) before the filesystem is asked, as on a
    local disk; the host opens nothing (a SETATTR with a lazy handle would
    be EBADF there, op_setattr) and the file keeps its bytes."""
    native = fsb_workdir / "native"
    native.mkdir()
    (native / "f").write_bytes(content(14))
    want = ftruncate_errno(native / "f")
    assert want != 0, "a read-only fd truncated a native file"
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    path = m.path / "f14"
    path.stat()  # the node's own fd is the host's from here on
    base = helpers.settled_fd_count(daemon.proc.pid)
    got = ftruncate_errno(path)
    assert got == want, f"{errno.errorcode.get(got, got)}, natively {errno.errorcode[want]}"
    assert helpers.settled_fd_count(daemon.proc.pid) == base, "the host opened a file"
    assert helpers.served(daemon, OPEN) == 0 and helpers.served(daemon, SETATTR) == 0
    assert (export_dir / "f14").read_bytes() == content(14)


def test_fstat_lseek_mmap_and_poll_work(daemon, mount_factory, export_dir):
    sparse = export_dir / "sparse"
    with open(sparse, "wb") as f:
        f.seek(1 << 20)
        f.write(b"data after a hole")
    hfd = os.open(sparse, os.O_RDONLY)
    want_data, want_hole = os.lseek(hfd, 0, os.SEEK_DATA), os.lseek(hfd, 0, os.SEEK_HOLE)
    os.close(hfd)
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    (m.path / "sparse").stat()
    base = helpers.settled_fd_count(daemon.proc.pid)

    def poll_in(fd):
        p = select.poll()
        p.register(fd, select.POLLIN)
        return p.poll(1000) == [(fd, select.POLLIN)]

    def mapped(fd):
        with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as mm:
            return mm[1 << 20:] == b"data after a hole" and mm[:4] == bytes(4)

    # one fd each: an opcode the host opens for, missing from the relay's
    # list, leaks that fd's host file (host_fds_back_to)
    uses = [lambda fd: os.fstat(fd).st_size == (1 << 20) + 17,
            lambda fd: os.lseek(fd, 0, os.SEEK_DATA) == want_data,
            lambda fd: os.lseek(fd, 0, os.SEEK_HOLE) == want_hole,
            mapped, poll_in]
    for i, use in enumerate(uses):
        fd = os.open(m.path / "sparse", os.O_RDONLY)
        try:
            assert use(fd), f"use {i}"
        finally:
            os.close(fd)
    assert helpers.served(daemon, OPEN) == 0
    host_fds_back_to(daemon, base)


@pytest.mark.parametrize("mode", ["auto", "host"])
def test_a_file_removed_on_the_host_after_lookup(daemon, mount_factory, export_dir, cache,
                                                 mode):
    """The passthrough backend opens a known inode through its own fd of
    it, not by name: a file the guest looked up is still opened and read
    after the host removed its name (as a local file open elsewhere would
    be), lazily or not, while that fd is in the backend's fd cache (a few
    files: it is).  Evicted, its reopen by file handle would fail with
    ESTALE: at open(2) with open=host, at the first read with open=auto
    (docs/architecture.md).  With cache=coherent the removal is pushed,
    and the guest's own lookup fails first."""
    m = mount_factory(daemon, options=[f"export={EXPORT}", f"open={mode}"])
    path = m.path / "f4"
    path.stat()
    (export_dir / "f4").unlink()
    if cache == "coherent":
        helpers.poll_until(lambda: not path.exists(), what="the removal in the guest")
        return
    try:
        with open(path, "rb") as f:
            got = f.read()
    except FileNotFoundError:
        pytest.skip("the guest's entry timed out before the open")
    assert got == content(4)


# ---- protocol level ------------------------------------------------------

def client(daemon, **kw):
    return FuseClient(daemon.socket, export=EXPORT, **kw)


def lazy(n):
    return LAZY_FH | n


def test_terms_announce_lazy_open_to_version_4_only(daemon):
    with client(daemon) as c:
        assert c.hello_reply["terms"][0] & TERMS_LAZY_OPEN
    with client(daemon, version=3) as c:
        assert c.hello_reply["terms"] is None


def test_read_with_a_lazy_handle_opens_the_file_once(daemon):
    pid = daemon.proc.pid
    with client(daemon) as c:
        err, e = c.lookup(1, b"f5")
        assert err == 0
        base = helpers.settled_fd_count(pid)
        assert c.read(lazy(7), 0, 4096, nodeid=e["nodeid"]) == (0, content(5))
        opened = helpers.settled_fd_count(pid)
        assert opened == base + 1
        assert c.read(lazy(7), 3, 4096, nodeid=e["nodeid"]) == (0, content(5)[3:])
        assert helpers.settled_fd_count(pid) == opened
        assert c.release(e["nodeid"], lazy(7)) == 0
        assert helpers.settled_fd_count(pid) == base


def test_a_version_3_session_knows_no_lazy_handle(daemon):
    with client(daemon, version=3) as c:
        err, e = c.lookup(1, b"f5")
        assert err == 0
        assert c.read(lazy(7), 0, 4096, nodeid=e["nodeid"])[0] == errno.EBADF
        assert c.release(e["nodeid"], lazy(7)) == errno.EBADF


def test_writes_through_a_lazy_handle_are_refused(daemon, export_dir):
    with client(daemon) as c:
        err, e = c.lookup(1, b"f6")
        assert err == 0
        assert c.write(lazy(1), 0, b"x", nodeid=e["nodeid"])[0] == errno.EBADF  # unopened
        assert c.read(lazy(1), 0, 10, nodeid=e["nodeid"])[0] == 0
        assert c.write(lazy(1), 0, b"x", nodeid=e["nodeid"])[0] == errno.EBADF  # opened
        assert c.setattr(e["nodeid"], 1 << 3 | 1 << 6, fh=lazy(1), size=0)[0] == errno.EBADF
        assert c.release(e["nodeid"], lazy(1)) == 0
    assert (export_dir / "f6").read_bytes() == content(6)


def test_getattr_with_an_unopened_lazy_handle_opens_nothing(daemon):
    pid = daemon.proc.pid
    with client(daemon) as c:
        err, e = c.lookup(1, b"f7")
        base = helpers.settled_fd_count(pid)
        err, attr = c.getattr(e["nodeid"], fh=lazy(3))
        assert err == 0
        assert helpers.settled_fd_count(pid) == base
        assert c.release(e["nodeid"], lazy(3)) == 0


def test_flush_of_an_unopened_lazy_handle_drops_locks_and_opens_nothing(daemon,
                                                                      export_dir):
    pid = daemon.proc.pid
    with client(daemon) as c:
        err, e = c.lookup(1, b"f11")
        err, fh = c.open(e["nodeid"], flags=os.O_RDWR)
        assert err == 0
        assert c.setlk(e["nodeid"], fh, owner=5, typ=fcntl.F_WRLCK, start=0, end=0) == 0
        assert not host_can_lock(export_dir / "f11")
        base = helpers.settled_fd_count(pid)
        assert c.flush(e["nodeid"], lazy(12), lock_owner=5) == 0
        assert host_can_lock(export_dir / "f11"), "the owner kept its lock"
        assert helpers.settled_fd_count(pid) == base
        assert c.release(e["nodeid"], lazy(12)) == 0
        assert c.release(e["nodeid"], fh) == 0


def test_flush_of_an_unopened_lazy_handle_drops_locks_on_an_overlay(overlay_factory):
    """The lock was taken through the upper layer's handle (a writable
    open copies the file up); the FLUSH names only the node."""
    d, _, upper = overlay_factory(EXPORT, {"f": b"lower"})
    with client(d) as c:
        err, e = c.lookup(1, b"f")
        err, fh = c.open(e["nodeid"], flags=os.O_RDWR)
        assert err == 0
        assert c.setlk(e["nodeid"], fh, owner=5, typ=fcntl.F_WRLCK, start=0, end=0) == 0
        assert not host_can_lock(upper / "f")
        assert c.flush(e["nodeid"], lazy(12), lock_owner=5) == 0
        assert host_can_lock(upper / "f"), "the owner kept its lock"
        assert c.release(e["nodeid"], lazy(12)) == 0
        assert c.release(e["nodeid"], fh) == 0
    d.stop(expect_rc=0)


def test_no_fh_is_no_lazy_handle(daemon):
    """UINT64_MAX is the engine's "no handle" and has bit 63 set: a READ
    with it opens nothing, and a GETATTR without a handle answers for its
    own node, not for a file that READ mapped."""
    no_fh = (1 << 64) - 1
    pid = daemon.proc.pid
    with client(daemon) as c:
        f5 = c.lookup(1, b"f5")[1]["nodeid"]
        f12 = c.lookup(1, b"f12")[1]["nodeid"]
        base = helpers.settled_fd_count(pid)
        assert c.read(no_fh, 0, 4096, nodeid=f5)[0] == errno.EBADF
        assert helpers.settled_fd_count(pid) == base
        err, attr = c.getattr(f12)
        assert err == 0 and attr["size"] == len(content(12))


def test_lazy_handles_beyond_the_budget_get_emfile_and_leak_nothing(export_dir,
                                                                    daemon_factory):
    for i in range(30):
        (export_dir / f"g{i}").write_bytes(b"%d" % i)
    d = daemon_factory([f"{EXPORT}={export_dir}"], ["--guest-max-open", "20"])
    pid = d.proc.pid
    with client(d) as c:
        nodes = [c.lookup(1, b"g%d" % i)[1]["nodeid"] for i in range(30)]
        base = helpers.settled_fd_count(pid)
        errors = [c.read(lazy(100 + i), 0, 16, nodeid=n)[0] for i, n in enumerate(nodes)]
        assert errors.count(0) == 20 and set(errors[20:]) == {errno.EMFILE}, errors
        assert c.open(nodes[0])[0] == errno.EMFILE, "a plain OPEN got past the budget"
        for i, n in enumerate(nodes):
            assert c.release(n, lazy(100 + i)) == 0
        assert helpers.settled_fd_count(pid) == base
        err, fh = c.open(nodes[0])
        assert err == 0 and c.release(nodes[0], fh) == 0
    d.stop(expect_rc=0)


def test_a_release_racing_reads_on_one_lazy_handle(daemon):
    """READs and RELEASEs of one lazy handle, pipelined (served by several
    workers at once): every READ is answered with the file (a READ after
    the RELEASE opens it again), and once the last RELEASE is served no
    host fd is left."""
    pid = daemon.proc.pid
    with client(daemon) as c:
        err, e = c.lookup(1, b"f8")
        base = helpers.settled_fd_count(pid)
        reads, releases = [], []
        for round_ in range(20):
            for _ in range(10):
                reads.append(c.send(FUSE_READ, e["nodeid"],
                                    READ_IN.pack(lazy(9), 0, 4096, 0, 0, 0, 0)))
            releases.append(c.send(FUSE_RELEASE, e["nodeid"],
                                   RELEASE_IN.pack(lazy(9), 0, 0, 0)))
        assert all(c.recv(u) == (0, content(8)) for u in reads)
        assert all(c.recv(u)[0] == 0 for u in releases)
        assert c.release(e["nodeid"], lazy(9)) == 0
        assert helpers.settled_fd_count(pid) == base
    assert daemon.alive()


def test_two_racing_first_reads_open_once(daemon):
    pid = daemon.proc.pid
    c = client(daemon)
    try:
        err, e = c.lookup(1, b"f9")
        base = helpers.settled_fd_count(pid)
        us = [c.send(FUSE_READ, e["nodeid"], READ_IN.pack(lazy(11), 0, 4096, 0, 0, 0, 0))
              for _ in range(50)]
        assert all(c.recv(u) == (0, content(9)) for u in us)
        assert helpers.settled_fd_count(pid) == base + 1, "a racing open was kept"
        assert c.release(e["nodeid"], lazy(11)) == 0
        assert helpers.settled_fd_count(pid) == base
    finally:
        c.close()


def test_a_lazy_handle_serves_only_the_node_it_was_opened_for(daemon):
    """The first use binds a lazy handle to its node: a READ of node B
    through a handle opened for node A would read A's file (past B's own
    open checks), so it is EBADF, and A's reads go on."""
    with client(daemon) as c:
        a = c.lookup(1, b"f5")[1]["nodeid"]
        b = c.lookup(1, b"f6")[1]["nodeid"]
        assert c.read(lazy(21), 0, 4096, nodeid=a) == (0, content(5))
        assert c.read(lazy(21), 0, 4096, nodeid=b)[0] == errno.EBADF
        assert c.read(lazy(21), 0, 4096, nodeid=a) == (0, content(5))
        assert c.release(a, lazy(21)) == 0
        # released: the handle number is free again, for any node
        assert c.read(lazy(21), 0, 4096, nodeid=b) == (0, content(6))
        assert c.release(b, lazy(21)) == 0
