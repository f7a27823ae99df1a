"""
test_remount.py - `mount -o remount,ro` and back to rw, through mount(8).

mount(8) runs the helper of the mount's type (fuse.fsbridge) for a
remount: mount.fuse.fsbridge, with the mount's whole option list.  The
test gives mount(8) that helper (a link to the build's fsbridge-mount) in a
mount namespace of its own, over an empty /usr/sbin, so the machine's
helpers take no part.  The superblock's ro flag is shared by every
namespace: after the remount, writes from the test's own namespace fail
with EROFS and the host file stays as it was; after remount,rw they reach
the host again.  Native and matchlock mounts both.

A remount changes only the flags it names: the mount's own flags (nosuid,
nodev, ...) belong to the copy of the mount in the namespace that
remounted it, so the tests read them there, right after the remount.
"""

import errno
import os
import subprocess
import sys

import pytest

EXPORT = "rm"


# Prints the statvfs flags of $1 (in the namespace it runs in).
PRINT_FLAGS = f"{sys.executable} -c 'import os, sys; print(os.statvfs(sys.argv[1]).f_flag)'"


def in_own_namespace(script, mnt):
    """Runs SCRIPT in a mount namespace of its own; returns its rc, output
    and the flags of MNT there afterwards."""
    script = f"mount --make-rprivate / && {script}; rc=$?; {PRINT_FLAGS} '{mnt}'; exit $rc"
    r = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                       text=True, timeout=30)
    lines = r.stdout.splitlines()
    return r.returncode, r.stdout + r.stderr, int(lines[-1]) if lines else None


def mount8_remount(build_dir, mnt, change):
    """`mount -o remount,CHANGE MNT`; returns MNT's flags after it."""
    helper = build_dir / "fsbridge-mount"
    rc, out, flags = in_own_namespace(
        "mount -t tmpfs fsb-helpers /usr/sbin && "
        f"ln -s '{helper}' /usr/sbin/mount.fuse.fsbridge && "
        f"mount -o remount,{change} '{mnt}'", mnt)
    assert rc == 0, f"mount -o remount,{change}: {out}"
    return flags


def read_only(mnt):
    return bool(os.statvfs(mnt).f_flag & os.ST_RDONLY)


def assert_erofs(call, *args):
    with pytest.raises(OSError) as e:
        call(*args)
    assert e.value.errno == errno.EROFS, e.value


@pytest.fixture(params=["native", "matchlock"])
def mounted(request, export_dir, daemon_factory, mount_factory):
    host = export_dir
    (host / "f").write_text("before\n")
    daemon = daemon_factory([f"{EXPORT}={host}"])
    if request.param == "matchlock":
        m = mount_factory(daemon, options=[f"prefix=/{EXPORT}"],
                          extra_args=["--protocol=matchlock"])
    else:
        m = mount_factory(daemon, options=[f"export={EXPORT}"])
    yield host, m.path
    m.umount(expect_rc=0)
    daemon.stop(expect_rc=0)


def test_remount_ro_refuses_writes_and_rw_allows_them(build_dir, mounted):
    host, mnt = mounted
    assert not read_only(mnt)
    assert mount8_remount(build_dir, mnt, "ro") & os.ST_RDONLY
    assert read_only(mnt)
    assert_erofs(os.open, str(mnt / "f"), os.O_WRONLY)
    assert_erofs(os.open, str(mnt / "new"), os.O_WRONLY | os.O_CREAT, 0o644)
    assert_erofs(os.mkdir, str(mnt / "d"))
    assert_erofs(os.unlink, str(mnt / "f"))
    assert (mnt / "f").read_text() == "before\n"  # reads still work
    assert (host / "f").read_text() == "before\n" and sorted(os.listdir(host)) == ["f"]

    mount8_remount(build_dir, mnt, "rw")
    assert not read_only(mnt)
    (mnt / "f").write_text("after\n")
    (mnt / "new").write_text("x")
    assert (host / "f").read_text() == "after\n" and (host / "new").read_text() == "x"


KEPT = os.ST_NOSUID | os.ST_NODEV


def test_remount_keeps_the_flags_it_does_not_name(build_dir, mounted):
    _, mnt = mounted
    assert os.statvfs(mnt).f_flag & KEPT == KEPT  # as every FUSE mount
    rc, out, flags = in_own_namespace(
        f"'{build_dir / 'fsbridge-mount'}' -o remount,ro '{mnt}'", mnt)
    assert rc == 0, out
    assert flags & (KEPT | os.ST_RDONLY) == KEPT | os.ST_RDONLY, f"flags {flags:#x}"
    rc, out, flags = in_own_namespace(
        f"'{build_dir / 'fsbridge-mount'}' -o remount,noexec,nosymfollow '{mnt}'", mnt)
    assert rc == 0, out
    assert flags & (KEPT | os.ST_NOEXEC | 0x2000) == KEPT | os.ST_NOEXEC | 0x2000, \
        f"flags {flags:#x} (0x2000: ST_NOSYMFOLLOW)"
    assert flags & os.ST_RDONLY  # the superblock's ro from before


def superblock_options(mnt):
    """The superblock's options of the mount at MNT (/proc/self/mountinfo:
    the field after " - ", its type and source), e.g. {"rw", "lazytime"}."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(mnt):
                found = fields[fields.index("-") + 3].split(",")
    assert found is not None, f"{mnt} is not in /proc/self/mountinfo"
    return set(found)


def test_remount_keeps_lazytime(build_dir, mounted):
    # statvfs(3) does not report lazytime: the remount reads it from
    # mountinfo.  (dirsync, the other flag statvfs lacks, is not one a
    # remount can change: it is not in the kernel's MS_RMT_MASK.)
    _, mnt = mounted
    helper = build_dir / "fsbridge-mount"
    rc, out, _ = in_own_namespace(f"'{helper}' -o remount,lazytime '{mnt}'", mnt)
    assert rc == 0, out
    assert "lazytime" in superblock_options(mnt)
    rc, out, _ = in_own_namespace(f"'{helper}' -o remount,ro '{mnt}'", mnt)
    assert rc == 0, out
    opts = superblock_options(mnt)
    assert {"ro", "lazytime"} <= opts, f"superblock options after remount,ro: {opts}"
    rc, out, _ = in_own_namespace(f"'{helper}' -o remount,nolazytime,rw '{mnt}'", mnt)
    assert rc == 0, out
    opts = superblock_options(mnt)
    assert "rw" in opts and "lazytime" not in opts, f"after remount,nolazytime,rw: {opts}"


def test_remount_refuses_what_is_no_fuse_mount(build_dir, fsb_workdir):
    target = fsb_workdir / "tmpfs"
    target.mkdir()
    rc, out, flags = in_own_namespace(
        f"mount -t tmpfs fsb-remount '{target}' && "
        f"'{build_dir / 'fsbridge-mount'}' -o remount,ro '{target}'", target)
    assert rc != 0 and "not a FUSE mount" in out, out
    assert not flags & os.ST_RDONLY
