"""
test_attrs.py - modes, owners, timestamps and extended attributes through a
real mount, checked on the mount and on the host file.
"""

import ctypes
import errno
import os
import shutil
import stat
import subprocess
import time

import pytest

import helpers

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, atime, mtime, flags=0):
    """atime/mtime: (sec, nsec) or UTIME_NOW / UTIME_OMIT."""
    def ts(v):
        return Timespec(0, v) if isinstance(v, int) else Timespec(*v)
    times = (Timespec * 2)(ts(atime), ts(mtime))
    if libc.utimensat(AT_FDCWD, os.fsencode(path), times, flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))


def put(path, data=b""):
    with open(path, "wb") as f:
        f.write(data)


def both(fs, rel):
    return os.lstat(fs.mnt / rel), os.lstat(fs.host / rel)


def test_chmod_file(fs):
    put(fs.mnt / "f", b"x")
    for mode in (0o640, 0o000, 0o777, 0o4755, 0o2711, 0o444):
        os.chmod(fs.mnt / "f", mode)
        m, h = both(fs, "f")
        assert stat.S_IMODE(h.st_mode) == mode, f"host {oct(h.st_mode)} after chmod {oct(mode)}"
        assert stat.S_IMODE(m.st_mode) == mode
        assert stat.S_ISREG(m.st_mode)
    # fchmod on an open handle too.
    fd = os.open(fs.mnt / "f", os.O_RDONLY)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    assert stat.S_IMODE(os.stat(fs.host / "f").st_mode) == 0o600


def test_chmod_dir_setgid_and_sticky(fs):
    os.mkdir(fs.mnt / "sg")
    os.chmod(fs.mnt / "sg", 0o2755)
    m, h = both(fs, "sg")
    assert stat.S_IMODE(h.st_mode) == 0o2755 and stat.S_IMODE(m.st_mode) == 0o2755
    assert h.st_mode & stat.S_ISGID

    os.mkdir(fs.mnt / "tmp")
    os.chmod(fs.mnt / "tmp", 0o1777)
    m, h = both(fs, "tmp")
    assert stat.S_IMODE(h.st_mode) == 0o1777 and stat.S_IMODE(m.st_mode) == 0o1777
    assert h.st_mode & stat.S_ISVTX


def test_setgid_dir_inheritance(fs):
    """Files made in a setgid directory take its group; subdirectories also
    inherit the setgid bit (done by the host kernel, checked on both sides)."""
    os.mkdir(fs.mnt / "team")
    os.chown(fs.mnt / "team", 0, 1234)
    os.chmod(fs.mnt / "team", 0o2775)
    put(fs.mnt / "team" / "file")
    os.mkdir(fs.mnt / "team" / "sub")
    for rel in ("team/file", "team/sub"):
        m, h = both(fs, rel)
        assert h.st_gid == 1234, f"{rel}: host gid {h.st_gid}"
        assert m.st_gid == 1234
    m, h = both(fs, "team/sub")
    assert h.st_mode & stat.S_ISGID and m.st_mode & stat.S_ISGID


def test_chown(fs):
    put(fs.mnt / "f", b"x")
    os.chown(fs.mnt / "f", 1000, 1000)
    m, h = both(fs, "f")
    assert (h.st_uid, h.st_gid) == (1000, 1000)
    assert (m.st_uid, m.st_gid) == (1000, 1000)

    os.chown(fs.mnt / "f", -1, 2000)          # group only
    m, h = both(fs, "f")
    assert (h.st_uid, h.st_gid) == (1000, 2000)
    assert (m.st_uid, m.st_gid) == (1000, 2000)

    # A symlink itself (lchown), not its target.
    os.symlink("f", fs.mnt / "l")
    os.lchown(fs.mnt / "l", 3000, 3000)
    m, h = both(fs, "l")
    assert (h.st_uid, h.st_gid) == (3000, 3000) and (m.st_uid, m.st_gid) == (3000, 3000)
    assert os.stat(fs.host / "f").st_uid == 1000

    # Directories too.
    os.mkdir(fs.mnt / "d")
    os.chown(fs.mnt / "d", 1000, 1000)
    m, h = both(fs, "d")
    assert (h.st_uid, h.st_gid) == (1000, 1000) and (m.st_uid, m.st_gid) == (1000, 1000)


def test_chown_clears_setuid(fs):
    """Linux clears S_ISUID/S_ISGID of an executable whose owner changes,
    even when root does it."""
    put(fs.mnt / "prog", b"#!/bin/sh\n")
    os.chmod(fs.mnt / "prog", 0o6755)
    os.chown(fs.mnt / "prog", 1000, 1000)
    m, h = both(fs, "prog")
    assert stat.S_IMODE(h.st_mode) == 0o755, oct(h.st_mode)
    assert stat.S_IMODE(m.st_mode) == 0o755, oct(m.st_mode)


def test_utime_nanoseconds(fs):
    put(fs.mnt / "f", b"x")
    atime = 1_234_567_890_123_456_789
    mtime = 1_111_111_111_222_333_444
    os.utime(fs.mnt / "f", ns=(atime, mtime))
    m, h = both(fs, "f")
    assert (h.st_atime_ns, h.st_mtime_ns) == (atime, mtime)
    assert (m.st_atime_ns, m.st_mtime_ns) == (atime, mtime)

    # Directories, and before 1970.
    os.mkdir(fs.mnt / "d")
    os.utime(fs.mnt / "d", ns=(-1_000_000_001, 2_000_000_000_000_000_007))
    m, h = both(fs, "d")
    assert h.st_mtime_ns == m.st_mtime_ns == 2_000_000_000_000_000_007
    assert h.st_atime_ns == m.st_atime_ns == -1_000_000_001

    # A symlink's own times.
    os.symlink("f", fs.mnt / "l")
    os.utime(fs.mnt / "l", ns=(5_000_000_001, 6_000_000_002), follow_symlinks=False)
    m, h = both(fs, "l")
    assert h.st_mtime_ns == m.st_mtime_ns == 6_000_000_002
    assert os.stat(fs.host / "f").st_mtime_ns == mtime


def test_utime_omit_and_now(fs):
    put(fs.mnt / "f", b"x")
    os.utime(fs.mnt / "f", ns=(1_000_000_000_000_000_001, 1_000_000_000_000_000_002))

    # Only mtime, atime left alone.
    utimensat(fs.mnt / "f", UTIME_OMIT, (1_500_000_000, 999_999_999))
    m, h = both(fs, "f")
    assert h.st_atime_ns == m.st_atime_ns == 1_000_000_000_000_000_001
    assert h.st_mtime_ns == m.st_mtime_ns == 1_500_000_000_999_999_999

    # UTIME_NOW for both: the host clock, now.
    before = time.time_ns()
    utimensat(fs.mnt / "f", UTIME_NOW, UTIME_NOW)
    after = time.time_ns()
    m, h = both(fs, "f")
    slack = 50_000_000   # coarse kernel clock granularity
    assert before - slack <= h.st_mtime_ns <= after + slack
    assert before - slack <= h.st_atime_ns <= after + slack
    assert m.st_mtime_ns == h.st_mtime_ns and m.st_atime_ns == h.st_atime_ns

    # os.utime(path) with no times, and touch(1).
    os.utime(fs.mnt / "f", ns=(0, 0))
    os.utime(fs.mnt / "f")
    m, h = both(fs, "f")
    assert h.st_mtime_ns > 0 and m.st_mtime_ns == h.st_mtime_ns
    os.utime(fs.mnt / "f", ns=(0, 0))
    helpers.run(["touch", str(fs.mnt / "f")])
    m, h = both(fs, "f")
    assert before - slack <= h.st_mtime_ns and m.st_mtime_ns == h.st_mtime_ns
    helpers.run(["touch", "-d", "@1600000000.123456789", str(fs.mnt / "f")])
    m, h = both(fs, "f")
    assert h.st_mtime_ns == m.st_mtime_ns == 1_600_000_000_123_456_789


def test_write_updates_mtime_and_ctime(fs):
    put(fs.mnt / "f", b"x")
    os.utime(fs.mnt / "f", ns=(10**18, 10**18))
    with open(fs.mnt / "f", "ab") as f:
        f.write(b"more")
    m, h = both(fs, "f")
    assert h.st_mtime_ns > 10**18 + 10**17, "write did not update the host mtime"
    if not fs.writeback:
        # In writeback mode the guest kernel keeps its own mtime until the
        # data is written back; in the other modes the host's is shown.
        assert m.st_mtime_ns == h.st_mtime_ns


def read_through(path, flags=0):
    """Reads PATH with an open(2) of its own (FLAGS added to O_RDONLY)."""
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def test_atime_is_the_hosts_whatever_the_guest_mount_says(fs):
    """fsbridged(8) FILE SEMANTICS: the guest's atime mount options
    (noatime here) are ignored, as on virtio-fs; a read and an exec that
    reach the host update atime by the host filesystem's rule, and the
    guest shows the host's.  Each file tells one wrong rule apart:
    "old" (atime older than the mtime) and "prog" must move on a relatime
    host (a daemon that opened everything O_NOATIME, or honoured the
    guest's noatime, would leave them); "recent" (atime newer than mtime
    and ctime, less than a day old) must not (a daemon that set atime on
    every read would move it); a guest's own O_NOATIME open, by the owner,
    must leave "owned" as it was (a daemon that dropped the flag would
    move it; matchlock's protocol cannot carry the flag)."""
    vfs = os.statvfs(fs.host).f_flag
    if vfs & os.ST_NOATIME:
        pytest.skip("the host filesystem is mounted noatime: no read moves atime there")
    shutil.copy("/bin/true", fs.host / "prog")
    for name in ("old", "recent", "owned"):
        put(fs.host / name, b"data")
    old_ns = 946684800 * 10**9  # 2000-01-01, older than the mtime
    recent_ns = time.time_ns() + 3600 * 10**9  # after the ctime that utime sets
    times = {"prog": old_ns, "old": old_ns, "owned": old_ns, "recent": recent_ns}
    for name, atime in times.items():
        os.utime(fs.host / name, ns=(atime, os.stat(fs.host / name).st_mtime_ns))
    r = subprocess.run(["mount", "-i", "-o", "remount,noatime", str(fs.mnt)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert os.statvfs(fs.mnt).f_flag & os.ST_NOATIME
    for name in ("old", "recent"):
        assert read_through(fs.mnt / name) == b"data"
    assert read_through(fs.mnt / "owned", os.O_NOATIME) == b"data"
    assert subprocess.run([str(fs.mnt / "prog")], timeout=30).returncode == 0
    moved = {name: os.stat(fs.host / name).st_atime_ns != atime for name, atime in times.items()}
    assert moved["old"] and moved["prog"], f"the host's atime rule did not apply: {moved}"
    if vfs & os.ST_RELATIME:
        assert not moved["recent"], "a read moved an atime that relatime keeps"
    if fs.mode != "matchlock":
        assert not moved["owned"], "the guest's O_NOATIME open moved the host's atime"
    for name in times:
        assert os.stat(fs.mnt / name).st_atime_ns == os.stat(fs.host / name).st_atime_ns, name


def test_xattrs(fs):
    put(fs.mnt / "f", b"x")
    p, hp = fs.mnt / "f", fs.host / "f"
    try:
        os.setxattr(p, "user.test", b"value")
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP and not _host_supports_xattrs(fs.host):
            pytest.skip("the host filesystem has no user xattrs")
        raise
    assert os.getxattr(p, "user.test") == b"value"
    assert os.getxattr(hp, "user.test") == b"value"

    os.setxattr(p, "user.empty", b"")
    big = bytes(range(256)) * 12          # 3072 bytes, binary (ext4 fits 4 KiB per inode)
    os.setxattr(p, "user.big", big)
    assert os.getxattr(p, "user.empty") == b""
    assert os.getxattr(p, "user.big") == big
    assert os.getxattr(hp, "user.big") == big
    want = {"user.test", "user.empty", "user.big"}
    assert want <= set(os.listxattr(p))
    assert want <= set(os.listxattr(hp))
    assert {a for a in os.listxattr(p) if a.startswith("user.")} == want

    # Flags: create must not replace, replace needs an existing attribute.
    with pytest.raises(FileExistsError):
        os.setxattr(p, "user.test", b"other", os.XATTR_CREATE)
    with pytest.raises(OSError) as e:
        os.setxattr(p, "user.missing", b"v", os.XATTR_REPLACE)
    assert e.value.errno == errno.ENODATA
    os.setxattr(p, "user.test", b"replaced", os.XATTR_REPLACE)
    assert os.getxattr(hp, "user.test") == b"replaced"

    os.removexattr(p, "user.test")
    for path in (p, hp):
        with pytest.raises(OSError) as e:
            os.getxattr(path, "user.test")
        assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.removexattr(p, "user.test")
    assert e.value.errno == errno.ENODATA
    assert "user.test" not in os.listxattr(p)

    # Set on the host, read through the mount (xattrs are not cached).
    os.setxattr(hp, "user.fromhost", b"h")
    assert os.getxattr(p, "user.fromhost") == b"h"

    # On a directory.
    os.mkdir(fs.mnt / "d")
    os.setxattr(fs.mnt / "d", "user.dir", b"d")
    assert os.getxattr(fs.host / "d", "user.dir") == b"d"
    assert "user.dir" in os.listxattr(fs.mnt / "d")


def test_xattr_too_big_value_reports_erange(fs):
    put(fs.mnt / "f", b"x")
    os.setxattr(fs.mnt / "f", "user.v", b"v" * 100)
    buf = ctypes.create_string_buffer(10)
    libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    libc.getxattr.restype = ctypes.c_ssize_t
    path = os.fsencode(fs.mnt / "f")
    # size 0 asks for the length.
    assert libc.getxattr(path, b"user.v", None, 0) == 100
    assert libc.getxattr(path, b"user.v", buf, 10) == -1
    assert ctypes.get_errno() == errno.ERANGE


def _host_supports_xattrs(path):
    probe = os.path.join(path, ".xattr-probe")
    open(probe, "w").close()
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        os.unlink(probe)
