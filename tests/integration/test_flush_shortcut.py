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
"""

import contextlib
import re
import subprocess
import sys

import pytest

import helpers

EXPORT = "test"
FLUSH = re.compile(r"FLUSH/\d+ \(unique")
RELEASE = re.compile(r"RELEASE/\d+ \(unique")


@pytest.fixture
def daemon(export_dir, daemon_factory):
    for i in range(10):
        (export_dir / f"f{i}").write_bytes(b"%d" % i)
    return daemon_factory([f"{EXPORT}={export_dir}"], log_level="debug")


def served(d, pattern):
    return len(pattern.findall(d.stderr_text()))


def closed_for_good(d, releases):
    """Waits until the daemon has served RELEASES releases in all."""
    helpers.poll_until(lambda: served(d, RELEASE) >= releases, timeout=10,
                       what=f"{releases} RELEASEs in the daemon's log")


def test_read_only_closes_stay_in_the_guest(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    for i in range(10):
        with open(m.path / f"f{i}", "rb") as f:
            assert f.read() == b"%d" % i
    closed_for_good(daemon, 10)
    assert served(daemon, FLUSH) == 0, "a read-only close went to the host"


def test_a_writable_close_reaches_the_host(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    with open(m.path / "f0", "r+b") as f:
        f.write(b"w")
    closed_for_good(daemon, 1)
    assert served(daemon, FLUSH) == 1


def test_flush_host_sends_every_close(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "flush=host"])
    for i in range(3):
        with open(m.path / f"f{i}", "rb") as f:
            f.read()
    closed_for_good(daemon, 3)
    assert served(daemon, FLUSH) == 3


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


def test_a_lockers_read_only_close_drops_its_locks(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    path = str(m.path / "f1")
    with lock_holder(LOCK_THEN_CLOSE, path) as holder:
        assert holder.stdout.readline().strip() == "closed"
        helpers.poll_until(lambda: served(daemon, FLUSH) == 1, timeout=10,
                           what="the locker's read-only close in the daemon's log")
        assert try_lock(path) == "locked", "the read-only close kept the lock"


def test_bad_flush_option_is_one_line(build_dir, daemon, fsb_workdir):
    mnt = fsb_workdir / "mnt"
    mnt.mkdir()
    r = subprocess.run([str(build_dir / "fsbridge-mount"), "-f", "-o", "flush=never",
                        daemon.address, str(mnt)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=20)
    assert r.returncode != 0
    assert "flush=never" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


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


def test_a_handle_number_given_out_again_is_not_taken_for_read_only(daemon, mount_factory):
    """The host gives a released handle's number to its next open (last
    freed, first given: passthrough/handles.c): the relay forgets a
    read-only handle at its RELEASE, so the writable open that gets the
    number again still flushes on the host."""
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    with open(m.path / "f3", "rb") as f:
        f.read()
    closed_for_good(daemon, 1)
    with open(m.path / "f3", "r+b") as f:
        f.write(b"w")
    closed_for_good(daemon, 2)
    assert served(daemon, FLUSH) == 1
