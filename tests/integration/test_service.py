"""
test_service.py - fsbridged as a service: --config FILE (the options of
/etc/fsbridge/INSTANCE.conf), readiness told to systemd over
$NOTIFY_SOCKET, socket activation through fd:3, the units in
data/systemd (systemd-analyze verify), their capability bounding set
against what the sandbox needs, and, where systemd is PID 1, a real
instance mounted through.
"""

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from test_sandbox import KEPT_CAPS, status_field

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "data" / "systemd"
INSTANCE = "fsbtest"


def write_config(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def run_daemon(build_dir, args, timeout=10):
    return subprocess.run([str(build_dir / "fsbridged"), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


class NotifySocket:
    """The systemd end of sd_notify: a datagram socket the daemon is told of."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.env_value = "@" + address[1:] if address.startswith("\0") else address

    def env(self):
        return dict(os.environ, NOTIFY_SOCKET=self.env_value)

    def receive(self, timeout=10.0):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()


@pytest.fixture
def notify_path(fsb_workdir):
    s = NotifySocket(str(fsb_workdir / "notify"))
    yield s
    s.close()


def export_dirs(fsb_workdir, *names):
    dirs = []
    for name in names:
        d = fsb_workdir / name
        d.mkdir()
        (d / "hello").write_text(f"from {name}\n")
        dirs.append(d)
    return dirs


# --------------------------------------------------------------------------
# --config FILE


def test_config_file_gives_exports_and_listeners(fsb_workdir, daemon_factory, mount_factory,
                                                  notify_path):
    """Comments, blank lines, NAME VALUE, NAME=VALUE, a leading --, a flag;
    the command line after --config adds an export of its own."""
    src, out, extra = export_dirs(fsb_workdir, "src", "out", "extra")
    sock = fsb_workdir / "conf.sock"
    conf = write_config(fsb_workdir / "vm1.conf", [
        "# the exports of vm1",
        f"export src={src},ro",
        "",
        f"  --export=out={out},cache=never  ",
        f"listen unix:{sock}",
        "threads 4",
        "xattr",
    ])
    d = daemon_factory([], ["--config", conf, "--export", f"extra={extra}"], listen=[],
                       env=notify_path.env())
    assert notify_path.receive() == "READY=1", d.stderr_text()
    ro = mount_factory(f"unix:{sock}", options=["export=src"])
    assert (ro.path / "hello").read_text() == "from src\n"
    with pytest.raises(OSError) as e:
        (ro.path / "new").write_text("x")
    assert e.value.errno == errno.EROFS
    rw = mount_factory(f"unix:{sock}", options=["export=out"])
    (rw.path / "written").write_text("through the mount\n")
    assert (out / "written").read_text() == "through the mount\n"
    third = mount_factory(f"unix:{sock}", options=["export=extra"])
    assert (third.path / "hello").read_text() == "from extra\n"
    for m in (ro, rw, third):
        m.umount()
    d.stop()
    assert notify_path.receive() == "STOPPING=1"


@pytest.mark.parametrize("line, message", [
    # without the check, --listen would take the command line's next
    # argument for its value
    ("listen", ":2: listen: this option needs a value"),
    ("syslog yes", ":2: syslog: this option takes no value"),
    ("bogus-option 1", ":2: bogus-option: unknown option"),
    ("liste unix:/x", ":2: liste: unknown option"),            # no abbreviations
    ("config /etc/other.conf", ":2: config: a config file cannot name another one"),
    ("export*x=/tmp", ":2: expected NAME, NAME VALUE or NAME=VALUE"),
])
def test_bad_config_line_is_one_line_and_exit_2(build_dir, fsb_workdir, line, message):
    conf = write_config(fsb_workdir / "bad.conf", [f"export a={fsb_workdir}", line])
    r = run_daemon(build_dir, ["--config", str(conf), "--listen", f"unix:{fsb_workdir}/s"])
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_missing_config_file(build_dir, fsb_workdir):
    r = run_daemon(build_dir, ["--config", str(fsb_workdir / "none.conf")])
    assert r.returncode == 2
    assert r.stderr.strip() == f"fsbridged: {fsb_workdir}/none.conf: No such file or directory"
    r = run_daemon(build_dir, ["--config"])
    assert r.returncode == 2 and "--config: missing FILE" in r.stderr


def test_example_config_parses(build_dir, fsb_workdir):
    """The shipped example's options are all real options: with its
    directories missing, the daemon fails on the first export's directory,
    not on the file."""
    r = run_daemon(build_dir, ["--config", str(UNITS / "example.conf")])
    assert r.returncode == 1, r.stderr
    assert "export workspace: directory /srv/vm1/workspace: " in r.stderr, r.stderr


# --------------------------------------------------------------------------
# readiness and socket activation


def test_ready_over_an_abstract_notify_socket(fsb_workdir, daemon_factory, notify_path):
    """READY=1 arrives after the sandbox (the socket was connected before
    it), and the daemon accepts connections by then."""
    name = f"\0fsbridge-test-{os.getpid()}-{time.monotonic_ns()}"
    abstract = NotifySocket(name)
    try:
        (src,) = export_dirs(fsb_workdir, "src")
        sock = fsb_workdir / "ready.sock"
        d = daemon_factory([f"src={src}"], listen=[f"unix:{sock}"], env=abstract.env())
        assert abstract.receive() == "READY=1", d.stderr_text()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(str(sock))      # listening when it says it is ready
        c.close()
        if os.geteuid() == 0:
            assert sorted(os.listdir(f"/proc/{d.pid}/root")) == ["exports", "proc"]
        d.stop()
        assert abstract.receive() == "STOPPING=1"
    finally:
        abstract.close()


def test_no_notify_socket_no_message(fsb_workdir, daemon_factory):
    """Without NOTIFY_SOCKET nothing is sent and nothing is logged about it."""
    (src,) = export_dirs(fsb_workdir, "src")
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    d = daemon_factory([f"src={src}"], env=env)
    d.stop()
    assert "NOTIFY_SOCKET" not in d.stderr_text()


def test_unusable_notify_socket_is_a_warning(fsb_workdir, daemon_factory, mount_factory):
    (src,) = export_dirs(fsb_workdir, "src")
    env = dict(os.environ, NOTIFY_SOCKET=str(fsb_workdir / "nobody-listens"))
    d = daemon_factory([f"src={src}"], env=env)
    m = mount_factory(d)
    assert (m.path / "hello").read_text() == "from src\n"
    m.umount()
    d.stop()
    assert "readiness not reported" in d.stderr_text()


def start_activated(argv, listener, env, log_path):
    """Start argv as systemd does for a socket unit: the listening socket
    as fd 3, LISTEN_FDS=1."""
    def as_fd_3():
        os.dup2(listener.fileno(), 3)
        os.set_inheritable(3, True)
    env = dict(env, LISTEN_FDS="1")
    with open(log_path, "wb") as log:
        # close_fds would close the new fd 3 after preexec_fn has made it
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, start_new_session=True, preexec_fn=as_fd_3,
                                close_fds=False)


def stop_process(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail("fsbridged ignored SIGTERM")


def test_socket_activation_through_fd_3(build_dir, fsb_workdir, mount_factory, notify_path):
    """The socket unit's socket, inherited as fd 3 and named by the
    config file ("listen fd:3"), serves mounts; the daemon does not remove
    a socket file it did not create."""
    (src,) = export_dirs(fsb_workdir, "src")
    path = fsb_workdir / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    conf = write_config(fsb_workdir / "act.conf", [f"export src={src}", "listen fd:3"])
    proc = start_activated([str(build_dir / "fsbridged"), "--config", str(conf)], listener,
                           notify_path.env(), fsb_workdir / "act.log")
    try:
        assert notify_path.receive() == "READY=1", (fsb_workdir / "act.log").read_text()
        m = mount_factory(f"unix:{path}", options=["export=src"])
        (m.path / "made").write_text("activated\n")
        assert (src / "made").read_text() == "activated\n"
        m.umount()
    finally:
        rc = stop_process(proc)
        listener.close()
    assert rc == 0, (fsb_workdir / "act.log").read_text()
    assert path.exists()


# --------------------------------------------------------------------------
# the units


def unit_value(text, key):
    values = re.findall(rf"^{key}=(.*)$", text, re.M)
    assert values, f"no {key}= in the unit"
    return values[-1].strip()


def configured_units(dest, sbindir):
    """The units as meson installs them, with ExecStart= in sbindir."""
    service = (UNITS / "fsbridged@.service.in").read_text().replace("@SBINDIR@", str(sbindir))
    (dest / "fsbridged@.service").write_text(service)
    shutil.copy(UNITS / "fsbridged@.socket", dest / "fsbridged@.socket")
    shutil.copy(UNITS / "mnt-workspace.mount", dest / "mnt-workspace.mount")
    return dest


def systemd_analyze_verify(*units):
    """systemd-analyze verify's complaints (it exits 0 on some, such as an
    unknown key): every line it prints is one.  Man pages are checked by
    the package test (they are installed there)."""
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, units)],
                       capture_output=True, text=True, timeout=60)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    return r.returncode, lines


def test_units_pass_systemd_analyze_verify(build_dir, fsb_workdir):
    units = configured_units(fsb_workdir, build_dir)
    rc, complaints = systemd_analyze_verify(units / f"fsbridged@{INSTANCE}.service",
                                            units / f"fsbridged@{INSTANCE}.socket",
                                            units / "mnt-workspace.mount")
    assert rc == 0 and not complaints, "\n".join(complaints)


def test_verify_sees_a_broken_unit(build_dir, fsb_workdir):
    """The check above can fail: a misspelt directive is reported."""
    units = configured_units(fsb_workdir, build_dir)
    service = units / "fsbridged@.service"
    service.write_text(service.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    rc, complaints = systemd_analyze_verify(units / f"fsbridged@{INSTANCE}.service")
    assert any("NoNewPrivilege" in line for line in complaints), complaints


def bounding_set_of_unit():
    text = (UNITS / "fsbridged@.service.in").read_text()
    return unit_value(text, "CapabilityBoundingSet").split()


def setpriv_argv(caps):
    """setpriv(1) with the unit's bounding set and no_new_privs."""
    names = ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    return ["setpriv", "--no-new-privs", f"--bounding-set=-all,{names}", "--"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox (and the bounding set) is root's")
def test_unit_bounding_set_lets_the_sandbox_work(build_dir, fsb_workdir, daemon_factory,
                                                 mount_factory):
    """CapabilityBoundingSet= and NoNewPrivileges= of the unit, applied
    with setpriv: the daemon enters its sandbox and serves."""
    (src,) = export_dirs(fsb_workdir, "src")
    sock = fsb_workdir / "caps.sock"
    argv = setpriv_argv(bounding_set_of_unit()) + [
        str(build_dir / "fsbridged"), "--export", f"src={src}", "--listen", f"unix:{sock}"]
    log = fsb_workdir / "caps.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    try:
        helpers.poll_until(lambda: proc.poll() is not None or helpers.listening(sock),
                           what="listening")
        assert proc.poll() is None, log.read_text()
        m = mount_factory(f"unix:{sock}", options=["export=src"])
        (m.path / "chowned").write_text("x")
        os.chown(m.path / "chowned", 1234, 1234)         # CAP_CHOWN kept
        assert (src / "chowned").stat().st_uid == 1234
        assert sorted(os.listdir(f"/proc/{proc.pid}/root")) == ["exports", "proc"]
        # Cut down as without the unit (test_sandbox.py): CAP_SETPCAP in
        # the set is what lets the daemon empty its bounding set.
        assert int(status_field(proc.pid, "CapEff"), 16) == KEPT_CAPS
        assert int(status_field(proc.pid, "CapBnd"), 16) == 0
        m.umount()
    finally:
        rc = stop_process(proc)
    assert rc == 0, log.read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox (and the bounding set) is root's")
@pytest.mark.parametrize("missing", ["CAP_SYS_ADMIN", "CAP_MKNOD", "CAP_SETUID"])
def test_a_smaller_bounding_set_fights_the_sandbox(build_dir, fsb_workdir, missing):
    """Each capability of the unit's set is needed: without it the daemon
    stops at start-up with a sandbox message (so the set cannot shrink by
    accident, as PrivateDevices= would shrink it by CAP_MKNOD)."""
    caps = [c for c in bounding_set_of_unit() if c != missing]
    assert len(caps) == len(bounding_set_of_unit()) - 1
    argv = setpriv_argv(caps) + [str(build_dir / "fsbridged"), "--export", f"a={fsb_workdir}",
                                 "--listen", f"unix:{fsb_workdir}/s.sock"]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1, r.stderr
    assert "sandbox" in r.stderr


# --------------------------------------------------------------------------
# a real instance, where systemd runs


def systemd_is_pid_1():
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd" and \
            Path("/run/systemd/system").is_dir()
    except OSError:
        return False


def systemctl(*args, check=True):
    r = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        pytest.fail(f"systemctl {' '.join(args)}: {r.stdout}{r.stderr}", pytrace=False)
    return r


@pytest.mark.skipif(not systemd_is_pid_1(),
                    reason="systemd is not PID 1 here: no instance can be started "
                           "(the units are checked by systemd-analyze verify)")
@pytest.mark.deadline(120)
def test_systemd_instance_serves_a_mount(build_dir, fsb_workdir, mount_factory):
    """fsbridged@fsbtest.socket from /run/systemd/system (runtime units,
    gone at reboot), the config in /etc/fsbridge: the first connection
    starts the service, which reports ready; a write reaches the host;
    `systemctl reload` is refused (no reload, see the unit)."""
    (src,) = export_dirs(fsb_workdir, "src")
    runtime = Path("/run/systemd/system")
    conf_dir = Path("/etc/fsbridge")
    made_conf_dir = not conf_dir.exists()
    conf_dir.mkdir(exist_ok=True)
    conf = write_config(conf_dir / f"{INSTANCE}.conf", [f"export src={src}", "listen fd:3"])
    units = [runtime / "fsbridged@.service", runtime / "fsbridged@.socket"]
    for u in units:
        if u.exists():
            pytest.skip(f"{u} exists already: not overwriting it")
    configured_units(fsb_workdir, build_dir)
    for u in units:
        shutil.copy(fsb_workdir / u.name, u)
    try:
        systemctl("daemon-reload")
        systemctl("start", f"fsbridged@{INSTANCE}.socket")
        m = mount_factory(f"unix:/run/fsbridge/{INSTANCE}.sock", options=["export=src"])
        (m.path / "via-systemd").write_text("ok\n")
        assert (src / "via-systemd").read_text() == "ok\n"
        assert systemctl("is-active", f"fsbridged@{INSTANCE}.service").stdout.strip() == "active"
        assert systemctl("reload", f"fsbridged@{INSTANCE}.service", check=False).returncode != 0
        m.umount()
    finally:
        systemctl("stop", f"fsbridged@{INSTANCE}.service", f"fsbridged@{INSTANCE}.socket",
                  check=False)
        for u in units:
            u.unlink(missing_ok=True)
        systemctl("daemon-reload", check=False)
        conf.unlink()
        if made_conf_dir:
            conf_dir.rmdir()
