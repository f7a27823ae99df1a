"""
test_xattr_map.py - the export option xattr=map: a guest's trusted.* and
security.* xattrs are stored on the host as user.fsbridge.trusted.* and
user.fsbridge.security.*, and the mapping is hidden from both sides.

Guests that run overlayfs or containers on the mount need trusted.overlay.*,
setcap needs security.capability (xfstests generic/097, 403, 688); without
the option both stay EPERM, as before.  Every result is checked on the host
directory: the guest's names must be there under the private prefix only,
never as the host's own trusted.* or security.* (which would hand a guest
root's capabilities to whoever runs the file on the host).

Runs on a plain export in two cache modes (the guest kernel drops file
capabilities itself on buffered writes, not on direct I/O) and on an
overlay export (the mapping lives in the engine, above either backend).
"""

import ctypes
import errno
import os
import stat
import struct
import sys
from pathlib import Path

import pytest

import helpers

UID = GID = 1000
PREFIX = "user.fsbridge."
# A version-2 security.capability value granting cap_net_raw (bit 13).
CAPS = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
SETCAP = helpers.host_tool("setcap")
GETCAP = helpers.host_tool("getcap")

libc = ctypes.CDLL(None, use_errno=True)


class Mapped:
    def __init__(self, mode, host, mnt):
        self.mode, self.host, self.mnt = mode, host, mnt


@pytest.fixture(params=["auto", "never", "overlay"])
def mapped(request, fsb_workdir, daemon_factory, mount_factory):
    """An export with xattr=map, mounted: .host is where new files land on
    the host (the overlay's UPPER), .mnt the mountpoint."""
    mode = request.param
    host = fsb_workdir / "export"
    host.mkdir()
    if mode == "overlay":
        lower = fsb_workdir / "lower"
        lower.mkdir()
        (lower / "old").write_bytes(b"from lower")
        export = f"test={lower},cache=auto,overlay={host},xattr=map"
    else:
        export = f"test={host},cache={mode},xattr=map"
    daemon = daemon_factory([export])
    m = mount_factory(daemon, fsb_workdir / "mnt", options=["export=test", "allow_other"])
    yield Mapped(mode, host, m.path)
    m.umount(expect_rc=0)
    daemon.stop(expect_rc=0)


def host_xattrs(path):
    return {n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)}


def errno_of(fn):
    with pytest.raises(OSError) as e:
        fn()
    return e.value.errno


def c_listxattr(path, size):
    """listxattr(2) with SIZE bytes (0: the size probe): (result, bytes)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    n = libc.listxattr(str(path).encode(), buf if size else None, ctypes.c_size_t(size))
    if n < 0:
        return -ctypes.get_errno(), b""
    return n, buf.raw[:n] if size else b""


def c_getxattr(path, name, size):
    buf = ctypes.create_string_buffer(max(size, 1))
    n = libc.getxattr(str(path).encode(), name.encode(), buf if size else None,
                      ctypes.c_size_t(size))
    return -ctypes.get_errno() if n < 0 else n


def new_file(m, name, owner=0, mode=0o755, data=b"0123456789"):
    p = m.mnt / name
    p.write_bytes(data)
    os.chown(p, owner, owner)
    os.chmod(p, mode)
    return p


# ---- names stored under the private prefix --------------------------------


def test_trusted_overlay_opaque_is_stored_mapped(mapped):
    # What overlayfs in the guest sets on an upper directory (setfattr, as
    # root in the guest); the host keeps it as a user.* name of its own.
    d = mapped.mnt / "upper_dir"
    d.mkdir()
    helpers.run(["setfattr", "-n", "trusted.overlay.opaque", "-v", "y", str(d)])
    r = helpers.run(["getfattr", "--only-values", "-n", "trusted.overlay.opaque", str(d)])
    assert r.stdout == "y"
    held = host_xattrs(mapped.host / "upper_dir")
    assert held.get(PREFIX + "trusted.overlay.opaque") == b"y"
    assert not any(n.startswith(("trusted.", "security.")) for n in held), held
    os.removexattr(d, "trusted.overlay.opaque")
    assert PREFIX + "trusted.overlay.opaque" not in host_xattrs(mapped.host / "upper_dir")


@pytest.mark.skipif(not SETCAP or not GETCAP, reason="setcap/getcap (libcap2-bin) missing")
def test_setcap_is_stored_mapped(mapped):
    p = new_file(mapped, "ping")
    helpers.run([SETCAP, "cap_net_raw+ep", str(p)])
    assert "cap_net_raw=ep" in helpers.run([GETCAP, str(p)]).stdout
    held = host_xattrs(mapped.host / "ping")
    assert held.get(PREFIX + "security.capability") == CAPS
    assert "security.capability" not in held  # the host's own: never the guest's
    helpers.run([SETCAP, "-r", str(p)])
    assert PREFIX + "security.capability" not in host_xattrs(mapped.host / "ping")


def test_values_sizes_and_errors_are_the_mapped_names(mapped):
    p = new_file(mapped, "f")
    os.setxattr(p, "security.fsbtest", b"v" * 100)
    assert c_getxattr(p, "security.fsbtest", 0) == 100  # the size probe
    assert c_getxattr(p, "security.fsbtest", 10) == -errno.ERANGE
    assert c_getxattr(p, "trusted.missing", 64) == -errno.ENODATA
    assert errno_of(lambda: os.setxattr(p, "security.fsbtest", b"x", os.XATTR_CREATE)) \
        == errno.EEXIST
    assert errno_of(lambda: os.removexattr(p, "trusted.missing")) == errno.ENODATA
    # A guest name whose host name would pass the host's 255 bytes.
    assert errno_of(lambda: os.setxattr(p, "trusted." + "n" * 240, b"x")) == errno.ERANGE


# ---- listings translated both ways -----------------------------------------


def test_listings_show_guest_names_only(mapped):
    p = new_file(mapped, "f")
    h = mapped.host / "f"
    os.setxattr(h, PREFIX + "trusted.a", b"1")
    os.setxattr(h, PREFIX + "security.b", b"2")
    os.setxattr(h, PREFIX + "reserved", b"3")  # not a mapped namespace: hidden
    os.setxattr(h, "user.plain", b"4")
    os.setxattr(h, "security.capability", CAPS)  # the host's own: hidden
    os.setxattr(h, "trusted.host_only", b"5")
    guest_root = sorted(os.listxattr(p))
    assert guest_root == ["security.b", "trusted.a", "user.plain"]
    assert os.getxattr(p, "trusted.a") == b"1"
    assert errno_of(lambda: os.getxattr(p, "security.capability")) == errno.ENODATA
    # trusted.* is listed to a privileged caller only, as on a local disk.
    r = helpers.run_python("import os, sys; print(','.join(sorted(os.listxattr(sys.argv[1]))))",
                           p, uid=UID, gid=GID)
    assert r.stdout.strip() == "security.b,user.plain", r.stderr
    # The host keeps its own names, and sees the mapped ones under the prefix.
    assert set(os.listxattr(h)) >= {PREFIX + "trusted.a", "security.capability",
                                    "trusted.host_only"}


def test_listxattr_size_probe_gives_the_translated_size(mapped):
    p = new_file(mapped, "f")
    os.setxattr(p, "trusted.overlay.origin", b"o")
    os.setxattr(p, "user.x", b"x")
    os.setxattr(mapped.host / "f", "security.capability", CAPS)  # hidden
    want = b"trusted.overlay.origin\0user.x\0"
    size, _ = c_listxattr(p, 0)
    assert size == len(want)
    n, data = c_listxattr(p, size)
    assert n == size and sorted(data.split(b"\0")) == sorted(want.split(b"\0"))
    assert c_listxattr(p, size - 1)[0] == -errno.ERANGE


def test_long_list_is_translated_whole(mapped):
    """A host list longer than what the daemon reads it into first (1 KiB
    on its stack): listed, sized and refused (ERANGE) as the short one."""
    p = new_file(mapped, "f")
    names = [f"trusted.long-name-{i:03}-" + "x" * 40 for i in range(40)]
    for name in names:
        os.setxattr(p, name, b"v")
    os.setxattr(mapped.host / "f", "trusted.host_only_" + "y" * 200, b"h")  # hidden
    want = sorted(names)
    assert len(os.listxattr(mapped.host / "f")) > 40   # the host's list: over 2 KiB
    assert sorted(os.listxattr(p)) == want
    size, _ = c_listxattr(p, 0)
    assert size == sum(len(x) + 1 for x in names)
    n, data = c_listxattr(p, size)
    assert n == size and sorted(data.rstrip(b"\0").split(b"\0")) == [x.encode() for x in want]
    assert c_listxattr(p, size - 1)[0] == -errno.ERANGE


# ---- the private prefix is not the guest's -----------------------------------


@pytest.mark.parametrize("name", [PREFIX + "trusted.a", PREFIX + "security.capability",
                                  PREFIX + "other"])
def test_raw_private_names_are_refused(mapped, name):
    p = new_file(mapped, "f")
    os.setxattr(mapped.host / "f", PREFIX + "trusted.a", b"kept")
    assert errno_of(lambda: os.setxattr(p, name, b"forged")) == errno.EPERM
    assert errno_of(lambda: os.getxattr(p, name)) == errno.EPERM
    assert errno_of(lambda: os.removexattr(p, name)) == errno.EPERM
    assert os.getxattr(mapped.host / "f", PREFIX + "trusted.a") == b"kept"
    assert os.getxattr(p, "trusted.a") == b"kept"


# ---- file capabilities go on a change, as on a local disk -------------------

OPS = helpers.FILE_CHANGE_OPS


@pytest.mark.parametrize("op", ["write", "truncate", "open_trunc", "fallocate", "chown"])
def test_owner_change_drops_mapped_capability(mapped, op):
    p = new_file(mapped, "f", owner=UID, mode=0o755 if op == "chown" else 0o775)
    os.setxattr(p, "security.capability", CAPS)  # guest root's setcap
    assert os.getxattr(mapped.host / "f", PREFIX + "security.capability") == CAPS
    r = helpers.run_python(OPS, op, p, str(UID), str(GID), uid=UID, gid=GID)
    assert r.stdout.strip() == "ok", r.stderr
    assert PREFIX + "security.capability" not in host_xattrs(mapped.host / "f")
    assert errno_of(lambda: os.getxattr(p, "security.capability")) == errno.ENODATA
    assert stat.S_IMODE(os.stat(mapped.host / "f").st_mode) == \
        (0o755 if op == "chown" else 0o775)


def test_chmod_keeps_mapped_capability(mapped):
    # Only data and owner changes drop file capabilities.
    p = new_file(mapped, "f", owner=UID)
    os.setxattr(p, "security.capability", CAPS)
    os.chmod(p, 0o700)
    assert os.getxattr(mapped.host / "f", PREFIX + "security.capability") == CAPS


def test_stranger_cannot_drop_mapped_capability(mapped):
    # A user who may not write the file gets no write through and leaves
    # the capability alone.
    p = new_file(mapped, "f", owner=0, mode=0o755)
    os.setxattr(p, "security.capability", CAPS)
    r = helpers.run_python(OPS, "write", p, uid=UID, gid=GID)
    assert r.stdout.strip() == "Permission denied"
    assert os.getxattr(mapped.host / "f", PREFIX + "security.capability") == CAPS


# ---- without the option: today's behaviour -----------------------------------


@pytest.mark.parametrize("option", ["", ",xattr=passthrough"])
def test_without_mapping_trusted_and_security_stay_refused(fsb_workdir, daemon_factory,
                                                           mount_factory, option):
    host = fsb_workdir / "export"
    host.mkdir()
    daemon = daemon_factory([f"test={host}{option}"])
    m = mount_factory(daemon, fsb_workdir / "mnt", options=["export=test", "allow_other"])
    p = m.path / "f"
    p.write_bytes(b"x")
    assert errno_of(lambda: os.setxattr(p, "trusted.overlay.opaque", b"y")) == errno.EPERM
    assert errno_of(lambda: os.setxattr(p, "security.capability", CAPS)) == errno.EPERM
    # user.fsbridge.* is an ordinary user.* name there.
    os.setxattr(p, PREFIX + "trusted.a", b"plain")
    assert os.getxattr(host / "f", PREFIX + "trusted.a") == b"plain"
    assert host_xattrs(host / "f") == {PREFIX + "trusted.a": b"plain"}
    m.umount(expect_rc=0)
    daemon.stop(expect_rc=0)


def test_xattr_off_answers_enosys(fsb_workdir, daemon_factory, mount_factory):
    host = fsb_workdir / "export"
    host.mkdir()
    (host / "f").write_bytes(b"x")
    daemon = daemon_factory([f"test={host},xattr=off"])
    m = mount_factory(daemon, fsb_workdir / "mnt", options=["export=test", "allow_other"])
    # The guest kernel turns ENOSYS into EOPNOTSUPP and stops asking.
    assert errno_of(lambda: os.setxattr(m.path / "f", "user.a", b"1")) == errno.EOPNOTSUPP
    assert not host_xattrs(host / "f")
    m.umount(expect_rc=0)
    daemon.stop(expect_rc=0)


# ---- the conformance program's check, as a guest runs it on virtio-fs --------


@pytest.mark.deadline(120)
@pytest.mark.parametrize("group, check", [("xattr", "trusted_xattrs"),
                                          # exec reads the (mapped) capability
                                          ("perms", "exec_only")])
def test_conformance_with_mapping(mapped, build_dir, group, check):
    binary = build_dir / "tests" / "conformance" / "fsb-conformance"
    if not binary.exists():
        pytest.skip(f"{binary} is not built")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))
    import conformance_check
    report = conformance_check.run(binary, mapped.mnt / "conformance", args=("--only", group),
                                   timeout=100)
    conformance_check.assert_passed(report, mapped.host / "conformance")
    assert check in report.names("ok"), report.text[-2000:]
