"""
test_flush_shortcut.py - the FLUSHes the relay answers itself
(src/mount/flush_shortcut.h): the close of a read-only file by a process
that never took a record lock on the mount costs no round trip to the host;
every other close still reaches it, so POSIX's rule holds (a process's
close of any descriptor of a file drops its record locks on it).

The daemon's debug log names each request it serves: the tests count the
FLUSHes there.  RELEASE follows FLUSH (the kernel sends it when the file is
closed for good), so once the daemon has logged a file's RELEASE, its FLUSH
would have been logged too.

Where the daemon says a close on the export is quiet (FSB_TERMS_QUIET_CLOSE:
a local filesystem without ->flush, nothing mounted below the export), the
relay answers the FLUSH of any handle whose owner never locked, written or
created ones too; elsewhere (a filesystem mounted below, an overlay, a FUSE
filesystem) only those of read-only handles, as before.
"""

import contextlib
import subprocess
import sys

import pytest

import helpers
from fuse_client import TERMS_QUIET_CLOSE, FuseClient

EXPORT = "test"
FLUSH = "FUSE_FLUSH"
RELEASE = "FUSE_RELEASE"


@pytest.fixture
def daemon(export_dir, daemon_factory):
    for i in range(10):
        (export_dir / f"f{i}").write_bytes(b"%d" % i)
    return daemon_factory([f"{EXPORT}={export_dir}"], log_level="debug")


@pytest.fixture
def loud_daemon(fsb_workdir, daemon_factory):
    """An export whose close is not quiet: a tmpfs is mounted below it (the
    daemon would cross into it, and the rule must hold there too)."""
    top = fsb_workdir / "loud"
    below = top / "below"
    below.mkdir(parents=True)
    for i in range(10):
        (top / f"f{i}").write_bytes(b"%d" % i)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "below", str(below)], check=True)
    try:
        yield daemon_factory([f"{EXPORT}={top}"], log_level="debug")
    finally:
        subprocess.run(["umount", "-l", str(below)], check=True)


def closed_for_good(d, releases):
    """Waits until the daemon has served RELEASES releases in all."""
    helpers.poll_until(lambda: helpers.served(d, RELEASE) >= releases, timeout=10,
                       what=f"{releases} RELEASEs in the daemon's log")


def test_read_only_closes_stay_in_the_guest(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    for i in range(10):
        with open(m.path / f"f{i}", "rb") as f:
            assert f.read() == b"%d" % i
    closed_for_good(daemon, 10)
    assert helpers.served(daemon, FLUSH) == 0, "a read-only close went to the host"


def test_a_writable_close_reaches_a_host_whose_close_is_not_quiet(loud_daemon, mount_factory):
    m = mount_factory(loud_daemon, options=[f"export={EXPORT}"])
    with open(m.path / "f0", "r+b") as f:
        f.write(b"w")
    with open(m.path / "new", "wb") as f:  # CREATE's handle
        f.write(b"n")
    closed_for_good(loud_daemon, 2)
    assert helpers.served(loud_daemon, FLUSH) == 2


def test_writes_and_creates_cost_no_flush_where_close_is_quiet(daemon, mount_factory,
                                                                export_dir):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    for i in range(5):
        with open(m.path / f"f{i}", "r+b") as f:
            f.write(b"w")
        with open(m.path / f"new{i}", "wb") as f:
            f.write(b"new %d" % i)
    closed_for_good(daemon, 10)
    assert helpers.served(daemon, FLUSH) == 0, "a close went to the host"
    assert (export_dir / "f4").read_bytes() == b"w" and \
        (export_dir / "new4").read_bytes() == b"new 4"


def test_flush_host_sends_every_close(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "flush=host"])
    for i in range(3):
        with open(m.path / f"f{i}", "rb") as f:
            f.read()
    closed_for_good(daemon, 3)
    assert helpers.served(daemon, FLUSH) == 3


# A process that locked: its read-only close must reach the host, which
# drops the process's locks on the file (POSIX); another process then gets
# the lock at once.
LOCK_THEN_CLOSE = r"""
import fcntl, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
os.close(os.open(path, os.O_RDONLY))  # drops the lock, as on a local disk
print("closed", flush=True)
sys.stdin.read()                      # holds fd open until told
"""

TRY_LOCK = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
    print("locked")
except OSError as e:
    print("busy", e.errno)
"""


def try_lock(path):
    r = subprocess.run([sys.executable, "-c", TRY_LOCK, path], stdout=subprocess.PIPE,
                       text=True, timeout=20)
    return r.stdout.strip()


@contextlib.contextmanager
def lock_holder(script, path):
    """A Python process running SCRIPT on PATH, told to go on through its
    stdin, and ended (stdin closed) on the way out."""
    holder = subprocess.Popen([sys.executable, "-c", script, path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=20)


# A locker's writable close, on an export whose close is quiet: still sent
# (the owner locked), so the host drops the lock and a host process gets it.
LOCK_THEN_CLOSE_WRITABLE = r"""
import fcntl, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
print("locked", flush=True)
sys.stdin.readline()
w = os.open(path, os.O_WRONLY)
os.write(w, b"x")
os.close(w)                           # drops the lock, as on a local disk
print("closed", flush=True)
sys.stdin.read()
"""


def test_quiet_close_still_drops_a_lockers_locks(daemon, mount_factory, export_dir):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    on_host = str(export_dir / "f5")
    with lock_holder(LOCK_THEN_CLOSE_WRITABLE, str(m.path / "f5")) as holder:
        assert holder.stdout.readline().strip() == "locked"
        assert try_lock(on_host).startswith("busy")
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "closed"
        helpers.poll_until(lambda: helpers.served(daemon, FLUSH) == 1, timeout=10,
                           what="the locker's close in the daemon's log")
        assert try_lock(on_host) == "locked", "the close kept the lock"


def test_a_stranger_to_locks_closes_without_flush_while_others_hold_them(daemon, mount_factory,
                                                                        export_dir):
    """A process that never locked has no lock to lose at close, even while
    another holds one on the same file."""
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    with lock_holder(LOCK_HOLD, str(m.path / "f6")) as holder:
        assert holder.stdout.readline().strip() == "locked"
        with open(m.path / "f6", "r+b") as f:
            f.write(b"y")
        closed_for_good(daemon, 1)  # the writer's (the holder's file is open)
        assert helpers.served(daemon, FLUSH) == 0
        assert try_lock(str(export_dir / "f6")).startswith("busy"), "a stranger's close dropped it"


def test_a_lockers_read_only_close_drops_its_locks(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    path = str(m.path / "f1")
    with lock_holder(LOCK_THEN_CLOSE, path) as holder:
        assert holder.stdout.readline().strip() == "closed"
        helpers.poll_until(lambda: helpers.served(daemon, FLUSH) == 1, timeout=10,
                           what="the locker's read-only close in the daemon's log")
        assert try_lock(path) == "locked", "the read-only close kept the lock"


@pytest.mark.parametrize("bad", ["flush=never", "open=lazy", "dir_attrs=maybe"])
def test_bad_auto_host_option_is_one_line(build_dir, daemon, fsb_workdir, bad):
    """The relay's shortcuts (flush=, open=, dir_attrs=) take auto or host."""
    mnt = fsb_workdir / "mnt"
    mnt.mkdir()
    r = subprocess.run([str(build_dir / "fsbridge-mount"), "-f", "-o", bad,
                        daemon.address, str(mnt)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=20)
    assert r.returncode != 0
    assert bad in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# The lock owner is the process (its table of open files): a thread of the
# locker that closes a read-only descriptor drops the lock; a forked
# child's close does not (POSIX; the child is another process).
THREAD_AND_CHILD = r"""
import fcntl, os, sys, threading
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
pid = os.fork()
if pid == 0:
    os.close(os.open(path, os.O_RDONLY))
    os._exit(0)
os.waitpid(pid, 0)
print("child closed", flush=True)
sys.stdin.readline()
t = threading.Thread(target=lambda: os.close(os.open(path, os.O_RDONLY)))
t.start()
t.join()
print("thread closed", flush=True)
sys.stdin.read()
"""


def test_lock_owners_are_processes_not_threads(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    path = str(m.path / "f2")
    with lock_holder(THREAD_AND_CHILD, path) as holder:
        assert holder.stdout.readline().strip() == "child closed"
        assert try_lock(path).startswith("busy"), "a child's close dropped its parent's lock"
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "thread closed"
        assert try_lock(path) == "locked", "a thread's close kept its process's lock"


def test_a_handle_number_given_out_again_is_not_taken_for_read_only(loud_daemon, mount_factory):
    """The host gives a released handle's number to its next open (last
    freed, first given: passthrough/handles.c): the relay forgets a
    read-only handle at its RELEASE, so the writable open that gets the
    number again still flushes on the host (where its close is not
    quiet)."""
    m = mount_factory(loud_daemon, options=[f"export={EXPORT}"])
    with open(m.path / "f3", "rb") as f:
        f.read()
    closed_for_good(loud_daemon, 1)
    with open(m.path / "f3", "r+b") as f:
        f.write(b"w")
    closed_for_good(loud_daemon, 2)
    assert helpers.served(loud_daemon, FLUSH) == 1


LOCK_HOLD = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
print("locked", flush=True)
sys.stdin.read()
"""


def quiet_close_term(d, export=EXPORT):
    with FuseClient(d.socket, export=export) as c:
        features, _ = c.hello_reply["terms"]
        return bool(features & TERMS_QUIET_CLOSE)


def test_terms_say_where_close_is_quiet(daemon, loud_daemon, fsb_workdir, daemon_factory):
    assert quiet_close_term(daemon)
    assert "close is quiet" in daemon.stderr_text()
    assert not quiet_close_term(loud_daemon)
    assert "a filesystem is mounted below it" in loud_daemon.stderr_text()
    lower, upper = fsb_workdir / "lower", fsb_workdir / "upper"
    lower.mkdir()
    upper.mkdir()
    overlay = daemon_factory([f"{EXPORT}={lower},overlay={upper}"])
    assert not quiet_close_term(overlay)
    unsandboxed = daemon_factory([f"{EXPORT}={lower}"], ["--sandbox", "none"])
    assert not quiet_close_term(unsandboxed)


def test_an_export_on_a_fuse_mount_is_not_quiet(daemon, mount_factory, daemon_factory):
    """fsbridge's own mount as a host filesystem: FUSE has a ->flush (the
    server below may report errors at close)."""
    m = mount_factory(daemon, options=[f"export={EXPORT}", "allow_other"])
    above = daemon_factory([f"{EXPORT}={m.path}"])
    try:
        assert not quiet_close_term(above)
        assert "may report errors at close" in above.stderr_text()
    finally:
        above.stop()
