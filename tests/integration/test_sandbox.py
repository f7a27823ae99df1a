"""
test_sandbox.py - what fsbridged confines itself to when run as root
(fsbridged(8), SANDBOX): read off /proc/PID of the running daemon while it
serves a mount.
"""

import os
import subprocess

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox is entered only as root")

# CHOWN 0, DAC_OVERRIDE 1, DAC_READ_SEARCH 2, FOWNER 3, FSETID 4, SETGID 6,
# SETUID 7, MKNOD 27.
KEPT_CAPS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 27)


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == name:
                return value.strip()
    raise KeyError(name)


def serving_daemon(fsb_workdir, daemon_factory, mount_factory, extra=()):
    host = fsb_workdir / "export"
    host.mkdir()
    (host / "hello").write_text("hi")
    d = daemon_factory([f"test={host}"], list(extra))
    m = mount_factory(d, options=["export=test"])
    assert (m.path / "hello").read_text() == "hi"   # serving works inside it
    return d


def test_default_sandbox_as_root(fsb_workdir, daemon_factory, mount_factory):
    d = serving_daemon(fsb_workdir, daemon_factory, mount_factory)
    pid = d.proc.pid
    # An empty root with only /proc and the exports, in namespaces of its own.
    assert sorted(os.listdir(f"/proc/{pid}/root")) == ["exports", "proc"]
    for ns in ("mnt", "net"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    assert status_field(pid, "Seccomp") == "2"          # a filter is installed
    assert int(status_field(pid, "CapEff"), 16) == KEPT_CAPS
    assert int(status_field(pid, "CapBnd"), 16) == 0             # nothing to regain


def test_exports_are_bound_into_the_empty_root(fsb_workdir, daemon_factory, mount_factory):
    """`..` from an export's root fd ends in the sandbox, not in the host's
    tree; a read-only export is a read-only mount there."""
    rw, ro = fsb_workdir / "rw", fsb_workdir / "ro"
    rw.mkdir()
    ro.mkdir()
    d = daemon_factory([f"rw={rw}", f"ro={ro},ro"])
    m = mount_factory(d, options=["export=rw"])
    os.listdir(m.path)
    pid = d.proc.pid
    roots = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            roots[os.readlink(f"/proc/{pid}/fd/{fd}")] = fd
        except OSError:
            pass
    assert "/exports/0" in roots and "/exports/1" in roots, roots
    assert sorted(os.listdir(f"/proc/{pid}/fd/{roots['/exports/0']}/..")) == ["0", "1"]
    with open(f"/proc/{pid}/mountinfo") as f:
        options = {line.split()[4]: line.split()[5] for line in f}
    assert options["/exports/1"].startswith("ro"), options
    assert options["/exports/0"].startswith("rw"), options


def test_sandbox_off(fsb_workdir, daemon_factory, mount_factory):
    d = serving_daemon(fsb_workdir, daemon_factory, mount_factory,
                       ["--sandbox", "none", "--seccomp", "none"])
    pid = d.proc.pid
    assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    assert status_field(pid, "Seccomp") == "0"
    assert "proc" in os.listdir(f"/proc/{pid}/root") and len(os.listdir(f"/proc/{pid}/root")) > 1


def test_unknown_sandbox_modes_are_refused(build_dir, fsb_workdir):
    for opt in (["--sandbox", "chroot"], ["--seccomp", "maybe"]):
        r = subprocess.run([str(build_dir / "fsbridged"), "--export", f"x={fsb_workdir}",
                            "--listen", f"unix:{fsb_workdir}/s.sock", *opt],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, r
        assert len(r.stderr.strip().splitlines()) == 1 and opt[1] in r.stderr, r.stderr
