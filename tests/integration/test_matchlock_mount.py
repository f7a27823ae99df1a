"""
test_matchlock_mount.py - fsbridge-mount --protocol=matchlock.

Against matchlock_standin.py, which behaves like matchlock's ORIGINAL host
(no ops 14-18, collapsed errors, Setattr = chmod, no O_APPEND, host follows
symlinks): the mount works, what the host lacks turns off cleanly with the
errors a local filesystem without the feature gives, nothing hangs, and a
lost host ends the daemon with a message.  Against fsbridged: the additions
are used (symlinks, hard links, truncate, chown, utimens, owners), the
mount point is the default path prefix, requests spread over several
connections.  The POSIX suite itself runs over matchlock through the `fs`
fixture (conftest.py, matchlock_limits.py).
"""

import contextlib
import errno
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import helpers

STANDIN = Path(__file__).resolve().parent / "matchlock_standin.py"
LOST_CONNECTION = re.compile(r"lost connection to .*: (the host closed|reading|sending)")
PROTOCOL = "--protocol=matchlock"


class Standin:
    def __init__(self, proc, socket, log):
        self.proc = proc
        self.socket = socket
        self.address = f"unix:{socket}"
        self.log = log

    def log_lines(self):
        try:
            return self.log.read_text().splitlines()
        except OSError:
            return []

    def count(self, line):
        return sum(1 for entry in self.log_lines() if entry == line)


@pytest.fixture
def standin_factory(fsb_workdir):
    """start(prefix, root, *extra) -> Standin: matchlock_standin.py, ready."""
    started = []

    def start(prefix, root, *extra):
        n = len(started)
        socket, log = fsb_workdir / f"ml{n}.sock", fsb_workdir / f"standin{n}.log"
        proc = subprocess.Popen([helpers.PYTHON, str(STANDIN), "--listen", str(socket),
                                 "--export", f"{prefix}={root}", "--log", str(log), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        return Standin(proc, socket, log)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def standin_mount(fsb_workdir, export_dir, standin_factory, mount_factory):
    """An original-matchlock-like host and a mount of it."""
    mnt = fsb_workdir / "mnt"
    standin = standin_factory(str(mnt), export_dir)
    m = mount_factory(standin.address, mnt, options=["allow_other"], extra_args=[PROTOCOL])
    return standin, m


def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def read(path):
    return helpers.get_bytes(path)


# --------------------------------------------------------------------------
# Against a host like matchlock's original one


@pytest.mark.deadline(60)
def test_standin_files_and_directories(standin_mount, export_dir):
    standin, m = standin_mount
    (export_dir / "existing").write_bytes(b"from the host")
    assert read(m.path / "existing") == b"from the host"

    helpers.put_bytes(m.path / "new", b"from the guest")
    assert (export_dir / "new").read_bytes() == b"from the guest"
    os.mkdir(m.path / "dir", 0o750)
    os.rename(m.path / "new", m.path / "dir" / "moved")
    assert (export_dir / "dir" / "moved").read_bytes() == b"from the guest"
    assert sorted(os.listdir(m.path)) == ["dir", "existing"]
    assert os.listdir(m.path / "dir") == ["moved"]
    os.unlink(m.path / "dir" / "moved")
    os.rmdir(m.path / "dir")
    assert sorted(os.listdir(export_dir)) == ["existing"]
    # The whole directory comes in one response, and so does a big one.
    os.mkdir(export_dir / "many")
    for i in range(1500):
        (export_dir / "many" / f"entry-{i:04d}").write_bytes(b"")
    assert sorted(os.listdir(m.path / "many")) == [f"entry-{i:04d}" for i in range(1500)]


@pytest.mark.deadline(60)
def test_standin_real_permissions_are_shown(standin_mount, export_dir):
    _, m = standin_mount
    helpers.put_bytes(m.path / "f", b"x")
    os.chmod(m.path / "f", 0o640)
    os.mkdir(m.path / "d", 0o700)
    os.chmod(m.path / "d", 0o711)
    assert stat.S_IMODE(os.stat(m.path / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(export_dir / "f").st_mode) == 0o640
    st = os.stat(m.path / "d")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o711


@pytest.mark.deadline(60)
def test_standin_append_works(standin_mount, export_dir):
    """matchlock's own guest fails appends with EIO: its host refuses writes on
    an O_APPEND handle.  The guest kernel places appends itself, so O_APPEND
    never reaches the host."""
    _, m = standin_mount
    helpers.put_bytes(m.path / "log", b"one\n")
    for line in (b"two\n", b"three\n"):
        with open(m.path / "log", "ab") as f:
            f.write(line)
    r = subprocess.run(["sh", "-c", f"echo four >> '{m.path / 'log'}'"], timeout=10)
    assert r.returncode == 0
    assert (export_dir / "log").read_bytes() == b"one\ntwo\nthree\nfour\n"


@pytest.mark.deadline(60)
def test_standin_missing_features_turn_off_cleanly(standin_mount, export_dir):
    standin, m = standin_mount
    helpers.put_bytes(m.path / "f", b"0123456789")
    p = m.path / "f"
    # What the host cannot do fails as on a filesystem without it.
    assert errno_of(os.symlink, "f", m.path / "sym") == errno.EPERM
    assert errno_of(os.link, p, m.path / "hard") == errno.EPERM
    assert errno_of(os.mkfifo, m.path / "fifo") == errno.EPERM
    assert errno_of(os.truncate, p, 3) == errno.EPERM
    assert errno_of(os.utime, p, (1, 1)) == errno.EPERM
    assert errno_of(os.chown, p, 1000, 1000) == errno.EPERM
    assert errno_of(os.readlink, p) == errno.EINVAL
    assert sorted(os.listdir(export_dir)) == ["f"]
    assert (export_dir / "f").read_bytes() == b"0123456789"
    # What it can do still works: no change of owner, truncation to zero
    # (through Open with O_TRUNC), chmod.
    os.chown(p, os.stat(p).st_uid, os.stat(p).st_gid)
    os.truncate(p, 0)
    assert (export_dir / "f").read_bytes() == b""
    with open(p, "r+b", buffering=0) as f:
        f.write(b"abc")
        os.ftruncate(f.fileno(), 0)
    assert os.stat(p).st_size == 0
    # The extensions were probed once, before mounting, and never sent since.
    assert standin.count("op readlink") == 1
    for op in ("truncate", "symlink", "link", "mkdir_all"):
        assert standin.count(f"op {op}") == 0, op
    # Nothing is left hanging: the daemon is fine and unmounts cleanly.
    assert m.proc.poll() is None


@pytest.mark.deadline(60)
def test_standin_host_errors_and_symlinks(standin_mount, export_dir):
    """The host's collapsed errors reach the guest as they are; its symlinks
    show as the files they point to (matchlock's server follows them)."""
    _, m = standin_mount
    os.mkdir(export_dir / "full")
    (export_dir / "full" / "x").write_bytes(b"")
    (export_dir / "target").write_bytes(b"pointed to")
    os.symlink("target", export_dir / "link")
    assert errno_of(os.rmdir, m.path / "full") == errno.EEXIST  # ENOTEMPTY, collapsed
    assert errno_of(os.stat, m.path / "nothing") == errno.ENOENT
    st = os.lstat(m.path / "link")
    assert stat.S_ISREG(st.st_mode)
    assert read(m.path / "link") == b"pointed to"


@pytest.mark.deadline(60)
def test_standin_oversized_response_fails_that_request_only(fsb_workdir, export_dir,
                                                           standin_factory, mount_factory):
    """A response over the 16 MiB bound (a listing of millions of names) is
    read past and refused; the mount goes on."""
    mnt = fsb_workdir / "mnt"
    os.mkdir(export_dir / "huge")
    (export_dir / "small").write_bytes(b"ok")
    standin = standin_factory(str(mnt), export_dir, "--pad-readdir", "huge:17000000")
    m = mount_factory(standin.address, mnt, options=["connections=1"], extra_args=[PROTOCOL])
    assert errno_of(os.listdir, m.path / "huge") == errno.EIO
    assert sorted(os.listdir(m.path)) == ["huge", "small"]
    assert read(m.path / "small") == b"ok"
    assert "response to Readdir of 170000" in m.stderr_text()
    assert m.proc.poll() is None


def read_at_once(mnt, n):
    """Reads f0 .. f<n-1> of MNT from N threads at once: {i: bytes}."""
    results = {}

    def reader(i):
        with open(mnt / f"f{i}", "rb", buffering=0) as f:
            results[i] = f.read()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.deadline(60)
def test_standin_requests_spread_over_connections(fsb_workdir, export_dir, standin_factory,
                                                  mount_factory):
    mnt = fsb_workdir / "mnt"
    for i in range(4):
        (export_dir / f"f{i}").write_bytes(bytes([65 + i]) * 100)
    # Each read is held 1 s: the four threads' reads overlap however late
    # a loaded machine starts them, so that the pool has to grow.
    standin = standin_factory(str(mnt), export_dir, "--read-delay", "1.0")
    m = mount_factory(standin.address, mnt, options=["connections=4", "threads=4"],
                      extra_args=[PROTOCOL])
    results = read_at_once(m.path, 4)
    assert results == {i: bytes([65 + i]) * 100 for i in range(4)}
    opened = [line for line in standin.log_lines() if line.startswith("connection ")]
    assert 2 <= len(opened) <= 4, opened


@pytest.mark.deadline(60)
def test_standin_refusing_extra_connections_is_fine(fsb_workdir, export_dir, standin_factory,
                                                    mount_factory):
    """A host that closes every connection but the first: the pool stays at
    one connection and every request still succeeds."""
    mnt = fsb_workdir / "mnt"
    for i in range(4):
        (export_dir / f"f{i}").write_bytes(bytes([97 + i]) * 10)
    standin = standin_factory(str(mnt), export_dir, "--read-delay", "0.5",   # reads overlap
                              "--max-connections", "1")
    m = mount_factory(standin.address, mnt, options=["connections=4"], extra_args=[PROTOCOL])
    results = read_at_once(m.path, 4)
    assert results == {i: bytes([97 + i]) * 10 for i in range(4)}
    assert any(line.endswith("refused") for line in standin.log_lines())
    assert m.proc.poll() is None, m.stderr_text()
    assert sorted(os.listdir(m.path)) == [f"f{i}" for i in range(4)]


@pytest.mark.deadline(60)
def test_standin_lost_host_ends_the_daemon(standin_mount, export_dir):
    standin, m = standin_mount
    (export_dir / "f").write_bytes(b"x")
    assert os.listdir(m.path) == ["f"]
    standin.proc.kill()
    standin.proc.wait(timeout=10)
    try:
        rc = m.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("an idle fsbridge-mount did not notice the host died within 10 s")
    assert rc == 1
    assert LOST_CONNECTION.search(m.stderr_text()), m.stderr_text()
    r = subprocess.run(["stat", str(m.path / "f")], stderr=subprocess.PIPE, text=True,
                       timeout=10)
    assert r.returncode != 0 and "not connected" in r.stderr, r.stderr
    m.umount(expect_rc=None)


# --------------------------------------------------------------------------
# Against fsbridged


@pytest.fixture
def fsbridged_mount(fsb_workdir, export_dir, daemon_factory, mount_factory):
    """fsbridged exporting at the mount point's own path (the default
    prefix), and a matchlock mount of it."""
    mnt = fsb_workdir / "mnt"
    d = daemon_factory([f"{mnt}={export_dir}"])
    m = mount_factory(d, mnt, options=["allow_other"], extra_args=[PROTOCOL])
    return d, m


@pytest.mark.deadline(60)
def test_fsbridged_extensions_are_used(fsbridged_mount, export_dir):
    _, m = fsbridged_mount
    helpers.put_bytes(m.path / "f", b"0123456789")
    os.symlink("f", m.path / "sym")
    assert os.readlink(m.path / "sym") == "f"
    assert os.readlink(export_dir / "sym") == "f"
    os.link(m.path / "f", m.path / "hard")
    assert os.stat(m.path / "hard").st_ino == os.stat(m.path / "f").st_ino
    assert os.stat(m.path / "f").st_nlink == 2
    os.truncate(m.path / "f", 3)
    assert read(m.path / "hard") == b"012"
    os.utime(m.path / "f", ns=(1_000_000_001, 2_000_000_002))
    assert os.stat(export_dir / "f").st_mtime_ns == 2_000_000_002
    assert os.stat(m.path / "f").st_mtime_ns == 2_000_000_002
    os.chown(m.path / "f", 1000, 1001)
    assert (os.stat(export_dir / "f").st_uid, os.stat(export_dir / "f").st_gid) == (1000, 1001)
    assert (os.stat(m.path / "hard").st_uid, os.stat(m.path / "hard").st_gid) == (1000, 1001)
    with open(m.path / "f", "ab") as f:
        f.write(b"+")
    assert (export_dir / "f").read_bytes() == b"012+"


STRESS = r"""
import errno, os, random, sys
root, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
mine = os.path.join(root, f"w{seed}")
os.makedirs(os.path.join(mine, "a", "b"), exist_ok=True)
names = ["a", "a/b", "c", "c/b", "d"]
for i in range(600):
    op = rnd.randrange(7)
    x, y = (os.path.join(mine, rnd.choice(names)) for _ in range(2))
    try:
        if op == 0:
            with open(os.path.join(x, f"f{i % 7}"), "wb") as f:
                f.write(b"%d" % i)
        elif op == 1:
            os.rename(x, y)             # whole subtrees move
        elif op == 2:
            os.link(os.path.join(x, f"f{i % 7}"), os.path.join(y, f"l{i % 5}"))
        elif op == 3:
            for name in os.listdir(x):
                os.lstat(os.path.join(x, name))
        elif op == 4:
            os.unlink(os.path.join(x, rnd.choice(["f1", "f2", "l1", "l2"])))
        elif op == 5:
            os.mkdir(x)
        else:
            with open(os.path.join(x, f"f{i % 7}"), "rb") as f:
                f.read()
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR,
                           errno.ENOTDIR, errno.EINVAL):
            raise
print("done")
"""


def tree(root):
    """{relative path: (is_dir, ino-group, content)} of a directory tree."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            out[rel] = (stat.S_ISDIR(st.st_mode), st.st_nlink,
                        None if stat.S_ISDIR(st.st_mode) else helpers.get_bytes(p))
    return out


@pytest.mark.deadline(120)
def test_concurrent_renames_links_and_lookups(fsbridged_mount, export_dir):
    """Processes moving subtrees, linking, unlinking and looking up at once:
    the node table keeps every path right (and the sanitizers quiet)."""
    _, m = fsbridged_mount
    procs = [subprocess.Popen([helpers.PYTHON, "-c", STRESS, str(m.path), str(seed)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in range(6)]
    for p in procs:
        out, err = p.communicate(timeout=100)
        assert p.returncode == 0 and out.strip() == "done", err
    assert m.proc.poll() is None, m.stderr_text()
    # The same once the attribute cache (1 s) has let go of what it held.
    helpers.poll_until(lambda: tree(m.path) == tree(export_dir), timeout=10,
                       what="the mount's tree to match the host's")


def walk_to(root, dirs, make=False):
    """An O_PATH fd of ROOT/DIRS..., reached one component at a time (the
    whole path is too long for one system call); the caller closes it."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    for part in dirs:
        if make:
            os.mkdir(part, 0o755, dir_fd=fd)
        nfd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


@pytest.mark.deadline(60)
def test_fsbridged_path_max_below_the_mount(fsbridged_mount, export_dir):
    """A file whose path below the mount point is PATH_MAX - 1 bytes long
    works as on a local disk, although the guest path sent (the mount point
    as prefix, then that path) is longer; one byte more is ENAMETOOLONG."""
    _, m = fsbridged_mount
    dirs = ["d" * 254] * 16                     # 16 * 255 bytes with the '/'s
    name = "f" * (4095 - 16 * 255)              # the rest of PATH_MAX - 1
    fd = walk_to(m.path, dirs, make=True)
    try:
        f = os.open(name, os.O_CREAT | os.O_RDWR, 0o644, dir_fd=fd)
        os.write(f, b"deep")
        os.close(f)
        with pytest.raises(OSError) as e:
            os.open(name + "g", os.O_CREAT | os.O_RDWR, 0o644, dir_fd=fd)
        assert e.value.errno == errno.ENAMETOOLONG
        os.rename(name, name[:-1] + "g", src_dir_fd=fd, dst_dir_fd=fd)
        os.link(name[:-1] + "g", name, src_dir_fd=fd, dst_dir_fd=fd)
        assert os.stat(name, dir_fd=fd).st_nlink == 2
    finally:
        os.close(fd)
    fd = walk_to(export_dir, dirs)
    try:
        assert os.stat(name, dir_fd=fd).st_size == 4
        assert os.stat(name[:-1] + "g", dir_fd=fd).st_ino == os.stat(name, dir_fd=fd).st_ino
    finally:
        os.close(fd)


@pytest.mark.deadline(60)
def test_fsbridged_caller_owns_what_it_creates(fsbridged_mount, export_dir):
    _, m = fsbridged_mount
    os.chmod(m.path, 0o777)
    r = helpers.run_python("import sys; open(sys.argv[1], 'w').write('mine')",
                           m.path / "users", uid=helpers.NOBODY_UID, umask=0o022)
    assert r.returncode == 0, r.stderr
    for p in (m.path / "users", export_dir / "users"):
        st = os.stat(p)
        assert (st.st_uid, st.st_gid) == (helpers.NOBODY_UID, helpers.NOBODY_GID), p
        assert stat.S_IMODE(st.st_mode) == 0o644, p
    # The guest kernel checks modes (default_permissions), and so does the host.
    r = helpers.run_python("import sys; open(sys.argv[1], 'w')", m.path / "users",
                           uid=2000, umask=0o022)
    assert "Permission denied" in r.stderr


@pytest.mark.deadline(60)
def test_fsbridged_lost_host_ends_the_daemon(fsbridged_mount, export_dir):
    d, m = fsbridged_mount
    helpers.put_bytes(m.path / "f", b"x")
    # Open files and directories at the end must not trouble the exit
    # (exit status 1, not a sanitizer's report).
    held = open(m.path / "f", "rb")
    listing = os.scandir(m.path)
    d.check_exit = False
    d.kill(signal.SIGKILL)
    d.wait(timeout=10)
    try:
        rc = m.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("fsbridge-mount did not notice fsbridged died within 10 s")
    assert rc == 1, m.stderr_text()
    with contextlib.suppress(OSError):  # FLUSH fails on a dead mount; the fd goes anyway
        held.close()
    listing.close()
    assert LOST_CONNECTION.search(m.stderr_text()), m.stderr_text()
    # (a name never looked up: "f" may still be in the 1 s attribute cache)
    assert errno_of(os.stat, m.path / "other") == errno.ENOTCONN
    m.umount(expect_rc=None)


@pytest.mark.deadline(60)
def test_sigterm_unmounts_and_exits_0(fsbridged_mount):
    _, m = fsbridged_mount
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=10) == 0
    assert helpers.mount_entry(m.path) is None


@pytest.mark.deadline(60)
def test_background_mount_returns_once_mounted(fsb_workdir, export_dir, daemon_factory,
                                               mount_factory):
    d = daemon_factory([f"work={export_dir}"])
    (export_dir / "f").write_bytes(b"hi")
    m = mount_factory(d, fsb_workdir / "mnt", options=["prefix=/work"],
                      extra_args=[PROTOCOL], foreground=False)
    assert m.proc.returncode == 0
    assert "mounted" in m.stderr_text()
    assert read(m.path / "f") == b"hi"
    assert helpers.mount_entry(m.path)["fstype"] == "fuse.fsbridge"


def relay(a_read, a_write, b_read, b_write):
    """Copies bytes both ways between two endpoints until either ends."""
    def pump(read, write):
        try:
            while True:
                data = read()
                if not data:
                    break
                write(data)
        except OSError:
            pass
    for args in ((a_read, b_write), (b_read, a_write)):
        threading.Thread(target=pump, args=args, daemon=True).start()


@pytest.mark.deadline(60)
def test_serial_port(fsb_workdir, export_dir, daemon_factory, mount_factory):
    """serial:DEVICE: one stream (no second connection), here a pty whose
    other end is relayed to fsbridged."""
    import socket as socketmod
    import tty
    d = daemon_factory([f"work={export_dir}"])
    master, slave = os.openpty()
    tty.setraw(slave)
    sock = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    sock.connect(str(d.socket))
    relay(lambda: os.read(master, 65536), lambda b: os.write(master, b),
          lambda: sock.recv(65536), sock.sendall)
    try:
        m = mount_factory(f"serial:{os.ttyname(slave)}", fsb_workdir / "mnt",
                          options=["prefix=/work", "connections=4"], extra_args=[PROTOCOL])
        big = os.urandom(3 << 20)
        helpers.put_bytes(m.path / "big", big)
        assert (export_dir / "big").read_bytes() == big
        assert read(m.path / "big") == big
        os.symlink("big", m.path / "link")
        assert sorted(os.listdir(m.path)) == ["big", "link"]
        m.umount()
    finally:
        sock.close()
        os.close(master)
        os.close(slave)


@pytest.mark.deadline(60)
def test_mount_helper_with_protocol_option(build_dir, fsb_workdir, export_dir,
                                           daemon_factory):
    """mount -t fsbridge / fstab: mount.fsbridge ADDRESS DIR -o protocol=matchlock."""
    d = daemon_factory([f"work={export_dir}"])
    (export_dir / "f").write_bytes(b"via fstab")
    mnt = fsb_workdir / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount.fsbridge", d.address, str(mnt), "-o",
                        "protocol=matchlock,prefix=/work,_netdev"],
                       executable=str(build_dir / "fsbridge-mount"), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        assert read(mnt / "f") == b"via fstab"
    finally:
        subprocess.run(["umount", str(mnt)], timeout=30)
    helpers.poll_until(lambda: not daemons_serving(mnt),
                       what="the background daemon to exit after umount")


def daemons_serving(mountpoint):
    """PIDs of fsbridge-mount processes (under either name) for MOUNTPOINT."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(args[0]) in (b"fsbridge-mount", b"mount.fsbridge") \
                and str(mountpoint).encode() in args:
            pids.append(int(pid))
    return pids


# --------------------------------------------------------------------------
# Start-up errors: one line, nothing mounted


def run_mount(build_dir, *args, timeout=30):
    return subprocess.run([str(build_dir / "fsbridge-mount"), "-f", *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


@pytest.mark.deadline(60)
def test_startup_errors(build_dir, fsb_workdir, export_dir, daemon_factory):
    mnt = fsb_workdir / "mnt"
    mnt.mkdir()
    d = daemon_factory([f"work={export_dir}"])
    cases = [
        ([PROTOCOL, "-o", "prefix=/elsewhere", d.address, mnt], r"has nothing at /elsewhere"),
        ([PROTOCOL, f"unix:{fsb_workdir}/none.sock", mnt], r"cannot connect to unix:"),
        ([PROTOCOL, "-o", "export=work", d.address, mnt], r"export= does not apply"),
        (["-o", "prefix=/work", d.address, mnt], r"need --protocol=matchlock"),
        ([PROTOCOL, "-o", "prefix=work", d.address, mnt], r"bad option 'prefix=work'"),
        ([PROTOCOL, "-o", "prefix=/a/../b", d.address, mnt], r"bad option"),
        ([PROTOCOL, "-o", "connections=0", d.address, mnt], r"connections must be 1-64"),
        ([PROTOCOL, "-o", "prefix=/work,bogus_option", d.address, mnt], r"bogus_option"),
        # paths are a prefix and PATH_MAX - 1 bytes below it: the prefix has a limit
        ([PROTOCOL, "-o", "prefix=/" + "p" * 256, d.address, mnt], r"is over 256 bytes"),
    ]
    for args, message in cases:
        r = run_mount(build_dir, *args)
        assert r.returncode == 1, (args, r.stderr)
        assert re.search(message, r.stderr), (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert helpers.mount_entry(mnt) is None


@pytest.mark.deadline(60)
def test_silent_host_times_out(build_dir, fsb_workdir):
    """A listener that accepts and never answers fails the start, not hangs."""
    import socket as socketmod
    mnt = fsb_workdir / "mnt"
    mnt.mkdir()
    path = fsb_workdir / "silent.sock"
    listener = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    try:
        start = time.monotonic()
        r = run_mount(build_dir, PROTOCOL, "-o", "prefix=/x", f"unix:{path}", mnt)
        assert r.returncode == 1
        assert "no response to Getattr within 10 s" in r.stderr, r.stderr
        assert time.monotonic() - start < 25
        assert helpers.mount_entry(mnt) is None
    finally:
        listener.close()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
