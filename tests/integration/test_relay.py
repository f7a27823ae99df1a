"""
test_relay.py - the relay's queues (fsbridge-mount -o uring=, queues=,
poll_us=).

* uring=auto uses FUSE-over-io_uring when the fuse module's enable_uring=1
  (one ring per possible CPU, requests from every CPU answered), and
  /dev/fuse queues otherwise; the mounted line says which.
* A setting that refuses io_uring falls back with a log line (auto) or
  fails the mount with one line and leaves nothing mounted (on): the
  module's enable_uring=0 (the kernel does not offer it in INIT) and the
  kernel.io_uring_disabled=2 sysctl (io_uring_setup fails).  Each test puts
  the setting back.
* queues=N gives N /dev/fuse queues, each with its own connection to the
  host (stream protocol 2 joins); bad values are one-line errors.
* The host going away under an io_uring mount fails requests with ENOTCONN
  and the relay exits 1, as with /dev/fuse queues.
* A host that speaks stream protocol 1 only (the daemon's own version-1
  reply, through a proxy that lowers the HELLO's version) gets one
  connection for all queues, and the mount works.
* A guest whose session budget is smaller than the queues still mounts:
  the joins beyond it are refused and the queues share the connections
  there are.
* An idle mount uses no CPU, polling or not: neither the relay nor the
  daemon, both spinning (poll_us=, --poll-us=) or both sleeping, on
  /dev/fuse queues and on io_uring rings (which spin for owed replies).
"""

import errno
import os
import re
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

import helpers
from conftest import ENABLE_URING, RELAY_MODE, RELAY_MODES, set_enable_uring

EXPORT = "test"
IO_URING_DISABLED = Path("/proc/sys/kernel/io_uring_disabled")
MOUNTED = re.compile(r"mounted .* \((/dev/fuse|io_uring), (\d+) queues?, (\d+) connections?")

needs_uring = pytest.mark.skipif(not ENABLE_URING.exists(),
                                 reason="this kernel has no FUSE-over-io_uring "
                                        "(no /sys/module/fuse/parameters/enable_uring)")


@pytest.fixture
def export(fsb_workdir):
    host = fsb_workdir / "export"
    host.mkdir()
    os.chmod(host, 0o755)
    (host / "hello").write_text("hello\n")
    return host


@pytest.fixture
def daemon(export, daemon_factory):
    return daemon_factory([f"{EXPORT}={export},cache=never"])


@pytest.fixture
def uring_enabled():
    """The fuse module's enable_uring=1 for the test, restored after."""
    old = set_enable_uring(True)
    yield
    set_enable_uring(old == "Y")


@pytest.fixture
def uring_disabled():
    old = set_enable_uring(False)
    yield
    if old is not None:
        set_enable_uring(old == "Y")


@pytest.fixture
def io_uring_sysctl_off():
    """kernel.io_uring_disabled=2: io_uring_setup() fails with EPERM."""
    if not IO_URING_DISABLED.exists():
        pytest.skip("no kernel.io_uring_disabled sysctl on this kernel")
    old = IO_URING_DISABLED.read_text().strip()
    IO_URING_DISABLED.write_text("2")
    yield
    IO_URING_DISABLED.write_text(old)


def mounted_mode(m):
    """(kind, queues, connections) from the mounted line, which may follow
    the mount's appearance in mountinfo by a moment."""
    match = helpers.poll_until(lambda: MOUNTED.search(m.stderr_text()), timeout=5,
                               what=f"a mounted line naming the queues in {m.stderr_path}")
    return match.group(1), int(match.group(2)), int(match.group(3))


def possible_cpus():
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return int(text.split("-")[-1]) + 1


def online_cpus():
    return sorted(os.sched_getaffinity(0))


def use_from_every_cpu(mnt):
    """Create, write, read, stat and unlink a file from a process pinned to
    each CPU: with io_uring each goes through that CPU's ring."""
    for cpu in online_cpus():
        code = (f"import os\nos.sched_setaffinity(0, {{{cpu}}})\n"
                f"p = os.path.join({str(mnt)!r}, 'cpu{cpu}')\n"
                "open(p, 'w').write('x' * 5000)\n"
                "assert open(p).read() == 'x' * 5000\n"
                "assert os.stat(p).st_size == 5000\n"
                "os.unlink(p)\n")
        helpers.run(["/usr/bin/python3", "-c", code])


def mount_cli(build_dir, daemon, mnt, options):
    mnt.mkdir(exist_ok=True)
    return helpers.run([str(build_dir / "fsbridge-mount"), "-f", "-o",
                        f"export={EXPORT},{options}", daemon.address, str(mnt)],
                       check=False, timeout=20)


def assert_not_mounted(mnt):
    e = helpers.mount_entry(mnt)
    assert e is None, f"a failed fsbridge-mount left a mount: {e}"


def mode_queues():
    """queues= of the suite's relay mode (FSB_RELAY_MODE=queues-1 adds
    queues=1 to every mount), else the default: the online CPUs."""
    given = [o for o in RELAY_MODES[RELAY_MODE] if o.startswith("queues=")]
    return int(given[-1].split("=", 1)[1]) if given else len(online_cpus())


@needs_uring
def test_uring_auto_uses_one_ring_per_cpu(daemon, mount_factory, fsb_workdir, uring_enabled):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "uring=auto"])
    # One connection per ring, read by the ring's own thread, and one for
    # what comes through /dev/fuse, when queues= (default: the online
    # CPUs) allows a ring per possible CPU; else queues= connections.
    rings, queues = possible_cpus(), mode_queues()
    conns = rings + 1 if rings <= queues else queues
    assert mounted_mode(m) == ("io_uring", possible_cpus(), conns)
    assert (m.path / "hello").read_text() == "hello\n"
    use_from_every_cpu(m.path)
    assert helpers.narrowed_threads(daemon.pid) == {}, "--cpu-hints ignore is the default"
    m.umount()
    assert m.proc.wait(timeout=10) == 0


@needs_uring
def test_rings_connections_are_served_on_their_cpus(export, daemon_factory, mount_factory,
                                                     uring_enabled):
    """Over a Unix socket (the host runs on this kernel) each ring's
    connection names the ring's CPU, and fsbridged --cpu-hints follow reads
    it there: one daemon thread per ring, on that CPU."""
    daemon = daemon_factory([f"{EXPORT}={export},cache=never"], ["--cpu-hints", "follow"])
    m = mount_factory(daemon, options=[f"export={EXPORT}", "uring=on"])
    if mounted_mode(m)[2] != possible_cpus() + 1:
        pytest.skip("queues= leaves the rings sharing connections on this machine")
    use_from_every_cpu(m.path)
    want = sorted(cpu for cpu in online_cpus() if cpu in os.sched_getaffinity(daemon.pid))
    got = sorted(c for cpus in helpers.narrowed_threads(daemon.pid).values() for c in cpus)
    assert got == want, f"daemon threads on one CPU: {got}, rings' CPUs: {want}"


@needs_uring
def test_uring_off_uses_dev_fuse(daemon, mount_factory, uring_enabled):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "uring=off", "queues=3"])
    assert mounted_mode(m) == ("/dev/fuse", 3, 3)
    use_from_every_cpu(m.path)


@needs_uring
def test_kernel_without_the_offer_falls_back(daemon, mount_factory, uring_disabled):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "uring=auto"])
    assert mounted_mode(m)[0] == "/dev/fuse"
    use_from_every_cpu(m.path)


@needs_uring
def test_uring_on_fails_when_the_kernel_does_not_offer_it(build_dir, daemon, fsb_workdir,
                                                          uring_disabled):
    mnt = fsb_workdir / "mnt"
    r = mount_cli(build_dir, daemon, mnt, "uring=on")
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1, r.stderr
    assert len(lines) == 1 and "enable_uring" in lines[0], r.stderr
    assert_not_mounted(mnt)
    assert daemon.alive()


@needs_uring
def test_io_uring_refused_falls_back_with_a_log_line(daemon, mount_factory, uring_enabled,
                                                     io_uring_sysctl_off):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "uring=auto"])
    assert mounted_mode(m)[0] == "/dev/fuse"
    assert re.search(r"io_uring unavailable \(.+\): using /dev/fuse queues", m.stderr_text()), \
        m.stderr_text()
    use_from_every_cpu(m.path)


@needs_uring
def test_io_uring_refused_fails_uring_on(build_dir, daemon, fsb_workdir, uring_enabled,
                                         io_uring_sysctl_off):
    mnt = fsb_workdir / "mnt"
    r = mount_cli(build_dir, daemon, mnt, "uring=on")
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "io_uring" in lines[0], r.stderr
    assert_not_mounted(mnt)


@needs_uring
def test_host_lost_under_uring(daemon, mount_factory, uring_enabled):
    m = mount_factory(daemon, options=[f"export={EXPORT}", "uring=on"])
    assert (m.path / "hello").read_text() == "hello\n"
    daemon.kill(signal.SIGKILL)
    assert daemon.wait(timeout=10) == -signal.SIGKILL
    for cpu in online_cpus():
        r = helpers.run_python(f"import os\nos.sched_setaffinity(0, {{{cpu}}})\n"
                               f"try:\n    os.stat({str(m.path / 'hello')!r})\n"
                               "except OSError as e:\n    print(e.errno)\n",
                               timeout=20)
        # ENOTCONN from the relay or, once it has exited, from the aborted
        # connection; ECONNABORTED for a request the abort ended; ECANCELED
        # when the kernel handed the request to a ring entry of the relay's
        # io_uring while the relay was exiting (dev_uring.c ends it so).
        lost = (errno.ENOTCONN, errno.ECONNABORTED, errno.ECANCELED)
        assert r.stdout.strip() in {str(e) for e in lost}, r
    assert m.proc.wait(timeout=10) == 1
    assert re.search(r"lost connection", m.stderr_text()), m.stderr_text()


@pytest.mark.parametrize("bad", ["queues=0", "queues=65", "queues=x", "poll_us=-1",
                                 "poll_us=1001", "uring=maybe"])
def test_bad_relay_options(build_dir, daemon, fsb_workdir, bad):
    mnt = fsb_workdir / "mnt"
    r = mount_cli(build_dir, daemon, mnt, bad)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1 and len(lines) == 1 and bad.split("=")[0] in lines[0], r.stderr
    assert_not_mounted(mnt)


def test_relay_options_do_not_apply_to_matchlock(build_dir, daemon, fsb_workdir):
    mnt = fsb_workdir / "mnt"
    mnt.mkdir()
    r = helpers.run([str(build_dir / "fsbridge-mount"), "-f", "--protocol=matchlock", "-o",
                     "queues=2", daemon.address, str(mnt)], check=False)
    assert r.returncode == 1 and "matchlock" in r.stderr, r.stderr


class Version1Proxy:
    """A Unix socket in front of the daemon that rewrites each client
    HELLO's version to 1 and passes everything else through unchanged:
    the client then talks to the daemon's real version-1 side (a reply
    without token, no joins), as it would to an older fsbridged."""

    def __init__(self, path, upstream):
        self.upstream = upstream
        self.accepted = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.address = f"unix:{path}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        host.connect(str(self.upstream))
        hello = bytearray(client.recv(16, socket.MSG_WAITALL))
        assert hello[:4] == b"FSBR" and hello[7] == 0, "a first HELLO, not a join"
        struct.pack_into("<H", hello, 4, 1)
        host.sendall(bytes(hello))
        threading.Thread(target=self._pump, args=(host, client), daemon=True).start()
        self._pump(client, host)

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.listener.close()


@pytest.fixture
def version_1_host(daemon, fsb_workdir):
    proxy = Version1Proxy(fsb_workdir / "v1.sock", daemon.socket)
    yield proxy
    proxy.close()


def test_version_1_host_gets_one_connection(version_1_host, mount_factory):
    m = mount_factory(version_1_host.address,
                      options=[f"export={EXPORT}", "uring=off", "queues=2"])
    assert mounted_mode(m) == ("/dev/fuse", 2, 1)
    assert (m.path / "hello").read_text() == "hello\n"
    use_from_every_cpu(m.path)
    assert version_1_host.accepted == 1, "the relay tried to join a version-1 host"


def test_queues_beyond_the_guest_budget_share_connections(export, daemon_factory,
                                                         mount_factory):
    d = daemon_factory([f"{EXPORT}={export},cache=never"], ["--guest-max-sessions", "2"])
    m = mount_factory(d, options=[f"export={EXPORT}", "uring=off", "queues=4"])
    assert mounted_mode(m) == ("/dev/fuse", 4, 2)
    use_from_every_cpu(m.path)
    assert (m.path / "hello").read_text() == "hello\n"


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_idle_uses_no_cpu(m, d):
    """After activity (the poll windows have grown), the relay and the
    daemon use (almost) no CPU time while nothing happens: a thread left
    spinning would use about the 2 s.  A count of clock ticks, not a
    timing."""
    for i in range(200):
        os.stat(m.path / "hello")
    time.sleep(0.2)
    pids = {"relay": m.proc.pid, "daemon": d.pid}
    before = {who: cpu_seconds(pid) for who, pid in pids.items()}
    time.sleep(2.0)
    for who, pid in pids.items():
        used = cpu_seconds(pid) - before[who]
        assert used < 0.05, f"an idle {who} used {used:.2f} s of CPU in 2 s"


@pytest.mark.parametrize("poll_us", [1000, 0])
def test_idle_mount_uses_no_cpu(export, daemon_factory, mount_factory, poll_us):
    d = daemon_factory([f"{EXPORT}={export},cache=never"], [f"--poll-us={poll_us}"])
    m = mount_factory(d, options=[f"export={EXPORT}", "uring=off", f"poll_us={poll_us}"])
    assert_idle_uses_no_cpu(m, d)


@needs_uring
@pytest.mark.parametrize("poll_us", [1000, 0])
def test_idle_uring_mount_uses_no_cpu(export, daemon_factory, mount_factory, uring_enabled,
                                      poll_us):
    """The rings spin for replies while they are owed, never for requests
    that have not come: an idle ring sleeps in io_uring_enter."""
    d = daemon_factory([f"{EXPORT}={export},cache=never"], [f"--poll-us={poll_us}"])
    m = mount_factory(d, options=[f"export={EXPORT}", "uring=on", f"poll_us={poll_us}"])
    assert mounted_mode(m)[0] == "io_uring"
    use_from_every_cpu(m.path)  # every ring has spun
    assert_idle_uses_no_cpu(m, d)


# 1 MiB O_DIRECT reads and writes from many threads of one program pinned
# to one CPU: every request of the storm goes through one queue, and the
# host's replies to the reads pile up while a write is still being sent.
# The main thread signals the workers meanwhile: each signal that finds
# one waiting makes the kernel send an INTERRUPT, through /dev/fuse even
# on rings.
STORM = """
import mmap, os, signal, sys, threading, time
path, cpu, seconds, nthreads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
os.sched_setaffinity(0, {cpu})
signal.signal(signal.SIGUSR1, lambda *_: None)
MB = 1 << 20
blocks = os.path.getsize(path) // MB
stop = time.monotonic() + seconds
done = []
def worker(i):
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    buf = mmap.mmap(-1, MB)
    n = 0
    while time.monotonic() < stop:
        block = (n * 7919 + i * 104729) % blocks
        if (n + i) % 2:
            buf[:] = bytes([block % 251]) * MB
            assert os.pwritev(fd, [buf], block * MB) == MB
        else:
            assert os.preadv(fd, [buf], block * MB) == MB
        n += 1
    os.close(fd)
    done.append(n)
threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    for t in threads:
        if t.is_alive():
            signal.pthread_kill(t.ident, signal.SIGUSR1)
    time.sleep(0.002)
for t in threads:
    t.join()
assert len(done) == nthreads, "a worker failed"
print(sum(done))
"""


@pytest.mark.deadline(90)
@pytest.mark.parametrize("uring", [pytest.param("on", marks=needs_uring), "off"])
def test_a_storm_of_large_requests_on_one_queue_never_hangs(export, daemon_factory,
                                                            mount_factory, request, uring):
    """A ring reads its own connection's replies and also sends on it.  The
    host stops reading a guest whose bytes in flight pass its budget, its
    unread replies included, so a ring that only waited for room to send
    hung for good (a small budget makes it sure within a second).  A
    /dev/fuse queue sending an INTERRUPT on a ring's connection could hold
    its send lock the same way (found by reading, not caught by this
    storm's few hundred INTERRUPTs in five runs; the fd queues now
    use connection 0).  The storm must run to its end, on rings and on
    /dev/fuse queues."""
    if uring == "on":
        request.getfixturevalue("uring_enabled")
    (export / "big").write_bytes(bytes(64 << 20))
    d = daemon_factory([f"{EXPORT}={export},cache=auto"], ["--guest-max-queued", "1M"])
    m = mount_factory(d, options=[f"export={EXPORT}", f"uring={uring}"])
    kind, _, conns = mounted_mode(m)
    assert kind == ("io_uring" if uring == "on" else "/dev/fuse")
    if uring == "on" and conns != possible_cpus() + 1:
        pytest.skip(f"{conns} connections for {possible_cpus()} rings: the rings do not "
                    "read connections of their own here (CPUs that are possible but "
                    "offline, or joins refused), and the storm tests nothing")
    r = helpers.run(["/usr/bin/python3", "-c", STORM, str(m.path / "big"),
                     str(online_cpus()[0]), "4", "16"], timeout=60)
    assert int(r.stdout) > 16, r.stdout
