"""
test_perms.py - a non-root user on the mount.

The guest kernel checks modes (default_permissions) and the host daemon
acts as the caller, so the host kernel checks them too and files a user
makes belong to that user on the host.  The user is uid/gid 1000 (it need
not exist in /etc/passwd); each step runs in a child process that dropped
to it, and reports "ok" or the errno name for each operation.
"""

import ctypes
import errno
import json
import os
import shutil
import stat
import struct

import pytest

import helpers
from fuse_client import (
    FATTR_ATIME, FATTR_CTIME, FATTR_MTIME, FATTR_SIZE, FUSE_ROOT_ID, FuseClient,
)

UID = GID = 1000

# argv[1]: JSON list of [op, path, extra...]; prints a JSON list of results.
STEPS = r"""
import errno, json, os, sys
results = []
for op, path, *extra in json.loads(sys.argv[1]):
    try:
        if op == "read":
            with open(path, "rb") as f:
                results.append(["ok", f.read().decode()])
                continue
        elif op == "write":
            with open(path, "ab") as f:
                f.write(extra[0].encode())
        elif op == "create":
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, extra[0]))
        elif op == "mkdir":
            os.mkdir(path, extra[0])
        elif op == "symlink":
            os.symlink(extra[0], path)
        elif op == "mkfifo":
            os.mkfifo(path, extra[0])
        elif op == "unlink":
            os.unlink(path)
        elif op == "rename":
            os.rename(path, extra[0])
        elif op == "chmod":
            os.chmod(path, extra[0])
        elif op == "chown":
            os.chown(path, extra[0], extra[1])
        elif op == "lchown":
            os.lchown(path, extra[0], extra[1])
        elif op == "mknod":
            os.mknod(path, extra[0])
        elif op == "utime":
            os.utime(path, ns=(extra[0], extra[0]))
        elif op == "truncate":
            os.truncate(path, extra[0])
        elif op == "setxattr":
            os.setxattr(path, extra[0], extra[1].encode())
        elif op == "listdir":
            results.append(["ok", sorted(os.listdir(path))])
            continue
        else:
            raise SystemExit("unknown op " + op)
        results.append(["ok"])
    except OSError as e:
        results.append([errno.errorcode.get(e.errno, str(e.errno))])
print(json.dumps(results))
"""


def as_user(steps, umask=0o022, uid=UID, gid=GID, groups=()):
    steps = [[op, str(path), *(str(x) if isinstance(x, os.PathLike) else x for x in extra)]
             for op, path, *extra in steps]
    r = helpers.run_python(STEPS, json.dumps(steps), uid=uid, gid=gid, umask=umask,
                           groups=groups)
    assert r.returncode == 0, r.stderr
    return [res[0] if len(res) == 1 else tuple(res) for res in json.loads(r.stdout)]


def put(path, data, mode):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def test_root_files_are_protected(fs):
    put(fs.mnt / "secret", b"root only", 0o600)
    os.mkdir(fs.mnt / "rootdir", 0o755)
    os.chmod(fs.mnt / "rootdir", 0o755)
    put(fs.mnt / "rootdir" / "readable", b"public", 0o644)

    got = as_user([
        ["read", fs.mnt / "secret"],
        ["write", fs.mnt / "secret", "x"],
        ["create", fs.mnt / "rootdir" / "new", 0o644],
        ["mkdir", fs.mnt / "rootdir" / "newdir", 0o755],
        ["unlink", fs.mnt / "rootdir" / "readable"],
        ["rename", fs.mnt / "rootdir" / "readable", fs.mnt / "rootdir" / "moved"],
        ["write", fs.mnt / "rootdir" / "readable", "x"],
        ["truncate", fs.mnt / "rootdir" / "readable", 0],
        ["read", fs.mnt / "rootdir" / "readable"],
    ])
    assert got == ["EACCES", "EACCES", "EACCES", "EACCES", "EACCES", "EACCES",
                   "EACCES", "EACCES", ("ok", "public")]
    # Nothing changed on the host.
    assert sorted(os.listdir(fs.host / "rootdir")) == ["readable"]
    assert (fs.host / "secret").read_bytes() == b"root only"
    assert (fs.host / "rootdir" / "readable").read_bytes() == b"public"


def test_user_creates_files_owned_by_user(fs):
    os.mkdir(fs.mnt / "home")
    os.chown(fs.mnt / "home", UID, GID)
    home = fs.mnt / "home"

    got = as_user([
        ["create", home / "file", 0o666],
        ["mkdir", home / "dir", 0o777],
        ["symlink", home / "link", "file"],
        ["mkfifo", home / "fifo", 0o666],
        ["write", home / "file", "written by 1000"],
    ], umask=0o022)
    assert got == ["ok"] * 5
    for name, kind, mode in (("file", stat.S_IFREG, 0o644), ("dir", stat.S_IFDIR, 0o755),
                             ("fifo", stat.S_IFIFO, 0o644), ("link", stat.S_IFLNK, None)):
        h = os.lstat(fs.host / "home" / name)
        m = os.lstat(home / name)
        assert (h.st_uid, h.st_gid) == (UID, GID), f"{name}: host owner {h.st_uid}:{h.st_gid}"
        assert (m.st_uid, m.st_gid) == (UID, GID), f"{name}: mount owner {m.st_uid}:{m.st_gid}"
        assert stat.S_IFMT(h.st_mode) == kind
        if mode is not None:
            assert stat.S_IMODE(h.st_mode) == mode, f"{name}: host mode {oct(h.st_mode)}"
            assert stat.S_IMODE(m.st_mode) == mode, f"{name}: mount mode {oct(m.st_mode)}"
    assert (fs.host / "home" / "file").read_bytes() == b"written by 1000"

    # Another umask.
    got = as_user([["create", home / "private", 0o666],
                   ["mkdir", home / "privdir", 0o777]], umask=0o077)
    assert got == ["ok", "ok"]
    assert stat.S_IMODE(os.stat(fs.host / "home" / "private").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(fs.host / "home" / "privdir").st_mode) == 0o700


def test_one_callers_umask_never_masks_the_next_callers_files(fs):
    # The daemon's threads keep the last creation's umask (it saves two
    # umask() calls per file): each creation must still get its own caller's.
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: creations carry the mode only, no umask")
    os.mkdir(fs.mnt / "home")
    os.chown(fs.mnt / "home", UID, GID)
    home = fs.mnt / "home"
    assert as_user([["create", home / "a", 0o666]], umask=0o077) == ["ok"]
    assert as_user([["chmod", home / "a", 0o600], ["create", home / "b", 0o666],
                    ["mkdir", home / "c", 0o777], ["mkfifo", home / "d", 0o666]],
                   umask=0, uid=0, gid=0) == ["ok"] * 4
    assert as_user([["create", home / "e", 0o666]], umask=0o022) == ["ok"]
    for name, mode in (("a", 0o600), ("b", 0o666), ("c", 0o777), ("d", 0o666), ("e", 0o644)):
        assert stat.S_IMODE(os.lstat(fs.host / "home" / name).st_mode) == mode, name


def test_user_attribute_changes(fs):
    os.mkdir(fs.mnt / "home")
    os.chown(fs.mnt / "home", UID, GID)
    put(fs.mnt / "rootfile", b"r", 0o666)
    home = fs.mnt / "home"
    got = as_user([
        ["create", home / "mine", 0o644],
        ["chmod", home / "mine", 0o600],
        ["utime", home / "mine", 1_000_000_000_000_000_000],
        ["chown", home / "mine", 0, 0],              # give away: EPERM
        ["chmod", fs.mnt / "rootfile", 0o777],        # not the owner: EPERM
        ["utime", fs.mnt / "rootfile", 5],            # explicit times, not owner: EPERM
        ["write", fs.mnt / "rootfile", "w"],          # 0666: allowed
        ["setxattr", home / "mine", "user.who", "1000"],
    ])
    assert got == ["ok", "ok", "ok", "EPERM", "EPERM", "EPERM", "ok", "ok"]
    h = os.stat(fs.host / "home" / "mine")
    assert stat.S_IMODE(h.st_mode) == 0o600 and h.st_uid == UID
    assert h.st_mtime_ns == 1_000_000_000_000_000_000
    assert os.getxattr(fs.host / "home" / "mine", "user.who") == b"1000"
    hr = os.stat(fs.host / "rootfile")
    assert stat.S_IMODE(hr.st_mode) == 0o666 and hr.st_uid == 0
    assert (fs.host / "rootfile").read_bytes() == b"rw"


def test_sticky_directory(fs):
    os.mkdir(fs.mnt / "tmp")
    os.chmod(fs.mnt / "tmp", 0o1777)
    put(fs.mnt / "tmp" / "roots", b"r", 0o666)
    got = as_user([
        ["unlink", fs.mnt / "tmp" / "roots"],
        ["rename", fs.mnt / "tmp" / "roots", fs.mnt / "tmp" / "stolen"],
        ["create", fs.mnt / "tmp" / "users", 0o644],
        ["rename", fs.mnt / "tmp" / "users", fs.mnt / "tmp" / "users2"],
        ["unlink", fs.mnt / "tmp" / "users2"],
    ])
    assert got == ["EPERM", "EPERM", "ok", "ok", "ok"]
    assert sorted(os.listdir(fs.host / "tmp")) == ["roots"]


def test_group_permissions_of_primary_group(fs):
    put(fs.mnt / "groupfile", b"for the group", 0o640)
    os.chown(fs.mnt / "groupfile", 0, 1234)
    os.mkdir(fs.mnt / "groupdir")
    os.chown(fs.mnt / "groupdir", 0, 1234)
    os.chmod(fs.mnt / "groupdir", 0o770)
    got = as_user([["read", fs.mnt / "groupfile"],
                   ["create", fs.mnt / "groupdir" / "f", 0o666],
                   ["write", fs.mnt / "groupfile", "!"]], gid=1234)
    assert got == [("ok", "for the group"), "ok", "EACCES"]
    h = os.stat(fs.host / "groupdir" / "f")
    assert (h.st_uid, h.st_gid) == (UID, 1234)
    outsider = as_user([["read", fs.mnt / "groupfile"],
                        ["create", fs.mnt / "groupdir" / "g", 0o666]])
    assert outsider == ["EACCES", "EACCES"]
    assert os.listdir(fs.host / "groupdir") == ["f"]


def test_supplementary_group_can_create(fs):
    """Creating in a directory writable through a supplementary group
    (the kernel sends that group with FUSE_CREATE_SUPP_GROUP)."""
    os.mkdir(fs.mnt / "groupdir")
    os.chown(fs.mnt / "groupdir", 0, 1234)
    os.chmod(fs.mnt / "groupdir", 0o770)
    got = as_user([["create", fs.mnt / "groupdir" / "file", 0o666],
                   ["mkdir", fs.mnt / "groupdir" / "dir", 0o777]], groups=[1234])
    assert got == ["ok", "ok"]
    for name in ("file", "dir"):
        h = os.stat(fs.host / "groupdir" / name)
        assert (h.st_uid, h.st_gid) == (UID, GID), f"{name}: {h.st_uid}:{h.st_gid}"


def test_supplementary_group_can_read_and_write(fs):
    """Opening a file readable/writable only through a supplementary group.
    FUSE requests carry uid and gid only, so the host side must not refuse
    what the guest kernel (default_permissions) already allowed."""
    put(fs.mnt / "groupfile", b"for the group", 0o660)
    os.chown(fs.mnt / "groupfile", 0, 1234)
    got = as_user([["read", fs.mnt / "groupfile"],
                   ["write", fs.mnt / "groupfile", "!"]], groups=[1234])
    assert got == [("ok", "for the group"), "ok"]
    assert (fs.host / "groupfile").read_bytes() == b"for the group!"
    # Without the group: refused.
    assert as_user([["read", fs.mnt / "groupfile"]]) == ["EACCES"]


@pytest.mark.parametrize("mode,uid,gid", [(0o100, 0, 0), (0o010, UID, GID), (0o001, UID, GID),
                                          (0o100, UID, GID)])
def test_execute_only_binary_runs(fs, mode, uid, gid):
    if fs.mode == "matchlock" and uid != 0:
        pytest.skip("matchlock protocol: Open carries no exec flag, so the host opens the "
                    "program for reading as the caller (EACCES)")
    # ext4 runs a program its user may execute but not read (generic/126):
    # an exec open needs execute permission only.  The owner case (0100
    # owned by the user) and the group and other cases; root too.
    prog = fs.host / "prog"
    shutil.copyfile(shutil.which("true"), prog)
    os.chown(prog, uid if mode == 0o100 else 0, gid if mode == 0o010 else 0)
    os.chmod(prog, mode)
    r = helpers.run_python(
        "import subprocess, sys\n"
        "try:\n"
        "    print(subprocess.run([sys.argv[1]]).returncode)\n"
        "except OSError as e:\n"
        "    print(e.strerror)\n", fs.mnt / "prog",
        **({} if uid == 0 else {"uid": uid, "gid": gid}))
    assert r.stdout.strip() == "0", r.stderr
    # Reading it stays refused to the user.
    if uid != 0:
        assert as_user([["read", fs.mnt / "prog"]], uid=uid, gid=gid) == ["EACCES"]


def test_owner_chowns_to_a_supplementary_group(fs):
    # setpriv --groups 1001 chown 1000:1001 FILE works on ext4: the owner
    # may give his file to any group he is in (pjdfstest chown/00, 05).
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: " + "requests carry the caller's uid and gid only")
    put(fs.host / "mine", b"x", 0o644)
    os.chown(fs.host / "mine", UID, GID)
    assert as_user([["chown", fs.mnt / "mine", UID, 1001]], groups=(1001,)) == ["ok"]
    assert os.stat(fs.host / "mine").st_gid == 1001
    # A group he is not in stays refused.
    assert as_user([["chown", fs.mnt / "mine", UID, 1002]], groups=(1001,)) == ["EPERM"]
    assert os.stat(fs.host / "mine").st_gid == 1001


def test_owner_gives_dirs_and_symlinks_to_a_supplementary_group(fs):
    # As for a regular file (above): a directory, and a symlink itself
    # (lchown, the link and not its target), host side checked.
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: " + "requests carry the caller's uid and gid only")
    put(fs.host / "target", b"x", 0o644)
    os.mkdir(fs.host / "dir")
    os.symlink("target", fs.host / "link")
    for name in ("target", "dir", "link"):
        os.lchown(fs.host / name, UID, GID)
    assert as_user([["chown", fs.mnt / "dir", UID, 1001],
                    ["lchown", fs.mnt / "link", UID, 1001],
                    ["chown", fs.mnt / "dir", UID, 1002],
                    ["lchown", fs.mnt / "link", UID, 1002]], groups=(1001,)) == \
        ["ok", "ok", "EPERM", "EPERM"]
    assert os.stat(fs.host / "dir").st_gid == 1001
    assert os.lstat(fs.host / "link").st_gid == 1001
    assert os.stat(fs.host / "target").st_gid == GID    # not followed


def test_non_owner_writer_sets_times_only_to_now(export_dir, daemon_factory):
    """A writer who is not the owner may set a file's times only to "now"
    (utimensat(2): UTIME_NOW needs write access, an explicit time needs
    ownership).  A writeback-cache guest sends its truncate as size plus
    explicit times (FATTR_CTIME marks them as the kernel's), which the
    daemon lets through for the writer: as "now", never as the times the
    guest chose.  Sent raw (fuse_client.py), as a hostile guest would: an
    honest guest kernel's explicit times for a truncate are its clock's
    now, and the guest refuses utime(2) with explicit times itself."""
    host = export_dir
    put(host / "f", b"0123456789", 0o666)
    os.chown(host / "f", UID, GID)
    d = daemon_factory([f"data={host},cache=never"])
    long_ago = 10**9                              # 2001
    writer = UID + 1
    with FuseClient(d.socket, export="data", uid=writer, gid=writer) as c:
        err, e = c.lookup(FUSE_ROOT_ID, "f")
        assert err == 0
        times = FATTR_ATIME | FATTR_MTIME | FATTR_CTIME
        err, _ = c.setattr(e["nodeid"], FATTR_SIZE | times, size=3,
                           atime=long_ago, mtime=long_ago)
        assert err == 0
        st = os.stat(host / "f")
        assert st.st_size == 3
        assert st.st_mtime > long_ago + 10**8 and st.st_atime > long_ago + 10**8, st
        # Without the write shown by a size change or a writable handle:
        # explicit times need ownership, as on ext4.
        err, _ = c.setattr(e["nodeid"], times, atime=long_ago, mtime=long_ago)
        assert err == errno.EPERM
    assert os.stat(host / "f").st_mtime > long_ago + 10**8


def posix_acl(*entries):
    """The system.posix_acl_* xattr value: version 2, then (tag, perm, id)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER = 0x01, 0x04, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF


def test_default_acl_replaces_the_umask(fs):
    # With a default ACL on the parent the umask does not apply (ext4 gives
    # group::rwx; generic/099, 319, 444): the guest kernel leaves the umask
    # to the daemon (FUSE_DONT_MASK), which lets the host kernel decide.
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: creations carry the mode only, no umask")
    os.mkdir(fs.mnt / "acl")
    os.mkdir(fs.mnt / "plain")
    try:
        os.setxattr(fs.host / "acl", "system.posix_acl_default",
                    posix_acl((ACL_USER_OBJ, 7, ACL_UNDEFINED_ID), (ACL_GROUP_OBJ, 7, ACL_UNDEFINED_ID),
                              (ACL_OTHER, 5, ACL_UNDEFINED_ID)))
    except OSError as e:
        pytest.skip(f"the host filesystem has no POSIX ACLs: {e.strerror}")
    got = as_user([["create", fs.mnt / "acl" / "f", 0o666], ["mkdir", fs.mnt / "acl" / "d", 0o777],
                   ["create", fs.mnt / "plain" / "f", 0o666],
                   ["mkdir", fs.mnt / "plain" / "d", 0o777]], umask=0o022, uid=0, gid=0)
    assert got == ["ok"] * 4
    modes = {p: stat.S_IMODE(os.stat(fs.host / p).st_mode)
             for p in ("acl/f", "acl/d", "plain/f", "plain/d")}
    assert modes == {"acl/f": 0o664, "acl/d": 0o775, "plain/f": 0o644, "plain/d": 0o755}


def statx_mode(path):
    """The mode as statx(2) with STATX_MODE alone gives it (coreutils'
    `stat -c %a`, ls, and the kernel's own permission checks ask for no
    more): a stale cached mode shows here even when stat(2), which asks for
    the ctime the kernel invalidates after a setxattr, is fresh."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)
    at_fdcwd, statx_type_mode = -100, 0x3
    if libc.statx(at_fdcwd, os.fsencode(path), 0, statx_type_mode, buf) != 0:
        raise OSError(ctypes.get_errno(), "statx", str(path))
    return stat.S_IMODE(struct.unpack_from("<H", buf.raw, 28)[0])


def test_mode_changed_by_an_acl_is_seen_at_once(fs):
    # Setting system.posix_acl_access (setfacl) changes the file's mode on
    # the host as a side effect; the guest sees the new mode at once, in
    # every cache mode (generic/375), not after the attribute timeout (a
    # day in cache=always): the daemon invalidates the node's attributes
    # after the reply.
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: no extended attributes")
    put(fs.mnt / "f", b"data", 0o600)
    os.chown(fs.mnt / "f", UID, GID)
    assert statx_mode(fs.mnt / "f") == 0o600           # cached now
    assert as_user([["read", fs.mnt / "f"]]) == [("ok", "data")]
    try:
        os.setxattr(fs.mnt / "f", "system.posix_acl_access",
                    posix_acl((ACL_USER_OBJ, 0, ACL_UNDEFINED_ID),
                              (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
                              (ACL_OTHER, 4, ACL_UNDEFINED_ID)))
    except OSError as e:
        pytest.skip(f"no POSIX ACLs through this mount: {e.strerror}")
    assert stat.S_IMODE(os.stat(fs.host / "f").st_mode) == 0o044
    assert statx_mode(fs.mnt / "f") == 0o044
    # the guest kernel's permission check (default_permissions) uses it too
    assert as_user([["read", fs.mnt / "f"]]) == ["EACCES"]
    os.setxattr(fs.mnt / "f", "system.posix_acl_access",
                posix_acl((ACL_USER_OBJ, 6, ACL_UNDEFINED_ID),
                          (ACL_GROUP_OBJ, 0, ACL_UNDEFINED_ID),
                          (ACL_OTHER, 0, ACL_UNDEFINED_ID)))
    assert statx_mode(fs.mnt / "f") == 0o600
    assert as_user([["read", fs.mnt / "f"]]) == [("ok", "data")]


def shared_setgid_dir(fs):
    """fs.mnt/shared: set-group-ID, group 1234, writable by all."""
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: requests carry the caller's uid and gid only")
    os.mkdir(fs.mnt / "shared")
    os.chown(fs.mnt / "shared", 0, 1234)
    os.chmod(fs.mnt / "shared", 0o2777)


def test_setgid_directory_creation_by_a_supplementary_member(fs):
    # In a set-group-ID directory of a group the caller is in only through a
    # supplementary group, a new file keeps the set-group-ID bit it asked
    # for (ext4: the caller is in the file's group); the guest kernel names
    # that group (FUSE_CREATE_SUPP_GROUP) and the daemon lends it.
    shared_setgid_dir(fs)
    assert as_user([["create", fs.mnt / "shared" / "f", 0o2775]], umask=0,
                   groups=[1234]) == ["ok"]
    h = os.stat(fs.host / "shared" / "f")
    assert (h.st_gid, stat.S_IMODE(h.st_mode)) == (1234, 0o2775)
    # Not in the group: the bit goes, as on ext4.
    assert as_user([["create", fs.mnt / "shared" / "g", 0o2775]], umask=0) == ["ok"]
    assert stat.S_IMODE(os.stat(fs.host / "shared" / "g").st_mode) == 0o775


def test_setgid_directory_mkdir_and_mknod_by_a_supplementary_member(fs):
    # The same for MKDIR and MKNOD (a regular file and a FIFO made by
    # mknod(2)): the group of the directory, the set-group-ID bit asked for.
    shared_setgid_dir(fs)
    assert as_user([["mkdir", fs.mnt / "shared" / "d", 0o2775],
                    ["mknod", fs.mnt / "shared" / "n", stat.S_IFREG | 0o2775],
                    ["mkfifo", fs.mnt / "shared" / "p", 0o664]],
                   umask=0, groups=[1234]) == ["ok", "ok", "ok"]
    modes = {}
    for name in ("d", "n", "p"):
        h = os.lstat(fs.host / "shared" / name)
        modes[name] = (h.st_uid, h.st_gid, oct(stat.S_IMODE(h.st_mode)))
    assert modes == {"d": (UID, 1234, oct(0o2775)), "n": (UID, 1234, oct(0o2775)),
                     "p": (UID, 1234, oct(0o664))}
    # Not in the group: a file made by mknod loses the bit, as on ext4.
    assert as_user([["mknod", fs.mnt / "shared" / "m", stat.S_IFREG | 0o2775]],
                   umask=0) == ["ok"]
    assert stat.S_IMODE(os.stat(fs.host / "shared" / "m").st_mode) == 0o775
