"""
conftest.py - fixtures that run fsbridged and fsbridge-mount for real.

Fixtures (names are stable; other test files rely on them):

  build_dir        session: Path of the build directory (env FSB_BUILD_DIR,
                   default <repo>/build).  Skips everything when the two
                   programs are not built.
  fsb_workdir      a fresh directory on the machine's disk (not FUSE), mode
                   0755 and reachable by any uid (pytest's tmp_path is under
                   a 0700 directory, which would make a non-root user's
                   EACCES meaningless).  Sockets and mountpoints go here:
                   a Unix socket path must stay under 108 bytes.
  export_dir       fsb_workdir/export, an empty directory (mode 0755) to
                   export; a test file that needs other contents defines
                   its own.
  daemon_factory   start(exports, extra_args=(), ...) -> Daemon.  Starts
                   fsbridged on a fresh Unix socket and waits until it
                   listens.  Every daemon is stopped at teardown, and one
                   that does not exit 0 on SIGTERM fails the test.
  overlay_factory  start(export, files) -> (Daemon, lower, upper).  Starts
                   fsbridged serving EXPORT copy-on-write: fsb_workdir/lower,
                   holding FILES ({name: bytes}), under an empty
                   fsb_workdir/upper (once per test: the names are fixed).
  mount_factory    mount(daemon_or_address, mountpoint=None, options=...) ->
                   Mount.  Runs `fsbridge-mount -f`, waits for the mount
                   (10 s, else fails with its stderr); teardown unmounts
                   (umount, then umount -l) and kills leftovers.
  fs               parametrized over the cache modes (never, metadata, auto,
                   always, writeback) and "matchlock" (the export mounted
                   with fsbridge-mount --protocol=matchlock through
                   fsbridged's matchlock frontend; the tests whose checks
                   that protocol cannot express are skipped, with the
                   reason, from matchlock_limits.py), and "overlay" (a
                   copy-on-write export, cache=auto: .host is its UPPER,
                   .lower its LOWER, which holds a populated tree under
                   lowertree/ (overlay_tree.py) and must be unchanged at
                   the end): an export directory, a daemon and a mount.
                   .host is the export directory, .mnt the mountpoint,
                   .mode the cache mode (or "matchlock", "overlay").

Markers:
  @pytest.mark.modes("auto", "never")  run an `fs` test only in these cache
                                       modes (and over matchlock)
  @pytest.mark.deadline(120)           per-test watchdog limit in seconds
                                       (default 60).  When it fires, every
                                       FUSE connection the test mounted is
                                       aborted through fusectl, so a hung
                                       filesystem fails the test (ENOTCONN)
                                       instead of hanging the whole run.

Relay modes: every native mount (fs and mount_factory) runs in the relay
mode FSB_RELAY_MODE names (RELAY_MODES below: default, uring-on,
uring-poll-0, uring-off, queues-1, queues-N, poll-0); its -o options come
before the test's own, so a test that sets one itself wins.  The uring=on
modes set the fuse module's enable_uring=1 for the run and restore it.  run-tests.sh runs the
whole suite in the default mode and a representative subset in the others.

Environment:
  FSB_BUILD_DIR     build directory (default <repo>/build)
  FSB_RELAY_MODE    relay mode of native mounts (default: "default")
  FSB_CACHE_MODES   comma list restricting the `fs` modes (e.g. "auto", or
                    "matchlock"); "coherent" runs outside COHERENT_SUBSET
                    only when named here
  FSB_LOG_LEVEL     --log-level passed to every fsbridged (default: none)
  FSB_TMPDIR        where work directories go (default /tmp)
  FSB_KEEP_TMP      set to keep work directories after the test
"""

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import helpers
import matchlock_limits
import overlay_tree

REPO = Path(__file__).resolve().parents[2]
CACHE_MODES = ["never", "metadata", "auto", "always", "writeback", "coherent"]
FS_MODES = CACHE_MODES + ["matchlock", "overlay"]
# cache=coherent runs the suites that every mode must pass, not the whole
# suite (CI time); FSB_CACHE_MODES=coherent runs it everywhere.
# test_coherent.py has its own fixtures.
COHERENT_SUBSET = {"test_files.py", "test_dirs.py", "test_attrs.py", "test_links.py"}
DEFAULT_DEADLINE = 60.0
ENABLE_URING = Path("/sys/module/fuse/parameters/enable_uring")

# fsbridge-mount -o options per relay mode (see the docstring).
RELAY_MODES = {
    "default": [],
    "uring-on": ["uring=on"],
    "uring-poll-0": ["uring=on", "poll_us=0"],  # the default spins (poll_us=50)
    "uring-off": ["uring=off"],
    "queues-1": ["queues=1", "uring=off"],
    "queues-N": [f"queues={max(4, 2 * (os.cpu_count() or 1))}", "uring=off"],
    "poll-0": ["poll_us=0"],  # sleeping for every reply, the old behaviour
}
RELAY_MODE = os.environ.get("FSB_RELAY_MODE", "default")
if RELAY_MODE not in RELAY_MODES:
    raise SystemExit(f"FSB_RELAY_MODE={RELAY_MODE}: expected one of {', '.join(RELAY_MODES)}")
READY_TIMEOUT = 10.0

# Mounts live in the current test; the watchdog aborts them when it fires.
_live_mounts = []
_live_lock = threading.Lock()


# --------------------------------------------------------------------------
# pytest hooks: markers, mode selection, failure reports


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "modes(*names): run an fs-parametrized test only in these cache modes "
                   "(and over matchlock)")
    config.addinivalue_line(
        "markers", "deadline(seconds): watchdog limit for one test (default 60 s)")
    config.addinivalue_line(
        "markers", "small_notify_queue: test_coherent's daemon queues 64 notifications a "
                   "session (FSBRIDGE_TEST_NOTIFY_QUEUE_MAX), so a burst surely overflows")


def _wanted_modes(item):
    wanted = set(FS_MODES)
    env = os.environ.get("FSB_CACHE_MODES")
    if env:
        wanted &= {m.strip() for m in env.split(",") if m.strip()}
    elif item.path.name not in COHERENT_SUBSET:
        wanted.discard("coherent")
    marker = item.get_closest_marker("modes")
    if marker is not None:
        # matchlock is a protocol, not a cache mode: it runs as well; an
        # overlay export runs with cache=auto.
        wanted &= set(marker.args) | {"matchlock"} | (
            {"overlay"} if "auto" in marker.args else set())
    return wanted


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("fs") if callspec else None
        if mode is not None and mode not in _wanted_modes(item):
            drop.append(item)
        else:
            keep.append(item)
        if mode == "matchlock":
            matchlock_limits.mark(item)
        if mode == "overlay":
            overlay_tree.mark(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _test_failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


# --------------------------------------------------------------------------
# session checks


@pytest.fixture(scope="session")
def build_dir():
    path = Path(os.environ.get("FSB_BUILD_DIR", REPO / "build")).resolve()
    missing = [p for p in ("fsbridged", "fsbridge-mount")
               if not os.access(path / p, os.X_OK)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not built in {path} "
                    f"(meson setup build && ninja -C build, or set FSB_BUILD_DIR)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing")
    if os.geteuid() != 0:
        pytest.skip("the integration tests mount FUSE and switch users: run as root")
    mounted_fusectl = _ensure_fusectl()
    yield path
    if mounted_fusectl:
        _unmount_fusectl()


FUSECTL = "/sys/fs/fuse/connections"


def _fusectl_mounted():
    return any(e["fstype"] == "fusectl" for e in helpers.mountinfo())


def _ensure_fusectl():
    """Mount fusectl if needed: the watchdog aborts hung connections there.
    Returns True when this session mounted it (and so unmounts it at the
    end); one that was mounted before stays."""
    if not os.path.isdir(FUSECTL) or _fusectl_mounted():
        return False
    subprocess.run(["mount", "-t", "fusectl", "none", FUSECTL],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    return _fusectl_mounted()


def _unmount_fusectl():
    r = subprocess.run(["umount", FUSECTL], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=10)
    if r.returncode != 0:
        print(f"could not unmount the fusectl this session mounted: {r.stdout.strip()}")


def set_enable_uring(value):
    """Sets the fuse module's enable_uring; returns the old value ("Y"/"N"),
    or None when the kernel has no such parameter."""
    if not ENABLE_URING.exists():
        return None
    old = ENABLE_URING.read_text().strip()
    ENABLE_URING.write_text("1" if value else "0")
    return old


@pytest.fixture(scope="session", autouse=True)
def _relay_mode():
    if "uring=on" not in RELAY_MODES[RELAY_MODE]:
        yield
        return
    old = set_enable_uring(True)
    if old is None:
        pytest.exit(f"FSB_RELAY_MODE={RELAY_MODE}: this kernel has no FUSE-over-io_uring "
                    "(/sys/module/fuse/parameters/enable_uring)", returncode=1)
    yield
    set_enable_uring(old == "Y")


@pytest.fixture(scope="session")
def _tmp_root():
    root = Path(os.environ.get("FSB_TMPDIR", "/tmp")).resolve()
    entry = helpers.containing_mount(root)
    if entry is not None and entry["fstype"].startswith("fuse"):
        pytest.fail(f"{root} is on {entry['fstype']}: the tests need a local disk "
                    f"(set FSB_TMPDIR)")
    return root


@pytest.fixture
def fsb_workdir(_tmp_root):
    path = Path(tempfile.mkdtemp(prefix="fsb-", dir=_tmp_root))
    os.chmod(path, 0o755)
    yield path
    if os.environ.get("FSB_KEEP_TMP"):
        return
    prefix = str(path) + "/"
    if any(e["mountpoint"].startswith(prefix) for e in helpers.mountinfo()):
        print(f"not removing {path}: something is still mounted below it")
        return
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def export_dir(fsb_workdir):
    host = fsb_workdir / "export"
    host.mkdir()
    os.chmod(host, 0o755)
    return host


# --------------------------------------------------------------------------
# the per-test watchdog


@pytest.fixture(autouse=True)
def _watchdog(request):
    marker = request.node.get_closest_marker("deadline")
    limit = float(marker.args[0]) if marker else DEFAULT_DEADLINE
    fired = []

    def fire():
        fired.append(time.monotonic())
        with _live_lock:
            mounts = list(_live_mounts)
        for m in mounts:
            helpers.fuse_abort(m.connection)

    timer = threading.Timer(limit, fire)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()
    if fired:
        pytest.fail(f"watchdog: the test ran over {limit:.0f} s; its FUSE "
                    f"connections were aborted (hung request?)", pytrace=False)


# --------------------------------------------------------------------------
# fsbridged


class Daemon:
    """One fsbridged process, listening on .socket (unless listen= was given)."""

    def __init__(self, argv, socket_path, stderr_path, proc, check_exit):
        self.argv = argv
        self.socket = socket_path
        self.address = f"unix:{socket_path}" if socket_path else None
        self.stderr_path = stderr_path
        self.proc = proc
        self.pid = proc.pid
        self.check_exit = check_exit
        self.reaped = False

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def listening(self):
        return helpers.unix_socket_listening(self.socket)

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.reaped = True
                pytest.fail(f"fsbridged exited {self.proc.returncode} before listening\n"
                            f"argv: {self.argv}\nstderr:\n{self.stderr_text()}",
                            pytrace=False)
            if self.listening():
                return self
            if time.monotonic() > deadline:
                pytest.fail(f"fsbridged not listening on {self.socket} after "
                            f"{timeout:.0f} s\nstderr:\n{self.stderr_text()}",
                            pytrace=False)
            time.sleep(0.01)

    def wait(self, timeout=10.0):
        """Wait for the daemon to exit by itself; return its exit code."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"fsbridged (pid {self.pid}) still running after "
                        f"{timeout:.0f} s\nstderr:\n{self.stderr_text()}", pytrace=False)
        self.reaped = True
        return rc

    def stop(self, expect_rc=0, sig=signal.SIGTERM, timeout=10.0):
        """Send `sig` (SIGTERM), wait, check the exit code; return it.

        expect_rc=None accepts any exit code.
        """
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.reaped = True
                pytest.fail(f"fsbridged ignored signal {sig} for {timeout:.0f} s "
                            f"(killed)\nstderr:\n{self.stderr_text()}", pytrace=False)
        self.reaped = True
        rc = self.proc.returncode
        if expect_rc is not None and rc != expect_rc:
            pytest.fail(f"fsbridged exited {rc} (signal {-rc if rc < 0 else 0}), "
                        f"expected {expect_rc}\nstderr:\n{self.stderr_text()}",
                        pytrace=False)
        return rc

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)


def _make_preexec(preexec_fn, rlimits):
    if not preexec_fn and not rlimits:
        return None

    def run():
        if rlimits:
            import resource
            for res, limits in rlimits.items():
                resource.setrlimit(res, limits)
        if preexec_fn:
            preexec_fn()
    return run


@pytest.fixture
def daemon_factory(build_dir, fsb_workdir, request):
    """start(exports, extra_args=(), *, listen=None, preexec_fn=None,
    rlimits=None, env=None, wait=True, check_exit=True, log_level=None)

    exports: list of "name=dir[,opts]" strings, each passed as --export.
    listen: list of addresses; default one fresh unix socket (Daemon.socket).
    rlimits: {resource.RLIMIT_X: (soft, hard)} applied in the child.
    wait: wait until the socket listens (only for the default socket).
    check_exit: at teardown, a daemon that exited non-zero (or does not exit
    0 on SIGTERM) fails the test.
    """
    daemons = []

    def start(exports, extra_args=(), *, listen=None, preexec_fn=None, rlimits=None,
              env=None, wait=True, check_exit=True, log_level=None):
        n = len(daemons)
        socket_path = None
        argv = [str(build_dir / "fsbridged")]
        for e in exports:
            argv += ["--export", str(e)]
        if listen is None:
            socket_path = fsb_workdir / f"d{n}.sock"
            listen = [f"unix:{socket_path}"]
        for a in listen:
            argv += ["--listen", str(a)]
        level = log_level or os.environ.get("FSB_LOG_LEVEL")
        if level:
            argv += ["--log-level", level]
        argv += [str(a) for a in extra_args]
        stderr_path = fsb_workdir / f"fsbridged{n}.log"
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err,
                                    stderr=err, env=env, start_new_session=True,
                                    preexec_fn=_make_preexec(preexec_fn, rlimits))
        d = Daemon(argv, socket_path, stderr_path, proc, check_exit)
        daemons.append(d)
        if wait and socket_path is not None:
            d.wait_ready()
        return d

    yield start

    problems = []
    for d in daemons:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            try:
                d.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait(timeout=10)
                problems.append(f"fsbridged pid {d.pid} ignored SIGTERM (killed)")
                continue
            if d.check_exit and d.proc.returncode != 0:
                problems.append(f"fsbridged pid {d.pid} exited {d.proc.returncode} on SIGTERM")
        elif not d.reaped and d.check_exit and d.proc.returncode != 0:
            problems.append(f"fsbridged pid {d.pid} died during the test "
                            f"(exit {d.proc.returncode})")
    if problems or _test_failed(request):
        for d in daemons:
            text = d.stderr_text()
            print(f"---- fsbridged pid {d.pid} stderr (last 4000 chars) ----\n{text[-4000:]}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def overlay_factory(fsb_workdir, daemon_factory):
    """start(export, files) -> (Daemon, lower, upper): see the docstring."""
    def start(export, files):
        lower, upper = fsb_workdir / "lower", fsb_workdir / "upper"
        lower.mkdir()
        upper.mkdir()
        for name, data in files.items():
            (lower / name).write_bytes(data)
        return daemon_factory([f"{export}={lower},overlay={upper}"]), lower, upper

    return start


# --------------------------------------------------------------------------
# fsbridge-mount


class Mount:
    """One fsbridge-mount process and its mountpoint."""

    def __init__(self, argv, path, address, stderr_path, proc):
        self.argv = argv
        self.path = path
        self.address = address
        self.stderr_path = stderr_path
        self.proc = proc
        self.dev = None          # "major:minor" from mountinfo, once mounted
        self.connection = None   # its fusectl identity (helpers.fuse_connection)
        self.unmounted = False

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def is_mounted(self):
        e = helpers.mount_entry(self.path)
        return e is not None and e["fstype"].startswith("fuse")

    def wait_mounted(self, timeout=READY_TIMEOUT, foreground=True):
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None and (foreground or rc != 0):
                pytest.fail(f"fsbridge-mount exited {rc} before mounting\n"
                            f"argv: {self.argv}\nstderr:\n{self.stderr_text()}",
                            pytrace=False)
            e = helpers.mount_entry(self.path)
            if e is not None and e["fstype"].startswith("fuse"):
                self.dev = e["dev"]
                self.connection = helpers.fuse_connection(self.dev)
                return self
            if time.monotonic() > deadline:
                pytest.fail(f"{self.path} not mounted after {timeout:.0f} s\n"
                            f"argv: {self.argv}\nstderr:\n{self.stderr_text()}",
                            pytrace=False)
            time.sleep(0.01)

    def abort(self):
        """Abort the FUSE connection (fusectl): pending requests fail."""
        return helpers.fuse_abort(self.connection)

    def _umount_cmd(self, *flags):
        try:
            r = subprocess.run(["umount", *flags, str(self.path)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=10)
            return r.returncode, r.stdout
        except subprocess.TimeoutExpired:
            return None, "umount timed out"

    def umount(self, expect_rc=0, timeout=10.0):
        """Unmount, wait for fsbridge-mount to exit, check its exit code.

        expect_rc=None accepts any exit code (e.g. after the host died).
        Returns the exit code of the fsbridge-mount process.
        """
        notes = []
        if not self.unmounted:
            if self.is_mounted():
                rc, out = self._umount_cmd()
                if self.is_mounted():
                    notes.append(f"umount: {rc} {out.strip()}")
                    self.abort()
                    rc, out = self._umount_cmd("-l")
                    if self.is_mounted():
                        notes.append(f"umount -l: {rc} {out.strip()}")
            self.unmounted = True
            with _live_lock:
                if self in _live_mounts:
                    _live_mounts.remove(self)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            pytest.fail(f"fsbridge-mount still running {timeout:.0f} s after umount "
                        f"(killed)\n{chr(10).join(notes)}\nstderr:\n{self.stderr_text()}",
                        pytrace=False)
        _kill_background_relays(self.path)
        if expect_rc is not None and rc != expect_rc:
            pytest.fail(f"fsbridge-mount exited {rc}, expected {expect_rc}\n"
                        f"{chr(10).join(notes)}\nstderr:\n{self.stderr_text()}",
                        pytrace=False)
        if notes and expect_rc is not None:
            pytest.fail("plain umount failed:\n" + "\n".join(notes), pytrace=False)
        return rc


def _kill_background_relays(mountpoint):
    """Kill fsbridge-mount processes (started by us, backgrounded) for this mountpoint."""
    target = str(mountpoint).encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0]) in (b"fsbridge-mount", b"mount.fsbridge") \
                and target in args:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def mount_factory(build_dir, fsb_workdir, daemon_factory, request):
    """mount(target, mountpoint=None, options=(), extra_args=(), *,
    foreground=True, wait=True, timeout=10, env=None, preexec_fn=None)

    target: a Daemon (its unix socket) or an address string.
    options: list or comma string for -o (e.g. ["export=test", "allow_other"]).
    foreground=False runs without -f and waits for that process to exit 0.
    """
    mounts = []

    def mount(target, mountpoint=None, options=(), extra_args=(), *, foreground=True,
              wait=True, timeout=READY_TIMEOUT, env=None, preexec_fn=None):
        n = len(mounts)
        address = target.address if isinstance(target, Daemon) else str(target)
        if mountpoint is None:
            mountpoint = fsb_workdir / f"mnt{n}"
        mountpoint = Path(mountpoint)
        mountpoint.mkdir(parents=True, exist_ok=True)
        if isinstance(options, str):
            options = [options] if options else []
        matchlock = "--protocol=matchlock" in map(str, extra_args) or \
            "protocol=matchlock" in options
        if not matchlock:
            options = RELAY_MODES[RELAY_MODE] + list(options)
        argv = [str(build_dir / "fsbridge-mount")]
        if foreground:
            argv.append("-f")
        if options:
            argv += ["-o", ",".join(options)]
        argv += [str(a) for a in extra_args]
        argv += [address, str(mountpoint)]
        stderr_path = fsb_workdir / f"mount{n}.log"
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    env=env, start_new_session=True, preexec_fn=preexec_fn)
        m = Mount(argv, mountpoint, address, stderr_path, proc)
        mounts.append(m)
        with _live_lock:
            _live_mounts.append(m)
        if wait:
            m.wait_mounted(timeout=timeout, foreground=foreground)
            if not foreground:
                m.proc.wait(timeout=timeout)
        return m

    yield mount

    for m in reversed(mounts):
        if not m.unmounted:
            try:
                m.umount(expect_rc=None)
            except BaseException as e:  # keep cleaning the others
                print(f"teardown of {m.path}: {e}")
        if m.proc.poll() is None:
            m.proc.kill()
            m.proc.wait(timeout=10)
    if _test_failed(request):
        for m in mounts:
            print(f"---- fsbridge-mount {m.path} stderr (last 2000 chars) ----\n"
                  f"{m.stderr_text()[-2000:]}")


# --------------------------------------------------------------------------
# fs: one export, one daemon, one mount, per cache mode


class FS:
    def __init__(self, mode, host, mnt, daemon, mount, lower=None):
        self.mode = mode
        self.lower = lower
        self.host = host
        self.mnt = mnt
        self.daemon = daemon
        self.mount = mount

    @property
    def direct_io(self):
        return self.mode in ("never", "metadata")

    @property
    def writeback(self):
        return self.mode == "writeback"

    def __repr__(self):
        return f"<fs mode={self.mode} host={self.host} mnt={self.mnt}>"


def export_options(mode):
    if mode == "writeback":
        return "cache=auto,writeback"
    return f"cache={mode}"


@pytest.fixture(params=FS_MODES, ids=FS_MODES)
def fs(request, fsb_workdir, daemon_factory, mount_factory):
    mode = request.param
    host = fsb_workdir / "export"
    host.mkdir()
    os.chmod(host, 0o755)
    lower = lower_before = None
    if mode == "matchlock":
        daemon = daemon_factory([f"test={host}"])
        m = mount_factory(daemon, fsb_workdir / "mnt", options=["prefix=/test", "allow_other"],
                          extra_args=["--protocol=matchlock"])
    elif mode == "overlay":
        lower = fsb_workdir / "lower"
        overlay_tree.populate(lower / "lowertree")
        os.chmod(lower, 0o755)
        lower_before = overlay_tree.snapshot(lower, times=True)
        daemon = daemon_factory([f"test={lower},cache=auto,overlay={host}"])
        m = mount_factory(daemon, fsb_workdir / "mnt", options=["export=test", "allow_other"])
    else:
        daemon = daemon_factory([f"test={host},{export_options(mode)}"])
        m = mount_factory(daemon, fsb_workdir / "mnt", options=["export=test", "allow_other"])
    f = FS(mode, host, m.path, daemon, m, lower=lower)
    yield f
    # A clean unmount and a clean daemon exit are part of every test.
    if not m.unmounted:
        m.umount(expect_rc=0)
    if daemon.alive():
        daemon.stop(expect_rc=0)
    if lower is not None:
        changed = overlay_tree.diff(lower_before, overlay_tree.snapshot(lower, times=True))
        assert not changed, "LOWER changed:\n" + "\n".join(changed[:20])
