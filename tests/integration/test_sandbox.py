"""
test_sandbox.py - what fsbridged confines itself to when run as root
(fsbridged(8), SANDBOX): read off /proc/PID of the running daemon while it
serves a mount; and fsbridged started inside a chroot (issue 8).
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import helpers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vm"))
import initramfs  # noqa: E402  (shared_libraries: what ldd says a binary loads)

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


# --------------------------------------------------------------------------
# fsbridged in a chroot


def mounts_below(path):
    prefix = str(path)
    return [e["mountpoint"] for e in helpers.mountinfo()
            if e["mountpoint"] == prefix or e["mountpoint"].startswith(prefix + "/")]


@pytest.fixture
def chroot_tree(build_dir, fsb_workdir):
    """A minimal tree to chroot fsbridged into, as one would to try a daemon:
    the binary at its own path and the libraries ldd names, /proc mounted
    (fsbridged needs /proc/self/fd, as any usable chroot has it), /tmp (the
    sandbox builds its empty root on it), /run for the socket and /export
    with a file.  Whatever is mounted below it is unmounted at teardown."""
    tree = fsb_workdir / "tree"
    binary = build_dir / "fsbridged"
    for f in [str(binary), *initramfs.shared_libraries(binary)]:
        dst = tree / f.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst)
    for d in ("tmp", "proc", "run", "export"):
        (tree / d).mkdir(exist_ok=True)
    (tree / "export" / "hello").write_text("from the chroot\n")
    helpers.run(["mount", "-t", "proc", "proc", str(tree / "proc")])
    yield tree
    # The tree bound onto itself first (it hides the /proc below it), then
    # that /proc.
    for path in (tree, tree, tree / "proc"):
        if str(path) in mounts_below(path):
            helpers.run(["umount", "-R", "-l", str(path)], check=False)
    assert not mounts_below(tree), "the chroot tree's mounts could not be removed"


def start_in_chroot(daemon_factory, tree):
    def enter():
        os.chroot(tree)
        os.chdir("/")
    return daemon_factory(["x=/export"], listen=["unix:/run/fsb.sock"], wait=False,
                          check_exit=False, preexec_fn=enter)


def accepts(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def test_chroot_that_is_no_mount_point_fails_with_what_to_do(chroot_tree, daemon_factory):
    """Its "/" cannot be made private: building the empty root there would
    put mounts into the host's namespace (when that one is shared).  One
    line says what to do; nothing is mounted."""
    before = sorted(mounts_below(chroot_tree))
    d = start_in_chroot(daemon_factory, chroot_tree)
    assert d.proc.wait(timeout=20) == 1, d.stderr_text()
    errors = [line for line in d.stderr_text().splitlines() if "error" in line]
    assert len(errors) == 1, d.stderr_text()
    assert "sandbox: / is not a mount point (a chroot?)" in errors[0]
    assert "mount --rbind DIR DIR" in errors[0] and "--sandbox none" in errors[0]
    assert sorted(mounts_below(chroot_tree)) == before


def test_chroot_bound_onto_itself_serves_a_mount(chroot_tree, daemon_factory, mount_factory):
    """The fix that line names: with the chroot directory a mount point, the
    sandbox is built in full inside the chroot and a guest mounts through it."""
    helpers.run(["mount", "--rbind", str(chroot_tree), str(chroot_tree)])
    before = sorted(mounts_below(chroot_tree))
    d = start_in_chroot(daemon_factory, chroot_tree)
    sock = chroot_tree / "run" / "fsb.sock"
    helpers.poll_until(lambda: accepts(sock) or d.proc.poll() is not None,
                       what="fsbridged listening in the chroot")
    assert d.proc.poll() is None, d.stderr_text()
    m = mount_factory(f"unix:{sock}", options=["export=x"])
    assert (m.path / "hello").read_text() == "from the chroot\n"
    (m.path / "written").write_text("through the chroot's daemon\n")
    assert (chroot_tree / "export" / "written").read_text() == "through the chroot's daemon\n"
    pid = d.proc.pid
    assert sorted(os.listdir(f"/proc/{pid}/root")) == ["exports", "proc"]
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert sorted(mounts_below(chroot_tree)) == before, "the sandbox's mounts reached the host"
    m.umount()
    d.proc.terminate()
    assert d.proc.wait(timeout=20) == 0, d.stderr_text()
