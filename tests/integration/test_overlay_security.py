"""
test_overlay_security.py - what a review found in the overlay backend
(issue 13), each as the behaviour that must hold:

- a caller without permission causes no copy-up (no host write, no disk
  use): the permission check comes first, against the merged view;
- one export's copy-up does not hold back changes on another export (the
  change lock is the export's, not the process's);
- UPPER and the work dir are inside the sandbox's root, as the exports are;
- CAP_SYS_ADMIN, which the overlay needs for trusted.overlay.*, never
  serves a guest: trusted.* of a plain export beside an overlay export can
  be neither read nor set;
- overlapping LOWER / UPPER / work dir / export paths are refused at start.

The hostile guest is the raw stream client (fuse_client.py): it sends any
uid, and no guest kernel checks permissions before the daemon does.
"""

import errno
import os
import re
import struct
import subprocess
import time

import pytest

from fuse_client import FuseClient, FUSE_LISTXATTR, FUSE_REMOVEXATTR, FUSE_RMDIR, _name

NOBODY = 65534


def removexattr(c, nodeid, name):
    return c.request(FUSE_REMOVEXATTR, nodeid, _name(name))[0]


def upper_files(upper):
    return sorted(os.path.relpath(os.path.join(d, n), upper)
                  for d, dirs, files in os.walk(upper) for n in dirs + files)


# --------------------------------------------------------------------------
# (a) permission before copy-up


@pytest.fixture
def locked_overlay(fsb_workdir, daemon_factory):
    lower, upper = fsb_workdir / "lower", fsb_workdir / "upper"
    (lower / "locked").mkdir(parents=True)       # root's, 0755: nobody may not write
    (lower / "open").mkdir(mode=0o777)
    os.chmod(lower / "open", 0o777)
    (lower / "locked" / "f").write_text("root's file\n")
    os.chmod(lower / "locked" / "f", 0o644)
    os.setxattr(lower / "locked" / "f", "user.x", b"1")
    upper.mkdir()
    d = daemon_factory([f"t={lower},overlay={upper}"])
    c = FuseClient(d.socket, export="t", uid=NOBODY, gid=NOBODY)
    yield c, upper
    c.close()


def test_denied_changes_cause_no_copy_up(locked_overlay):
    c, upper = locked_overlay
    _, locked = c.lookup(1, b"locked")
    _, f = c.lookup(locked["nodeid"], b"f")
    _, opened = c.lookup(1, b"open")
    L, F, O = locked["nodeid"], f["nodeid"], opened["nodeid"]
    denied = {
        "setxattr user.*": lambda: c.setxattr(F, b"user.y", b"1"),
        "removexattr user.*": lambda: removexattr(c, F, b"user.x"),
        "setxattr trusted.*": lambda: c.setxattr(F, b"trusted.y", b"1"),
        "create": lambda: c.create(L, b"new")[0],
        "mkdir": lambda: c.mkdir(L, b"d")[0],
        "symlink": lambda: c.symlink(L, b"s", b"f")[0],
        "mknod": lambda: c.mknod(L, b"p", 0o10644)[0],
        "unlink": lambda: c.unlink(L, b"f"),
        "rename within": lambda: c.rename(L, b"f", L, b"g"),
        "rename out": lambda: c.rename(L, b"f", O, b"g"),
        # fs.protected_hardlinks: not the owner, and no read+write access
        "link": lambda: c.link(F, O, b"l")[0],
    }
    for what, op in denied.items():
        err = op()
        assert err in (errno.EACCES, errno.EPERM), f"{what}: {os.strerror(err) if err else 'allowed'}"
        assert upper_files(upper) == [], f"{what} (refused) copied up {upper_files(upper)}"
    # What the caller may do still copies up, as before.
    err, _, fh = c.create(O, b"mine")
    assert err == 0
    assert upper_files(upper) == ["open", "open/mine"]


@pytest.mark.deadline(180)
def test_copy_up_in_one_export_does_not_block_another(fsb_workdir, daemon_factory,
                                                       mount_factory):
    """A mkdir on export b returns while export a is in the middle of a large
    copy-up (with one process-wide change lock it waited for it)."""
    for name in ("a", "b"):
        (fsb_workdir / f"lower-{name}").mkdir()
        (fsb_workdir / f"upper-{name}").mkdir()
    size = 512 << 20
    with open(fsb_workdir / "lower-a" / "big", "wb") as f:
        block = bytes(range(256)) * 4096
        for _ in range(size // len(block)):
            f.write(block)
    d = daemon_factory([f"a={fsb_workdir / 'lower-a'},overlay={fsb_workdir / 'upper-a'}",
                        f"b={fsb_workdir / 'lower-b'},overlay={fsb_workdir / 'upper-b'}"])
    b = FuseClient(d.socket, export="b")
    staging = fsb_workdir / "upper-a.work" / "staging"

    def copying():
        # (a copy may be renamed away between its listing and its stat)
        found = []
        for p in staging.glob("copy-*"):
            try:
                if 0 < p.stat().st_blocks * 512 < size:
                    found.append(p)
            except FileNotFoundError:
                pass
        return found

    try:
        for attempt in range(5):
            m = mount_factory(d, fsb_workdir / f"mnt{attempt}", options=["export=a"])
            writer = subprocess.Popen(
                ["dd", "if=/dev/zero", f"of={m.path / 'big'}", "bs=1", "count=1",
                 "conv=notrunc"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not copying() and writer.poll() is None:
                time.sleep(0.0005)
            during = bool(copying())
            err, _ = b.mkdir(1, f"d{attempt}".encode())
            still = bool(copying())
            writer.wait(timeout=120)
            m.umount(expect_rc=0)
            assert err == 0
            if during and still:
                return
            os.unlink(fsb_workdir / "upper-a" / "big")  # too late: again from LOWER
        pytest.fail("export b's mkdir never returned during export a's copy-up")
    finally:
        b.close()


# --------------------------------------------------------------------------
# (b) UPPER and the work dir in the sandbox


def fd_mount_ids(pid):
    """{(st_dev, st_ino): mnt_id} of the directories PID holds open."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
            info = open(f"/proc/{pid}/fdinfo/{fd}").read()
        except OSError:
            continue
        if os.path.isdir(f"/proc/{pid}/fd/{fd}"):
            out.setdefault((st.st_dev, st.st_ino), set()).add(
                int(re.search(r"^mnt_id:\s*(\d+)", info, re.M).group(1)))
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="the namespace sandbox needs root")
def test_upper_and_work_dir_are_inside_the_sandbox_root(fsb_workdir, daemon_factory):
    lower, upper = fsb_workdir / "lower", fsb_workdir / "layers" / "upper"
    lower.mkdir()
    upper.mkdir(parents=True)
    d = daemon_factory([f"t={lower},overlay={upper}"])
    with FuseClient(d.socket, export="t") as c:   # a session: the layers are in use
        assert c.mkdir(1, b"x")[0] == 0
        mounts = {int(line.split()[0]) for line in open(f"/proc/{d.pid}/mountinfo")}
        held = fd_mount_ids(d.pid)
        for path in (upper, fsb_workdir / "layers" / "upper.work" / "staging"):
            st = os.stat(path)
            ids = held.get((st.st_dev, st.st_ino))
            assert ids, f"the daemon holds no fd of {path}"
            assert ids <= mounts, (f"{path} is held on a mount outside the daemon's root "
                                   f"(mnt_id {ids - mounts}): `..` walks the host's tree")


def test_upper_sharing_only_the_root_directory_is_refused(fsb_workdir, daemon_factory):
    """Binding their common directory would put the whole host in the
    sandbox."""
    lower, upper = fsb_workdir / "lower", fsb_workdir / "upper"
    lower.mkdir()
    upper.mkdir()
    other_tree = "/run" if not str(fsb_workdir).startswith("/run/") else "/var/tmp"
    work = f"{other_tree}/fsb-test-work-{os.getpid()}"
    d = daemon_factory([f"t={lower},overlay={upper},workdir={work}"], wait=False,
                       check_exit=False)
    try:
        assert d.proc.wait(timeout=10) != 0
        assert "share no directory but /" in d.stderr_text()
    finally:
        subprocess.run(["rm", "-rf", work], check=False)


# --------------------------------------------------------------------------
# (c) CAP_SYS_ADMIN serves only the overlay's own metadata


@pytest.mark.skipif(os.geteuid() != 0, reason="trusted.* xattrs need root on the host")
def test_plain_export_beside_overlay_gives_no_trusted_xattrs(fsb_workdir, daemon_factory):
    plain, lower, upper = (fsb_workdir / n for n in ("plain", "lower", "upper"))
    for p in (plain, lower / "dir", upper):
        p.mkdir(parents=True)
    (plain / "f").write_text("x")
    os.setxattr(plain / "f", "trusted.secret", b"host only")
    d = daemon_factory([f"p={plain}", f"o={lower},overlay={upper}"])
    with FuseClient(d.socket, export="p") as c:
        _, f = c.lookup(1, b"f")
        err, _ = c.getxattr(f["nodeid"], b"trusted.secret")
        assert err == errno.ENODATA, f"trusted.secret read: {os.strerror(err) if err else 'allowed'}"
        assert c.setxattr(f["nodeid"], b"trusted.planted", b"1") == errno.EPERM
        err, names = c.request(FUSE_LISTXATTR, f["nodeid"], struct.pack("<II", 4096, 0))
        assert err == 0 and b"trusted." not in names
    assert os.listxattr(plain / "f") == ["trusted.secret"]
    # The overlay still writes its own trusted.overlay.* metadata.
    with FuseClient(d.socket, export="o") as c:
        assert c.unlink(1, b"dir") == errno.EISDIR
        assert c.request(FUSE_RMDIR, 1, _name(b"dir"))[0] == 0  # a whiteout
        assert c.mkdir(1, b"dir")[0] == 0                   # made again: opaque
    assert os.getxattr(upper / "dir", "trusted.overlay.opaque") == b"y"


# --------------------------------------------------------------------------
# (d) overlapping layers


OVERLAPS = {
    "upper inside lower": lambda w: [f"t={w}/l,overlay={w}/l/u"],
    "lower inside upper": lambda w: [f"t={w}/u/l,overlay={w}/u"],
    "work dir inside upper": lambda w: [f"t={w}/l,overlay={w}/u,workdir={w}/u/w"],
    "upper inside work dir": lambda w: [f"t={w}/l,overlay={w}/w/u,workdir={w}/w"],
    "two exports, one upper": lambda w: [f"a={w}/l,overlay={w}/u", f"b={w}/l2,overlay={w}/u,workdir={w}/w2"],
    "upper inside a plain export": lambda w: [f"a={w}/l,overlay={w}/p/u", f"p={w}/p"],
    "work dir of one, upper of another": lambda w: [f"a={w}/l,overlay={w}/u,workdir={w}/w",
                                                    f"b={w}/l2,overlay={w}/w/u2"],
}


@pytest.mark.parametrize("case", sorted(OVERLAPS))
def test_overlapping_layers_are_refused(case, fsb_workdir, daemon_factory):
    w = fsb_workdir
    for sub in ("l", "l/u", "u", "u/l", "l2", "p", "p/u", "w", "w/u", "w/u2"):
        (w / sub).mkdir(exist_ok=True, parents=True)
    d = daemon_factory(OVERLAPS[case](w), wait=False, check_exit=False)
    assert d.proc.wait(timeout=10) != 0, case
    lines = [x for x in d.stderr_text().splitlines() if "overlap" in x]
    assert len(lines) == 1, d.stderr_text()


def test_layers_side_by_side_are_accepted(fsb_workdir, daemon_factory):
    w = fsb_workdir
    for sub in ("l", "u", "u2"):
        (w / sub).mkdir()
    # Two overlay exports may share a LOWER (it is only read).
    d = daemon_factory([f"a={w}/l,overlay={w}/u", f"b={w}/l,overlay={w}/u2"])
    with FuseClient(d.socket, export="b") as c:
        assert c.mkdir(1, b"x")[0] == 0
