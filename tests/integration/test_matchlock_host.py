"""
test_matchlock_host.py - fsbridged serving matchlock's CBOR protocol, spoken
by a protocol client (mlproto.py) on the same stream listener as native
clients.  Every result is checked on the host directory; errors must be the
real errno (matchlock's own server collapses most of them).

docs/matchlock.md is what is tested here: opcodes 0-18 with fsbridge's
field definitions for 14-18, export prefixes, limits.
"""

import errno
import os
import stat
import struct
import threading
import time

import cbor2
import pytest

import helpers
import mlproto as ml
from mlproto import (OP_CREATE, OP_FSYNC, OP_GETATTR, OP_LINK, OP_LOOKUP, OP_MKDIR,
                     OP_MKDIR_ALL, OP_OPEN, OP_READ, OP_READDIR, OP_READLINK, OP_RELEASE,
                     OP_RENAME, OP_RMDIR, OP_SETATTR, OP_SYMLINK, OP_TRUNCATE, OP_UNLINK,
                     OP_WRITE)

UID = helpers.NOBODY_UID
GID = helpers.NOBODY_GID


# --------------------------------------------------------------------------
# fixtures


class Host:
    """A daemon with exports; .dirs maps export names to host directories."""

    def __init__(self, daemon, dirs):
        self.daemon = daemon
        self.dirs = dirs

    def client(self):
        return ml.Client.connect(self.daemon.socket)

    def stderr(self):
        return self.daemon.stderr_text()


@pytest.fixture
def host_factory(fsb_workdir, daemon_factory):
    """make({"/workspace": "",  "/data": "ro"}, extra_args=()) -> Host"""
    n = [0]

    def make(exports, extra_args=(), log_level="debug"):
        dirs, args = {}, []
        for name, opts in exports.items():
            n[0] += 1
            d = fsb_workdir / f"export{n[0]}"
            d.mkdir()
            os.chmod(d, 0o755)
            dirs[name] = d
            args.append(f"{name}={d}" + (f",{opts}" if opts else ""))
        return Host(daemon_factory(args, extra_args, log_level=log_level), dirs)
    return make


@pytest.fixture
def ws(host_factory):
    """One read-write export at /workspace: (host, its directory, a client)."""
    h = host_factory({"/workspace": ""})
    c = h.client()
    yield h, h.dirs["/workspace"], c
    c.close()


def err_of(r):
    return -r.get("err", 0)


def expect_err(c, code, op, **fields):
    r = c.call(op, **fields)
    assert err_of(r) == code, (f"{ml.OP_NAMES.get(op, op)} {fields}: got "
                               f"{os.strerror(err_of(r)) if err_of(r) else 'success'}, "
                               f"expected {errno.errorcode[code]}")
    return r


def mode_of(r):
    return ml.unix_mode_from_go(r["stat"]["mode"])


# --------------------------------------------------------------------------
# bytes on the wire


def test_doc_byte_examples(ws):
    """The examples of matchlock-protocol.md, byte for byte, both ways."""
    _, d, c = ws
    c.send_raw(bytes.fromhex("0000001f a2 626f70 00 6470617468 74"
                             "2f776f726b73706163652f68656c6c6f2e747874".replace(" ", "")))
    assert ml.recv_exact(c.sock, 10) == bytes.fromhex("00000006a16365727221")  # ENOENT
    (d / "hello.txt").write_text("hi\n")
    c.send_raw(ml.frame(ml.encode_request(OP_OPEN, path="/workspace/hello.txt")))
    assert ml.recv_exact(c.sock, 14) == bytes.fromhex("0000000aa2636572720062666801")
    c.send_raw(bytes.fromhex("0000000fa3626f70036266680162737a191000"))  # Read fh 1
    r = cbor2.loads(ml.recv_frame(c.sock))
    assert r == {"err": 0, "data": b"hi\n"}


def test_response_key_order_is_matchlocks(ws):
    """err, stat (size, mode, mtime, is_dir, ino, ...), fh: in that order."""
    _, d, c = ws
    body = None
    c.send_raw(ml.frame(ml.encode_request(OP_CREATE, path="/workspace/f", mode=0o644)))
    body = ml.recv_frame(c.sock)
    r = cbor2.loads(body)
    assert list(r) == ["err", "stat", "fh"]
    assert list(r["stat"])[:5] == ["size", "mode", "mtime", "is_dir", "ino"]
    assert body == cbor2.dumps(ml.response_map(**r))  # shortest forms, same order


# --------------------------------------------------------------------------
# every opcode, checked on the host


def test_create_write_read_fsync_release(ws):
    _, d, c = ws
    r = c.check(OP_CREATE, path="/workspace/a.txt", mode=0o100640)
    assert r["fh"] and mode_of(r) == stat.S_IFREG | 0o640 and r["stat"]["size"] == 0
    fh = r["fh"]
    assert c.check(OP_WRITE, fh=fh, off=0, data=b"hello world")["written"] == 11
    assert c.check(OP_WRITE, fh=fh, off=6, data=b"WORLD")["written"] == 5
    c.check(OP_FSYNC, fh=fh)
    assert (d / "a.txt").read_bytes() == b"hello WORLD"
    assert stat.S_IMODE((d / "a.txt").stat().st_mode) == 0o640
    assert c.check(OP_READ, fh=fh, off=6, sz=100)["data"] == b"WORLD"
    assert "data" not in c.check(OP_READ, fh=fh, off=100, sz=10)  # EOF: no data
    c.check(OP_RELEASE, fh=fh)
    expect_err(c, errno.EBADF, OP_READ, fh=fh, sz=1)
    expect_err(c, errno.EBADF, OP_RELEASE, fh=fh)


def test_create_without_flags_truncates_like_matchlock(ws):
    _, d, c = ws
    (d / "old").write_bytes(b"old content")
    r = c.check(OP_CREATE, path="/workspace/old", mode=0o644)
    assert (d / "old").read_bytes() == b""
    assert c.check(OP_WRITE, fh=r["fh"], data=b"x")["written"] == 1
    assert c.check(OP_READ, fh=r["fh"], sz=10)["data"] == b"x"  # read-write


def test_create_with_flags_gets_those_flags(ws):
    _, d, c = ws
    (d / "keep").write_bytes(b"keep me")
    r = c.check(OP_CREATE, path="/workspace/keep", mode=0o644, flags=os.O_CREAT | os.O_WRONLY)
    assert (d / "keep").read_bytes() == b"keep me"
    expect_err(c, errno.EBADF, OP_READ, fh=r["fh"], sz=4)  # write-only
    expect_err(c, errno.EEXIST, OP_CREATE, path="/workspace/keep",
               flags=os.O_CREAT | os.O_EXCL | os.O_RDWR)
    (d / "sub").mkdir()
    expect_err(c, errno.EISDIR, OP_CREATE, path="/workspace/sub", mode=0o644)
    expect_err(c, errno.EEXIST, OP_CREATE, path="/workspace", mode=0o644)  # export root


def test_open_flags_and_append(ws):
    _, d, c = ws
    (d / "log").write_bytes(b"one\n")
    fh = c.check(OP_OPEN, path="/workspace/log", flags=os.O_WRONLY | os.O_APPEND)["fh"]
    assert c.check(OP_WRITE, fh=fh, off=0, data=b"two\n")["written"] == 4
    assert c.check(OP_WRITE, fh=fh, off=1, data=b"three\n")["written"] == 6
    assert (d / "log").read_bytes() == b"one\ntwo\nthree\n"
    fh = c.check(OP_OPEN, path="/workspace/log", flags=os.O_RDWR | os.O_TRUNC)["fh"]
    assert (d / "log").read_bytes() == b""
    fh = c.check(OP_OPEN, path="/workspace/log")["fh"]  # flags 0: read-only
    expect_err(c, errno.EBADF, OP_WRITE, fh=fh, data=b"x")


def test_open_directories_like_matchlocks_guest(ws):
    """matchlock's guest sends Open (and Release) for OPENDIR too."""
    _, d, c = ws
    (d / "sub").mkdir()
    fh = c.check(OP_OPEN, path="/workspace/sub", flags=os.O_RDONLY)["fh"]
    c.check(OP_FSYNC, fh=fh)
    expect_err(c, errno.EISDIR, OP_READ, fh=fh, sz=10)
    c.check(OP_RELEASE, fh=fh)
    expect_err(c, errno.EISDIR, OP_OPEN, path="/workspace/sub", flags=os.O_RDWR)


def test_lookup_getattr_setattr(ws):
    _, d, c = ws
    (d / "f").write_bytes(b"12345")
    os.chmod(d / "f", 0o600)
    st = (d / "f").stat()
    for op in (OP_LOOKUP, OP_GETATTR):
        r = c.check(op, path="/workspace/f")["stat"]
        assert r["size"] == 5 and r["mode"] == 0o600 and r["is_dir"] is False
        assert r["mtime"] == int(st.st_mtime) and r["mtime_nsec"] == st.st_mtime_ns % 10**9
        assert r["ino"] == ml.matchlock_ino(st)
        assert r.get("nlink") == 1
    # matchlock's Setattr: chmod to `mode` (S_IFMT bits ignored)
    r = c.check(OP_SETATTR, path="/workspace/f", mode=stat.S_IFREG | 0o4751)
    assert mode_of(r) == stat.S_IFREG | 0o4751
    assert stat.S_IMODE((d / "f").stat().st_mode) == 0o4751


def test_setattr_extension_chown_utimens_size(ws):
    _, d, c = ws
    (d / "f").write_bytes(b"0123456789")
    r = c.check(OP_SETATTR, path="/workspace/f", set=ml.SET_UID | ml.SET_GID | ml.SET_SIZE,
                owner_uid=UID, owner_gid=GID, off=3)
    st = (d / "f").stat()
    assert (st.st_uid, st.st_gid, st.st_size) == (UID, GID, 3)
    assert (r["stat"]["uid"], r["stat"]["gid"], r["stat"]["size"]) == (UID, GID, 3)
    c.check(OP_SETATTR, path="/workspace/f", set=ml.SET_ATIME | ml.SET_MTIME,
            atime=1000, atime_nsec=5, mtime=2000, mtime_nsec=123456789)
    st = (d / "f").stat()
    assert st.st_atime_ns == 1000 * 10**9 + 5 and st.st_mtime_ns == 2000 * 10**9 + 123456789
    before = time.time() - 5
    c.check(OP_SETATTR, path="/workspace/f", set=ml.SET_MTIME_NOW)
    assert (d / "f").stat().st_mtime > before
    expect_err(c, errno.EINVAL, OP_SETATTR, path="/workspace/f", set=1 << 20)
    expect_err(c, errno.EINVAL, OP_SETATTR, path="/workspace/f", set=ml.SET_MTIME,
               mtime_nsec=10**9)
    expect_err(c, errno.EINVAL, OP_SETATTR, path="/workspace/f", set=ml.SET_SIZE, off=-1)


def test_mkdir_rmdir_unlink_rename(ws):
    _, d, c = ws
    r = c.check(OP_MKDIR, path="/workspace/dir", mode=stat.S_IFDIR | 0o750)
    assert r["stat"]["is_dir"] and r["stat"]["mode"] == ml.GO_DIR | 0o750
    assert stat.S_IMODE((d / "dir").stat().st_mode) == 0o750
    (d / "dir" / "f").write_text("x")
    c.check(OP_RENAME, path="/workspace/dir/f", new_path="/workspace/g")
    assert not (d / "dir" / "f").exists() and (d / "g").read_text() == "x"
    c.check(OP_RENAME, path="/workspace/dir", new_path="/workspace/dir2")
    assert (d / "dir2").is_dir()
    (d / "dir2" / "inner").write_text("y")
    expect_err(c, errno.ENOTEMPTY, OP_RMDIR, path="/workspace/dir2")
    c.check(OP_UNLINK, path="/workspace/dir2/inner")
    c.check(OP_RMDIR, path="/workspace/dir2")
    c.check(OP_UNLINK, path="/workspace/g")
    assert sorted(os.listdir(d)) == []


def test_readdir(ws):
    _, d, c = ws
    (d / "sub").mkdir()
    (d / "file").write_bytes(b"abc")
    os.symlink("file", d / "link")
    os.mkfifo(d / "fifo")
    entries = {e["name"]: e for e in c.check(OP_READDIR, path="/workspace")["entries"]}
    assert set(entries) == {"sub", "file", "link", "fifo"}  # no . or ..
    assert entries["sub"]["is_dir"] and entries["sub"]["mode"] == ml.GO_DIR
    assert entries["file"]["mode"] == 0 and entries["file"]["size"] == 3
    assert entries["link"]["mode"] == ml.GO_SYMLINK and not entries["link"]["is_dir"]
    assert entries["fifo"]["mode"] == ml.GO_NAMED_PIPE
    for name, e in entries.items():
        st = os.lstat(d / name)
        assert e["ino"] == ml.matchlock_ino(st)
        assert e["ino"] == c.check(OP_LOOKUP, path=f"/workspace/{name}")["stat"]["ino"]
    expect_err(c, errno.ENOTDIR, OP_READDIR, path="/workspace/file")


def test_big_directory_in_one_response(ws):
    _, d, c = ws
    names = {f"entry-{i:05d}-{'x' * 40}" for i in range(3000)}
    for n in names:
        (d / n).touch()
    entries = c.check(OP_READDIR, path="/workspace")["entries"]
    assert {e["name"] for e in entries} == names


@pytest.mark.deadline(180)
def test_readdir_bound_is_the_documented_16_mib(ws):
    """docs/matchlock.md: a Readdir response holds up to 16 MiB of entries
    (ML_RESPONSE_MAX), ENOBUFS beyond.  40,000 entries of 246-byte names
    (some 12 MiB) fit; 62,000 (some 18 MiB) do not."""
    _, d, c = ws

    def add(first, last):
        for i in range(first, last):
            os.close(os.open(d / f"{i:06d}{'n' * 240}", os.O_CREAT | os.O_WRONLY, 0o644))

    add(0, 40000)
    r = c.check(OP_READDIR, path="/workspace")
    assert len(r["entries"]) == 40000
    size = len(cbor2.dumps(r["entries"]))
    assert 8 * 1024 * 1024 < size < 16 * 1024 * 1024, size
    add(40000, 62000)
    expect_err(c, errno.ENOBUFS, OP_READDIR, path="/workspace")
    assert c.check(OP_LOOKUP, path="/workspace")["stat"]["is_dir"]   # the connection goes on


def test_mkdir_all(ws):
    _, d, c = ws
    c.check(OP_MKDIR_ALL, path="/workspace/a/b/c", mode=0o700)
    assert (d / "a/b/c").is_dir()
    assert stat.S_IMODE((d / "a/b/c").stat().st_mode) == 0o700
    c.check(OP_MKDIR_ALL, path="/workspace/a/b/c", mode=0o700)  # exists: fine
    c.check(OP_MKDIR_ALL, path="/workspace", mode=0o700)
    (d / "a/file").touch()
    expect_err(c, errno.ENOTDIR, OP_MKDIR_ALL, path="/workspace/a/file/x", mode=0o755)
    expect_err(c, errno.ENOTDIR, OP_MKDIR_ALL, path="/workspace/a/file", mode=0o755)


def test_truncate_by_path_and_by_handle(ws):
    _, d, c = ws
    (d / "f").write_bytes(b"0123456789")
    c.check(OP_TRUNCATE, path="/workspace/f", off=4)
    assert (d / "f").read_bytes() == b"0123"
    c.check(OP_TRUNCATE, path="/workspace/f", off=8)
    assert (d / "f").read_bytes() == b"0123\0\0\0\0"
    fh = c.check(OP_OPEN, path="/workspace/f", flags=os.O_RDWR)["fh"]
    c.check(OP_TRUNCATE, fh=fh, off=2, path="/ignored/when/fh/given")
    assert (d / "f").read_bytes() == b"01"
    expect_err(c, errno.EINVAL, OP_TRUNCATE, path="/workspace/f", off=-1)
    expect_err(c, errno.EISDIR, OP_TRUNCATE, path="/workspace", off=0)
    expect_err(c, errno.EBADF, OP_TRUNCATE, fh=12345, off=0)


def test_symlink_readlink_link(ws):
    _, d, c = ws
    (d / "target").write_bytes(b"data")
    r = c.check(OP_SYMLINK, path="/workspace/ln", new_path="target")
    assert mode_of(r) == stat.S_IFLNK | 0o777
    assert os.readlink(d / "ln") == "target"
    assert c.check(OP_READLINK, path="/workspace/ln")["data"] == b"target"
    c.check(OP_SYMLINK, path="/workspace/abs", new_path="/etc/shadow")
    assert c.check(OP_READLINK, path="/workspace/abs")["data"] == b"/etc/shadow"
    expect_err(c, errno.EINVAL, OP_READLINK, path="/workspace/target")
    expect_err(c, errno.EEXIST, OP_SYMLINK, path="/workspace/ln", new_path="x")
    expect_err(c, errno.ENOENT, OP_SYMLINK, path="/workspace/empty", new_path="")
    r = c.check(OP_LINK, path="/workspace/target", new_path="/workspace/hard")
    assert r["stat"]["nlink"] == 2
    assert os.stat(d / "hard").st_ino == os.stat(d / "target").st_ino
    expect_err(c, errno.EEXIST, OP_LINK, path="/workspace/target", new_path="/workspace/hard")
    (d / "sub").mkdir()
    expect_err(c, errno.EPERM, OP_LINK, path="/workspace/sub", new_path="/workspace/sub2")


# --------------------------------------------------------------------------
# errors: the real errno


def test_real_errno_values(ws):
    _, d, c = ws
    (d / "f").touch()
    (d / "dir").mkdir()
    (d / "dir" / "x").touch()
    expect_err(c, errno.ENOENT, OP_LOOKUP, path="/workspace/nope")
    expect_err(c, errno.ENOTDIR, OP_LOOKUP, path="/workspace/f/x")
    expect_err(c, errno.EEXIST, OP_MKDIR, path="/workspace/dir", mode=0o755)
    expect_err(c, errno.ENOTEMPTY, OP_RMDIR, path="/workspace/dir")  # matchlock: EEXIST
    expect_err(c, errno.ENOTDIR, OP_RMDIR, path="/workspace/f")
    expect_err(c, errno.EISDIR, OP_UNLINK, path="/workspace/dir")
    expect_err(c, errno.EISDIR, OP_OPEN, path="/workspace/dir", flags=os.O_WRONLY)
    expect_err(c, errno.EBADF, OP_WRITE, fh=999, data=b"x")
    expect_err(c, errno.EBADF, OP_FSYNC, fh=999)
    fh = c.check(OP_OPEN, path="/workspace/f", flags=os.O_RDWR)["fh"]
    expect_err(c, errno.EINVAL, OP_READ, fh=fh, off=-1, sz=1)
    expect_err(c, errno.EINVAL, OP_WRITE, fh=fh, off=-5, data=b"x")
    expect_err(c, errno.EINVAL, OP_LOOKUP, path="workspace/f")  # not absolute
    expect_err(c, errno.ENAMETOOLONG, OP_LOOKUP, path="/workspace/" + "n" * 256)


def test_permissions_as_the_caller(ws):
    """uid/gid of the request are the caller, as the native path's."""
    _, d, c = ws
    os.chmod(d, 0o777)
    r = c.check(OP_CREATE, path="/workspace/mine", mode=0o644, uid=UID, gid=GID)
    st = (d / "mine").stat()
    assert (st.st_uid, st.st_gid) == (UID, GID)
    assert (r["stat"]["uid"], r["stat"]["gid"]) == (UID, GID)
    c.check(OP_MKDIR, path="/workspace/mydir", mode=0o755, uid=UID, gid=GID)
    assert (d / "mydir").stat().st_uid == UID
    (d / "secret").write_bytes(b"s")
    os.chmod(d / "secret", 0o600)
    (d / "closed").mkdir(mode=0o700)
    (d / "closed" / "x").touch()
    expect_err(c, errno.EACCES, OP_OPEN, path="/workspace/secret", uid=UID, gid=GID)
    expect_err(c, errno.EACCES, OP_LOOKUP, path="/workspace/closed/x", uid=UID, gid=GID)
    expect_err(c, errno.EACCES, OP_READDIR, path="/workspace/closed", uid=UID, gid=GID)
    expect_err(c, errno.EACCES, OP_CREATE, path="/workspace/closed/y", mode=0o644,
               uid=UID, gid=GID)
    expect_err(c, errno.EPERM, OP_SETATTR, path="/workspace/secret", mode=0o777,
               uid=UID, gid=GID)  # matchlock: EACCES
    expect_err(c, errno.EPERM, OP_SETATTR, path="/workspace/mine", set=ml.SET_UID,
               owner_uid=0, uid=UID, gid=GID)
    # no uid/gid keys: root, as matchlock's guest (which sends none) expects
    c.check(OP_OPEN, path="/workspace/secret")


# --------------------------------------------------------------------------
# hostile input


def test_symlinks_are_never_followed_on_the_host(ws, fsb_workdir):
    _, d, c = ws
    outside = fsb_workdir / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host secret")
    os.symlink(outside, d / "out")
    os.symlink(outside / "secret", d / "sfile")
    (d / "inner").mkdir()
    os.symlink("inner", d / "rel")
    expect_err(c, errno.ENOTDIR, OP_LOOKUP, path="/workspace/out/secret")
    expect_err(c, errno.ENOTDIR, OP_LOOKUP, path="/workspace/rel/x")
    r = c.check(OP_LOOKUP, path="/workspace/sfile")  # the link itself
    assert r["stat"]["mode"] & ml.GO_SYMLINK and r["stat"]["size"] == len(str(outside / "secret"))
    expect_err(c, errno.ELOOP, OP_OPEN, path="/workspace/sfile")
    expect_err(c, errno.ELOOP, OP_OPEN, path="/workspace/sfile", flags=os.O_WRONLY | os.O_TRUNC)
    expect_err(c, errno.ENOTDIR, OP_READDIR, path="/workspace/out")
    expect_err(c, errno.ENOTDIR, OP_CREATE, path="/workspace/out/new", mode=0o644)
    expect_err(c, errno.ENOTDIR, OP_MKDIR_ALL, path="/workspace/out/a/b", mode=0o755)
    expect_err(c, errno.ENOTDIR, OP_RENAME, path="/workspace/out/secret",
               new_path="/workspace/stolen")
    c.check(OP_SETATTR, path="/workspace/sfile", set=ml.SET_MTIME, mtime=5)  # the link's time
    assert (outside / "secret").read_bytes() == b"host secret"
    assert os.stat(outside / "secret").st_mtime != 5
    assert sorted(os.listdir(outside)) == ["secret"]


def test_dotdot_never_leaves_the_guest_tree(ws, fsb_workdir):
    _, d, c = ws
    (d / "sub").mkdir()
    (d / "f").write_bytes(b"in")
    (fsb_workdir / "f").write_bytes(b"outside")
    assert c.check(OP_LOOKUP, path="/workspace/sub/../f")["stat"]["size"] == 2
    assert c.check(OP_LOOKUP, path="/workspace/./sub/./../f")["stat"]["size"] == 2
    assert c.check(OP_LOOKUP, path="/../../workspace//f")["stat"]["size"] == 2
    expect_err(c, errno.ENOENT, OP_LOOKUP, path="/workspace/../f")
    expect_err(c, errno.ENOENT, OP_OPEN, path="/workspace/../../../etc/passwd")
    r = c.check(OP_LOOKUP, path="/workspace/sub/../../..")  # "/": synthesized
    assert r["stat"]["is_dir"] and r["stat"]["ino"] == 1
    expect_err(c, errno.EROFS, OP_CREATE, path="/workspace/../escape", mode=0o644)
    assert not (fsb_workdir / "escape").exists()


def below(length):
    """A relative path of LENGTH bytes (4081 to 4336): 16 directories of
    254 bytes, then a file name of the rest."""
    dirs = ["d" * 254] * 16
    return "/".join(dirs + ["f" * (length - 16 * 255)]), dirs


def host_path(root, rel):
    """Opens REL below ROOT one component at a time (it is too long for
    one system call on the host too) and stats it."""
    *dirs, name = rel.split("/")
    fd = os.open(root, os.O_PATH)
    try:
        for part in dirs:
            nfd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def test_path_of_path_max_below_the_prefix(host_factory):
    """A path below an export may be PATH_MAX - 1 bytes long, as on a local
    disk, however long the export's prefix (up to "/" and 255 bytes): the
    prefix is not counted.  One byte more is ENAMETOOLONG."""
    longest = "p" * 255                      # an export name of 255 bytes: "/ppp..."
    h = host_factory({"/workspace": "", longest: ""})
    c = h.client()
    for name in ("/workspace", longest):
        d, prefix = h.dirs[name], "/" + name.lstrip("/")
        rel, dirs = below(ml.PATH_MAX - 1)
        for i in range(1, len(dirs) + 1):
            c.check(OP_MKDIR, path=prefix + "/" + "/".join(dirs[:i]), mode=0o755)
        fh = c.check(OP_CREATE, path=f"{prefix}/{rel}", mode=0o600)["fh"]
        assert c.check(OP_WRITE, fh=fh, data=b"deep")["written"] == 4
        c.check(OP_RELEASE, fh=fh)
        assert c.check(OP_LOOKUP, path=f"{prefix}/{rel}")["stat"]["size"] == 4
        assert host_path(d, rel).st_size == 4
        # two such paths in one request: Rename and Link
        renamed, _ = below(ml.PATH_MAX - 1)
        renamed = renamed[:-1] + "g"
        c.check(OP_RENAME, path=f"{prefix}/{rel}", new_path=f"{prefix}/{renamed}")
        c.check(OP_LINK, path=f"{prefix}/{renamed}", new_path=f"{prefix}/{rel}")
        assert host_path(d, rel).st_nlink == 2
        too_long, _ = below(ml.PATH_MAX)
        # (below the longest prefix, the path is also over the wire's limit:
        # the strict decoder's EINVAL, docs/matchlock.md "Limits")
        code = errno.EINVAL if len(prefix) == ml.PREFIX_MAX else errno.ENAMETOOLONG
        for op, fields in ((OP_LOOKUP, {}), (OP_CREATE, {"mode": 0o600}),
                           (OP_MKDIR, {"mode": 0o755})):
            expect_err(c, code, op, path=f"{prefix}/{too_long}", **fields)
        expect_err(c, code, OP_RENAME, path=f"{prefix}/{rel}", new_path=f"{prefix}/{too_long}")
        with pytest.raises(FileNotFoundError):
            host_path(d, too_long)
    c.close()


def test_largest_request_is_served(ws):
    """The frame limit is the largest request there can be (a full write and
    two paths of the longest): a frame of exactly ML_REQUEST_MAX bytes is
    read and answered, one byte more closes the connection
    (test_oversized_frame_closes_only_that_connection)."""
    h, d, c = ws
    (d / "f").write_bytes(b"")
    fh = c.check(OP_OPEN, path="/workspace/f", flags=os.O_RDWR)["fh"]
    longest = "/workspace"
    while len(longest) < ml.PATH_LONGEST:
        longest += "/" + "n" * min(199, ml.PATH_LONGEST - len(longest) - 1)
    fields = ml.request_map(OP_WRITE, fh=fh, data=b"w" * ml.DATA_MAX, path=longest,
                            new_path=longest)
    # an unknown key (skipped by the server) fills the frame to the byte
    room = ml.REQUEST_MAX - len(cbor2.dumps(fields))
    body = next(b for n in range(room, 0, -1)
                if len(b := cbor2.dumps(dict(fields, pad="x" * n))) == ml.REQUEST_MAX)
    assert c.call_body(body)["written"] == ml.DATA_MAX
    assert (d / "f").stat().st_size == ml.DATA_MAX


def test_oversized_frame_closes_only_that_connection(ws):
    h, d, c = ws
    other = h.client()
    other.check(OP_GETATTR, path="/workspace")
    # (a first frame of 16 MiB or more would start with a non-zero byte and
    # be taken for a native HELLO: this connection is a matchlock one first)
    c.check(OP_GETATTR, path="/workspace")
    rss = _rss_kib(h.daemon.pid)
    c.send_raw(struct.pack(">I", 0xFFFFFFF0))
    assert c.sock.recv(16) == b""  # closed, nothing allocated or read
    helpers.poll_until(lambda: "over the limit" in h.stderr(), what="the log line")
    assert _rss_kib(h.daemon.pid) < rss + 64 * 1024
    c2 = h.client()
    c2.send_raw(struct.pack(">I", ml.REQUEST_MAX + 1))
    assert c2.sock.recv(16) == b""
    assert other.check(OP_GETATTR, path="/workspace")["stat"]["is_dir"]
    lines = [l for l in h.stderr().splitlines() if "over the limit" in l]
    assert len(lines) == 2, lines
    other.close()


def test_first_frame_has_the_hellos_deadline(host_factory):
    """A connection whose first byte is 0 is matchlock's: its first frame
    must be complete within the native HELLO's 10 s, or it is closed.
    Idle ones would otherwise hold every session slot.  Later frames have
    no deadline (a guest may stay idle between requests)."""
    h = host_factory({"/workspace": ""}, extra_args=["--max-sessions", "3"])
    silent, trickle, good = h.client(), h.client(), h.client()
    start = time.monotonic()
    silent.send_raw(b"\x00")                                   # one byte of a length
    trickle.send_raw(struct.pack(">I", 64) + b"\xa1")           # a header, 1 of 64 bytes
    good.check(OP_GETATTR, path="/workspace")                  # first frame in time
    # A byte every 1.5 s, for longer than the limit and more: a limit per
    # byte would never cut it off (the frame needs 63).
    for _ in range(16):
        time.sleep(1.5)
        try:
            trickle.send_raw(b"\x00")
        except (BrokenPipeError, ConnectionResetError):
            break
    else:
        pytest.fail("a first frame trickled for 24 s was never cut off")
    for c in (silent, trickle):
        c.sock.settimeout(15)
        try:
            assert c.sock.recv(16) == b""
        except ConnectionResetError:
            pass
    took = time.monotonic() - start
    # (no upper bound: how late the close is seen depends on the load)
    assert took > 9, f"closed after {took:.1f} s"
    assert "no complete first frame" in h.stderr()
    # The slots are free again; the connection that spoke in time lives on.
    with h.client() as again:
        assert again.check(OP_GETATTR, path="/workspace")["stat"]["is_dir"]
    assert good.check(OP_GETATTR, path="/workspace")["stat"]["is_dir"]
    good.close()
    silent.close()
    trickle.close()


def test_largest_frames_and_read_size(ws):
    _, d, c = ws
    fh = c.check(OP_CREATE, path="/workspace/big", mode=0o644)["fh"]
    blob = os.urandom(ml.DATA_MAX)
    assert c.check(OP_WRITE, fh=fh, data=blob)["written"] == ml.DATA_MAX
    assert c.check(OP_WRITE, fh=fh, off=ml.DATA_MAX, data=blob)["written"] == ml.DATA_MAX
    r = c.check(OP_READ, fh=fh, off=0, sz=0xFFFFFFFF)  # served short, at most 1 MiB
    assert r["data"] == blob
    # a payload over the limit in a frame under it: refused, connection kept
    expect_err(c, errno.EINVAL, OP_WRITE, fh=fh, data=blob + b"x")
    assert (d / "big").stat().st_size == 2 * ml.DATA_MAX


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


MALFORMED = {
    "not cbor": b"\xff\xff\xff",
    "empty body": b"",
    "not a map": cbor2.dumps([0, "/workspace"]),
    "op as text": cbor2.dumps({"op": "0", "path": "/workspace"}),
    "path as bytes": cbor2.dumps({"op": 0, "path": b"/workspace"}),
    "fh negative": cbor2.dumps({"op": 3, "fh": -1, "sz": 1}),
    "sz over 32 bits": cbor2.dumps({"op": 3, "fh": 1, "sz": 1 << 32}),
    # (an op over 8 bits is an unknown op: ENOSYS, see below)
    "float mode": cbor2.dumps({"op": 2, "path": "/workspace", "mode": 1.5}),
    "NUL in path": cbor2.dumps({"op": 0, "path": "/workspace/a\0b"}),
    "indefinite map": bytes.fromhex("bf626f7000ff"),
    "indefinite text": bytes.fromhex("a2626f70006470617468" "7f612fff"),
    "tag": bytes.fromhex("c1a1626f7000"),
    "trailing bytes": cbor2.dumps({"op": 0}) + b"\x00",
    "truncated": cbor2.dumps({"op": 0, "path": "/workspace"})[:-3],
    "duplicate key": bytes.fromhex("a2626f7000626f7001"),
    "huge text length": bytes.fromhex("a16470617468" "7bffffffffffffffff"),
    "deep nesting": bytes.fromhex("a1627a7a" + "81" * 20 + "00"),
}


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_malformed_request_is_einval_and_connection_goes_on(ws, what):
    h, d, c = ws
    r = c.call_body(MALFORMED[what])
    assert r == {"err": -errno.EINVAL}
    assert c.check(OP_GETATTR, path="/workspace")["stat"]["is_dir"]


def test_unknown_keys_ignored_missing_keys_zero(ws):
    _, d, c = ws
    (d / "f").write_bytes(b"x")
    body = cbor2.dumps({"future": {"nested": [1, 2.5, None]}, "op": 0, "path": "/workspace/f"})
    assert c.call_body(body)["stat"]["size"] == 1
    assert err_of(c.call_body(cbor2.dumps({}))) == errno.EINVAL  # Lookup of "": not absolute


@pytest.mark.parametrize("op", [19, 20, 100, 255])
def test_unknown_opcodes_get_enosys(ws, op):
    _, d, c = ws
    assert c.call_body(cbor2.dumps({"op": op, "path": "/workspace"})) == {"err": -errno.ENOSYS}


@pytest.mark.parametrize("body", [
    {"op": 256}, {"op": 300, "path": "/workspace"}, {"op": 2**40},
    {"op": 19, "path": 5}, {"op": 19, "data": "text"}, {"op": 200, "fh": -1, "sz": -5},
    {"future": {"a": [1]}, "op": 64, "mode": "rwx"},
], ids=["256", "300", "2^40", "19-path-int", "19-data-text", "200-negative", "64-mode-text"])
def test_unknown_opcodes_get_enosys_whatever_their_fields(ws, body):
    """An opcode fsbridged does not know is ENOSYS (matchlock's server's
    answer, which clients probe features by) even when its other fields do
    not fit fsbridged's schema: a newer op may carry fields of its own."""
    _, d, c = ws
    assert c.call_body(cbor2.dumps(body)) == {"err": -errno.ENOSYS}
    # A known opcode with a bad field is still EINVAL.
    assert c.call_body(cbor2.dumps({"op": 0, "path": 5})) == {"err": -errno.EINVAL}
    assert c.call_body(cbor2.dumps({"path": 5})) == {"err": -errno.EINVAL}


def test_handles_belong_to_their_connection(ws):
    h, d, c = ws
    (d / "f").write_bytes(b"mine")
    fh = c.check(OP_OPEN, path="/workspace/f")["fh"]
    with h.client() as other:
        expect_err(other, errno.EBADF, OP_READ, fh=fh, sz=4)
        expect_err(other, errno.EBADF, OP_RELEASE, fh=fh)
    assert c.check(OP_READ, fh=fh, sz=4)["data"] == b"mine"


def test_dropped_connection_frees_its_handles(ws):
    h, d, c = ws
    for i in range(40):
        (d / f"f{i}").write_bytes(b"x")
    (d / "dir").mkdir()
    baseline = helpers.settled_fd_count(h.daemon.pid)
    victim = h.client()
    for i in range(40):
        victim.check(OP_OPEN, path=f"/workspace/f{i}", flags=os.O_RDWR)
    victim.check(OP_OPEN, path="/workspace/dir")
    victim.check(OP_CREATE, path="/workspace/new", mode=0o644)
    assert helpers.fd_count(h.daemon.pid) >= baseline + 42
    victim.close()  # without a single Release
    helpers.poll_until(lambda: helpers.fd_count(h.daemon.pid) <= baseline,
                       what=f"fd count back to {baseline} "
                            f"(now {helpers.fd_count(h.daemon.pid)})")
    assert "session" in h.stderr() and "ended" in h.stderr()


def test_concurrent_connections(ws):
    h, d, c = ws
    errors = []

    def worker(n):
        try:
            with h.client() as w:
                name = f"/workspace/t{n}"
                fh = w.check(OP_CREATE, path=name, mode=0o644)["fh"]
                for i in range(50):
                    w.check(OP_WRITE, fh=fh, off=i * 10, data=f"{n:04d}:{i:04d}\n".encode())
                    w.check(OP_LOOKUP, path=name)
                w.check(OP_RELEASE, fh=fh)
        except Exception as e:  # reported below
            errors.append(f"{n}: {e!r}")

    # one idle connection must not hold the others up
    idle = h.client()
    idle.send_raw(b"\x00\x00")  # half a frame header, then nothing
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    for n in range(8):
        want = b"".join(f"{n:04d}:{i:04d}\n".encode() for i in range(50))
        assert (d / f"t{n}").read_bytes() == want
    idle.close()


def test_max_sessions_bounds_connections(host_factory):
    h = host_factory({"/workspace": ""}, extra_args=["--max-sessions", "2"])
    a, b = h.client(), h.client()
    a.check(OP_GETATTR, path="/workspace")
    b.check(OP_GETATTR, path="/workspace")
    third = h.client()
    with pytest.raises((ml.Closed, ConnectionError)):
        third.call(OP_GETATTR, path="/workspace")
    a.close()
    helpers.poll_until(lambda: _try_getattr(h), what="a slot freed by a closed connection")
    b.close()


def _try_getattr(h):
    try:
        with h.client() as c:
            return c.call(OP_GETATTR, path="/workspace")["err"] == 0
    except (ml.Closed, ConnectionError):
        return False


# --------------------------------------------------------------------------
# exports by guest path prefix


def test_export_prefix_mapping(host_factory):
    h = host_factory({"/a": "", "/a/b": "", "/c/d/e": "", "plain": ""})
    a, ab, cde, plain = (h.dirs[k] for k in ("/a", "/a/b", "/c/d/e", "plain"))
    (a / "x").write_bytes(b"in a")
    (a / "b").mkdir()
    (a / "b" / "hidden").write_bytes(b"shadowed")
    (ab / "x").write_bytes(b"in a/b")
    (plain / "p").write_bytes(b"plain")
    with h.client() as c:
        # longest prefix wins
        assert c.check(OP_LOOKUP, path="/a/x")["stat"]["size"] == 4
        assert c.check(OP_LOOKUP, path="/a/b/x")["stat"]["size"] == 6
        expect_err(c, errno.ENOENT, OP_LOOKUP, path="/a/b/hidden")
        assert c.check(OP_LOOKUP, path="/plain/p")["stat"]["size"] == 5
        # directories above export points are synthesized
        for p in ("/", "/c", "/c/d"):
            st = c.check(OP_GETATTR, path=p)["stat"]
            assert st["is_dir"] and st["mode"] == ml.GO_DIR | 0o755, p
        root = {e["name"] for e in c.check(OP_READDIR, path="/")["entries"]}
        assert root == {"a", "c", "plain"}
        assert [e["name"] for e in c.check(OP_READDIR, path="/c")["entries"]] == ["d"]
        inside_a = {e["name"]: e for e in c.check(OP_READDIR, path="/a")["entries"]}
        assert set(inside_a) == {"x", "b"}  # the export point b, once
        assert inside_a["b"]["ino"] == c.check(OP_LOOKUP, path="/a/b")["stat"]["ino"]
        fh = c.check(OP_OPEN, path="/c/d")["fh"]
        c.check(OP_RELEASE, fh=fh)
        # outside every export: ENOENT
        for p in ("/z", "/c/x", "/c/d/x", "/ab"):
            expect_err(c, errno.ENOENT, OP_LOOKUP, path=p)
        # across exports: EXDEV
        expect_err(c, errno.EXDEV, OP_RENAME, path="/a/x", new_path="/a/b/y")
        expect_err(c, errno.EXDEV, OP_LINK, path="/a/x", new_path="/plain/y")
        # export points and synthesized directories stay put
        expect_err(c, errno.EBUSY, OP_RMDIR, path="/a/b")
        expect_err(c, errno.EBUSY, OP_RENAME, path="/c/d", new_path="/c/q")
        expect_err(c, errno.EXDEV, OP_RENAME, path="/a/x", new_path="/a/b")  # onto a mount
        (cde / "f").touch()
        expect_err(c, errno.EBUSY, OP_RENAME, path="/c/d/e/f", new_path="/c/d/e")
        expect_err(c, errno.EEXIST, OP_MKDIR, path="/c", mode=0o755)
        expect_err(c, errno.EROFS, OP_CREATE, path="/c/new", mode=0o644)
        expect_err(c, errno.EROFS, OP_SETATTR, path="/c", mode=0o777)
        expect_err(c, errno.ENOENT, OP_CREATE, path="/z/new", mode=0o644)
        c.check(OP_RENAME, path="/a/b/x", new_path="/a/b/y")
        assert (ab / "y").exists() and (a / "x").exists()


def test_root_export_takes_every_path(host_factory):
    h = host_factory({"/": "", "/mnt/data": ""})
    (h.dirs["/"] / "etc").mkdir()
    (h.dirs["/mnt/data"] / "d").write_bytes(b"d")
    with h.client() as c:
        assert c.check(OP_LOOKUP, path="/etc")["stat"]["is_dir"]
        assert c.check(OP_LOOKUP, path="/mnt/data/d")["stat"]["size"] == 1
        # /mnt is not in "/"'s directory: synthesized, as above any export point
        assert c.check(OP_LOOKUP, path="/mnt")["stat"]["mode"] == ml.GO_DIR | 0o755
        assert {e["name"] for e in c.check(OP_READDIR, path="/")["entries"]} == {"etc", "mnt"}
        assert [e["name"] for e in c.check(OP_READDIR, path="/mnt")["entries"]] == ["data"]
        expect_err(c, errno.ENOENT, OP_LOOKUP, path="/mnt/other")


def test_readonly_export(host_factory):
    h = host_factory({"/workspace": "", "/ro": "ro"})
    ro = h.dirs["/ro"]
    (ro / "f").write_bytes(b"read me")
    (ro / "d").mkdir()
    with h.client() as c:
        fh = c.check(OP_OPEN, path="/ro/f")["fh"]
        assert c.check(OP_READ, fh=fh, sz=100)["data"] == b"read me"
        expect_err(c, errno.EBADF, OP_WRITE, fh=fh, data=b"x")
        expect_err(c, errno.EROFS, OP_TRUNCATE, fh=fh, off=0)
        assert c.check(OP_READDIR, path="/ro")["entries"]
        c.check(OP_MKDIR_ALL, path="/ro/d", mode=0o755)  # exists: fine
        refused = [
            (OP_OPEN, dict(path="/ro/f", flags=os.O_WRONLY)),
            (OP_OPEN, dict(path="/ro/f", flags=os.O_RDONLY | os.O_TRUNC)),
            (OP_CREATE, dict(path="/ro/new", mode=0o644)),
            (OP_SETATTR, dict(path="/ro/f", mode=0o777)),
            (OP_MKDIR, dict(path="/ro/nd", mode=0o755)),
            (OP_MKDIR_ALL, dict(path="/ro/x/y", mode=0o755)),
            (OP_UNLINK, dict(path="/ro/f")),
            (OP_RMDIR, dict(path="/ro/d")),
            (OP_RENAME, dict(path="/ro/f", new_path="/ro/g")),
            (OP_TRUNCATE, dict(path="/ro/f", off=0)),
            (OP_SYMLINK, dict(path="/ro/ln", new_path="f")),
            (OP_LINK, dict(path="/ro/f", new_path="/ro/hard")),
        ]
        for op, fields in refused:
            expect_err(c, errno.EROFS, op, **fields)
        expect_err(c, errno.EXDEV, OP_RENAME, path="/ro/f", new_path="/workspace/f")
    assert sorted(os.listdir(ro)) == ["d", "f"] and (ro / "f").read_bytes() == b"read me"


def test_export_name_checks(fsb_workdir, build_dir):
    d = fsb_workdir / "x"
    d.mkdir()
    for name in ("/a//b", "/a/", "/a/./b", "/a/../b", "/a,b"):
        r = helpers.run([str(build_dir / "fsbridged"), "--export", f"{name}={d}",
                         "--listen", f"unix:{fsb_workdir}/n.sock"], check=False, timeout=10)
        assert r.returncode != 0 and "bad name" in r.stderr, (name, r.stderr)
    r = helpers.run([str(build_dir / "fsbridged"), "--export", f"w={d}", "--export",
                     f"/w={d}", "--listen", f"unix:{fsb_workdir}/n.sock"], check=False,
                    timeout=10)
    assert r.returncode != 0 and "given twice" in r.stderr


# --------------------------------------------------------------------------
# inode numbers


def test_inode_numbers_stable_and_unique(ws):
    _, d, c = ws
    for n in ("a", "b", "c"):
        (d / n).touch()
    inos = [c.check(OP_LOOKUP, path=f"/workspace/{n}")["stat"]["ino"] for n in "abc"]
    assert len(set(inos)) == 3 and not set(inos) & {0, 1}
    again = [c.check(OP_GETATTR, path=f"/workspace/{n}")["stat"]["ino"] for n in "abc"]
    assert inos == again
    c.check(OP_RENAME, path="/workspace/a", new_path="/workspace/z")
    assert c.check(OP_LOOKUP, path="/workspace/z")["stat"]["ino"] == inos[0]
    with ml.Client.connect(c.sock.getpeername()) as other:  # and across connections
        assert other.check(OP_LOOKUP, path="/workspace/b")["stat"]["ino"] == inos[1]
    root = c.check(OP_GETATTR, path="/workspace")["stat"]["ino"]
    assert root not in (0, 1) and root == ml.matchlock_ino(d.stat())


# --------------------------------------------------------------------------
# both protocols on one listener


def test_native_clients_still_served_beside_matchlock(fsb_workdir, daemon_factory,
                                                      mount_factory):
    d = fsb_workdir / "share"
    d.mkdir()
    daemon = daemon_factory([f"share={d}"])
    with ml.Client.connect(daemon.socket) as c:
        c.check(OP_CREATE, path="/share/from-matchlock", mode=0o644)
        m = mount_factory(daemon, options=["export=share"])
        assert os.path.exists(m.path / "from-matchlock")
        (m.path / "from-native").write_bytes(b"n")
        assert c.check(OP_LOOKUP, path="/share/from-native")["stat"]["size"] == 1
        m.umount()


def test_requests_hold_nothing_between_them(ws):
    """Each request's lookups are forgotten: thousands of them leave no fds."""
    h, d, c = ws
    for i in range(300):
        (d / f"f{i}").write_bytes(b"x")
    c.check(OP_GETATTR, path="/workspace")
    baseline = helpers.settled_fd_count(h.daemon.pid)
    for _ in range(3):
        for i in range(300):
            c.check(OP_LOOKUP, path=f"/workspace/f{i}")
        c.check(OP_READDIR, path="/workspace")
    assert helpers.fd_count(h.daemon.pid) <= baseline


def test_sigterm_ends_open_matchlock_connections(host_factory):
    h = host_factory({"/workspace": ""})
    busy, idle = h.client(), h.client()
    fh = busy.check(OP_CREATE, path="/workspace/f", mode=0o644)["fh"]
    busy.check(OP_WRITE, fh=fh, data=b"x")
    idle.send_raw(b"\x00\x00\x00")  # inside a frame header
    h.daemon.stop(expect_rc=0)  # within its time limit, exit 0
    with pytest.raises((ml.Closed, ConnectionError)):
        busy.call(OP_GETATTR, path="/workspace")
    busy.close()
    idle.close()
