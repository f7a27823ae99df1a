"""
mlproto.py - matchlock's VFS protocol in Python, for tests.

Framing (4-byte big-endian length + one CBOR map), request and response
encoding in matchlock's key order with its omit-when-zero rules (so the
bytes equal what matchlock's Go encoder writes), Go os.FileMode <-> Unix
mode, a blocking client and a one-connection server loop.  Uses cbor2 from
Debian (python3-cbor2).  docs/matchlock.md is the protocol description.

    c = Client.connect("/tmp/d.sock")
    r = c.call(OP_LOOKUP, path="/workspace/a")   # -> dict, r["err"] == 0
    st = r["stat"]; unix_mode_from_go(st["mode"])
"""

import errno
import os
import socket
import stat as statmod
import struct

import cbor2

# --------------------------------------------------------------------------
# opcodes

OP_LOOKUP = 0
OP_GETATTR = 1
OP_SETATTR = 2
OP_READ = 3
OP_WRITE = 4
OP_CREATE = 5
OP_MKDIR = 6
OP_UNLINK = 7
OP_RMDIR = 8
OP_RENAME = 9
OP_OPEN = 10
OP_RELEASE = 11
OP_READDIR = 12
OP_FSYNC = 13
OP_MKDIR_ALL = 14
OP_TRUNCATE = 15
OP_SYMLINK = 16
OP_READLINK = 17
OP_LINK = 18

OP_NAMES = {v: k[3:].lower() for k, v in dict(globals()).items() if k.startswith("OP_")}

# Keys in the order matchlock's Go structs declare them (and so encode them).
# After matchlock's own keys come fsbridge's additions (docs/matchlock.md):
# the Setattr extension in requests, more attributes in `stat`.
REQUEST_KEYS = ("op", "path", "new_path", "fh", "off", "sz", "data", "flags", "mode",
                "uid", "gid",
                "set", "owner_uid", "owner_gid", "atime", "atime_nsec", "mtime", "mtime_nsec")
RESPONSE_KEYS = ("err", "stat", "data", "written", "fh", "entries")
STAT_KEYS = ("size", "mode", "mtime", "is_dir", "ino", "uid", "gid",
             "nlink", "atime", "atime_nsec", "mtime_nsec", "ctime", "ctime_nsec", "blocks",
             "rdev")
STAT_ALWAYS = ("size", "mode", "mtime", "is_dir")
DIRENT_KEYS = ("name", "is_dir", "mode", "size", "ino")
DIRENT_ALWAYS = ("name", "is_dir", "mode", "size")

# Setattr extension: which attributes `set` asks for (ML_SET_* in ml_codec.h).
SET_MODE = 1 << 0
SET_UID = 1 << 1
SET_GID = 1 << 2
SET_SIZE = 1 << 3
SET_ATIME = 1 << 4
SET_MTIME = 1 << 5
SET_ATIME_NOW = 1 << 6
SET_MTIME_NOW = 1 << 7

HEADER_SIZE = 4
DATA_MAX = 1024 * 1024          # ML_DATA_MAX in src/matchlock/ml_codec.h
PATH_MAX = 4096
PREFIX_MAX = 256                # ML_PREFIX_MAX: "/" and a 255-byte export name
PATH_LONGEST = PREFIX_MAX + 1 + PATH_MAX - 1  # ML_PATH_MAX: PATH_MAX - 1 below a prefix
REQUEST_MAX = DATA_MAX + 2 * (PATH_LONGEST + 1) + 256   # ML_REQUEST_MAX
RESPONSE_MAX = 16 * 1024 * 1024               # ML_RESPONSE_MAX

# --------------------------------------------------------------------------
# Go os.FileMode

GO_DIR = 0x80000000
GO_SYMLINK = 0x08000000
GO_DEVICE = 0x04000000
GO_NAMED_PIPE = 0x02000000
GO_SOCKET = 0x01000000
GO_SETUID = 0x00800000
GO_SETGID = 0x00400000
GO_CHAR_DEVICE = 0x00200000
GO_STICKY = 0x00100000
GO_IRREGULAR = 0x00080000
GO_TYPE = (GO_DIR | GO_SYMLINK | GO_NAMED_PIPE | GO_SOCKET | GO_DEVICE | GO_CHAR_DEVICE
           | GO_IRREGULAR)

_TYPES = [
    (statmod.S_IFDIR, GO_DIR),
    (statmod.S_IFLNK, GO_SYMLINK),
    (statmod.S_IFIFO, GO_NAMED_PIPE),
    (statmod.S_IFSOCK, GO_SOCKET),
    (statmod.S_IFBLK, GO_DEVICE),
    (statmod.S_IFCHR, GO_DEVICE | GO_CHAR_DEVICE),
    (statmod.S_IFREG, 0),
]
_SPECIAL = [(statmod.S_ISUID, GO_SETUID), (statmod.S_ISGID, GO_SETGID),
            (statmod.S_ISVTX, GO_STICKY)]


def go_mode_from_unix(mode):
    """Unix st_mode -> Go os.FileMode (what `stat.mode` carries)."""
    out = mode & 0o777
    fmt = statmod.S_IFMT(mode)
    for unix_type, go in _TYPES:
        if fmt == unix_type:
            out |= go
            break
    else:
        out |= GO_IRREGULAR
    for unix_bit, go in _SPECIAL:
        if mode & unix_bit:
            out |= go
    return out


def unix_mode_from_go(go_mode):
    """Go os.FileMode -> Unix st_mode."""
    out = go_mode & 0o777
    kind = go_mode & GO_TYPE
    for unix_type, go in _TYPES:
        if go and kind & go == go and (go != GO_DEVICE or not kind & GO_CHAR_DEVICE):
            out |= unix_type
            break
    else:
        out |= statmod.S_IFREG
    for unix_bit, go in _SPECIAL:
        if go_mode & go:
            out |= unix_bit
    return out


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def matchlock_ino(st):
    """The inode number matchlock's server reports for an os.stat_result."""
    h = fnv1a64(struct.pack(">QQ", st.st_dev, st.st_ino))
    return h + 2 if h in (0, 1) else h


def stat_map(st, ino=None, owner=False):
    """A `stat` map for an os.stat_result, as matchlock's server builds it."""
    m = {"size": st.st_size, "mode": go_mode_from_unix(st.st_mode),
         "mtime": int(st.st_mtime), "is_dir": statmod.S_ISDIR(st.st_mode),
         "ino": matchlock_ino(st) if ino is None else ino}
    if owner:
        m["uid"] = st.st_uid
        m["gid"] = st.st_gid
    return m


def dirent_map(name, st, ino=None):
    """An `entries` element for a name and its (lstat) os.stat_result."""
    return {"name": name, "is_dir": statmod.S_ISDIR(st.st_mode),
            "mode": go_mode_from_unix(st.st_mode) & GO_TYPE, "size": st.st_size,
            "ino": matchlock_ino(st) if ino is None else ino}


# --------------------------------------------------------------------------
# encoding: matchlock's key order, zero values omitted (omitempty)


def _is_zero(v):
    return v is None or v is False or v == 0 or v == "" or v == b"" or v == [] or v == {}


def _ordered(fields, keys, always=()):
    unknown = set(fields) - set(keys)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    return {k: fields[k] for k in keys
            if k in fields and (k in always or not _is_zero(fields[k]))}


def request_map(op, **fields):
    return _ordered(dict(op=op, **fields), REQUEST_KEYS, always=("op",))


def response_map(err=0, **fields):
    m = _ordered(dict(err=err, **fields), RESPONSE_KEYS, always=("err",))
    if "stat" in m:
        m["stat"] = _ordered(m["stat"], STAT_KEYS, always=STAT_ALWAYS)
    if "entries" in m:
        m["entries"] = [_ordered(e, DIRENT_KEYS, always=DIRENT_ALWAYS) for e in m["entries"]]
    return m


def encode_request(op, **fields):
    """The CBOR body of a request (no length header)."""
    return cbor2.dumps(request_map(op, **fields))


def encode_response(err=0, **fields):
    """The CBOR body of a response (no length header)."""
    return cbor2.dumps(response_map(err, **fields))


def frame(body):
    return struct.pack(">I", len(body)) + body


# --------------------------------------------------------------------------
# socket I/O


class Closed(Exception):
    """The peer closed the connection (between or inside frames)."""


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise Closed(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock, limit=RESPONSE_MAX):
    """One frame body; raises Closed at end of stream, ValueError over limit."""
    (n,) = struct.unpack(">I", recv_exact(sock, HEADER_SIZE))
    if n > limit:
        raise ValueError(f"frame of {n} bytes over the limit {limit}")
    return recv_exact(sock, n)


def send_frame(sock, body):
    sock.sendall(frame(body))


class Client:
    """A blocking matchlock client on one connection."""

    def __init__(self, sock):
        self.sock = sock

    @classmethod
    def connect(cls, path, timeout=10.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(str(path))
        return cls(s)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self):
        return cbor2.loads(recv_frame(self.sock))

    def call(self, op, **fields):
        """Send one request, return the decoded response dict."""
        send_frame(self.sock, encode_request(op, **fields))
        return self.recv()

    def call_body(self, body):
        """Send a raw CBOR body in a correct frame, return the response dict."""
        send_frame(self.sock, body)
        return self.recv()

    def check(self, op, **fields):
        """call(), raising OSError(errno) when the response has err != 0."""
        r = self.call(op, **fields)
        if r.get("err", 0) != 0:
            e = -r["err"]
            raise OSError(e, f"{OP_NAMES.get(op, op)} {fields.get('path', '')}: "
                             f"{os.strerror(e)}")
        return r


def serve_connection(sock, handler, limit=REQUEST_MAX):
    """Server side: read requests until the peer closes; answer each with
    handler(request_dict) -> response dict (passed through response_map)."""
    try:
        while True:
            req = cbor2.loads(recv_frame(sock, limit))
            resp = handler(req)
            send_frame(sock, cbor2.dumps(response_map(**resp)))
    except (Closed, ConnectionError):
        pass


def errno_response(e):
    """{"err": -errno} for an OSError or an errno number."""
    code = e.errno if isinstance(e, OSError) else int(e)
    return {"err": -(code or errno.EIO)}
