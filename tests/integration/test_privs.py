"""
test_privs.py - set-user-ID, set-group-ID and file capabilities are dropped
when a file is modified, as a local filesystem drops them.

On ext4 a write or truncate by a process without CAP_FSETID clears S_ISUID
(and S_ISGID when the group may execute), a chown clears them whoever does
it, and any of the three removes security.capability.  A non-owner who may
write such a file writes it (pjdfstest chmod/12, xfstests generic/683-685).
fsbridged negotiates FUSE_HANDLE_KILLPRIV_V2 and lets the host kernel do
it: each result is checked on the host directory.
"""

import errno
import os
import stat
import struct

import pytest

import helpers

UID = GID = 1000
# A version-2 security.capability value granting cap_net_raw (bit 13).
CAPS = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)

OPS = helpers.FILE_CHANGE_OPS


def run_op(op, path, *extra, uid=UID):
    if uid == 0:
        r = helpers.run_python(OPS, op, path, *extra)
    else:
        r = helpers.run_python(OPS, op, path, *extra, uid=uid, gid=GID)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def host_file(fs, name, mode, owner=0, caps=False):
    path = fs.host / name
    path.write_bytes(b"0123456789")
    os.chown(path, owner, owner)
    os.chmod(path, mode)
    if caps:
        os.setxattr(path, "security.capability", CAPS)
    return path


def host_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def has_caps(path):
    try:
        os.getxattr(path, "security.capability")
        return True
    except OSError:
        return False


@pytest.mark.parametrize("op", ["write", "append", "truncate", "open_trunc", "fallocate",
                                "copy_range"])
@pytest.mark.parametrize("mode,left", [(0o4777, 0o777), (0o2777, 0o777), (0o6777, 0o777)])
def test_non_owner_modification_clears_setid_bits(fs, op, mode, left):
    if op == "fallocate" and fs.mode == "matchlock":
        pytest.skip("matchlock protocol: no fallocate")
    host = host_file(fs, "f", mode)
    assert run_op(op, fs.mnt / "f") == "ok"
    assert host_mode(host) == left
    assert stat.S_IMODE(os.stat(fs.mnt / "f").st_mode) == left


def test_setgid_without_group_execute_is_kept_on_write(fs):
    # Without g+x, S_ISGID marks mandatory locking, not a set-group-ID
    # program: a local write keeps it.
    host = host_file(fs, "f", 0o2766)
    assert run_op("write", fs.mnt / "f") == "ok"
    assert host_mode(host) == 0o2766


def test_root_write_keeps_setid_bits(fs):
    # Root holds CAP_FSETID: a local write by root keeps the bits.
    host = host_file(fs, "f", 0o6755, owner=UID)
    assert run_op("write", fs.mnt / "f", uid=0) == "ok"
    assert run_op("truncate", fs.mnt / "f", uid=0) == "ok"
    assert host_mode(host) == 0o6755


@pytest.mark.parametrize("by_root", [False, True])
def test_chown_clears_setid_bits(fs, by_root):
    host = host_file(fs, "f", 0o6755, owner=UID)
    result = run_op("chown", fs.mnt / "f", UID, GID, uid=0 if by_root else UID)
    assert result == "ok"
    assert host_mode(host) == 0o755


@pytest.mark.parametrize("op", ["write", "truncate"])
@pytest.mark.parametrize("uid", [UID, 0])
def test_modification_removes_file_capabilities(fs, op, uid):
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: no extended attribute operations")
    host = host_file(fs, "f", 0o777, caps=True)
    assert run_op(op, fs.mnt / "f", uid=uid) == "ok"
    assert not has_caps(host)
    assert host.read_bytes()[:1] in (b"n", b"0")


def test_chown_removes_file_capabilities(fs):
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: no extended attribute operations")
    host = host_file(fs, "f", 0o755, owner=UID, caps=True)
    assert run_op("chown", fs.mnt / "f", UID, GID, uid=UID) == "ok"
    assert not has_caps(host)


def test_capability_removal_refused_to_strangers(fs):
    # Removing security.capability is allowed to whoever could have caused
    # it locally (root, the owner, a writer); others get EPERM as on ext4.
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: no extended attribute operations")
    host = host_file(fs, "f", 0o755, caps=True)
    r = helpers.run_python(
        "import os, sys\n"
        "try:\n"
        "    os.removexattr(sys.argv[1], 'security.capability'); print('ok')\n"
        "except OSError as e:\n"
        "    print(e.strerror)\n", fs.mnt / "f", uid=UID, gid=GID)
    assert r.stdout.strip() == "Operation not permitted"
    assert has_caps(host)


def test_root_removes_capabilities_and_keeps_the_mode(fs):
    # setcap -r: the attribute goes, a set-user-ID bit stays.
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: no extended attribute operations")
    host = host_file(fs, "f", 0o4755, caps=True)
    os.removexattr(fs.mnt / "f", "security.capability")
    assert not has_caps(host)
    assert host_mode(host) == 0o4755
    with pytest.raises(OSError) as e:
        os.removexattr(fs.mnt / "f", "security.capability")
    assert e.value.errno == errno.ENODATA
