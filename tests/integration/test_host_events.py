"""host_events: guest programs watching a cache=coherent mount with inotify
see host changes.

fsbridge-mount repeats each host change it is notified of through its own
mount (src/mount/host_events.h), so the guest kernel raises the inotify
event itself.  A real inotify watcher in the test process watches the mount;
the host changes the export directly.  Every test runs with both of the
daemon's tracking modes (fanotify, and the inotify fallback, which also
sends a session's own changes back to it).
"""

import ctypes
import os
import select
import struct
import time

import pytest

import helpers
from helpers import poll_until

EVENT_TIMEOUT = 5.0

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_ISDIR = 0x40000000
WATCHED = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE

libc = ctypes.CDLL(None, use_errno=True)


class Watcher:
    """inotify on directories of the mount, as a dev server watches them."""

    def __init__(self, *dirs):
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.wds = {}
        for d in dirs:
            wd = libc.inotify_add_watch(self.fd, os.fsencode(d), WATCHED)
            assert wd >= 0, os.strerror(ctypes.get_errno())
            self.wds[wd] = str(d)
        self.events = []  # (directory, name, mask)

    def read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        off = 0
        while off < len(buf):
            wd, mask, _cookie, n = struct.unpack_from("iIII", buf, off)
            name = buf[off + 16:off + 16 + n].rstrip(b"\0").decode()
            self.events.append((self.wds.get(wd), name, mask))
            off += 16 + n

    def wait(self, name, mask, timeout=EVENT_TIMEOUT, since=0):
        """Waits for an event of NAME with every bit of MASK (among the
        events from number SINCE on)."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events[since:]:
                if e[1] == name and e[2] & mask == mask:
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no inotify event {mask:#x} for {name!r}; got {self.events[-20:]}")
            self.read(left)

    def drain(self, quiet=1.0):
        """Reads events until none came for QUIET seconds; returns them all."""
        while True:
            n = len(self.events)
            self.read(quiet)
            if len(self.events) == n:
                return self.events

    def count(self, name, mask):
        return sum(1 for e in self.events if e[1] == name and e[2] & mask)

    def close(self):
        os.close(self.fd)


@pytest.fixture(params=["fanotify", "inotify"])
def coherent(request, fsb_workdir, daemon_factory, mount_factory):
    host = fsb_workdir / "export"
    host.mkdir()
    env = dict(os.environ)
    if request.param == "inotify":
        env["FSBRIDGE_CHANGE_WATCH"] = "inotify"
    daemon = daemon_factory([f"test={host},cache=coherent"], env=env)

    def mount(*options):
        return mount_factory(daemon, options=["export=test", "allow_other", *options]).path
    mnt = mount()
    poll_until(lambda: f"tracked with {request.param}" in daemon.stderr_text(), timeout=5,
               what="the change watcher's mode in the log")
    return host, mnt, daemon, mount


@pytest.fixture
def watcher():
    made = []

    def watch(*dirs):
        w = Watcher(*dirs)
        made.append(w)
        return w
    yield watch
    for w in made:
        w.close()


def prime(mnt):
    """The guest knows every name (the host only tells it about those), and
    the echoes of the host's changes so far are over."""
    w = Watcher(mnt)
    for root, dirs, files in os.walk(mnt):
        for n in dirs + files:
            os.lstat(os.path.join(root, n))
    w.drain(quiet=0.5)
    w.close()


def test_host_changes_raise_events(coherent, watcher):
    host, mnt, _, _ = coherent
    (host / "f").write_bytes(b"one")
    (host / "d").mkdir()
    (host / "d" / "inner").write_bytes(b"")
    prime(mnt)
    w = watcher(mnt, mnt / "d")

    with open(host / "f", "ab") as f:
        f.write(b" two")
    w.wait("f", IN_MODIFY)
    assert (mnt / "f").read_bytes() == b"one two"

    os.chmod(host / "f", 0o640)
    w.wait("f", IN_ATTRIB)
    assert (mnt / "f").stat().st_mode & 0o777 == 0o640

    (host / "new").write_bytes(b"n")
    w.wait("new", IN_CREATE)
    assert (mnt / "new").read_bytes() == b"n"

    os.unlink(host / "new")
    w.wait("new", IN_DELETE)
    assert not (mnt / "new").exists()

    os.rename(host / "f", host / "g")
    w.wait("f", IN_MOVED_FROM)
    w.wait("g", IN_MOVED_TO)
    assert (mnt / "g").read_bytes() == b"one two" and not (mnt / "f").exists()

    (host / "sub").mkdir()
    w.wait("sub", IN_CREATE | IN_ISDIR)
    (host / "sub").rmdir()
    w.wait("sub", IN_DELETE | IN_ISDIR)

    os.symlink("g", host / "link")
    w.wait("link", IN_CREATE)
    assert os.readlink(mnt / "link") == "g"

    (host / "d" / "inner").write_bytes(b"changed")
    w.wait("inner", IN_MODIFY)
    os.rename(host / "d" / "inner", host / "moved")
    w.wait("inner", IN_MOVED_FROM)
    w.wait("moved", IN_MOVED_TO)
    assert (mnt / "moved").read_bytes() == b"changed"
    assert sorted(os.listdir(mnt)) == ["d", "g", "link", "moved"]
    assert os.listdir(mnt / "d") == []


def test_echo_changes_nothing_on_the_host(coherent, watcher):
    """The echo's truncate and chown reach the host as GETATTRs: the host
    file's bytes and times are the host's own."""
    host, mnt, _, _ = coherent
    (host / "f").write_bytes(b"data")
    prime(mnt)
    w = watcher(mnt)
    with open(host / "f", "r+b") as f:
        f.write(b"DA")
    before = os.stat(host / "f")
    w.wait("f", IN_MODIFY)
    os.chown(host / "f", 0, 0)
    w.wait("f", IN_ATTRIB)
    after = os.stat(host / "f")
    assert (host / "f").read_bytes() == b"DAta"
    assert after.st_mtime_ns == before.st_mtime_ns
    assert (mnt / "f").read_bytes() == b"DAta"
    # a name created and removed again at once: the echo makes nothing up
    for i in range(20):
        (host / f"t{i}").write_bytes(b"")
        os.unlink(host / f"t{i}")
    (host / "kept").write_bytes(b"k")
    w.wait("kept", IN_CREATE)
    w.drain()
    assert sorted(os.listdir(host)) == ["f", "kept"]
    assert sorted(os.listdir(mnt)) == ["f", "kept"]


def test_guest_changes_are_not_doubled(coherent, watcher):
    """The guest's own changes raise their events once: the daemon's inotify
    mode sends them back as notifications, which must not be echoed."""
    host, mnt, _, _ = coherent
    (host / "f").write_bytes(b"")
    prime(mnt)
    w = watcher(mnt)
    with open(mnt / "f", "r+b") as f:
        f.write(b"guest")
    os.chmod(mnt / "f", 0o600)
    (mnt / "mine").write_bytes(b"")
    os.rename(mnt / "mine", mnt / "ours")
    os.unlink(mnt / "ours")
    w.drain(quiet=1.5)
    assert w.count("f", IN_MODIFY) == 1, w.events
    assert w.count("f", IN_ATTRIB) == 1, w.events
    assert w.count("mine", IN_CREATE) == 1, w.events
    assert w.count("mine", IN_MOVED_FROM) == 1, w.events
    assert w.count("ours", IN_MOVED_TO) == 1, w.events
    assert w.count("ours", IN_DELETE) == 1, w.events
    # ...and a host change of the same file later is echoed again
    time.sleep(2.1)
    mark = len(w.events)
    (host / "f").write_bytes(b"host")
    w.wait("f", IN_MODIFY, since=mark)
    assert w.count("f", IN_MODIFY) == 2, w.events


def test_off_raises_no_events(coherent, watcher, fsb_workdir):
    """host_events=off: the mount is coherent, and watchers see nothing (so
    the events above are the echo's)."""
    host, _, _, mount = coherent
    mnt = mount("host_events=off")
    (host / "f").write_bytes(b"")
    prime(mnt)
    w = watcher(mnt)
    (host / "f").write_bytes(b"changed")
    (host / "new").write_bytes(b"")
    poll_until(lambda: (mnt / "new").exists(), timeout=EVENT_TIMEOUT, what="the new file")
    assert w.drain(quiet=1.0) == []


def test_burst_stays_consistent_and_raises_events(coherent, watcher):
    host, mnt, _, _ = coherent
    names = [f"f{i:03}" for i in range(100)]
    for n in names:
        (host / n).write_bytes(b"start")
    prime(mnt)
    w = watcher(mnt)
    for r in range(20):
        for n in names:
            (host / n).write_bytes(b"round %02d" % r)
    for n in names[:30]:
        os.rename(host / n, host / (n + ".moved"))
    for n in names[30:40]:
        os.unlink(host / n)
    for i in range(30):
        (host / f"c{i}").write_bytes(b"")
    expect = sorted([n + ".moved" for n in names[:30]] + names[40:] + [f"c{i}" for i in range(30)])

    def consistent():
        return sorted(os.listdir(mnt)) == expect and \
            all((mnt / n).read_bytes() == b"round 19" for n in names[40:])
    poll_until(consistent, timeout=30, interval=0.05, what="the guest's view after the burst")
    w.drain()
    # the daemon's queue may overflow (it then drops the guest's whole cache,
    # and the names' events with it), the echo's too: some events come
    assert w.count("f099", IN_MODIFY) >= 1, w.events[-20:]
    assert sorted(os.listdir(host)) == expect
    # and once the burst is over, changes are echoed again
    (host / "after").write_bytes(b"")
    w.wait("after", IN_CREATE)
    os.unlink(host / "c0")
    w.wait("c0", IN_DELETE)


@pytest.mark.deadline(60)
def test_host_changes_to_a_file_the_guest_writes_do_not_hang(coherent, watcher):
    host, mnt, _, _ = coherent
    (host / "f").write_bytes(b"0" * 65536)
    prime(mnt)
    w = watcher(mnt)

    def host_step(n):
        with open(host / "f", "r+b") as h:
            h.write(b"h" * 8192)
        (host / f"x{n % 5}").write_bytes(b"")

    helpers.race_guest_and_host(mnt / "f", lambda: os.truncate(mnt / "f", 65536), host_step)
    (host / "after").write_bytes(b"")
    w.wait("after", IN_CREATE)
    assert (mnt / "f").stat().st_size == 65536



@pytest.mark.parametrize("watch", ["fanotify", "inotify"])
@pytest.mark.deadline(90)
def test_a_stuck_echo_delays_no_notification(fsb_workdir, daemon_factory, mount_factory,
                                             watcher, watch):
    """The daemon holds every LOOKUP reply back 6 s (a test hook; on the
    connection's reader, so what follows a LOOKUP on that connection waits
    too): the echo, whose every step asks the host a LOOKUP, is stuck (its
    own lookups give up after 2 s, its system calls are interrupted then),
    and still the host's notifications reach the guest kernel at once (the
    guest sees the chmod within 3 s, while 5 echoes wait for 2 s each), and
    the guest's requests are answered."""
    host = fsb_workdir / "export"
    host.mkdir()
    (host / "f").write_bytes(b"old")
    env = dict(os.environ, FSBRIDGE_TEST_LOOKUP_DELAY_MS="6000")
    if watch == "inotify":
        env["FSBRIDGE_CHANGE_WATCH"] = "inotify"
    daemon = daemon_factory([f"test={host},cache=coherent"], env=env)
    mnt = mount_factory(daemon, options=["export=test", "allow_other"]).path
    assert (mnt / "f").read_bytes() == b"old"      # one held LOOKUP
    w = watcher(mnt)
    for i in range(5):                             # echoes that wait for LOOKUPs
        (host / f"new{i}").write_bytes(b"")
    time.sleep(0.1)
    os.chmod(host / "f", 0o604)
    with open(host / "f", "wb") as f:
        f.write(b"new!")
    poll_until(lambda: (mnt / "f").stat().st_mode & 0o777 == 0o604, timeout=3,
               what="the host's chmod (its notification is not behind the echo)")
    assert (mnt / "f").read_bytes() == b"new!"


NO_ECHO = "the host pushes no changes to this export"


def threads(m):
    return len(os.listdir(f"/proc/{m.proc.pid}/task"))


@pytest.mark.parametrize("cache", ["auto", "coherent"])
def test_no_echo_where_the_host_pushes_nothing(cache, fsb_workdir, daemon_factory,
                                               mount_factory):
    """A version-4 host says whether it pushes changes (FSB_TERMS_PUSHES:
    cache=coherent); without them the mount keeps no node table and starts
    no echo thread, as with host_events=off.  The echo thread is the only
    difference between the two mounts' threads."""
    host = fsb_workdir / cache
    host.mkdir()
    daemon = daemon_factory([f"test={host},cache={cache}"])
    on = mount_factory(daemon, options=["export=test"], extra_args=["-d"])  # says it at debug
    off = mount_factory(daemon, options=["export=test", "host_events=off"], extra_args=["-d"])
    (host / "f").write_bytes(b"x")
    for m in (on, off):
        assert (m.path / "f").read_bytes() == b"x"
    pushes = cache == "coherent"
    assert (NO_ECHO in on.stderr_text()) != pushes, on.stderr_text()
    assert threads(on) == threads(off) + pushes
