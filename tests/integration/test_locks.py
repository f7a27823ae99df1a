"""
test_locks.py - flock(2) and fcntl(2) record locks between two processes on
one mount.

The lock holder is this test process; the contender is a child process that
reports each step on stdout.  Every wait is bounded: a lock that never comes
fails the test after a timeout instead of hanging it.
"""

import errno
import fcntl
import os
import select
import subprocess
import time

import pytest

import helpers
from fuse_client import FuseClient

CHILD_TIMEOUT = 15.0

# A lock test that hangs (a request stuck in the daemon) is aborted sooner
# than the default 60 s.
pytestmark = pytest.mark.deadline(30)

# The contender: runs the steps given on the command line and prints one line
# per step.  Steps:
#   flock-nb          flock(LOCK_EX|LOCK_NB): "locked" or "busy <errno>"
#   flock-wait        print "waiting", flock(LOCK_EX), print "locked"
#   lockf-nb S L      fcntl.lockf(LOCK_EX|LOCK_NB, L, S)
#   lockf-wait S L    print "waiting", fcntl.lockf(LOCK_EX, L, S), "locked"
#   getlk S L         F_GETLK for a write lock: "type <t> pid <p> start <s> len <l>"
#   unlock            release everything this child holds
#   pause             print "paused", wait for a line on stdin
CONTENDER = r"""
import errno, fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
args = sys.argv[2:]
def say(*w):
    print(*w, flush=True)
while args:
    step = args.pop(0)
    if step == "flock-nb":
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            say("locked")
        except OSError as e:
            say("busy", e.errno)
    elif step == "flock-wait":
        say("waiting")
        fcntl.flock(fd, fcntl.LOCK_EX)
        say("locked")
    elif step in ("lockf-nb", "lockf-wait"):
        start, length = int(args.pop(0)), int(args.pop(0))
        if step == "lockf-nb":
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
                say("locked")
            except OSError as e:
                say("busy", e.errno)
        else:
            say("waiting")
            fcntl.lockf(fd, fcntl.LOCK_EX, length, start)
            say("locked")
    elif step == "getlk":
        start, length = int(args.pop(0)), int(args.pop(0))
        req = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
        res = fcntl.fcntl(fd, fcntl.F_GETLK, req)
        t, w, s, l, p = struct.unpack("hhqqi", res)
        say("type", t, "pid", p, "start", s, "len", l)
    elif step == "pause":
        say("paused")
        sys.stdin.readline()
    elif step == "unlock":
        fcntl.flock(fd, fcntl.LOCK_UN)
        fcntl.lockf(fd, fcntl.LOCK_UN, 0, 0)
        say("unlocked")
"""


class Contender:
    """A child process running CONTENDER steps, read line by line with timeouts."""

    def __init__(self, path, *steps):
        self.proc = subprocess.Popen([helpers.PYTHON, "-c", CONTENDER, str(path),
                                      *map(str, steps)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.buf = b""

    def go(self):
        """Let a paused contender go on."""
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def line(self, timeout=CHILD_TIMEOUT):
        """The next line of output, or None if none came within `timeout`."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")
                raise AssertionError(f"contender exited: {err}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def finish(self):
        try:
            self.proc.wait(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("contender did not exit")
        assert self.proc.returncode == 0, self.proc.stderr.read().decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def contenders():
    started = []

    def start(path, *steps):
        c = Contender(path, *steps)
        started.append(c)
        return c
    yield start
    for c in started:
        c.kill()


def make_file(fs, name="lockme"):
    with open(fs.mnt / name, "wb") as f:
        f.write(b"0" * 4096)
    return fs.mnt / name


def assert_busy(line):
    assert line is not None, "no answer from the contender"
    word, *rest = line.split()
    assert word == "busy", f"second process got the lock: {line!r}"
    assert int(rest[0]) in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES), line


def assert_still_waiting(c, how_long=0.5):
    """The contender must not get the lock while we hold it (bounded check)."""
    line = c.line(timeout=how_long)
    assert line is None, f"contender got past a held lock: {line!r}"


def test_flock_between_processes(fs, contenders):
    path = make_file(fs)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        c = contenders(path, "flock-nb", "flock-wait", "pause", "unlock")
        assert_busy(c.line())
        assert c.line() == "waiting"
        assert_still_waiting(c)
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert c.line() == "locked", "blocked flock not granted after release"
        assert c.line() == "paused"
        # Now the child holds it: we are the ones refused.
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        c.go()
        assert c.line() == "unlocked"
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        c.finish()
    finally:
        os.close(fd)


def test_flock_shared_locks_coexist(fs):
    path = make_file(fs)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        script = ("import fcntl, os, sys\n"
                  "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
                  "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)\n"
                  "try:\n"
                  "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                  "    print('upgraded')\n"
                  "except BlockingIOError:\n"
                  "    print('refused')\n")
        r = helpers.run_python(script, path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "refused"
    finally:
        os.close(fd)


def test_flock_released_on_close(fs, contenders):
    path = make_file(fs)
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    c = contenders(path, "flock-nb", "flock-wait")
    assert_busy(c.line())
    assert c.line() == "waiting"
    os.close(fd)
    assert c.line() == "locked", "closing the holder's fd did not release its flock"
    c.finish()


def test_fcntl_record_locks(fs, contenders):
    path = make_file(fs)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)       # bytes [0, 100)
        c = contenders(path,
                       "lockf-nb", 50, 10,           # overlaps: busy
                       "lockf-nb", 100, 100,         # next to it: fine
                       "getlk", 0, 4096,             # is [0, 100) locked?
                       "lockf-wait", 90, 20,         # blocks until we release
                       "pause",
                       "unlock")
        assert_busy(c.line())
        assert c.line() == "locked"
        got = c.line()
        assert got is not None
        fields = got.split()
        assert fields[:2] == ["type", str(fcntl.F_WRLCK)], got
        assert (int(fields[5]), int(fields[7])) == (0, 100), got
        assert c.line() == "waiting"
        assert_still_waiting(c)
        # And we cannot take what the child holds.
        with pytest.raises(OSError) as e:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 50, 150)
        assert e.value.errno in (errno.EAGAIN, errno.EACCES)
        fcntl.lockf(fd, fcntl.LOCK_UN, 100, 0)
        assert c.line() == "locked", "blocked F_SETLKW not granted after unlock"
        assert c.line() == "paused"
        # The child now holds [90, 110) as well.
        with pytest.raises(OSError) as e:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 95)
        assert e.value.errno in (errno.EAGAIN, errno.EACCES)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 80)   # [80, 90) is free
        c.go()
        assert c.line() == "unlocked"
        c.finish()
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0)   # whole file, free now
    finally:
        os.close(fd)


def test_fcntl_locks_dropped_by_any_close(fs, contenders):
    # POSIX: closing any descriptor of a file drops the process's record
    # locks on it: a dup()ed one, or another open of the same file
    # (generic/478).  Another process's close drops nothing of ours.
    path = make_file(fs)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)
        os.close(os.dup(fd))
        c = contenders(path, "lockf-nb", 0, 10, "unlock", "pause", "lockf-nb", 0, 10,
                       "pause", "lockf-nb", 0, 10)
        assert c.line() == "locked", "lock kept after close() of a dup()ed descriptor"
        assert c.line() == "unlocked"
        assert c.line() == "paused"
        fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)
        other = contenders(path, "unlock")  # opens, unlocks its own, closes: not ours
        assert other.line() == "unlocked"
        other.finish()
        c.go()
        assert_busy(c.line())
        assert c.line() == "paused"
        os.close(os.open(path, os.O_RDONLY))
        c.go()
        assert c.line() == "locked", "lock kept after close() of another open of the file"
        c.finish()
    finally:
        os.close(fd)


def test_fcntl_locks_dropped_by_a_dup_close_while_other_files_are_locked(fs, contenders):
    # FLUSH looks for the closing owner's locks among the open files of
    # that inode only (pt_internal.h's locker lists): with 60 other
    # files locked, a close of a dup still drops ours, and theirs stay.
    others = []
    try:
        for i in range(60):     # within the guest budget: 101 open files in the tests
            fd = os.open(make_file(fs, f"other{i}"), os.O_RDWR)
            others.append(fd)
            fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
        path = make_file(fs)
        fd = os.open(path, os.O_RDWR)
        others.append(fd)
        fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)
        os.close(os.dup(fd))
        c = contenders(path, "lockf-nb", 0, 10)
        assert c.line() == "locked", "lock kept after close() of a dup()ed descriptor"
        c.finish()
        for i in (0, 30, 59):
            other = contenders(fs.mnt / f"other{i}", "lockf-nb", 0, 10)
            assert_busy(other.line())
            other.finish()
    finally:
        for fd in others:
            os.close(fd)


F_WRLCK, F_UNLCK = 1, 2     # <asm-generic/fcntl.h>, as FUSE carries them


@pytest.fixture
def raw(fsb_workdir, daemon_factory):
    """A raw FUSE session (fuse_client.py) on an export holding files a, b."""
    host = fsb_workdir / "export"
    host.mkdir()
    for name in ("a", "b"):
        (host / name).write_bytes(b"0" * 4096)
    daemon = daemon_factory([f"test={host}"])
    c = FuseClient(daemon.socket, export="test")
    yield c
    c.close()


def raw_open(c, name):
    err, entry = c.lookup(1, name)
    assert err == 0, err
    err, fh = c.open(entry["nodeid"], os.O_RDWR)
    assert err == 0, err
    return entry["nodeid"], fh


def locked(c, node, probe_fh, start, end):
    """Whether some other handle holds a lock on [start, end] (GETLK)."""
    err, lk = c.getlk(node, probe_fh, start, end)
    assert err == 0, err
    return lk[2] != F_UNLCK


def test_flush_drops_the_owners_locks_of_that_file_only(raw):
    """FLUSH with a lock owner (a close(2) in the guest) unlocks that
    owner's handles of the closing inode; other owners' locks and the
    owner's locks on other files stay, however the handles came and went."""
    c = raw
    a, a1 = raw_open(c, "a")
    _, a2 = raw_open(c, "a")
    _, probe_a = raw_open(c, "a")
    b, b1 = raw_open(c, "b")
    _, probe_b = raw_open(c, "b")
    X, Y, Z = 0x1111, 0x2222, 0x3333
    assert c.setlk(a, a1, X, F_WRLCK, 0, 9) == 0
    assert c.setlk(b, b1, X, F_WRLCK, 0, 9) == 0
    assert c.setlk(a, a2, Y, F_WRLCK, 20, 29) == 0

    assert c.flush(b, probe_b, X) == 0            # X closes a descriptor of b
    assert not locked(c, b, probe_b, 0, 9), "X's lock on b kept after its close"
    assert locked(c, a, probe_a, 0, 9), "a close of b dropped X's lock on a"
    assert c.flush(a, probe_a, X) == 0
    assert not locked(c, a, probe_a, 0, 9), "X's lock on a kept after its close"
    assert locked(c, a, probe_a, 20, 29), "X's close dropped Y's lock"

    # A released handle leaves its inode's list; the slot it frees is
    # taken by the next open, which joins the list afresh.
    assert c.release(a, a2) == 0
    _, a3 = raw_open(c, "a")
    assert c.setlk(a, a3, Z, F_WRLCK, 20, 29) == 0
    assert c.flush(a, probe_a, Y) == 0
    assert locked(c, a, probe_a, 20, 29), "Y's close dropped Z's lock"
    # A handle whose locks a close dropped locks again, and loses them
    # again at the owner's next close.
    assert c.setlk(a, a1, X, F_WRLCK, 0, 9) == 0
    assert c.flush(a, probe_a, X) == 0
    assert not locked(c, a, probe_a, 0, 9), "X's second lock on a kept after its close"
    assert c.flush(a, probe_a, Z) == 0
    assert not locked(c, a, probe_a, 20, 29), "Z's lock kept after its close"


def test_flush_counts_each_owner_among_many_lockers(raw):
    """Fifty owners lock disjoint ranges of one file, each through its own
    handle, beside lockers of another file: each close drops exactly its
    owner's range, in any order, and released handles drop out."""
    c = raw
    a, probe_a = raw_open(c, "a")
    b, b1 = raw_open(c, "b")
    assert c.setlk(b, b1, 7, F_WRLCK, 0, 9) == 0
    handles = {}
    for i in range(50):
        _, fh = raw_open(c, "a")
        handles[i] = fh
        assert c.setlk(a, fh, 1000 + i, F_WRLCK, 10 * i, 10 * i + 9) == 0
    for i in range(0, 50, 2):        # even owners' handles go
        assert c.release(a, handles.pop(i)) == 0
    for i in (25, 49, 1, 13):        # then odd owners close, out of order
        assert c.flush(a, probe_a, 1000 + i) == 0
        handles.pop(i)
    held = [i for i in range(50) if locked(c, a, probe_a, 10 * i, 10 * i + 9)]
    assert held == sorted(handles), f"ranges still locked: {held}"
    _, probe_b = raw_open(c, "b")
    assert locked(c, b, probe_b, 0, 9), "the closes of a dropped a lock on b"


def test_fcntl_lock_released_when_holder_exits(fs, contenders):
    path = make_file(fs)
    holder = subprocess.Popen(
        [helpers.PYTHON, "-c",
         "import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR)\n"
         "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        r, _, _ = select.select([holder.stdout], [], [], CHILD_TIMEOUT)
        assert r and holder.stdout.readline() == b"held\n"
        fd = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(OSError) as e:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert e.value.errno in (errno.EAGAIN, errno.EACCES)
            holder.kill()
            holder.wait(timeout=CHILD_TIMEOUT)
            # The kernel releases the dead holder's locks; bounded polling.
            def free():
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except OSError:
                    return False
            helpers.poll_until(free, timeout=10, what="the dead holder's lock to go")
        finally:
            os.close(fd)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_fcntl_getlk_names_the_holder(fs, contenders):
    """F_GETLK reports the conflicting lock's range and its holder's pid
    (POSIX: l_pid is the process holding the lock)."""
    path = make_file(fs)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 10, 20)       # bytes [20, 30)
        c = contenders(path, "getlk", 0, 0, "getlk", 30, 10)
        fields = c.line().split()
        assert fields[:2] == ["type", str(fcntl.F_WRLCK)], fields
        assert (int(fields[5]), int(fields[7])) == (20, 10), fields
        assert int(fields[3]) == os.getpid(), \
            f"F_GETLK names pid {fields[3]}, the holder is {os.getpid()}"
        fields = c.line().split()
        assert fields[:2] == ["type", str(fcntl.F_UNLCK)], fields   # [30, 40) is free
        c.finish()
    finally:
        os.close(fd)


def test_lock_waiters_do_not_take_every_worker(fsb_workdir, daemon_factory, mount_factory,
                                               contenders):
    """More processes wait for a lock than the session has workers
    (--threads 2): requests behind them, and finally the unlock, still run."""
    host = fsb_workdir / "export"
    host.mkdir()
    daemon = daemon_factory([f"test={host}"], ["--threads", "2"])
    m = mount_factory(daemon, options=["export=test"])
    path = m.path / "lockme"
    path.write_bytes(b"0" * 4096)
    holder = os.open(path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    waiters = [contenders(path, "flock-wait") for _ in range(6)]
    for w in waiters:
        assert w.line() == "waiting"
    for w in waiters:
        assert_still_waiting(w, how_long=0.2)
    # Every worker slot of --threads 2 would now be taken by a lock wait.
    (m.path / "other").write_bytes(b"still served")
    assert (m.path / "other").read_bytes() == b"still served"
    assert os.stat(m.path / "other").st_size == 12
    fcntl.flock(holder, fcntl.LOCK_UN)
    os.close(holder)
    for w in waiters:   # each gets the lock in turn: exiting releases it
        assert w.line() == "locked"
        w.finish()


@pytest.mark.deadline(60)
def test_lock_waits_beyond_the_limit_fail_with_enolck(fsb_workdir, daemon_factory,
                                                      mount_factory):
    """64 lock waits (per connection: queues=1 gives one) get threads of
    their own; more would have to block a thread the unlock may need, so
    they fail at once with ENOLCK, and the unlock still reaches the host."""
    host = fsb_workdir / "export"
    host.mkdir()
    daemon = daemon_factory([f"test={host}"])
    m = mount_factory(daemon, options=["export=test", "queues=1"])
    path = m.path / "lockme"
    path.write_bytes(b"0")
    holder = os.open(path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    script = ("import fcntl, os, sys\n"
              "fd = os.open(sys.argv[1], os.O_RDWR)\n"
              "try:\n"
              "    fcntl.flock(fd, fcntl.LOCK_EX)\n"
              "    print('locked', flush=True)\n"
              "except OSError as e:\n"
              "    print('errno', e.errno, flush=True)\n")
    procs = [subprocess.Popen([helpers.PYTHON, "-c", script, str(path)], stdout=subprocess.PIPE,
                              text=True) for _ in range(72)]
    try:
        refused = 0
        deadline = time.monotonic() + 20
        while refused < 8 and time.monotonic() < deadline:
            refused = sum(1 for p in procs if p.poll() is not None)
            time.sleep(0.1)
        assert refused == 8, f"{refused} lock waits ended while the lock was held"
        early = [p for p in procs if p.poll() is not None]
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    for p in procs:   # the 64 waiters get the lock in turn
        out, _ = p.communicate(timeout=30)
        want = ["errno", str(errno.ENOLCK)] if p in early else ["locked"]
        assert out.split() == want, out
