"""
test_lifecycle.py - starting, stopping, losing and refusing sessions.

* The host daemon dies (SIGKILL) under a busy guest: the relay exits
  non-zero with a message about the lost connection, the pending operation
  fails with ENOTCONN/EIO instead of hanging, later operations fail at once,
  and the dead mount unmounts.
* A session that ends (umount, lazy umount with files still open, relay
  killed) gives back every fd the daemon opened for it.
* SIGTERM: exit 0 promptly, with or without sessions; a mounted guest then
  fails cleanly.
* Command-line errors of both programs: one line naming the problem and a
  non-zero exit; --help and --version exit 0.

Every wait is bounded: subprocess timeouts and helpers.poll_until.
"""

import errno
import fcntl
import os
import re
import select
import signal
import socket
import struct
import subprocess
import time

import pytest

import helpers
from fuse_client import ConnectionClosed, FuseClient, connect_unix, hello_bytes

EXPORT = "life"
LOST_CONNECTION = re.compile(r"connection|disconnect|closed|lost|hung up|eof|reset",
                             re.IGNORECASE)

READER = r"""
import errno, os, sys
mnt = sys.argv[1]
print("ready", flush=True)
n = 0
while True:
    try:
        with open(os.path.join(mnt, "big"), "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass
        for name in os.listdir(mnt):
            os.stat(os.path.join(mnt, name))
    except OSError as e:
        print("errno", e.errno, flush=True)
        sys.exit(0)
    n += 1
    if n == 1:
        print("looping", flush=True)
"""


def readline_within(proc, timeout):
    """One line of proc.stdout within `timeout` seconds, or None."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        if chunk == b"\n":
            return buf.decode()
        buf += chunk
    return None


fd_count = helpers.fd_count


def fd_list(pid):
    out = []
    for f in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            out.append(f"{f}->{os.readlink(f'/proc/{pid}/fd/{f}')}")
        except OSError:
            pass
    return out


settled_fd_count = helpers.settled_fd_count


def stat_in_subprocess(path, timeout=10):
    """stat(1) in a child, so that a hung FUSE request cannot hang the test."""
    try:
        return subprocess.run(["stat", str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"stat {path} hung for {timeout} s")


def start(daemon_factory, host, opts="cache=never", **kw):
    return daemon_factory([f"{EXPORT}={host},{opts}"], **kw)


def assert_dead_mount_fails_cleanly(m):
    r = stat_in_subprocess(m.path / "big")
    assert r.returncode != 0, "stat on the dead mount succeeded"
    assert "not connected" in r.stderr or "connection abort" in r.stderr.lower(), r.stderr
    r = subprocess.run(["ls", str(m.path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=10)
    assert r.returncode != 0, "ls on the dead mount succeeded"


# --------------------------------------------------------------------------
# (a) the host daemon dies under a busy guest


@pytest.mark.deadline(90)
def test_sigkill_of_daemon_under_a_busy_reader(export_dir, daemon_factory, mount_factory):
    with open(export_dir / "big", "wb") as f:
        f.truncate(256 << 20)
    for i in range(50):
        (export_dir / f"small{i}").write_bytes(b"x")
    d = start(daemon_factory, export_dir, check_exit=False)
    m = mount_factory(d, options=[f"export={EXPORT}"])

    reader = subprocess.Popen([helpers.PYTHON, "-c", READER, str(m.path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert readline_within(reader, 10) == "ready"
        assert readline_within(reader, 30) == "looping", "the reader never finished a pass"
        d.kill(signal.SIGKILL)
        assert d.wait(timeout=10) == -signal.SIGKILL

        # The pending operation fails instead of hanging.
        line = readline_within(reader, 15)
        assert line is not None, "the reader is still blocked 15 s after the host died"
        err = int(line.split()[1])
        # ECANCELED: on io_uring rings, a request the kernel queued on an
        # entry as fsbridge-mount exits is cancelled by the kernel itself
        # (relay.c, connection_lost): as failed, and as soon, as ENOTCONN.
        assert err in (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED, errno.ECANCELED), (
            f"the reader failed with {errno.errorcode.get(err, err)}")
        reader.wait(timeout=10)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(timeout=10)

    # The relay exits non-zero with a message about the lost connection.
    try:
        rc = m.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fsbridge-mount still running 10 s after the host died\n"
                    f"{m.stderr_text()}")
    assert rc != 0, f"fsbridge-mount exited 0 after losing the host\n{m.stderr_text()}"
    text = m.stderr_text()
    after_mount = text.split("mounted", 1)[-1]
    assert LOST_CONNECTION.search(after_mount), (
        f"no message about the lost connection on stderr:\n{text}")

    # Later operations fail at once, and the dead mount unmounts.
    assert_dead_mount_fails_cleanly(m)
    m.umount(expect_rc=None)
    assert helpers.mount_entry(m.path) is None


@pytest.mark.deadline(60)
def test_sigkill_of_daemon_with_an_idle_mount(export_dir, daemon_factory, mount_factory):
    (export_dir / "big").write_bytes(b"data")
    d = start(daemon_factory, export_dir, check_exit=False)
    m = mount_factory(d, options=[f"export={EXPORT}"])
    assert os.listdir(m.path) == ["big"]
    d.kill(signal.SIGKILL)
    d.wait(timeout=10)
    try:
        rc = m.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("an idle fsbridge-mount did not notice the host died within 10 s")
    assert rc != 0
    assert LOST_CONNECTION.search(m.stderr_text().split("mounted", 1)[-1]), m.stderr_text()
    assert_dead_mount_fails_cleanly(m)
    m.umount(expect_rc=None)


@pytest.mark.deadline(60)
def test_daemon_restarts_on_the_socket_of_a_killed_one(export_dir, daemon_factory):
    """After a crash the socket file stays behind; a new daemon on the same
    path must start (the file is stale: nobody listens on it)."""
    d = start(daemon_factory, export_dir, check_exit=False)
    with FuseClient(d.socket, export=EXPORT) as c:
        assert c.alive()
    d.kill(signal.SIGKILL)
    d.wait(timeout=10)
    assert os.path.exists(d.socket)
    d2 = daemon_factory([f"{EXPORT}={export_dir}"], listen=[f"unix:{d.socket}"], wait=False)
    helpers.poll_until(lambda: d2.proc.poll() is not None or
                       _listening(d.socket), timeout=10, what="the new daemon to listen")
    assert d2.alive(), f"fsbridged refused a stale socket:\n{d2.stderr_text()}"
    with FuseClient(d.socket, export=EXPORT) as c:
        assert c.alive()


def _listening(path):
    try:
        s = connect_unix(path, timeout=2)
    except OSError:
        return False
    s.close()
    return True


# --------------------------------------------------------------------------
# (b) a session that ends gives back its fds


def busy_session(mnt, nfiles=400, keep_open=100):
    """Create, stat, list and open many files; return the fds kept open."""
    os.mkdir(mnt / "many")
    for i in range(nfiles):
        with open(mnt / "many" / f"f{i}", "wb") as f:
            f.write(b"%d" % i)
    for i in range(nfiles):
        os.stat(mnt / "many" / f"f{i}")
    assert len(os.listdir(mnt / "many")) == nfiles
    fds = [os.open(mnt / "many" / f"f{i}", os.O_RDWR) for i in range(keep_open)]
    dfd = os.open(mnt / "many", os.O_RDONLY | os.O_DIRECTORY)
    return fds + [dfd]


def wait_fds_back(d, baseline, what):
    try:
        helpers.poll_until(lambda: fd_count(d.pid) <= baseline, timeout=15,
                           what=f"fsbridged's fds to return to {baseline} after {what}")
    except TimeoutError:
        pytest.fail(f"after {what}, fsbridged holds {fd_count(d.pid)} fds "
                    f"(baseline {baseline}):\n" + "\n".join(fd_list(d.pid)))


@pytest.mark.deadline(90)
def test_umount_frees_the_session(export_dir, daemon_factory, mount_factory):
    d = start(daemon_factory, export_dir, "cache=auto")
    baseline = settled_fd_count(d.pid)
    m = mount_factory(d, options=[f"export={EXPORT}"])
    fds = busy_session(m.path)
    during = fd_count(d.pid)
    for fd in fds:
        os.close(fd)
    m.umount(expect_rc=0)
    wait_fds_back(d, baseline, f"umount (it held {during} during the session)")
    assert d.alive()


@pytest.mark.deadline(90)
def test_lazy_umount_with_open_files_frees_the_session(export_dir, daemon_factory,
                                                       mount_factory):
    d = start(daemon_factory, export_dir, "cache=auto")
    baseline = settled_fd_count(d.pid)
    m = mount_factory(d, options=[f"export={EXPORT}"])
    fds = busy_session(m.path)
    r = subprocess.run(["umount", "-l", str(m.path)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=10)
    assert r.returncode == 0, r.stdout
    # The files stay usable until closed...
    assert os.pread(fds[0], 10, 0) == b"0"
    assert m.proc.poll() is None
    for fd in fds:
        os.close(fd)
    # ...and closing the last one ends the connection, the relay and the session.
    m.umount(expect_rc=0, timeout=15)
    wait_fds_back(d, baseline, "a lazy umount and closing every file")


@pytest.mark.deadline(90)
def test_killed_relay_frees_the_session(export_dir, daemon_factory, mount_factory):
    d = start(daemon_factory, export_dir, "cache=auto")
    baseline = settled_fd_count(d.pid)
    m = mount_factory(d, options=[f"export={EXPORT}"])
    fds = busy_session(m.path, keep_open=50)
    m.proc.kill()
    m.proc.wait(timeout=10)
    wait_fds_back(d, baseline, "SIGKILL of fsbridge-mount")
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    m.umount(expect_rc=None)
    assert d.alive()


@pytest.mark.deadline(60)
def test_raw_sessions_with_open_handles_are_freed(export_dir, daemon_factory):
    """Sessions that never say goodbye: open files, half-read replies,
    abrupt close.  The daemon gets every fd back."""
    for i in range(50):
        (export_dir / f"f{i}").write_bytes(b"x" * 100)
    # All 20 sessions are one guest (root on one socket): its budgets are
    # raised so that it may hold them (test_budgets.py tests the budgets).
    d = start(daemon_factory, export_dir,
              extra_args=["--guest-max-sessions", "32", "--guest-max-open", "2000"])
    with FuseClient(d.socket, export=EXPORT) as warm:
        assert warm.alive()
    baseline = settled_fd_count(d.pid)
    clients = [FuseClient(d.socket, export=EXPORT) for _ in range(20)]
    for c in clients:
        for i in range(50):
            err, e = c.lookup(1, f"f{i}")
            assert err == 0
            assert c.open(e["nodeid"])[0] == 0
        c.send(3, 1, bytes(16))           # GETATTR whose reply is never read
    assert fd_count(d.pid) > baseline
    for c in clients:
        c.close()
    wait_fds_back(d, baseline, "20 sessions closed with 50 open files each")


# --------------------------------------------------------------------------
# (c) SIGTERM


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_without_sessions_exits_0_promptly(export_dir, daemon_factory, sig):
    d = start(daemon_factory, export_dir)
    # "Promptly": within a timeout well under anything the daemon waits
    # for by itself (a HELLO's 10 s); how much under depends on the load.
    assert d.stop(sig=sig, expect_rc=0, timeout=5) == 0


def test_sigterm_with_half_open_connections_exits_0(export_dir, daemon_factory):
    """Connections stuck in the handshake or idle after INIT must not keep
    the daemon from stopping."""
    d = start(daemon_factory, export_dir)
    silent = connect_unix(d.socket)                  # sends nothing
    half = connect_unix(d.socket)
    half.sendall(hello_bytes(EXPORT)[:7])           # half a HELLO
    idle = FuseClient(d.socket, export=EXPORT)      # INIT done, then idle
    try:
        d.stop(expect_rc=0, timeout=5)   # under the HELLO's 10 s: nobody waited for it
        assert idle.is_closed(5), "an idle session stays open after the daemon exited"
    finally:
        for s in (silent, half):
            s.close()
        idle.close()


@pytest.mark.deadline(60)
def test_sigterm_with_a_mounted_session(export_dir, daemon_factory, mount_factory):
    (export_dir / "big").write_bytes(b"data")
    d = start(daemon_factory, export_dir)
    m = mount_factory(d, options=[f"export={EXPORT}"])
    assert (m.path / "big").read_bytes() == b"data"
    fd = os.open(m.path / "big", os.O_RDONLY)
    try:
        d.stop(expect_rc=0, timeout=10)
        try:
            rc = m.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("fsbridge-mount still running 10 s after the host stopped")
        assert rc != 0
        assert LOST_CONNECTION.search(m.stderr_text().split("mounted", 1)[-1]), \
            m.stderr_text()
        with pytest.raises(OSError) as e:
            os.pread(fd, 10, 0)
        assert e.value.errno in (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED)
    finally:
        try:
            os.close(fd)      # FLUSH fails with ENOTCONN on a dead mount; fd is gone anyway
        except OSError:
            pass
    assert_dead_mount_fails_cleanly(m)
    m.umount(expect_rc=None)


# --------------------------------------------------------------------------
# (d) command-line errors


def run_cli(argv, timeout=15):
    try:
        return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv} still running after {timeout} s (expected an error exit)")


def assert_one_line_error(r, *needles):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0, f"exit 0 for {r.args}\nstderr:\n{r.stderr}"
    assert r.returncode > 0, f"{r.args} died by signal {-r.returncode}\n{r.stderr}"
    assert len(lines) == 1, f"{r.args}: expected one line on stderr, got {len(lines)}:\n{r.stderr}"
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (
            f"{r.args}: the message does not name {needle!r}: {lines[0]}")
    return lines[0]


def test_fsbridged_cli_errors(build_dir, fsb_workdir, export_dir, daemon_factory):
    exe = build_dir / "fsbridged"
    sock = fsb_workdir / "cli.sock"
    listen = ["--listen", f"unix:{sock}"]
    exp = ["--export", f"{EXPORT}={export_dir}"]
    missing = fsb_workdir / "no-such-dir"

    assert_one_line_error(run_cli([exe, "--bogus", *exp, *listen]), "--bogus")
    assert_one_line_error(run_cli([exe, "--export", f"x={missing}", *listen]),
                          str(missing))
    regular = fsb_workdir / "a-file"
    regular.write_bytes(b"")
    assert_one_line_error(run_cli([exe, "--export", f"x={regular}", *listen]), str(regular))
    assert_one_line_error(run_cli([exe, "--export", f"x={export_dir},cache=sometimes",
                                   *listen]), "sometimes")
    assert_one_line_error(run_cli([exe, "--export", f"x={export_dir},bogusopt", *listen]),
                          "bogusopt")
    for address in ("bogus:1", "unix:", "vsock:notaport", "vsock:", "fd:abc", "nothing"):
        assert_one_line_error(run_cli([exe, *exp, "--listen", address]), address)
    assert_one_line_error(run_cli([exe, *exp, *listen, "--log-level", "loud"]), "loud")
    assert_one_line_error(run_cli([exe, *exp, *listen, "--threads", "abc"]), "abc")
    assert_one_line_error(run_cli([exe, *exp, *listen, "--threads"]))
    assert_one_line_error(run_cli([exe, *listen]))                       # no export
    long_path = fsb_workdir / ("s" * 120)
    assert_one_line_error(run_cli([exe, *exp, "--listen", f"unix:{long_path}"]))
    assert not sock.exists(), "a failed start left its socket behind"


def test_fsbridged_busy_socket_is_refused_and_left_alone(build_dir, export_dir,
                                                         daemon_factory):
    """A socket where another fsbridged listens is busy: the second daemon
    fails with one line, and the first keeps its socket (file included)."""
    exe = build_dir / "fsbridged"
    exp = ["--export", f"{EXPORT}={export_dir}"]
    d = daemon_factory([f"{EXPORT}={export_dir}"])
    assert_one_line_error(run_cli([exe, *exp, "--listen", f"unix:{d.socket}"]),
                          str(d.socket))
    assert d.alive()
    assert os.path.exists(d.socket), (
        "the failed second daemon deleted the first one's socket file")
    with FuseClient(d.socket, export=EXPORT) as c:
        assert c.alive(), "the failed second daemon broke the first one's socket"


def test_fsbridged_help_and_version(build_dir):
    exe = build_dir / "fsbridged"
    r = run_cli([exe, "--help"])
    assert r.returncode == 0, r.stderr
    assert "--export" in r.stdout + r.stderr and "--listen" in r.stdout + r.stderr
    r = run_cli([exe, "--version"])
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr), r.stdout + r.stderr


def test_fsbridge_mount_cli_errors(build_dir, fsb_workdir, export_dir, daemon_factory):
    exe = build_dir / "fsbridge-mount"
    mnt = fsb_workdir / "mnt"
    mnt.mkdir()

    def no_mount_left():
        e = helpers.mount_entry(mnt)
        assert e is None, f"a failed fsbridge-mount left a mount: {e}"

    for fg in ([], ["-f"]):
        assert_one_line_error(run_cli([exe, *fg, "--bogus", "unix:/x", mnt]), "--bogus")
        for address in ("bogus:1", "unix:", "vsock:1", "vsock:a:b", "nothing"):
            assert_one_line_error(run_cli([exe, *fg, address, mnt]), address)
            no_mount_left()

        # Nothing at the path.
        nowhere = fsb_workdir / "nowhere.sock"
        line = assert_one_line_error(run_cli([exe, *fg, f"unix:{nowhere}", mnt]),
                                     str(nowhere))
        assert "no such file" in line.lower(), line
        assert "no socket there" in line and f"--listen unix:{nowhere}" in line, line
        no_mount_left()

        # A socket file that nobody listens on: connection refused.
        stale = fsb_workdir / "stale.sock"
        if not stale.exists():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(str(stale))
            s.close()
        line = assert_one_line_error(run_cli([exe, *fg, f"unix:{stale}", mnt]), str(stale))
        assert "refused" in line.lower(), line
        assert "no fsbridged listens there" in line, line
        assert f"check that fsbridged runs with --listen unix:{stale}" in line, line
        no_mount_left()

    d = daemon_factory([f"{EXPORT}={export_dir}"])
    for fg in ([], ["-f"]):
        r = run_cli([exe, *fg, "-o", "export=nope", d.address, mnt])
        assert r.returncode != 0, r.stderr
        assert "nope" in r.stderr, f"the message does not name the export:\n{r.stderr}"
        assert len([x for x in r.stderr.splitlines() if x.strip()]) == 1, r.stderr
        no_mount_left()
        missing = fsb_workdir / "no-such-mountpoint"
        assert_one_line_error(run_cli([exe, *fg, "-o", f"export={EXPORT}", d.address,
                                       missing]), str(missing))
        # A regular file: the kernel would mount there, and every access
        # would give EIO.  Refused like a missing one, before connecting.
        regular = fsb_workdir / "a-file"
        regular.write_bytes(b"not a directory")
        assert_one_line_error(run_cli([exe, *fg, "-o", f"export={EXPORT}", d.address,
                                       regular]), str(regular), "not a directory")
        assert helpers.mount_entry(regular) is None, "fsbridge-mount mounted on a file"
        assert regular.read_bytes() == b"not a directory"
        assert_one_line_error(run_cli([exe, *fg, "-o", f"export={EXPORT}", d.address]))
        assert_one_line_error(run_cli([exe, *fg, "-o", f"export={EXPORT},threads=zero",
                                       d.address, mnt]), "zero")
        no_mount_left()
    assert d.alive()
    with FuseClient(d.socket, export=EXPORT) as c:
        assert c.alive()


def local_vsock_cid():
    """This machine's own vsock CID, or None without a vsock device."""
    try:
        fd = os.open("/dev/vsock", os.O_RDONLY)
    except OSError:
        return None
    try:
        buf = fcntl.ioctl(fd, socket.IOCTL_VM_SOCKETS_GET_LOCAL_CID, b"\0" * 4)
        return struct.unpack("I", buf)[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def test_fsbridge_mount_explains_an_unreachable_vsock_address(build_dir, fsb_workdir):
    """A vsock address that leads nowhere says what to check, not just the
    errno.  Connecting to this machine's own CID fails inside the kernel
    (ENODEV) and sends nothing anywhere.  Not tested here: "nothing listens
    on that host port" (ECONNRESET from vsock:2:PORT, the issue's case),
    which needs a vsock host under our control: this machine has no
    vhost-vsock device and no vsock loopback, and CID 2 is the real
    hypervisor, which tests leave alone."""
    cid = local_vsock_cid()
    if cid is None:
        pytest.skip("no vsock device (/dev/vsock, IOCTL_VM_SOCKETS_GET_LOCAL_CID)")
    mnt = fsb_workdir / "mnt"
    mnt.mkdir()
    address = f"vsock:{cid}:5001"
    line = assert_one_line_error(run_cli([build_dir / "fsbridge-mount", "-f", address, mnt]),
                                 address, "no vsock path", "vsock device")
    assert helpers.mount_entry(mnt) is None, line


def test_fsbridge_mount_help_and_version(build_dir):
    exe = build_dir / "fsbridge-mount"
    r = run_cli([exe, "--help"])
    assert r.returncode == 0, r.stderr
    assert "export" in r.stdout + r.stderr
    r = run_cli([exe, "--version"])
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr)


def test_sessions_are_bounded_per_peer(fsb_workdir, export_dir, daemon_factory):
    """One guest (here: one listener, as a Firecracker VM's hybrid-vsock
    socket is) cannot take every session slot from the others."""
    a, b = fsb_workdir / "vm-a.sock", fsb_workdir / "vm-b.sock"
    d = daemon_factory([f"{EXPORT}={export_dir}"], ["--max-sessions-per-peer", "2"],
                       listen=[f"unix:{a}", f"unix:{b}"])
    helpers.poll_until(lambda: helpers.listening(a, b), what="both listeners")
    first = [FuseClient(a, export=EXPORT) for _ in range(2)]
    assert all(c.alive() for c in first)
    with pytest.raises((ConnectionClosed, ConnectionError, OSError)):
        third = FuseClient(a, export=EXPORT)   # refused at accept: closed at once
        third.alive()
    other = FuseClient(b, export=EXPORT)        # another guest is still served
    assert other.alive()
    first[0].close()
    helpers.poll_until(lambda: _session_works(a), what="a freed slot of the first peer")
    for c in first[1:] + [other]:
        c.close()
    assert "too many sessions from this peer" in d.stderr_text()


def _session_works(path):
    try:
        with FuseClient(path, export=EXPORT) as c:
            return c.alive()
    except (ConnectionClosed, ConnectionError, OSError):
        return False


@pytest.mark.deadline(60)
def test_an_abort_through_fusectl_is_an_error_but_an_unmount_is_not(export_dir, daemon_factory,
                                                                    mount_factory):
    """ECONNABORTED also reaches a reader racing an unmount, once (relay.c,
    fd_queue_main); an abort gives it on every read, and must still end the
    relay with an error: the mount is dead, not gone."""
    d = start(daemon_factory, export_dir, "cache=auto")
    m = mount_factory(d, options=[f"export={EXPORT}"])
    (m.path / "f").write_bytes(b"x")
    assert m.abort(), "no fusectl connection to abort"
    assert m.proc.wait(timeout=10) == 1
    assert "connection aborted" in m.stderr_text()
    m.umount(expect_rc=None)
