"""
test_package.py - the Debian packages of debian/: built once per test
session (`dpkg-buildpackage -us -uc -b` in a copy of the tree), checked
with lintian and against meson.build, then installed on this machine,
used through the installed programs (the daemon started from its unit's
ExecStart= with its socket as fd 3, as systemd does; `mount -t fsbridge`
through /sbin/mount.fsbridge) and removed, leaving the machine as it was.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

import helpers
from test_service import NotifySocket, start_activated, stop_process, systemd_analyze_verify

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("fsbridged", "fsbridge-mount")
INSTANCE = "fsbpkgtest"
BUILD_TIMEOUT = 900

pytestmark = [
    pytest.mark.deadline(BUILD_TIMEOUT),   # the first test to ask for the build waits for it
    pytest.mark.skipif(os.geteuid() != 0, reason="installing packages needs root"),
]


def copy_tree(dest):
    """The sources without build directories or VCS data: dpkg-buildpackage
    writes into the tree and its parent."""
    def ignore(directory, names):
        top = Path(directory) == REPO
        return [n for n in names if n in (".git", "__pycache__", ".pytest_cache", ".cache")
                or (top and (n.startswith("build") or n.startswith("obj-")))]
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)


@pytest.fixture(scope="session")
def debs():
    """{package: path of its .deb} plus "changes"; built once."""
    work = Path(tempfile.mkdtemp(prefix="fsb-deb-", dir=os.environ.get("FSB_TMPDIR", "/tmp")))
    try:
        copy_tree(work / "fsbridge")
        # The unit tests ran already (meson test in run-tests.sh): nocheck.
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2")
        log = work / "build.log"
        with open(log, "wb") as out:
            r = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=work / "fsbridge",
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               env=env, timeout=BUILD_TIMEOUT - 60)
        if r.returncode != 0:
            pytest.fail(f"dpkg-buildpackage exited {r.returncode}:\n"
                        f"{log.read_text(errors='replace')[-4000:]}", pytrace=False)
        found = {p: next(work.glob(f"{p}_*.deb")) for p in PACKAGES}
        found["changes"] = next(work.glob("fsbridge_*.changes"))
        yield found
    finally:
        shutil.rmtree(work, ignore_errors=True)


def deb_contents(deb):
    """{path: link target or None} of a .deb's files (directories left out)."""
    out = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    files = {}
    for line in out.splitlines():
        fields = line.split(None, 5)
        if fields[0].startswith("d"):
            continue
        name, _, target = fields[5].partition(" -> ")
        files[name.removeprefix(".")] = target or None
    return files


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "--field", str(deb), field], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


# --------------------------------------------------------------------------
# debian/control against meson.build (no build needed)


def build_depends():
    """{package: version constraint or ""} of debian/control's Build-Depends."""
    text = (REPO / "debian" / "control").read_text()
    m = re.search(r"^Build-Depends:(.*?)^\S", text, re.M | re.S)
    deps = {}
    for item in m.group(1).split(","):
        item = item.strip()
        if item:
            name, _, version = item.partition("(")
            deps[name.strip()] = version.rstrip(")").strip()
    return deps


def meson_dependencies():
    out = subprocess.run(["meson", "introspect", "--scan-dependencies", "meson.build"],
                         cwd=REPO, capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(out)


def debian_package_of_pkgconfig(name):
    pcdir = subprocess.run(["pkg-config", "--variable=pcfiledir", name], capture_output=True,
                           text=True, check=True, timeout=30).stdout.strip()
    owner = subprocess.run(["dpkg-query", "-S", f"{pcdir}/{name}.pc"], capture_output=True,
                           text=True, check=True, timeout=30).stdout
    return owner.split(":")[0]


def test_build_depends_are_what_meson_needs():
    """Every dependency() of meson.build (threads is libc's) is in
    Build-Depends, with the same minimum version, and Build-Depends names no
    library meson.build does not use; meson itself at meson_version."""
    deps = build_depends()
    needed = {}
    for dep in meson_dependencies():
        if dep["name"] == "threads":
            continue
        needed[debian_package_of_pkgconfig(dep["name"])] = " ".join(dep["version"])
    for package, version in needed.items():
        assert package in deps, f"{package} (meson.build) missing from Build-Depends"
        assert deps[package] == version, f"{package}: Build-Depends says '{deps[package]}', " \
                                         f"meson.build '{version}'"
    libraries = {p for p in deps if p.endswith("-dev")}
    assert libraries == set(needed), f"Build-Depends lists unused {libraries - set(needed)}"
    meson_version = re.search(r"meson_version\s*:\s*'([^']+)'",
                              (REPO / "meson.build").read_text()).group(1)
    assert deps["meson"] == meson_version
    assert {"ninja-build", "pkg-config", "debhelper-compat"} <= set(deps)


def test_overlay_tool_is_installed_whatever_the_prefix(build_dir):
    """fsbridge-overlay goes to bindir under any prefix (the test build's
    is meson's default, /usr/local), not only with the packages' /usr."""
    def introspect(what):
        return json.loads(subprocess.run(["meson", "introspect", what, str(build_dir)],
                                         capture_output=True, text=True, check=True,
                                         timeout=60).stdout)
    options = {o["name"]: o["value"] for o in introspect("--buildoptions")}
    bindir = Path(options["prefix"]) / options["bindir"]
    assert str(bindir / "fsbridge-overlay") in introspect("--installed").values()


# --------------------------------------------------------------------------
# the built packages


def test_lintian_finds_no_errors(debs):
    r = subprocess.run(["lintian", "--fail-on", "error", str(debs["changes"])],
                       capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
    assert r.returncode == 0 and not errors, r.stdout + r.stderr


def test_package_contents(debs):
    """The host daemon and the guest tool are separate: a guest image needs
    fsbridge-mount alone, which pulls in neither the daemon nor its
    libraries."""
    host = deb_contents(debs["fsbridged"])
    guest = deb_contents(debs["fsbridge-mount"])
    for path in ("/usr/sbin/fsbridged", "/lib/systemd/system/fsbridged@.service",
                 "/lib/systemd/system/fsbridged@.socket",
                 "/usr/share/qemu/vhost-user/50-fsbridged.json",
                 "/usr/share/man/man8/fsbridged.8.gz",
                 "/usr/share/doc/fsbridged/examples/example.conf"):
        assert path in host, path
    for path in ("/usr/sbin/fsbridge-mount", "/usr/share/man/man8/fsbridge-mount.8.gz",
                 "/usr/share/doc/fsbridge-mount/examples/mnt-workspace.mount"):
        assert path in guest, path
    assert guest["/sbin/mount.fsbridge"] == "/usr/sbin/fsbridge-mount"
    assert guest["/sbin/mount.fuse.fsbridge"] == "/usr/sbin/fsbridge-mount"  # remount
    assert not any("fsbridged" in p and "doc/fsbridged" not in p for p in guest)
    assert not any("fsbridge-mount" in p or "mount.fsbridge" in p for p in host)
    depends = deb_field(debs["fsbridge-mount"], "Depends")
    assert "fsbridged" not in depends and "seccomp" not in depends, depends
    assert "libfuse3" in depends and "fuse3" in depends, depends


# --------------------------------------------------------------------------
# installed


def dpkg_status(package):
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip() if r.returncode == 0 else ""


def apt_get(*args):
    """apt-get, waiting for a dpkg lock another apt holds (up to 2 min)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "-y", "-o", "DPkg::Lock::Timeout=120", *args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, f"apt-get {' '.join(args)}:\n{r.stdout}{r.stderr}"


def unit_exec_start(unit, instance):
    text = Path(unit).read_text()
    line = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    return line.replace("%i", instance).split()


def mount_helper(address, mountpoint, options):
    return subprocess.run(["mount", "-t", "fsbridge", "-o", options, address, str(mountpoint)],
                          capture_output=True, text=True, timeout=30)


def relays_of(mountpoint):
    target = str(mountpoint).encode()
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.path.basename(args[0]) in (b"fsbridge-mount", b"mount.fsbridge") and target in args:
            pids.append(pid)
    return pids


def installed_files(debs):
    return [Path(p) for deb in (debs["fsbridged"], debs["fsbridge-mount"])
            for p in deb_contents(deb) if not p.startswith("/usr/share/doc")]


def serve_and_mount(fsb_workdir, listener, notify):
    """The installed unit's ExecStart= with /etc/fsbridge/INSTANCE.conf and
    the socket as fd 3; `mount -t fsbridge` on it; a write reaches the host."""
    export = fsb_workdir / "export"
    export.mkdir()
    (export / "hello").write_text("from the host\n")
    conf = Path("/etc/fsbridge") / f"{INSTANCE}.conf"
    conf.write_text(f"# written by tests/integration/test_package.py\n"
                    f"export pkg={export}\nlisten fd:3\n")
    argv = unit_exec_start("/lib/systemd/system/fsbridged@.service", INSTANCE)
    assert argv == ["/usr/sbin/fsbridged", "--config", str(conf)]
    proc = start_activated(argv, listener, notify.env(), fsb_workdir / "daemon.log")
    mnt = fsb_workdir / "mnt"
    mnt.mkdir()
    try:
        assert notify.receive() == "READY=1", (fsb_workdir / "daemon.log").read_text()
        r = mount_helper(f"unix:{listener.getsockname()}", mnt, "export=pkg")
        assert r.returncode == 0, r.stderr
        try:
            assert helpers.mount_entry(mnt)["fstype"] == "fuse.fsbridge"
            assert (mnt / "hello").read_text() == "from the host\n"
            (mnt / "from-guest").write_text("through mount -t fsbridge\n")
            assert (export / "from-guest").read_text() == "through mount -t fsbridge\n"
        finally:
            subprocess.run(["umount", str(mnt)], timeout=30)
        helpers.poll_until(lambda: not relays_of(mnt), what="mount.fsbridge to exit")
    finally:
        rc = stop_process(proc)
        conf.unlink()
    assert rc == 0, (fsb_workdir / "daemon.log").read_text()


def test_install_use_and_remove(debs, fsb_workdir):
    for package in PACKAGES:
        if dpkg_status(package):
            pytest.skip(f"{package} is installed on this machine already "
                        f"({dpkg_status(package)}): not replacing it")
    files = installed_files(debs)
    present = [p for p in files if os.path.lexists(p)]
    assert not present, f"files of the packages exist before installing: {present}"
    etc_existed = Path("/etc/fsbridge").exists()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(fsb_workdir / "activated.sock"))
    listener.listen(16)
    notify = NotifySocket(str(fsb_workdir / "notify"))
    try:
        apt_get("install", "--no-install-recommends", str(debs["fsbridged"]),
                str(debs["fsbridge-mount"]))
        assert [dpkg_status(p) for p in PACKAGES] == ["ii", "ii"]
        rc, complaints = systemd_analyze_verify(f"/lib/systemd/system/fsbridged@{INSTANCE}.service",
                                                f"/lib/systemd/system/fsbridged@{INSTANCE}.socket")
        assert rc == 0 and not complaints, "\n".join(complaints)
        descriptor = json.loads(Path("/usr/share/qemu/vhost-user/50-fsbridged.json").read_text())
        assert descriptor["binary"] == "/usr/sbin/fsbridged" and descriptor["type"] == "fs"
        serve_and_mount(fsb_workdir, listener, notify)
    finally:
        listener.close()
        notify.close()
        apt_get("purge", *PACKAGES)
    assert all(dpkg_status(p) in ("", "un") for p in PACKAGES)
    left = [p for p in files if os.path.lexists(p)]
    assert not left, f"left after purge: {left}"
    assert Path("/etc/fsbridge").exists() == etc_existed
