"""
test_vhost_frontend.py - fsbridged as a vhost-user-fs backend, driven by our
own vhost-user frontend (tests/vhost) instead of QEMU: no VM, real memfd
guest memory, real split virtqueues, real FUSE requests.

  * test_hostile: every case of vhost-hostile --strict (one pytest test per
    case, one backend process per case): malformed descriptors, indirect
    tables, rings, memory tables, fds, framing, message sizes.  The backend
    must survive each without touching memory outside what the case
    allowed, and keep serving where a careful backend can.
  * functional checks through vhost-client: INIT, data written through
    the rings and read back, verified on the host directory; FORGET and
    BATCH_FORGET on the hiprio queue; out-of-order completion behind a
    waiting lock; INTERRUPT on hiprio; GET_VRING_BASE stop and restart;
    guest reboot; RESET_DEVICE closing what the guest left open; several
    request queues; memory hot-unplug and plug; one frontend only; exit
    when the frontend goes (also when it is killed) and on SIGTERM; --fd.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parents[2]
CLIENT_TIMEOUT = 120


def _configured_build_dir():
    return Path(os.environ.get("FSB_BUILD_DIR", REPO / "build")).resolve()


def _hostile_case_names():
    """The case names of vhost-hostile --list, read when pytest collects."""
    exe = _configured_build_dir() / "tests" / "vhost" / "vhost-hostile"
    if not os.access(exe, os.X_OK):
        return ["vhost-hostile-not-built"]
    out = subprocess.run([str(exe), "--list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def vhost_tools(build_dir):
    tools = build_dir / "tests" / "vhost"
    for name in ("vhost-client", "vhost-hostile"):
        if not os.access(tools / name, os.X_OK):
            pytest.skip(f"{name} not built in {tools}")
    return tools


# --------------------------------------------------------------------------
# hostile input


@pytest.fixture(scope="module")
def hostile_results(vhost_tools, build_dir, _tmp_root):
    """Runs vhost-hostile --strict once; {case: (status, detail)}.  Backend
    logs of failed cases stay in the work directory."""
    work = Path(tempfile.mkdtemp(prefix="fsb-hostile-", dir=_tmp_root))
    shared = work / "share"
    shared.mkdir()
    # A generous reply timeout: only cases where the backend rightly stays
    # silent wait it out, and a loaded machine must not fail the others.
    argv = [str(vhost_tools / "vhost-hostile"), "--strict", "--timeout", "3000",
            "--workdir", str(work / "logs"), "--",
            str(build_dir / "fsbridged"), "--socket-path=@SOCKET@", f"--shared-dir={shared}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    results = {}
    for line in r.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ("ok", "FAIL", "skip"):
            results[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
    if not results:
        pytest.fail(f"vhost-hostile ran no case (exit {r.returncode})\n{r.stdout}\n{r.stderr}")
    yield results, work / "logs"
    if all(status != "FAIL" for status, _ in results.values()) and not os.environ.get("FSB_KEEP_TMP"):
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("case", _hostile_case_names())
def test_hostile(hostile_results, case):
    results, logs = hostile_results
    if case not in results:
        pytest.fail(f"vhost-hostile did not report {case}")
    status, detail = results[case]
    if status == "skip":
        pytest.skip(detail)
    assert status == "ok", f"{case}: {detail}\n(backend log: {logs / (case + '.log')})"


# --------------------------------------------------------------------------
# functional checks


@pytest.fixture
def vhost(daemon_factory, fsb_workdir, vhost_tools):
    """start(cache="auto", extra=()) -> Backend: fsbridged --socket-path on a
    fresh shared directory, listening."""

    class Backend:
        def __init__(self, daemon, sock, shared):
            self.daemon = daemon
            self.socket = sock
            self.shared = shared

        def client(self, *commands, options=(), check=True, timeout=CLIENT_TIMEOUT):
            argv = [str(vhost_tools / "vhost-client"), "--shared-dir", str(self.shared),
                    "--timeout", "10000", *options, str(self.socket), *commands]
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            if check:
                assert r.returncode == 0, f"vhost-client {' '.join(commands)}:\n{r.stdout}{r.stderr}"
            return r

        def spawn_client(self, *commands, options=()):
            argv = [str(vhost_tools / "vhost-client"), "--shared-dir", str(self.shared),
                    *options, str(self.socket), *commands]
            return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)

        def exits_cleanly(self, timeout=10):
            """Exit status 0, and no socket file left behind."""
            rc = self.daemon.wait(timeout=timeout)
            assert rc == 0, f"fsbridged exited {rc}\n{self.daemon.stderr_text()}"
            assert not self.socket.exists(), f"{self.socket} left behind"

    count = [0]

    def start(cache="auto", extra=()):
        n = count[0]
        count[0] += 1
        shared = fsb_workdir / f"share{n}"
        shared.mkdir()
        sock = fsb_workdir / f"vu{n}.sock"
        d = daemon_factory([], [f"--socket-path={sock}", f"--shared-dir={shared}",
                                f"--cache={cache}", *extra], listen=[])
        d.socket = sock
        d.wait_ready()
        return Backend(d, sock, shared)

    return start


def _random_file(path, size):
    data = os.urandom(size)
    helpers.put_bytes(path, data)
    return data


RING_SHAPES = {
    "indirect+event-idx": (),
    "plain-rings": ("--no-indirect", "--no-event-idx"),
    "page-descriptors": ("--split",),
    "add-mem-reg": ("--mem-slots", "--split"),
}


@pytest.mark.parametrize("shape", sorted(RING_SHAPES))
def test_write_read_verified_on_host(vhost, fsb_workdir, shape):
    """Bytes written through the rings land in the host file; bytes the
    host wrote come back through the rings; the daemon exits 0 when the
    frontend disconnects."""
    b = vhost()
    src = fsb_workdir / "src.bin"
    data = _random_file(src, 1_000_003)
    host_data = _random_file(b.shared / "from-host.bin", 333_333)
    out = fsb_workdir / "out.bin"
    b.client("getattr", f"write:w.bin:{src}", f"read:from-host.bin:{out}",
             options=RING_SHAPES[shape])
    assert helpers.get_bytes(b.shared / "w.bin") == data
    assert helpers.get_bytes(out) == host_data
    b.exits_cleanly()


@pytest.mark.parametrize("cache", ["never", "metadata", "auto", "always"])
def test_cache_modes(vhost, fsb_workdir, cache):
    b = vhost(cache=cache)
    src = fsb_workdir / "src.bin"
    data = _random_file(src, 200_000)
    out = fsb_workdir / "out.bin"
    b.client(f"write:c.bin:{src}", f"read:c.bin:{out}")
    assert helpers.get_bytes(b.shared / "c.bin") == data
    assert helpers.get_bytes(out) == data
    b.exits_cleanly()


def test_forget_on_hiprio(vhost):
    """FORGET and BATCH_FORGET travel on queue 0 and come back with length
    0; a node lives until its last lookup is forgotten."""
    b = vhost()
    helpers.put_bytes(b.shared / "f", b"x")
    r = b.client("forget:f", "batch-forget:f")
    assert "gone after its last FORGET" in r.stdout
    b.exits_cleanly()


def test_out_of_order_behind_waiting_lock(vhost):
    """A SETLKW waiting for a lock the host holds does not hold up a GETATTR
    on the same queue; it completes once the host lets go."""
    b = vhost()
    helpers.put_bytes(b.shared / "l", b"lock me")
    b.client(f"lock-order:l:{b.shared / 'l'}")
    b.exits_cleanly()


def test_interrupt_on_hiprio_ends_lock_wait(vhost):
    b = vhost()
    helpers.put_bytes(b.shared / "l", b"lock me")
    b.client(f"lock-interrupt:l:{b.shared / 'l'}")
    b.exits_cleanly()


def test_get_vring_base_stops_and_restart_resumes(vhost):
    b = vhost()
    b.client("ring-restart", "getattr")
    b.exits_cleanly()


def test_guest_reboot(vhost, fsb_workdir):
    """GET_VRING_BASE of every ring, fresh rings, a new FUSE_INIT: the new
    session serves, twice over."""
    b = vhost()
    src = fsb_workdir / "src.bin"
    data = _random_file(src, 70_000)
    b.client("reboot", f"write:r.bin:{src}", "reboot", "getattr")
    assert helpers.get_bytes(b.shared / "r.bin") == data
    b.exits_cleanly()


def test_reset_device_closes_guest_handles(vhost):
    b = vhost()
    helpers.put_bytes(b.shared / "h", b"held")
    b.client("reset-device:h", "getattr")
    b.exits_cleanly()


def test_several_request_queues(vhost):
    b = vhost()
    r = b.client("queues", options=("--queues", "4"))
    assert "4 request queues served" in r.stdout
    b.exits_cleanly()


def test_memory_hotplug(vhost, fsb_workdir):
    """REM_MEM_REG and ADD_MEM_REG of the region holding the buffers, while
    the rings run: requests are served from the region added again."""
    b = vhost()
    src = fsb_workdir / "src.bin"
    data = _random_file(src, 100_000)
    b.client("hotplug", f"write:p.bin:{src}", "hotplug", "getattr", options=("--mem-slots",))
    assert helpers.get_bytes(b.shared / "p.bin") == data
    b.exits_cleanly()


def test_one_frontend_at_a_time(vhost):
    b = vhost()
    first = b.spawn_client("hold")
    try:
        assert first.stdout.readline().startswith("ok init"), "first frontend did not start"
        assert first.stdout.readline().strip() == "ready"
        second = b.client("getattr", options=("--timeout", "300"), check=False, timeout=30)
        assert second.returncode != 0, f"a second frontend was served:\n{second.stdout}"
        assert b.daemon.alive()
    finally:
        first.stdin.close()
        first.wait(timeout=30)
    assert first.returncode == 0, first.stdout.read()
    b.exits_cleanly()


def test_frontend_killed(vhost):
    """QEMU killed: the daemon exits 0 even with handles the guest left
    open and requests on the rings."""
    b = vhost()
    helpers.put_bytes(b.shared / "k", b"kill")
    c = b.spawn_client("open:k", "open:k", "hold")
    try:
        lines = [c.stdout.readline() for _ in range(4)]
        assert lines[-1].strip() == "ready", "".join(lines)
        assert b.daemon.alive()
    finally:
        c.kill()
        c.wait(timeout=10)
    b.exits_cleanly()


def test_sigterm_before_a_frontend(vhost):
    b = vhost()
    b.daemon.proc.send_signal(signal.SIGTERM)
    b.exits_cleanly()


def test_sigterm_with_frontend_connected(vhost):
    b = vhost()
    c = b.spawn_client("hold")
    try:
        assert c.stdout.readline().startswith("ok init")
        assert c.stdout.readline().strip() == "ready"
        b.daemon.proc.send_signal(signal.SIGTERM)
        b.exits_cleanly()
        out, _ = c.communicate(timeout=10)
    finally:
        if c.poll() is None:
            c.kill()
            c.wait(timeout=10)
    assert "the backend closed the connection" in out


def test_listening_socket_passed_as_fd(build_dir, fsb_workdir, vhost_tools):
    """--fd=N (how libvirt starts a backend): the socket is ours, the
    daemon accepts one frontend on it and exits 0 when it leaves."""
    shared = fsb_workdir / "share"
    shared.mkdir()
    sock_path = fsb_workdir / "fd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    fd = listener.fileno()
    log = fsb_workdir / "fsbridged-fd.log"
    with open(log, "wb") as err:
        d = subprocess.Popen([str(build_dir / "fsbridged"), f"--fd={fd}", f"--shared-dir={shared}"],
                             stdin=subprocess.DEVNULL, stdout=err, stderr=err, pass_fds=(fd,))
    listener.close()
    try:
        r = subprocess.run([str(vhost_tools / "vhost-client"), str(sock_path), "getattr"],
                           capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        assert r.returncode == 0, r.stdout + r.stderr
        assert d.wait(timeout=10) == 0, log.read_text()
    finally:
        if d.poll() is None:
            d.kill()
            d.wait(timeout=10)


def test_queue_threads_polling_the_rings(vhost, fsb_workdir):
    """--poll-us: a queue thread with an empty ring watches it before it
    sleeps for the kick.  Requests are served as without it, a ring stop
    and restart still ends and resumes its thread, and the backend exits
    cleanly."""
    b = vhost(extra=("--poll-us=200",))
    src = fsb_workdir / "src.bin"
    data = _random_file(src, 300_000)
    out = fsb_workdir / "out.bin"
    b.client("getattr", f"write:pw.bin:{src}", f"read:pw.bin:{out}", "ring-restart",
             "getattr", "queues", options=("--queues", "2"))
    assert helpers.get_bytes(b.shared / "pw.bin") == data
    assert helpers.get_bytes(out) == data
    b.exits_cleanly()


def test_overlay_dir(vhost, fsb_workdir):
    """--overlay-dir: virtio-fs on a copy-on-write share; the shared dir is
    never written, the changes land in UPPER."""
    upper = fsb_workdir / "upper"
    upper.mkdir()
    b = vhost(extra=("--overlay-dir", str(upper)))
    host_data = _random_file(b.shared / "from-host.bin", 333_333)
    src = fsb_workdir / "src.bin"
    data = _random_file(src, 100_001)
    out = fsb_workdir / "out.bin"
    b.client("getattr", f"write:w.bin:{src}", f"read:from-host.bin:{out}")
    assert helpers.get_bytes(out) == host_data
    assert helpers.get_bytes(upper / "w.bin") == data
    assert sorted(os.listdir(b.shared)) == ["from-host.bin"]
    b.exits_cleanly()
