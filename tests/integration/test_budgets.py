"""
test_budgets.py - what one guest may hold of a daemon that many guests
share (issue 9, per-guest budgets; docs/architecture.md "Limits").

A guest is a vsock CID, a Unix socket listener's peer uid, or a listener.
Its budgets (open files, inodes, queued bytes, threads, sessions) hold over
all its sessions together, and another guest notices nothing of a guest at
its budget.  Real daemons, raw clients (fuse_client.py).
"""

import errno
import os
import resource
import select
import shutil
import tempfile
import time

import pytest

import helpers
from fuse_client import (FUSE_READ, FUSE_ROOT_ID, FUSE_WRITE, READ_IN, WRITE_IN,
                         ConnectionClosed, FuseClient, HelloRefused)

EXPORT = "shared"
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def two_listeners(fsb_workdir, daemon_factory, export, extra_args=(), **kw):
    """A daemon with listeners a and b (two guests, as two VMs' sockets)."""
    a, b = fsb_workdir / "vm-a.sock", fsb_workdir / "vm-b.sock"
    d = daemon_factory([f"{EXPORT}={export}"], list(extra_args),
                       listen=[f"unix:{a}", f"unix:{b}"], **kw)
    helpers.poll_until(lambda: helpers.listening(a, b), what="both listeners")
    return d, a, b


def make_files(directory, n, size=16):
    for i in range(n):
        (directory / f"f{i}").write_bytes(b"x" * size)


def open_until_refused(clients, nfiles):
    """Opens f0, f1, ... round the clients (one file each in turn) until
    every one is refused; returns (handles opened in all, the errnos of the
    refusals)."""
    opened, errors, live = 0, set(), list(clients)
    for i in range(nfiles):
        for c in list(live):
            err, e = c.lookup(FUSE_ROOT_ID, f"f{i}")
            if not err:
                err, _fh = c.open(e["nodeid"])
            if err:
                errors.add(err)
                live.remove(c)
            else:
                opened += 1
        if not live:
            break
    return opened, errors


def serves_everything(c, name):
    """The guest behind C can still open, create and look up."""
    err, e = c.lookup(FUSE_ROOT_ID, "f0")
    assert err == 0, f"LOOKUP: {os.strerror(err)}"
    err, fh = c.open(e["nodeid"])
    assert err == 0, f"OPEN: {os.strerror(err)}"
    err, entry, fh2 = c.create(FUSE_ROOT_ID, name)
    assert err == 0, f"CREATE: {os.strerror(err)}"
    err, _ = c.lookup(FUSE_ROOT_ID, name)
    assert err == 0, f"LOOKUP of the new file: {os.strerror(err)}"


def test_open_budget_holds_over_all_sessions_of_a_guest(fsb_workdir, daemon_factory):
    """Guest A spreads its opens over four sessions: together they get its
    budget (40) and no more, refused with EMFILE; guest B (another
    listener) still opens, creates and looks up."""
    export = fsb_workdir / "export"
    export.mkdir()
    make_files(export, 60)
    d, a, b = two_listeners(fsb_workdir, daemon_factory, export, ["--guest-max-open", "40"])
    greedy = [FuseClient(a, export=EXPORT) for _ in range(4)]
    opened, errors = open_until_refused(greedy, 60)
    assert opened == 40, f"guest A opened {opened} files with a budget of 40"
    assert errors == {errno.EMFILE}, errors
    with FuseClient(b, export=EXPORT) as other:
        serves_everything(other, "made-by-b")
    # A is still refused, and gets its budget back when a session ends.
    err, e = greedy[0].lookup(FUSE_ROOT_ID, "f59")
    assert err == 0 and greedy[0].open(e["nodeid"])[0] == errno.EMFILE
    greedy[1].close()
    helpers.poll_until(lambda: greedy[0].open(e["nodeid"])[0] == 0, timeout=10,
                       what="guest A to open again after one of its sessions ended")
    for c in greedy:
        c.close()
    assert "open-file budget (40) reached: EMFILE" in d.stderr_text()


def test_inode_budget_holds_over_all_sessions_of_a_guest(fsb_workdir, daemon_factory):
    """Looked-up inodes are counted per guest too (ENFILE beyond)."""
    export = fsb_workdir / "export"
    export.mkdir()
    make_files(export, 40)
    d, a, b = two_listeners(fsb_workdir, daemon_factory, export, ["--guest-max-inodes", "30"])
    greedy = [FuseClient(a, export=EXPORT) for _ in range(2)]
    found, errors = 0, set()
    for c in greedy:
        for i in range(20):
            err, _ = c.lookup(FUSE_ROOT_ID, f"f{i}")
            found += err == 0
            if err:
                errors.add(err)
    assert found == 30 and errors == {errno.ENFILE}, (found, errors)
    with FuseClient(b, export=EXPORT) as other:
        serves_everything(other, "made-by-b")
    for c in greedy:
        c.close()


SOCKET_USER_CODE = r"""
import sys
sys.path.insert(0, sys.argv[1])
from fuse_client import FuseClient, FUSE_ROOT_ID
import os
c = FuseClient(sys.argv[2], export=sys.argv[3])
err, e = c.lookup(FUSE_ROOT_ID, "f0")
print("lookup", err)
print("open", c.open(e["nodeid"])[0] if not err else -1)
print("create", c.create(FUSE_ROOT_ID, "made-by-nobody")[0])
"""


def test_peer_uid_is_a_guest_of_its_own(daemon_factory):
    """On one shared Unix socket, root's sessions at their open budget do
    not stop another uid (here nobody, through SO_PEERCRED) from opening
    and creating."""
    tmp = tempfile.mkdtemp(prefix="fsb-budget-")
    try:
        os.chmod(tmp, 0o755)
        export = os.path.join(tmp, "export")
        os.mkdir(export)
        os.chmod(export, 0o777)
        for i in range(30):
            with open(os.path.join(export, f"f{i}"), "wb") as f:
                f.write(b"x")
        sock = os.path.join(tmp, "shared.sock")
        d = daemon_factory([f"{EXPORT}={export}"], ["--guest-max-open", "20"],
                           listen=[f"unix:{sock}"])
        helpers.poll_until(lambda: helpers.listening(sock), what="the listener")
        os.chmod(sock, 0o666)   # shared by local users on purpose
        greedy = [FuseClient(sock, export=EXPORT) for _ in range(2)]
        opened, errors = open_until_refused(greedy, 30)
        assert opened == 20 and errors == {errno.EMFILE}, (opened, errors)
        r = helpers.run_python(SOCKET_USER_CODE, TESTS_DIR, sock, EXPORT,
                               uid=helpers.NOBODY_UID, gid=helpers.NOBODY_GID)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["lookup", "0", "open", "0", "create", "0"], r.stdout
        for c in greedy:
            c.close()
        assert "guest uid 0 on listener 0: open-file budget (20)" in d.stderr_text()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# A guest that never reads its replies


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def settled_rss(pid, timeout=15.0):
    """VmRSS once it has stopped changing by more than 1 MiB for 1 s."""
    deadline = time.monotonic() + timeout
    last = vm_rss_kib(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = vm_rss_kib(pid)
        if abs(now - last) < 1024:
            return now
        last = now
    return last


MIB = 1 << 20


def flood(c, fh, reads=16, writes=48, size=MIB - 4096):
    """Sends READs (whose 1 MiB replies are never read) and then WRITEs of
    ~1 MiB, as far as the daemon takes them within a few seconds, without
    reading anything.  Returns the bytes the daemon took."""
    frames = []
    for _ in range(reads):
        u = c.next_unique()
        frames.append(c.header(FUSE_READ, FUSE_ROOT_ID, READ_IN.size, u)
                      + READ_IN.pack(fh, 0, size, 0, 0, 0, 0))
    data = b"w" * size
    for i in range(writes):
        u = c.next_unique()
        body = WRITE_IN.pack(fh, i * size, size, 0, 0, 0, 0) + data
        frames.append(c.header(FUSE_WRITE, FUSE_ROOT_ID, len(body), u) + body)
    buf = memoryview(b"".join(frames))
    c.sock.setblocking(False)
    sent, idle_since = 0, time.monotonic()
    while sent < len(buf) and time.monotonic() - idle_since < 1.5:
        select.select([], [c.sock], [], 0.2)
        try:
            n = c.sock.send(buf[sent:sent + 4 * MIB])
        except (BlockingIOError, InterruptedError):
            continue
        sent += n
        idle_since = time.monotonic()
    return sent


@pytest.mark.deadline(120)
def test_guest_that_never_reads_replies_is_not_read_from(fsb_workdir, daemon_factory):
    """Guest A reads none of its replies and keeps sending 1 MiB requests on
    eight sessions.  Once it is over its queued-bytes budget the daemon
    stops reading it: its RSS stops growing (each session would otherwise
    hold ~65 MiB), and guest B is served as if A were not there."""
    export = fsb_workdir / "export"
    export.mkdir()
    (export / "big").write_bytes(b"r" * (2 * MIB))
    make_files(export, 2)
    # ASan keeps freed memory in quarantine, which is RSS: keep it small,
    # so that the daemon's RSS is its live memory.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = dict(os.environ, ASAN_OPTIONS=(asan + ":" if asan else "") + "quarantine_size_mb=8")
    d, a, b = two_listeners(fsb_workdir, daemon_factory, export,
                            ["--guest-max-queued", "4M", "--guest-max-threads", "8",
                             "--threads", "4"], env=env)
    clients, handles = [], []
    for i in range(8):
        c = FuseClient(a, export=EXPORT)
        err, entry, fh = c.create(FUSE_ROOT_ID, f"out{i}")
        assert err == 0, os.strerror(err)
        err, e = c.lookup(FUSE_ROOT_ID, "big")
        assert err == 0
        err, rfh = c.open(e["nodeid"])
        assert err == 0
        clients.append(c)
        handles.append((rfh, fh))
    base = settled_rss(d.pid)
    taken = []
    for c, (rfh, _wfh) in zip(clients[:2], handles[:2]):
        taken.append(flood(c, rfh))
    first = settled_rss(d.pid)
    for c, (rfh, _wfh) in zip(clients[2:], handles[2:]):
        taken.append(flood(c, rfh))
    last = settled_rss(d.pid)
    growth_first, growth_rest = (first - base) // 1024, (last - first) // 1024
    print(f"RSS {base // 1024} MiB, +{growth_first} MiB after 2 sessions, "
          f"+{growth_rest} MiB after 6 more; bytes taken per session "
          f"{[t // MIB for t in taken]} MiB")
    assert growth_rest < 24, (f"RSS grew {growth_rest} MiB more while six more sessions "
                              "of a guest over its budget flooded it")
    assert last - base < 96 * 1024, f"RSS grew {(last - base) // 1024} MiB in all"
    # (logged by a reader of A's as it stops, in no order with what we saw)
    helpers.poll_until(lambda: "queued-byte budget" in d.stderr_text(), timeout=10,
                       what="the queued-byte budget's line in the log")
    # Guest B notices nothing: every request is answered (were B held up
    # behind A, which never reads, it would wait forever: the timeout).
    with FuseClient(b, export=EXPORT, timeout=10) as other:
        serves_everything(other, "made-by-b")
        err, e = other.lookup(FUSE_ROOT_ID, "big")
        err, fh = other.open(e["nodeid"])
        err, data = other.read(fh, 0, 65536)
        assert err == 0 and data == b"r" * 65536
    for c in clients:
        c.close()
    # Gone, guest A's budget comes back: it is served again.
    def a_served():
        try:
            with FuseClient(a, export=EXPORT, timeout=5) as c:
                return c.alive()
        except (OSError, ConnectionClosed):
            return False
    helpers.poll_until(a_served, timeout=20, what="guest A to be served after it closed")
    assert d.alive()


# --------------------------------------------------------------------------
# The daemon's fd reserve


def test_fd_reserve_holds_when_guests_take_every_fd_they_may(fsb_workdir, daemon_factory):
    """Under RLIMIT_NOFILE 256, a guest allowed any number of open files
    takes every fd of the guests' pool (ENFILE beyond); the daemon's
    reserve is untouched: new connections are still accepted and served,
    and a flood of connections is shed with an answer (closed at once),
    never left hanging."""
    export = fsb_workdir / "export"
    export.mkdir()
    make_files(export, 400)
    d, a, b = two_listeners(fsb_workdir, daemon_factory, export,
                            ["--guest-max-open", "100000", "--guest-max-sessions", "1000"],
                            rlimits={resource.RLIMIT_NOFILE: (256, 256)})
    # Three sessions: one session alone may hold 3/8 of the usable fds.
    greedy = [FuseClient(a, export=EXPORT) for _ in range(3)]
    opened, errors = open_until_refused(greedy, 400)
    assert errors == {errno.ENFILE}, errors
    assert 50 < opened < 256, opened
    # Accept still works and a new session is served (nothing it does needs
    # a new fd from the pool: GETATTR, LOOKUP).
    for _ in range(3):
        with FuseClient(b, export=EXPORT, timeout=5) as c:
            assert c.alive()
            assert c.lookup(FUSE_ROOT_ID, "f1")[0] == 0
    # A flood of sessions runs the daemon out of fds for real: every
    # connection is served, refused with an answer (EMFILE in the HELLO
    # reply) or closed at once; none hangs (the clients' timeout is 5 s).
    flooders, shed = [], 0
    for _ in range(120):
        try:
            c = FuseClient(a, export=EXPORT, timeout=5)
            flooders.append(c)
        except HelloRefused as e:
            assert e.status in (errno.EMFILE, errno.ENFILE), e
            shed += 1
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            shed += 1
    assert shed > 0, "120 sessions under RLIMIT_NOFILE 256 were all served?"
    assert d.alive()
    for c in flooders + greedy:
        c.close()
    # The daemon ends the closed sessions asynchronously (their fds return
    # to the pool only then): wait for it before asking for a new fd.
    with FuseClient(b, export=EXPORT, timeout=5) as c:
        def opens_again():
            err, e = c.lookup(FUSE_ROOT_ID, "f0")
            return err == 0 and c.open(e["nodeid"])[0] == 0
        helpers.poll_until(opens_again, timeout=10,
                           what="the closed sessions' fds to return to the pool")
        serves_everything(c, "after-the-flood")
    print(f"pool: {opened} open files; flood: {len(flooders)} served, {shed} shed")
