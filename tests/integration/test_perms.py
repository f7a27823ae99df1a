"""
test_perms.py - a non-root user on the mount.

The guest kernel checks modes (default_permissions) and the host daemon
acts as the caller, so the host kernel checks them too and files a user
makes belong to that user on the host.  The user is uid/gid 1000 (it need
not exist in /etc/passwd); each step runs in a child process that dropped
to it, and reports "ok" or the errno name for each operation.
"""

import json
import os
import stat

import helpers

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
