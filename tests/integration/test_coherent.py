"""cache=coherent: host changes reach the guest at once.

A coherent export caches names and attributes for a day and keeps file data
across opens (FOPEN_KEEP_CACHE), so every change below is only seen in time
because fsbridged pushes an invalidation (FUSE_NOTIFY_INVAL_INODE /
INVAL_ENTRY) to the guest.  Each test primes the guest's cache first (stat,
read, listdir, a failed lookup), then changes the export on the host (or
through another guest) and polls the guest for up to CHANGE_TIMEOUT: the
100 ms target is measured in bench/, not here.
"""

import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import helpers
from helpers import NOBODY_UID, poll_until, run_python

CHANGE_TIMEOUT = 5.0


@pytest.fixture(params=["fanotify", "inotify"])
def coherent(request, fsb_workdir, daemon_factory, mount_factory):
    """(host dir, guest mount, daemon) of a cache=coherent export, tracked by
    fanotify or by the inotify fallback (FSBRIDGE_CHANGE_WATCH=inotify).
    A test marked small_notify_queue gets a queue of 64 notifications."""
    host = fsb_workdir / "export"
    host.mkdir()
    env = dict(os.environ)
    if request.node.get_closest_marker("small_notify_queue"):
        env["FSBRIDGE_TEST_NOTIFY_QUEUE_MAX"] = "64"
    if request.param == "inotify":
        env["FSBRIDGE_CHANGE_WATCH"] = "inotify"
    daemon = daemon_factory([f"test={host},cache=coherent"], env=env)
    m = mount_factory(daemon, options=["export=test", "allow_other"])
    poll_until(lambda: f"tracked with {request.param}" in daemon.stderr_text(), timeout=5,
               what="the change watcher's mode in the log")
    return host, m.path, daemon


def seen(check, what):
    """Polls CHECK; an OSError (a name gone, not there yet: notifications
    arrive one by one) counts as not seen yet."""
    def quiet():
        try:
            return check()
        except OSError:
            return False
    poll_until(quiet, timeout=CHANGE_TIMEOUT, interval=0.005, what=what)


def sent_counts(daemon):
    """{session id: notifications sent}, from the lines logged at its end."""
    return {int(s): int(n) for s, n in
            re.findall(r"session (\d+): (\d+) notifications sent", daemon.stderr_text())}


# ---- every kind of host change -------------------------------------------

def write_in_place(host, mnt):
    (host / "f").write_bytes(b"old data")
    with open(mnt / "f", "rb") as f:
        assert f.read() == b"old data"        # in the guest's page cache now
        with open(host / "f", "r+b") as h:
            h.write(b"NEW")                   # same size, maybe the same mtime
        seen(lambda: os.pread(f.fileno(), 8, 0) == b"NEW data", "new bytes read")


def append(host, mnt):
    (host / "f").write_bytes(b"12345")
    assert (mnt / "f").read_bytes() == b"12345"
    with open(host / "f", "ab") as h:
        h.write(b"678")
    seen(lambda: (mnt / "f").read_bytes() == b"12345678", "appended bytes")


def truncate(host, mnt):
    (host / "f").write_bytes(b"x" * 10000)
    assert (mnt / "f").stat().st_size == 10000
    assert len((mnt / "f").read_bytes()) == 10000
    os.truncate(host / "f", 10)
    seen(lambda: (mnt / "f").stat().st_size == 10 and (mnt / "f").read_bytes() == b"x" * 10,
         "the truncated size")


def chmod(host, mnt):
    (host / "f").write_bytes(b"")
    os.chmod(host / "f", 0o644)
    assert (mnt / "f").stat().st_mode & 0o777 == 0o644
    os.chmod(host / "f", 0o600)
    seen(lambda: (mnt / "f").stat().st_mode & 0o777 == 0o600, "the new mode")


def chown(host, mnt):
    (host / "f").write_bytes(b"")
    assert (mnt / "f").stat().st_uid == 0
    os.chown(host / "f", 4321, 4322)
    seen(lambda: (mnt / "f").stat().st_uid == 4321 and (mnt / "f").stat().st_gid == 4322,
         "the new owner")


def utimes(host, mnt):
    (host / "f").write_bytes(b"")
    (mnt / "f").stat()
    os.utime(host / "f", (1_000_000, 2_000_000))
    seen(lambda: (mnt / "f").stat().st_mtime == 2_000_000, "the new mtime")


def create(host, mnt):
    assert not (mnt / "new").exists()          # a cached negative entry
    assert os.listdir(mnt) == []
    (host / "new").write_bytes(b"hello")
    seen(lambda: (mnt / "new").exists() and os.listdir(mnt) == ["new"], "the new file")
    assert (mnt / "new").read_bytes() == b"hello"


def unlink(host, mnt):
    (host / "f").write_bytes(b"")
    assert (mnt / "f").exists() and os.listdir(mnt) == ["f"]
    os.unlink(host / "f")
    seen(lambda: not (mnt / "f").exists() and os.listdir(mnt) == [], "the name gone")


def rename_within(host, mnt):
    (host / "a").write_bytes(b"A")
    assert (mnt / "a").exists() and not (mnt / "b").exists()
    os.rename(host / "a", host / "b")
    seen(lambda: not (mnt / "a").exists() and (mnt / "b").read_bytes() == b"A",
         "the renamed file")


def rename_across(host, mnt):
    (host / "d1").mkdir()
    (host / "d2").mkdir()
    (host / "d1" / "a").write_bytes(b"A")
    assert os.listdir(mnt / "d1") == ["a"] and os.listdir(mnt / "d2") == []
    os.rename(host / "d1" / "a", host / "d2" / "a")
    seen(lambda: os.listdir(mnt / "d1") == [] and os.listdir(mnt / "d2") == ["a"],
         "the file in the other directory")


def rename_over(host, mnt):
    (host / "a").write_bytes(b"new one")
    (host / "b").write_bytes(b"old one")
    assert (mnt / "b").read_bytes() == b"old one"
    os.rename(host / "a", host / "b")
    seen(lambda: (mnt / "b").read_bytes() == b"new one" and not (mnt / "a").exists(),
         "the replaced file")


def mkdir_rmdir(host, mnt):
    assert not (mnt / "d").exists()
    (host / "d").mkdir()
    seen(lambda: (mnt / "d").is_dir(), "the new directory")
    os.rmdir(host / "d")
    seen(lambda: not (mnt / "d").exists(), "the removed directory")


def symlink(host, mnt):
    assert not os.path.lexists(mnt / "l")
    os.symlink("target-one", host / "l")
    seen(lambda: os.path.lexists(mnt / "l") and os.readlink(mnt / "l") == "target-one",
         "the symlink")
    os.unlink(host / "l")
    os.symlink("target-two", host / "l")
    seen(lambda: os.readlink(mnt / "l") == "target-two", "the replaced symlink")


def hard_link(host, mnt):
    (host / "f").write_bytes(b"")
    assert (mnt / "f").stat().st_nlink == 1 and not (mnt / "g").exists()
    os.link(host / "f", host / "g")
    seen(lambda: (mnt / "g").exists() and (mnt / "f").stat().st_nlink == 2, "the new link")


def xattr(host, mnt):
    (host / "f").write_bytes(b"")
    os.setxattr(host / "f", "user.k", b"one")
    assert os.getxattr(mnt / "f", "user.k") == b"one"
    os.setxattr(host / "f", "user.k", b"two")
    seen(lambda: os.getxattr(mnt / "f", "user.k") == b"two", "the new xattr value")
    os.removexattr(host / "f", "user.k")
    seen(lambda: "user.k" not in os.listxattr(mnt / "f"), "the xattr gone")


CHANGES = [write_in_place, append, truncate, chmod, chown, utimes, create, unlink,
           rename_within, rename_across, rename_over, mkdir_rmdir, symlink, hard_link, xattr]


@pytest.mark.parametrize("change", CHANGES, ids=[c.__name__ for c in CHANGES])
def test_host_change_is_seen(coherent, change):
    host, mnt, _ = coherent
    change(host, mnt)


def test_host_chmod_of_a_cached_directory_is_seen(coherent):
    """A directory's own attribute change: fanotify reports it with a
    DFID_NAME record named "." and no FID record.  The guest first holds
    the directory's attributes in its cache for sure (a stat that needs no
    daemon), so only the push can show the new mode."""
    host, mnt, daemon = coherent
    (host / "d").mkdir()
    os.chmod(host / "d", 0o755)
    poll_until(lambda: while_stopped(daemon, lambda: (mnt / "d").stat().st_mode, timeout=1),
               timeout=15, interval=0.1, what="the directory's attributes cached")
    assert (mnt / "d").stat().st_mode & 0o777 == 0o755
    os.chmod(host / "d", 0o700)
    seen(lambda: (mnt / "d").stat().st_mode & 0o777 == 0o700, "the directory's new mode")


# ---- two guests ---------------------------------------------------------

@pytest.fixture
def two_guests(fsb_workdir, daemon_factory, mount_factory):
    host = fsb_workdir / "export"
    host.mkdir()
    (host / "f").write_bytes(b"")  # before the sessions: nobody is told of it
    daemon = daemon_factory([f"test={host},cache=coherent"])
    a = mount_factory(daemon, options=["export=test", "allow_other"])
    b = mount_factory(daemon, options=["export=test", "allow_other"])
    return host, a, b, daemon


def test_two_guests_see_each_other(two_guests):
    host, a, b, _ = two_guests
    assert (b.path / "f").read_bytes() == b""
    (a.path / "f").write_bytes(b"from a")
    seen(lambda: (b.path / "f").stat().st_size == 6, "a's bytes in b")
    with open(b.path / "f", "rb") as f:
        assert f.read() == b"from a"
        with open(a.path / "f", "r+b") as w:
            w.write(b"FROM")
        seen(lambda: os.pread(f.fileno(), 6, 0) == b"FROM a", "a's bytes in b's cache")
    os.chmod(b.path / "f", 0o600)
    seen(lambda: (a.path / "f").stat().st_mode & 0o777 == 0o600, "b's chmod in a")
    os.rename(b.path / "f", b.path / "g")
    seen(lambda: not (a.path / "f").exists() and (a.path / "g").exists(), "b's rename in a")
    (a.path / "d").mkdir()
    seen(lambda: (b.path / "d").is_dir(), "a's mkdir in b")
    os.unlink(a.path / "g")
    seen(lambda: os.listdir(b.path) == ["d"], "a's unlink in b")


def test_own_changes_are_not_echoed(two_guests):
    """A session's changes are sent to the other session, not back to it:
    each session logs the notifications it sent when it ends."""
    host, a, b, daemon = two_guests
    assert (b.path / "f").read_bytes() == b""   # b knows the root and f, reading only
    os.listdir(b.path)
    for i in range(20):
        (a.path / f"n{i}").write_bytes(b"x" * i)
        os.chmod(a.path / f"n{i}", 0o600)
        os.rename(a.path / f"n{i}", a.path / f"m{i}")
    with open(a.path / "f", "r+b") as w:
        w.write(b"data")
    seen(lambda: (b.path / "f").read_bytes() == b"data", "a's write in b")
    a.umount()
    b.umount()
    counts = poll_until(lambda: len(sent_counts(daemon)) == 2 and sent_counts(daemon),
                        timeout=5, what="both sessions' counts in the log")
    first, second = sorted(counts)
    assert counts[first] == 0, daemon.stderr_text()[-2000:]
    assert counts[second] > 20


# ---- a change while a lookup is in flight --------------------------------

def mount_with_held_replies(daemon_factory, mount_factory, host, watch,
                            hold="FSBRIDGE_TEST_LOOKUP_DELAY_MS"):
    """A cache=coherent mount of HOST tracked with WATCH whose daemon holds
    each reply back 400 ms at the point the test hook HOLD names (default:
    LOOKUP replies, and a READDIRPLUS after its first entry), so a host
    change can come first."""
    env = dict(os.environ, **{hold: "400"})
    if watch == "inotify":
        env["FSBRIDGE_CHANGE_WATCH"] = "inotify"
    daemon = daemon_factory([f"test={host},cache=coherent"], env=env)
    m = mount_factory(daemon, options=["export=test", "allow_other"])
    poll_until(lambda: f"tracked with {watch}" in daemon.stderr_text(), timeout=5,
               what="the change watcher's mode in the log")
    return m


@pytest.mark.parametrize("watch", ["fanotify", "inotify"])
def test_change_during_first_lookup_is_not_lost(fsb_workdir, daemon_factory, mount_factory,
                                                watch):
    """A host change between fsbridged's lookup of a name and the guest
    kernel making the inode is pushed before the guest has the node, and the
    kernel drops it: the reply must not let the guest keep the attributes it
    carries (the old size, for a day).  FSBRIDGE_TEST_LOOKUP_DELAY_MS holds
    every LOOKUP reply back long enough for the change to come first."""
    host = fsb_workdir / "export"
    host.mkdir()
    (host / "f").write_bytes(b"a")
    m = mount_with_held_replies(daemon_factory, mount_factory, host, watch)
    first = []
    t = threading.Thread(target=lambda: first.append(os.stat(m.path / "f").st_size))
    t.start()
    time.sleep(0.2)                      # the LOOKUP is on the host now, its reply held
    with open(host / "f", "ab") as w:
        w.write(b"bcd")
    t.join(10)
    assert first and first[0] in (1, 4)
    seen(lambda: (m.path / "f").stat().st_size == 4, "the size after the append")
    assert (m.path / "f").read_bytes() == b"abcd"


@pytest.mark.parametrize("watch", ["fanotify", "inotify"])
def test_change_during_listing_is_not_lost(fsb_workdir, daemon_factory, mount_factory, watch):
    """A host change to an entry of a READDIRPLUS that fsbridged has looked
    up already, while it looks up the rest, is pushed at once and dropped
    by the guest kernel (no inode yet): the listing must not then install
    that entry's old attributes for a day.  FSBRIDGE_TEST_LOOKUP_DELAY_MS
    also holds the listing back after its first looked-up entry."""
    host = fsb_workdir / "export"
    (host / "d").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (host / "d" / name).write_bytes(b"a")
    m = mount_with_held_replies(daemon_factory, mount_factory, host, watch)
    (m.path / "d").stat()                # its LOOKUP's delay is over before the listing
    listed = []
    t = threading.Thread(target=lambda: listed.append(sorted(os.listdir(m.path / "d"))))
    t.start()
    time.sleep(0.2)                      # the first entry is in the reply, the rest to come
    for name in ("a", "b", "c"):
        with open(host / "d" / name, "ab") as w:
            w.write(b"bcd")
    t.join(10)
    assert listed == [["a", "b", "c"]]
    for name in ("a", "b", "c"):
        seen(lambda: (m.path / "d" / name).stat().st_size == 4, f"the size of {name}")


@pytest.mark.parametrize("watch", ["fanotify", "inotify"])
def test_change_before_a_new_node_joins_the_table_is_not_lost(fsb_workdir, daemon_factory,
                                                              mount_factory, watch):
    """The watcher only counts changes of inodes the session knows.  A host
    change after fsbridged's first stat of a name but before the new node
    is in the session's table is neither counted nor pushed: the node is
    statted again once it is in, so the reply carries the new size.
    FSBRIDGE_TEST_JOIN_DELAY_MS holds each new node between the two."""
    host = fsb_workdir / "export"
    host.mkdir()
    (host / "f").write_bytes(b"a")
    m = mount_with_held_replies(daemon_factory, mount_factory, host, watch,
                                hold="FSBRIDGE_TEST_JOIN_DELAY_MS")
    first = []
    t = threading.Thread(target=lambda: first.append(os.stat(m.path / "f").st_size))
    t.start()
    time.sleep(0.2)                      # f is statted, not yet in the table
    with open(host / "f", "ab") as w:
        w.write(b"bcd")
    t.join(10)
    assert first and first[0] in (1, 4)
    seen(lambda: (m.path / "f").stat().st_size == 4, "the size after the append")
    assert (m.path / "f").read_bytes() == b"abcd"


# ---- the rest of the host's filesystem ----------------------------------

TRACING = Path("/sys/kernel/tracing")


class RequestTrace:
    """The FUSE requests the guest kernel sends on one mount, counted by its
    own tracepoint (fuse:fuse_request_send, Linux 6.14+) in a tracing
    instance of our own, filtered on the mount's connection: every request
    that leaves the guest's cache for fsbridged, whatever else traces."""

    def __init__(self, mnt):
        if not (TRACING / "events").is_dir():
            subprocess.run(["mount", "-t", "tracefs", "tracefs", str(TRACING)], check=False)
        if not (TRACING / "events" / "fuse" / "fuse_request_send").is_dir():
            pytest.skip("no fuse:fuse_request_send tracepoint (Linux 6.14+)")
        dev = os.stat(mnt).st_dev                # the kernel's dev_t: major << 20 | minor
        conn = (os.major(dev) << 20) | os.minor(dev)
        self.dir = TRACING / "instances" / f"fsb-test-{os.getpid()}-{conn}"
        self.dir.mkdir()
        self.event = self.dir / "events" / "fuse" / "fuse_request_send"
        (self.event / "filter").write_text(f"connection == {conn}\n")
        (self.event / "enable").write_text("1\n")

    def take(self):
        """{opcode: count} of the requests sent since the last take."""
        text = (self.dir / "trace").read_text()
        (self.dir / "trace").write_text("")     # truncating it clears the buffer
        return Counter(re.findall(r"opcode \d+ \(FUSE_(\w+)\)", text))

    def close(self):
        (self.event / "enable").write_text("0\n")
        self.dir.rmdir()


@pytest.fixture
def request_trace():
    traces = []

    def start(mnt):
        traces.append(RequestTrace(mnt))
        return traces[-1]
    yield start
    for t in traces:
        t.close()


def asked(counts):
    """The requests in COUNTS that a cache hit would not have sent (the
    kernel's FORGETs come whenever it evicts)."""
    return {op: n for op, n in counts.items() if op not in ("FORGET", "BATCH_FORGET")}


class Writer(threading.Thread):
    """Appends to a file in DIR, a line a millisecond, until stopped, and
    every tenth line makes and removes a directory with a file in it: a
    build on the host, beside the export (the directory is gone by the time
    the watcher reads the events of its file)."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.path, self.lines, self.stopped = d / "log", 0, threading.Event()
        self.scratch = d / "tmp"

    def run(self):
        with open(self.path, "wb", buffering=0) as f:
            while not self.stopped.is_set():
                f.write(b"a line of a build log\n")
                self.lines += 1
                if self.lines % 10 == 0:
                    self.scratch.mkdir()
                    (self.scratch / "o").write_bytes(b"an object file")
                    (self.scratch / "o").unlink()
                    self.scratch.rmdir()
                time.sleep(0.001)

    def stop(self):
        self.stopped.set()
        self.join(10)


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "writer-outside"])
def test_changes_outside_the_export_keep_replies_cached(fsb_workdir, daemon_factory,
                                                        mount_factory, request_trace, busy):
    """fanotify's mark covers the whole filesystem, but only a change of an
    inode the session knows may keep a reply out of the guest's cache: with
    a program writing beside the export all along, what the guest looked up
    once is served from its cache the second time (no request at all).
    LOOKUP replies are held 20 ms, so that the writer's changes surely come
    in while each is built; "idle" checks the counting without them."""
    host, outside = fsb_workdir / "export", fsb_workdir / "outside"
    host.mkdir()
    outside.mkdir()                      # the same filesystem, not exported
    names = [f"f{i:02}" for i in range(40)]
    for n in names:
        (host / n).write_bytes(b"x" * len(n))
    env = dict(os.environ, FSBRIDGE_TEST_LOOKUP_DELAY_MS="20")
    daemon = daemon_factory([f"test={host},cache=coherent"], env=env)
    m = mount_factory(daemon, options=["export=test", "allow_other"])
    poll_until(lambda: "tracked with fanotify" in daemon.stderr_text(), timeout=5,
               what="the change watcher's mode in the log")
    trace = request_trace(m.path)
    writer = Writer(outside)
    if busy:
        writer.start()
        poll_until(lambda: writer.lines > 0, timeout=5, what="the writer's first line")
    try:
        # The root's first GETATTR comes with whichever access is first
        # after the mount (the relay's own, at times): have it now.
        os.stat(m.path)
        trace.take()
        lines = writer.lines
        assert [os.lstat(m.path / n).st_size for n in names] == [3] * len(names)
        first = trace.take()
        import time as _t; _t.sleep(0.3); open("/tmp/dlog.txt","w").write(daemon.stderr_text())
        written = writer.lines - lines
        assert [os.lstat(m.path / n).st_size for n in names] == [3] * len(names)
        second = trace.take()
    finally:
        if busy:
            writer.stop()
    # The trace sees each lookup, and each reply was cached at once (no
    # GETATTR of an attribute that timed out at 0).
    assert asked(first) == {"LOOKUP": len(names)}, first
    assert not busy or written > 0, "the writer did not write during the lookups"
    assert asked(second) == {}, f"second round: {second}; first: {first}"


def test_change_through_a_link_outside_the_export_is_seen(fsb_workdir, daemon_factory,
                                                         mount_factory):
    """A known inode changed through a name outside the export (a hard
    link in a directory no session knows) is still pushed: what counts is
    the inode, not where its name is."""
    host, outside = fsb_workdir / "export", fsb_workdir / "outside"
    host.mkdir()
    outside.mkdir()
    (host / "f").write_bytes(b"old data")
    os.link(host / "f", outside / "g")
    daemon = daemon_factory([f"test={host},cache=coherent"])
    m = mount_factory(daemon, options=["export=test", "allow_other"])
    poll_until(lambda: "tracked with fanotify" in daemon.stderr_text(), timeout=5,
               what="the change watcher's mode in the log")
    with open(m.path / "f", "rb") as f:
        assert f.read() == b"old data"
        with open(outside / "g", "r+b") as h:
            h.write(b"NEW")
        seen(lambda: os.pread(f.fileno(), 8, 0) == b"NEW data", "new bytes read")
    os.chmod(outside / "g", 0o600)
    seen(lambda: (m.path / "f").stat().st_mode & 0o777 == 0o600, "the new mode")


# ---- warm directories: no round trip ------------------------------------

def tree_view(mnt):
    """Every directory's names and every entry's (mode, size), as a walk
    with os.walk and lstat sees them (find, du)."""
    view = []
    for root, dirs, files in os.walk(mnt):
        names = sorted(dirs + files)
        view.append((root, [(n, os.lstat(os.path.join(root, n))[0:7:6]) for n in names]))
    return sorted(view)


def while_stopped(daemon, work, timeout=3.0):
    """Runs WORK with fsbridged stopped (SIGSTOP): returns its result, or
    None when it did not finish in TIMEOUT, i.e. it waited for the daemon."""
    result = []
    t = threading.Thread(target=lambda: result.append(work()), daemon=True)
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        t.start()
        t.join(timeout)
        in_time = not t.is_alive()
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    t.join(10)
    return result[0] if in_time and result else None


def test_warm_tree_walk_needs_no_daemon(coherent):
    """A listed directory is opened, read and closed from the guest's cache:
    fsbridged answers OPENDIR with ENOSYS once, so the kernel sends neither
    OPENDIR nor RELEASEDIR any more, and the walk runs with it stopped."""
    host, mnt, daemon = coherent
    for d in range(3):
        (host / f"d{d}" / "sub").mkdir(parents=True)
        for f in range(5):
            (host / f"d{d}" / f"f{f}").write_bytes(b"x" * f)
    first = tree_view(mnt)
    assert len(first) == 7 and first[1][1][0] == ("f0", (0o100644, 0))
    # The host's creates above still come in as the walk runs, and replies
    # that a change overtook are not cached (reply_timeout): a later walk
    # caches them for good, the kernel never asks again.
    poll_until(lambda: while_stopped(daemon, lambda: tree_view(mnt), timeout=2) == first,
               timeout=15, interval=0.1, what="a warm walk that does not wait for fsbridged")
    (host / "d1" / "new").write_bytes(b"abc")     # a host change still reaches it
    seen(lambda: "new" in os.listdir(mnt / "d1"), "the new name in a cached listing")
    fd = os.open(mnt / "d1", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)                              # FSYNCDIR without a handle
    finally:
        os.close(fd)


def list_and_delete(d):
    """rm -r's loop: each name is removed as soon as it is read, while the
    directory is still being listed; returns what is left."""
    with os.scandir(d) as it:
        for e in it:
            os.unlink(e.path)
    return os.listdir(d)


def test_list_and_delete_removes_every_entry(coherent):
    """Without OPENDIR each READDIR reopens the directory at the last
    offset: on the host filesystems where that is allowed (ext4 here), a
    listing larger than many replies still sees every entry."""
    host, mnt, daemon = coherent
    (host / "big").mkdir()
    for i in range(2000):
        (host / "big" / f"entry-{i:05}").write_bytes(b"")
    assert len(os.listdir(mnt / "big")) == 2000
    assert list_and_delete(mnt / "big") == []
    assert os.listdir(host / "big") == []


@pytest.fixture
def overlayfs_host(fsb_workdir):
    """A kernel overlayfs mounted here, with a merged directory "big" of
    2,000 files: merged directories' offsets count entries of a list built
    per open.  Set up before, so torn down after, the daemon that exports it."""
    layers = {n: fsb_workdir / n for n in ("lower", "upper", "work", "merged")}
    for p in layers.values():
        p.mkdir()
    for layer in ("lower", "upper"):
        (layers[layer] / "big").mkdir()
    for i in range(2000):
        (layers["lower"] / "big" / f"entry-{i:05}").write_bytes(b"")
    opts = "lowerdir={lower},upperdir={upper},workdir={work}".format(**layers)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(layers["merged"])],
                   check=True)
    yield layers["merged"]
    subprocess.run(["umount", "-l", str(layers["merged"])], check=False)


@pytest.fixture
def overlayfs_export(overlayfs_host, daemon_factory, mount_factory):
    """(host dir, guest mount, daemon) of a cache=coherent export of
    overlayfs_host, tracked with inotify."""
    env = dict(os.environ, FSBRIDGE_CHANGE_WATCH="inotify")
    # overlayfs gives no file handles, so each inode looked up keeps an fd,
    # counted on the guest's open-file budget: "big" needs 2,000 of them,
    # more than a guest's default share (1/100) of a 20,000-fd RLIMIT_NOFILE.
    daemon = daemon_factory([f"test={overlayfs_host},cache=coherent"], env=env,
                            extra_args=["--guest-max-open", "4000"])
    m = mount_factory(daemon, options=["export=test", "allow_other"])
    poll_until(lambda: "tracked with inotify" in daemon.stderr_text(), timeout=5,
               what="the change watcher's mode in the log")
    return overlayfs_host, m.path, daemon


def test_overlayfs_host_keeps_opendir(overlayfs_export):
    """Where directory offsets do not survive a reopen, directories keep
    OPENDIR (one handle for the whole listing): rm -r's loop removes every
    entry, and a warm listing still needs fsbridged (its OPENDIR)."""
    host, mnt, daemon = overlayfs_export
    assert len(os.listdir(mnt / "big")) == 2000
    assert list_and_delete(mnt / "big") == []
    assert os.listdir(host / "big") == []
    os.listdir(mnt)
    assert while_stopped(daemon, lambda: os.listdir(mnt), timeout=1) is None


def test_listing_without_opendir_is_still_checked_by_the_host(
        fsb_workdir, daemon_factory, mount_factory):
    """Without OPENDIR each READDIR opens the directory as its caller: with
    the guest's permission checks off, the host still refuses a directory
    the caller may not read."""
    host = fsb_workdir / "export"
    (host / "private").mkdir(parents=True)
    (host / "private" / "secret").write_bytes(b"")
    os.chmod(host / "private", 0o700)
    daemon = daemon_factory([f"test={host},cache=coherent"])
    m = mount_factory(daemon, options=["export=test", "allow_other", "no_default_permissions"])
    assert os.listdir(m.path / "private") == ["secret"]   # root, cached now
    code = "import os, sys\ntry:\n    print(os.listdir(sys.argv[1]))\n" \
           "except OSError as e:\n    print(e.errno)\n"
    out = run_python(code, m.path / "private", uid=NOBODY_UID).stdout.strip()
    assert out == "13", out                                 # EACCES


# ---- overflow, deadlock, fallback ----------------------------------------

@pytest.mark.deadline(120)
@pytest.mark.small_notify_queue
def test_burst_overflows_and_stays_consistent(coherent):
    """100,000 host changes at once overflow the session's queue (logged);
    the guest then drops its whole cache and ends up with the host's state."""
    host, mnt, daemon = coherent
    names = [f"f{i:03}" for i in range(200)]
    for n in names:
        (host / n).write_bytes(b"start")
    for n in names:                           # the guest knows and caches them
        assert (mnt / n).read_bytes() == b"start"
    overflowed = re.compile(r"notification queue overflowed|change queue overflowed")
    fds = [os.open(host / n, os.O_WRONLY) for n in names]
    try:
        # fanotify merges a file's unread events, so a daemon that keeps up
        # may see fewer than its queue holds: burst again (at most 10 times).
        for _ in range(10):
            for r in range(500):              # 200 x 500 = 100,000 writes
                data = b"round %03d" % r
                for fd in fds:
                    os.pwrite(fd, data, 0)
            if overflowed.search(daemon.stderr_text()):
                break
    finally:
        for fd in fds:
            os.close(fd)
    for n in names[:50]:                      # and some names come and go
        os.rename(host / n, host / (n + ".moved"))

    def consistent():
        return all((mnt / n).read_bytes() == b"round 499" for n in names[50:]) and \
            sorted(os.listdir(mnt)) == sorted([n + ".moved" for n in names[:50]] + names[50:])
    poll_until(consistent, timeout=30, interval=0.05, what="the guest's view after the burst")
    assert overflowed.search(daemon.stderr_text()), "the burst did not take the overflow path"


@pytest.mark.deadline(60)
def test_host_changes_while_guest_loops_do_not_hang(coherent):
    """Invalidations of a file the guest reads and writes in a loop (page
    locks, the inode lock) never wait for a reply that waits for them."""
    host, mnt, _ = coherent
    (host / "f").write_bytes(b"0" * 65536)

    def host_step(n):
        with open(host / "f", "r+b") as h:
            h.write(b"h" * 8192)
        os.truncate(host / "f", 65536 - (n % 2) * 4096)
        (host / f"x{n % 10}").write_bytes(b"")

    helpers.race_guest_and_host(mnt / "f", lambda: os.listdir(mnt), host_step)
    assert (mnt / "f").stat().st_size in (65536, 61440)


def test_overlay_export_is_refused(fsb_workdir, daemon_factory):
    """Host changes of an overlay's layers are not tracked: cache=coherent
    with overlay= is an error at start, not a silent cache=auto."""
    lower, upper = fsb_workdir / "lower", fsb_workdir / "upper"
    lower.mkdir()
    upper.mkdir()
    daemon = daemon_factory([f"test={lower},cache=coherent,overlay={upper}"], wait=False,
                            check_exit=False)
    assert daemon.wait(timeout=10) != 0
    assert "cache=coherent cannot be used with overlay=" in daemon.stderr_text()
