"""
test_no_open.py - open=none (src/mount/no_open.h): the relay answers OPEN
and FLUSH with ENOSYS, the guest kernel stops sending them (and RELEASE),
and every file it opens carries fh 0, which a version-5 daemon serves by
opening the request's node for that request alone
(src/engine/fuse_ops.c, "files"; FSB_TERMS_NO_OPEN).

What must hold: no OPEN, FLUSH or RELEASE of an opened file reaches the
host, and the host keeps no file open between requests; what programs
see of reads, writes, appends, truncation, mmap, sparse files and
permissions is what a local filesystem shows; locks are the guest's own
(the documented price); where open=none cannot hold (no pushes, no
default_permissions) the mount says so and opens as open=auto.  The
protocol tests speak to the daemon directly, as a hostile guest could.
"""

import errno
import fcntl
import os
import re
import resource
import subprocess
import sys

import pytest

import helpers
from fuse_client import FUSE_NO_OPEN_SUPPORT, KERNEL_INIT_FLAGS, TERMS_NO_OPEN, FuseClient

EXPORT = "test"
OPEN = "FUSE_OPEN"
FLUSH = "FUSE_FLUSH"
RELEASE = "FUSE_RELEASE"
SETLK = "FUSE_SETLKW?"
READ = "FUSE_READ"
FILES = 20
IN_FORCE = "open=none: files open and close with no round trip"


def content(i):
    return b"file %d\n" % i * (i + 1)


@pytest.fixture
def daemon(export_dir, daemon_factory):
    for i in range(FILES):
        (export_dir / f"f{i}").write_bytes(content(i))
    return daemon_factory([f"{EXPORT}={export_dir},cache=coherent"], log_level="debug")


@pytest.fixture
def mnt(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "open=none", "allow_other"],
                      extra_args=["-d"])
    helpers.poll_until(lambda: IN_FORCE in m.stderr_text(), what="open=none in the relay's log")
    return m


def relayed(m, opcode):
    """Requests with OPCODE the guest kernel sent the relay (its -d log)."""
    return len(re.findall(r"request \d+( \(ring \d+\))?: opcode %d," % opcode,
                          m.stderr_text()))


FUSE_OPEN, FUSE_RELEASE, FUSE_FLUSH = 14, 18, 25


def test_opens_and_closes_never_reach_the_host(daemon, mnt):
    for i in range(FILES):  # the lookups: the host keeps its own fd of each inode
        os.stat(mnt.path / f"f{i}")
    base = helpers.settled_fd_count(daemon.proc.pid)
    for _ in range(2):  # cold, then from the guest's page cache
        for i in range(FILES):
            assert (mnt.path / f"f{i}").read_bytes() == content(i)
    for i in range(FILES):  # writable opens too (open=auto sends those to the host)
        os.close(os.open(mnt.path / f"f{i}", os.O_WRONLY))
    assert helpers.served(daemon, READ) >= FILES
    # the host opened each file for its READ alone
    assert helpers.settled_fd_count(daemon.proc.pid) == base
    mnt.umount(expect_rc=0)  # anything the kernel still had to send is out
    for opcode in (OPEN, FLUSH, RELEASE):
        assert helpers.served(daemon, opcode) == 0, f"{opcode} reached the host"
    # and the guest kernel stopped asking the relay after its first answers
    # (the first of each, and any sent at once with it, got ENOSYS)
    for opcode in (FUSE_OPEN, FUSE_FLUSH):
        assert 1 <= relayed(mnt, opcode) <= 2, f"opcode {opcode}: {relayed(mnt, opcode)}"
    assert relayed(mnt, FUSE_RELEASE) == 0


def test_host_changes_still_reach_the_guest(daemon, mnt, export_dir):
    assert (mnt.path / "f2").read_bytes() == content(2)
    (export_dir / "f2").write_bytes(b"new bytes")
    helpers.poll_until(lambda: (mnt.path / "f2").read_bytes() == b"new bytes", timeout=5,
                       what="the host's new contents in the guest")


# ---- what programs see: the same as on a local disk ---------------------

def file_ops(d):
    """Writes, appends, truncation and sparse files under directory D;
    returns what a program reads back.  (A shared mapping: as a user,
    below.)"""
    seen = {}
    p = os.path.join(d, "a")
    with open(p, "wb") as f:
        f.write(b"0123456789")
    with open(p, "ab") as f:  # O_APPEND
        f.write(b"tail")
    fd = os.open(p, os.O_RDWR)
    os.pwrite(fd, b"XY", 3)
    os.fsync(fd)
    os.ftruncate(fd, 12)
    os.close(fd)
    seen["a"] = open(p, "rb").read()
    with open(p, "wb") as f:  # O_TRUNC of an existing file
        f.write(b"short")
    seen["a truncated"] = open(p, "rb").read()

    s = os.path.join(d, "sparse")
    fd = os.open(s, os.O_RDWR | os.O_CREAT, 0o644)
    os.close(fd)
    fd = os.open(s, os.O_RDWR)  # a plain open, not the CREATE's handle
    os.pwrite(fd, b"data", 1 << 20)
    os.posix_fallocate(fd, 0, 4096)
    seen["sparse size"] = os.fstat(fd).st_size
    seen["data at"] = os.lseek(fd, 4096, os.SEEK_DATA)
    seen["hole at"] = os.lseek(fd, 0, os.SEEK_HOLE)
    os.close(fd)

    c = os.path.join(d, "copy")
    src = os.open(p, os.O_RDONLY)
    dst = os.open(c, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(dst)
    dst = os.open(c, os.O_WRONLY)
    seen["copied"] = os.copy_file_range(src, dst, 5)
    os.close(src)
    os.close(dst)
    seen["copy"] = open(c, "rb").read()
    return seen


def test_files_behave_as_on_a_local_disk(mnt, export_dir, tmp_path):
    native = tmp_path / "native"
    native.mkdir()
    guest = mnt.path / "ops"
    guest.mkdir()
    assert file_ops(str(guest)) == file_ops(str(native))
    # and the host has the bytes
    assert (export_dir / "ops" / "a").read_bytes() == b"short"
    assert (export_dir / "ops" / "copy").read_bytes() == (native / "copy").read_bytes()


WRITER = r"""
import mmap, os, sys
d = sys.argv[1]
# git's pattern: a new file made read-only at its creation, then written
fd = os.open(os.path.join(d, "obj"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
os.write(fd, b"object")
os.close(fd)
# a shared mapping, written back by the kernel (no caller in the request)
p = os.path.join(d, "mine")
with open(p, "wb") as f:
    f.write(b"-" * 8192)
fd = os.open(p, os.O_RDWR)
with mmap.mmap(fd, 8192) as m:
    m[4096:4100] = b"mine"
    m.flush()
os.close(fd)
for name, flags in (("root-only", os.O_RDONLY), ("root-ro", os.O_WRONLY)):
    try:
        os.close(os.open(os.path.join(d, name), flags))
        print(name, "opened")
    except PermissionError:
        print(name, "EACCES")
"""


def test_permissions_of_a_user_who_is_not_root(mnt, export_dir):
    work = mnt.path / "user"
    work.mkdir()
    os.chown(work, helpers.NOBODY_UID, helpers.NOBODY_GID)
    (work / "root-only").write_bytes(b"secret")
    os.chmod(work / "root-only", 0o600)
    (work / "root-ro").write_bytes(b"x")
    os.chmod(work / "root-ro", 0o644)
    r = subprocess.run([sys.executable, "-c", WRITER, str(work)], preexec_fn=helpers.as_user(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 0, r.stdout
    assert r.stdout.split("\n")[:2] == ["root-only EACCES", "root-ro EACCES"], r.stdout
    host = export_dir / "user"
    assert (host / "obj").read_bytes() == b"object"
    assert (host / "obj").stat().st_mode & 0o777 == 0o444
    assert (host / "mine").read_bytes() == b"-" * 4096 + b"mine" + b"-" * 4092


RUNNER = r"""
import os, subprocess, sys
d = sys.argv[1]
# a binary the user may run but not read (mode 0711), as on a local disk
print(subprocess.run([os.path.join(d, "true")]).returncode)
# a file the user may write but not read (mode 0200): fsync and seeks work
fd = os.open(os.path.join(d, "log"), os.O_WRONLY | os.O_APPEND)
os.write(fd, b"entry\n")
os.fsync(fd)
print(os.lseek(fd, 0, os.SEEK_DATA))
os.close(fd)
"""


def test_execute_only_and_write_only_files(mnt, export_dir):
    work = mnt.path / "modes"
    work.mkdir()
    # written on the host: the guest has none of its pages cached
    with open("/usr/bin/true", "rb") as f:
        (export_dir / "modes" / "true").write_bytes(f.read())
    os.chmod(export_dir / "modes" / "true", 0o711)
    (work / "log").write_bytes(b"")
    os.chown(work / "log", helpers.NOBODY_UID, helpers.NOBODY_GID)
    os.chmod(work / "log", 0o200)
    r = subprocess.run([sys.executable, "-c", RUNNER, str(work)], preexec_fn=helpers.as_user(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 0, r.stdout
    assert r.stdout.split() == ["0", "0"], r.stdout
    assert (export_dir / "modes" / "log").read_bytes() == b"entry\n"


# ---- locks: the guest's own ---------------------------------------------

LOCKER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
sys.stdin.read()
"""


def try_lock(path):
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        assert e.errno in (errno.EAGAIN, errno.EACCES)
        return False
    finally:
        os.close(fd)


def test_locks_exclude_the_guests_processes_but_not_the_host(daemon, mnt, export_dir):
    holder = subprocess.Popen([sys.executable, "-c", LOCKER, str(mnt.path / "f3")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert not try_lock(mnt.path / "f3"), "a second guest process took the lock"
        # the documented price: the host does not see the guest's lock
        assert try_lock(export_dir / "f3")
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert try_lock(mnt.path / "f3")
    assert helpers.served(daemon, SETLK) == 0


# ---- where open=none cannot hold, the mount says so ----------------------

def test_without_pushes_it_falls_back_to_open_auto(export_dir, daemon_factory, mount_factory):
    d = daemon_factory([f"{EXPORT}={export_dir},cache=auto"], log_level="debug")
    (export_dir / "g").write_bytes(b"g")
    m = mount_factory(d, options=[f"export={EXPORT}", "open=none"])
    helpers.poll_until(lambda: "open=none is not in force (the export does not push" in
                       m.stderr_text(), what="the fallback in the relay's log")
    assert (m.path / "g").read_bytes() == b"g"
    assert helpers.served(d, OPEN) == 0  # open=auto: the relay answered it
    os.close(os.open(m.path / "g", os.O_WRONLY))
    assert helpers.served(d, OPEN) == 1  # a writable open goes to the host: no_open is not in force


def test_without_default_permissions_every_open_goes_to_the_host(daemon, mount_factory):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "open=none",
                                       "no_default_permissions"])
    helpers.poll_until(lambda: "open=none is not in force (no_default_permissions)" in
                       m.stderr_text(), what="the fallback in the relay's log")
    assert (m.path / "f1").read_bytes() == content(1)
    assert helpers.served(daemon, OPEN) == 1


def test_where_close_is_not_quiet_it_falls_back(fsb_workdir, daemon_factory, mount_factory):
    """A FLUSH or a host close may report an error there (NFS write-back):
    open=none, which has neither, is not granted."""
    top = fsb_workdir / "loud"
    below = top / "below"
    below.mkdir(parents=True)
    (top / "g").write_bytes(b"g")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "below", str(below)], check=True)
    try:
        d = daemon_factory([f"{EXPORT}={top},cache=coherent"], log_level="debug")
        m = mount_factory(d, options=[f"export={EXPORT}", "open=none"])
        helpers.poll_until(lambda: "open=none is not in force (the export's close is not quiet)"
                           in m.stderr_text(), what="the fallback in the relay's log")
        os.close(os.open(m.path / "g", os.O_WRONLY))
        assert helpers.served(d, OPEN) == 1
        m.umount(expect_rc=0)
    finally:
        subprocess.run(["umount", "-l", str(below)], check=True)


# ---- the protocol: fh 0 as a hostile guest may send it -------------------

def client(daemon, **kw):
    return FuseClient(daemon.socket, export=EXPORT, **kw)


def test_terms_offer_fh_0_to_version_5_only(daemon):
    with client(daemon) as c:
        assert c.hello_reply["terms"][0] & TERMS_NO_OPEN
    with client(daemon, version=4) as c:
        assert not c.hello_reply["terms"][0] & TERMS_NO_OPEN
        err, e = c.lookup(1, b"f5")
        assert c.read(0, 0, 100, nodeid=e["nodeid"])[0] == errno.EBADF


def test_a_version_4_join_gets_no_term_it_does_not_know(daemon):
    with client(daemon) as first:
        assert first.hello_reply["terms"][0] & TERMS_NO_OPEN
        with client(daemon, version=4, join=first.token) as joined:
            assert joined.hello_reply["status"] == 0
            assert not joined.hello_reply["terms"][0] & TERMS_NO_OPEN


def test_fh_0_on_an_overlay_export_copies_up(overlay_factory):
    d, lower, upper = overlay_factory(EXPORT, {"l": b"lower bytes"})
    with client(d) as c:
        err, e = c.lookup(1, b"l")
        assert c.read(0, 0, 100, nodeid=e["nodeid"]) == (0, b"lower bytes")
        assert c.write(0, 0, b"UPPER", nodeid=e["nodeid"]) == (0, 5)
        assert c.read(0, 0, 100, nodeid=e["nodeid"]) == (0, b"UPPER bytes")
        err, dfh = c.opendir(1)
        assert err == 0 and dfh != 0
    assert (upper / "l").read_bytes() == b"UPPER bytes"
    assert (lower / "l").read_bytes() == b"lower bytes"


def test_no_handle_the_daemon_gives_out_is_0(daemon):
    with client(daemon) as c:
        err, e = c.lookup(1, b"f1")
        err, fh = c.open(e["nodeid"])
        assert err == 0 and fh != 0
        err, dfh = c.opendir(1)
        assert err == 0 and dfh != 0


def test_fh_0_reads_and_writes_as_the_caller_and_keeps_nothing_open(daemon, export_dir):
    pid = daemon.proc.pid
    (export_dir / "root-only").write_bytes(b"secret")
    os.chmod(export_dir / "root-only", 0o600)
    with client(daemon) as root, client(daemon, uid=helpers.NOBODY_UID,
                                        gid=helpers.NOBODY_GID) as nobody:
        err, e = root.lookup(1, b"f5")
        err, secret = root.lookup(1, b"root-only")
        err, e2 = nobody.lookup(1, b"root-only")
        base = helpers.settled_fd_count(pid)
        assert root.read(0, 0, 4096, nodeid=e["nodeid"]) == (0, content(5))
        assert root.write(0, 0, b"FILE", nodeid=e["nodeid"]) == (0, 4)
        assert nobody.read(0, 0, 10, nodeid=e2["nodeid"])[0] == errno.EACCES
        assert nobody.write(0, 0, b"x", nodeid=e2["nodeid"])[0] == errno.EACCES
        assert root.setlk(e["nodeid"], 0, 1, fcntl.F_WRLCK, 0, 10) == errno.EBADF
        assert root.flush(e["nodeid"], 0) == 0
        assert helpers.settled_fd_count(pid) == base
    assert (export_dir / "f5").read_bytes()[:4] == b"FILE"
    assert (export_dir / "root-only").read_bytes() == b"secret"


def test_fh_0_writes_on_a_read_only_export_are_refused(export_dir, daemon_factory):
    (export_dir / "r").write_bytes(b"r")
    d = daemon_factory([f"{EXPORT}={export_dir},ro"])
    with client(d) as c:
        err, e = c.lookup(1, b"r")
        assert c.write(0, 0, b"x", nodeid=e["nodeid"])[0] == errno.EROFS
        assert c.read(0, 0, 10, nodeid=e["nodeid"]) == (0, b"r")
    assert (export_dir / "r").read_bytes() == b"r"


# The guest's budget of open files in the tests below: above the 32
# created files' handles a session without opens keeps
# (src/engine/created_handles.h, CREATED_OPEN_MAX).
BUDGET = 48


@pytest.fixture
def small_budget(export_dir, daemon_factory):
    (export_dir / "seed").write_bytes(b"seed")
    return daemon_factory([f"{EXPORT}={export_dir},cache=coherent"],
                          ["--guest-max-open", str(BUDGET)], log_level="debug")


def test_files_it_creates_do_not_use_up_the_open_file_budget(small_budget, mount_factory,
                                                             export_dir):
    """Once no_open is set the guest kernel sends no RELEASE, not even for
    a file it created.  Each creation used to keep its host handle for
    good, and the creation past the guest's budget failed with EMFILE
    (seen: bench.sh's create loop stopped at its 101st file)."""
    m = mount_factory(small_budget, options=[f"export={EXPORT}", "open=none"], extra_args=["-d"])
    helpers.poll_until(lambda: IN_FORCE in m.stderr_text(), what="open=none in the relay's log")
    assert (m.path / "seed").read_bytes() == b"seed"  # the OPEN that sets the kernel's no_open
    work = m.path / "many"
    work.mkdir()
    # open across all the creations below: its handle is let go, and its
    # writes are then served as fh 0's, as its caller
    first = os.open(work / "first", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    for i in range(BUDGET * 4):
        fd = os.open(work / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"file %d" % i)
        os.close(fd)
    os.write(first, b"written last")
    os.close(first)
    assert relayed(m, FUSE_RELEASE) == 0  # no RELEASE came to let them go
    host = export_dir / "many"
    for i in range(BUDGET * 4):
        assert (host / f"f{i}").read_bytes() == b"file %d" % i
    assert (host / "first").read_bytes() == b"written last"


def test_only_a_session_without_opens_lets_created_handles_go(small_budget):
    """The host bounds created files' handles only for a client whose INIT
    offers FUSE_NO_OPEN_SUPPORT (fsbridge-mount relays the offer only for
    open=none): elsewhere RELEASE comes, and a handle is the guest's to
    release, or to keep until the budget says EMFILE."""
    with client(small_budget, init=False) as c:
        assert c.init(flags=KERNEL_INIT_FLAGS | FUSE_NO_OPEN_SUPPORT)[0] == 0
        handles = []
        for i in range(BUDGET * 2):
            err, e, fh = c.create(1, b"a%d" % i)
            assert err == 0, os.strerror(err)
            handles.append((e["nodeid"], fh))
        node, fh = handles[0]  # let go long since: served as the node's fh 0
        assert c.write(fh, 0, b"late", nodeid=node) == (0, 4)
        node, fh = handles[-1]  # kept
        assert c.write(fh, 0, b"kept", nodeid=node) == (0, 4)
        assert c.release(node, fh) == 0
    for version, offer in ((7, KERNEL_INIT_FLAGS & ~FUSE_NO_OPEN_SUPPORT),
                           # a version-6 relay offers it in every mode
                           (6, KERNEL_INIT_FLAGS | FUSE_NO_OPEN_SUPPORT)):
        with client(small_budget, init=False, version=version) as c:
            assert c.init(flags=offer)[0] == 0
            errs = [c.create(1, b"b%d-%d" % (version, i))[0] for i in range(BUDGET + 1)]
            assert errs[:BUDGET // 2] == [0] * (BUDGET // 2)
            assert errs[-1] == errno.EMFILE


def test_without_opens_no_other_file_handle_is_taken(small_budget, export_dir):
    """Such a session has no OPEN (ENOSYS) and no handle but created
    files' ids and fh 0: a guessed backend number reaches no file."""
    with client(small_budget, init=False) as c:
        assert c.init(flags=KERNEL_INIT_FLAGS | FUSE_NO_OPEN_SUPPORT)[0] == 0
        err, e = c.lookup(1, b"seed")
        assert c.open(e["nodeid"])[0] == errno.ENOSYS
        err, e2, fh = c.create(1, b"new")
        assert err == 0
        for guess in range(1, 8):
            assert c.write(guess, 0, b"x", nodeid=e2["nodeid"])[0] == errno.EBADF
            assert c.release(e2["nodeid"], guess) == 0  # and closes nothing
        assert c.write(fh, 0, b"mine", nodeid=e2["nodeid"]) == (0, 4)
    assert (export_dir / "new").read_bytes() == b"mine"


UNLINKED = r"""
import os, sys
d = sys.argv[1]
# a temporary file: created, unlinked while open, then used after many
# other creations (its host file lives only through the open handle)
fd = os.open(os.path.join(d, "tmp"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.unlink(os.path.join(d, "tmp"))
os.write(fd, b"early")
for i in range(int(sys.argv[2])):
    os.close(os.open(os.path.join(d, "n%d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
os.write(fd, b" late")
os.fsync(fd)
os.lseek(fd, 0, os.SEEK_SET)
with open("/proc/sys/vm/drop_caches", "w") as f:
    f.write("1")  # the next read must come from the host
print(os.read(fd, 100).decode())
"""


def test_an_unlinked_file_keeps_its_data_past_other_creations(export_dir, daemon_factory,
                                                              mount_factory):
    """Its handle is never let go (only its FORGET ends it): the node's own
    fd is one of a cache that a small RLIMIT_NOFILE keeps small, and once
    evicted nothing could open the file again."""
    (export_dir / "seed").write_bytes(b"seed")
    d = daemon_factory([f"{EXPORT}={export_dir},cache=coherent"], ["--guest-max-open", str(BUDGET)],
                       rlimits={resource.RLIMIT_NOFILE: (512, 512)})
    m = mount_factory(d, options=[f"export={EXPORT}", "open=none"])
    helpers.poll_until(lambda: IN_FORCE in m.stderr_text(), what="open=none in the relay's log")
    assert (m.path / "seed").read_bytes() == b"seed"  # the kernel's no_open
    (m.path / "t").mkdir()
    r = subprocess.run([sys.executable, "-c", UNLINKED, str(m.path / "t"), "400"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "early late"
