"""
fuse_client.py - a raw fsbridge stream client, stdlib only.

It speaks exactly what a hostile guest could send: the HELLO of
src/transport/stream_hello.h, then FUSE messages built by hand from the
structs of <linux/fuse.h>.  Nothing here goes through a kernel, so the tests
can send forged node ids, short bodies, bogus lengths and raw garbage, and
look at every reply byte.

    c = FuseClient(socket_path, export="data")   # connect + HELLO + INIT
    j = FuseClient(socket_path, export="data", join=c.token)  # same session
    err, entry = c.lookup(1, b"file")
    err, data = c.read(fh, 0, 4096)
    c.raw_frame(b"\\x00" * 12)                    # any bytes at all

Replies are matched by `unique`; notifications (unique 0) are ignored.
Errors are returned as positive errno values (0 = success).
"""

import errno
import os
import socket
import struct

# --- HELLO (src/transport/stream_hello.h) --------------------------------
MAGIC = b"FSBR"
STREAM_VERSION = 7
HELLO_JOIN = 0x01                # HELLO flags (byte 7), version 2
HELLO_CPU = 0x02                 # version 3: bytes 14-15 name a CPU
TOKEN_SIZE = 16
TERMS_FMT = "<II"                # version 4: features, open flags
TERMS_PUSHES = 0x1
TERMS_LAZY_OPEN = 0x2
TERMS_QUIET_CLOSE = 0x4
TERMS_NO_OPEN = 0x8              # version 5
LAZY_FH = 1 << 63
NOTIFY_ATTRS = 0x4642            # version 4: an attribute note, for the relay
ATTR_NOTE = struct.Struct("<QQQI4x")  # nodeid, unique, attr_valid(_nsec); fuse_attr follows
NOTIFY_EMPTY_DIR = 0x4643        # version 6: a new directory is empty and watched
EMPTY_DIR_NOTE = struct.Struct("<QQQII")  # nodeid, unique, entry_valid(_nsec), flags
EMPTY_DIR_BOUNDED = 0x1          # version 7: the note holds for its timeout only
BYTE_ORDER_LE = 1
BYTE_ORDER_BE = 2
HELLO_FMT = "<4sHBBIHH"          # 16 bytes
HELLO_REPLY_FMT = "<4sHHII"      # 16 bytes
MAX_FRAME = 1024 * 1024 + 4096

# --- <linux/fuse.h> ------------------------------------------------------
FUSE_KERNEL_VERSION = 7
FUSE_KERNEL_MINOR_VERSION = 38
FUSE_ROOT_ID = 1

FUSE_LOOKUP = 1
FUSE_FORGET = 2
FUSE_GETATTR = 3
FUSE_SETATTR = 4
FUSE_READLINK = 5
FUSE_SYMLINK = 6
FUSE_MKNOD = 8
FUSE_MKDIR = 9
FUSE_UNLINK = 10
FUSE_RMDIR = 11
FUSE_RENAME = 12
FUSE_LINK = 13
FUSE_OPEN = 14
FUSE_READ = 15
FUSE_WRITE = 16
FUSE_STATFS = 17
FUSE_RELEASE = 18
FUSE_FSYNC = 20
FUSE_SETXATTR = 21
FUSE_GETXATTR = 22
FUSE_LISTXATTR = 23
FUSE_REMOVEXATTR = 24
FUSE_FLUSH = 25
FUSE_INIT = 26
FUSE_OPENDIR = 27
FUSE_READDIR = 28
FUSE_RELEASEDIR = 29
FUSE_GETLK = 31
FUSE_SETLK = 32
FUSE_ACCESS = 34
FUSE_CREATE = 35
FUSE_INTERRUPT = 36
FUSE_DESTROY = 38
FUSE_BATCH_FORGET = 42
FUSE_READDIRPLUS = 44
FUSE_RENAME2 = 45

# INIT flags (the set a 6.x kernel typically offers; low 32 bits / flags2)
FUSE_ASYNC_READ = 1 << 0
FUSE_POSIX_LOCKS = 1 << 1
FUSE_ATOMIC_O_TRUNC = 1 << 3
FUSE_EXPORT_SUPPORT = 1 << 4
FUSE_BIG_WRITES = 1 << 5
FUSE_DONT_MASK = 1 << 6
FUSE_FLOCK_LOCKS = 1 << 10
FUSE_AUTO_INVAL_DATA = 1 << 12
FUSE_DO_READDIRPLUS = 1 << 13
FUSE_READDIRPLUS_AUTO = 1 << 14
FUSE_ASYNC_DIO = 1 << 15
FUSE_WRITEBACK_CACHE = 1 << 16
FUSE_NO_OPEN_SUPPORT = 1 << 17
FUSE_PARALLEL_DIROPS = 1 << 18
FUSE_HANDLE_KILLPRIV = 1 << 19
FUSE_POSIX_ACL = 1 << 20
FUSE_ABORT_ERROR = 1 << 21
FUSE_MAX_PAGES = 1 << 22
FUSE_CACHE_SYMLINKS = 1 << 23
FUSE_HANDLE_KILLPRIV_V2 = 1 << 28
FUSE_SETXATTR_EXT = 1 << 29
FUSE_INIT_EXT = 1 << 30

KERNEL_INIT_FLAGS = (FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_ATOMIC_O_TRUNC
                     | FUSE_EXPORT_SUPPORT | FUSE_BIG_WRITES | FUSE_DONT_MASK
                     | FUSE_FLOCK_LOCKS | FUSE_AUTO_INVAL_DATA
                     | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO
                     | FUSE_ASYNC_DIO | FUSE_WRITEBACK_CACHE
                     | FUSE_PARALLEL_DIROPS | FUSE_HANDLE_KILLPRIV
                     | FUSE_POSIX_ACL | FUSE_ABORT_ERROR | FUSE_MAX_PAGES
                     | FUSE_CACHE_SYMLINKS | FUSE_HANDLE_KILLPRIV_V2
                     | FUSE_SETXATTR_EXT | FUSE_INIT_EXT)

FATTR_MODE = 1 << 0
FATTR_UID = 1 << 1
FATTR_GID = 1 << 2
FATTR_SIZE = 1 << 3
FATTR_ATIME = 1 << 4
FATTR_MTIME = 1 << 5
FATTR_FH = 1 << 6
FATTR_ATIME_NOW = 1 << 7
FATTR_MTIME_NOW = 1 << 8
FATTR_CTIME = 1 << 10   # a writeback-cache guest's own time update

IN_HEADER = struct.Struct("<IIQQIIIHH")     # fuse_in_header, 40 bytes
OUT_HEADER = struct.Struct("<iiQ")          # fuse_out_header, 16 bytes
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")   # fuse_attr, 88 bytes
ENTRY_OUT = struct.Struct("<QQQQII")        # + fuse_attr = 128 bytes
ATTR_OUT = struct.Struct("<QII")            # + fuse_attr = 104 bytes
INIT_IN = struct.Struct("<IIIII44x")        # fuse_init_in (7.36+), 64 bytes
INIT_IN_31 = struct.Struct("<IIII")         # fuse_init_in before 7.36, 16
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")  # fuse_init_out, 64 bytes
GETATTR_IN = struct.Struct("<IIQ")
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")  # 88 bytes
OPEN_IN = struct.Struct("<II")
OPEN_OUT = struct.Struct("<QII")
CREATE_IN = struct.Struct("<IIII")
READ_IN = struct.Struct("<QQIIQII")         # 40 bytes
WRITE_IN = struct.Struct("<QQIIQII")        # 40 bytes
WRITE_OUT = struct.Struct("<II")
RELEASE_IN = struct.Struct("<QIIQ")         # 24 bytes
MKNOD_IN = struct.Struct("<IIII")
MKDIR_IN = struct.Struct("<II")
LINK_IN = struct.Struct("<Q")
RENAME_IN = struct.Struct("<Q")
RENAME2_IN = struct.Struct("<QII")
FORGET_IN = struct.Struct("<Q")
BATCH_FORGET_IN = struct.Struct("<II")
FORGET_ONE = struct.Struct("<QQ")
SETXATTR_IN = struct.Struct("<IIII")        # with FUSE_SETXATTR_EXT
SETXATTR_IN_COMPAT = struct.Struct("<II")
GETXATTR_IN = struct.Struct("<II")
GETXATTR_OUT = struct.Struct("<II")
FLUSH_IN = struct.Struct("<QIIQ")           # fh, unused, padding, lock_owner
LK_IN = struct.Struct("<QQQQIIII")          # fh, owner, fuse_file_lock, lk_flags
LK_OUT = struct.Struct("<QQII")             # fuse_file_lock: start, end, type, pid

ATTR_FIELDS = ("ino", "size", "blocks", "atime", "mtime", "ctime",
               "atimensec", "mtimensec", "ctimensec", "mode", "nlink",
               "uid", "gid", "rdev", "blksize", "flags")


class ConnectionClosed(Exception):
    """The server closed the stream (EOF or reset)."""


class HelloRefused(Exception):
    def __init__(self, status):
        super().__init__("HELLO refused: status %d (%s)"
                         % (status, os.strerror(status) if status < 200 else "?"))
        self.status = status


def parse_attr(buf, off=0):
    return dict(zip(ATTR_FIELDS, ATTR.unpack_from(buf, off)))


def parse_entry(payload):
    """fuse_entry_out -> dict(nodeid, generation, attr=dict)."""
    nodeid, gen, ev, _av, _evn, _avn = ENTRY_OUT.unpack_from(payload, 0)
    return {"nodeid": nodeid, "generation": gen, "entry_valid": ev,
            "attr": parse_attr(payload, ENTRY_OUT.size)}


def hello_bytes(export="", version=STREAM_VERSION, byte_order=BYTE_ORDER_LE,
                max_frame=MAX_FRAME, magic=MAGIC, name_len=None, flags=None,
                join=None, cpu=None):
    """A HELLO; `join` (a 16-byte token) sets the JOIN flag and appends
    the token after the name; `cpu` sets the CPU flag and puts the hint in
    bytes 14-15.  `flags` overrides byte 7."""
    name = export.encode() if isinstance(export, str) else export
    if name_len is None:
        name_len = len(name)
    if flags is None:
        flags = (HELLO_JOIN if join is not None else 0) | (HELLO_CPU if cpu is not None else 0)
    return struct.pack(HELLO_FMT, magic, version, byte_order, flags, max_frame,
                       name_len, cpu or 0) + name + (join or b"")


def hello_status_on(s, export=""):
    """Sends a HELLO for EXPORT on the connected socket S: the reply's
    status, or "closed" when the server closes S before a whole reply
    (a refused peer gets no reply at all)."""
    try:
        s.sendall(hello_bytes(export))
        reply = b""
        while len(reply) < struct.calcsize(HELLO_REPLY_FMT):
            chunk = s.recv(struct.calcsize(HELLO_REPLY_FMT) - len(reply))
            if not chunk:
                return "closed"
            reply += chunk
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    return struct.unpack(HELLO_REPLY_FMT, reply)[3]


def connect_unix(path, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def connect_stream(address, timeout=10.0):
    """A (cid, port) pair is a vsock address, anything else a socket path."""
    if not isinstance(address, tuple):
        return connect_unix(address, timeout)
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(address)
    return s


class FuseClient:
    """One session on an fsbridged stream socket."""

    def __init__(self, path, export="", hello=True, init=True, timeout=10.0,
                 uid=0, gid=0, version=STREAM_VERSION, join=None, cpu=None):
        """`path`: a socket path or a (cid, port) vsock address.
        `join`: the token of a session to join (no INIT is sent then).
        `cpu`: a CPU hint in the HELLO (version 3).
        After a version-2 HELLO, `self.token` is the session's token."""
        self.path = path if isinstance(path, tuple) else str(path)
        self.sock = connect_stream(self.path, timeout)
        self.unique = 0
        self.notifications = []   # (code, payload) of every unique-0 message
        self.pending = {}
        self.uid = uid
        self.gid = gid
        self.hello_reply = None
        self.init_reply = None
        self.token = None
        self.setxattr_ext = False
        if hello:
            self.hello_reply = self.hello(export, version=version, join=join, cpu=cpu)
            if self.hello_reply["status"] != 0:
                raise HelloRefused(self.hello_reply["status"])
            self.token = self.hello_reply["token"]
        if init and join is None:
            err, out = self.init()
            if err:
                raise OSError(err, "FUSE_INIT failed: %s" % os.strerror(err))

    # --- plumbing ---------------------------------------------------------
    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def raw_frame(self, data):
        """Sends arbitrary bytes, unframed and unchecked.  A server that
        has closed the stream already (it may refuse a peer at accept,
        before its HELLO is written) is ConnectionClosed, as on a read."""
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise ConnectionClosed(str(e))

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise ConnectionClosed(str(e))
            if not chunk:
                raise ConnectionClosed("EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return bytes(buf)

    def is_closed(self, timeout=5.0):
        """True if the server closes the stream within `timeout` seconds.
        Replies that arrive meanwhile are discarded."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    return True
                except socket.timeout:
                    return False
                if not chunk:
                    return True
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass

    def hello(self, export="", **kw):
        self.raw_frame(hello_bytes(export, **kw))
        return self.read_hello_reply()

    def read_hello_reply(self):
        """The reply; a version-2 success is followed by the token, a
        version-4 one then by the terms (features, open flags)."""
        magic, version, _res, status, max_frame = struct.unpack(
            HELLO_REPLY_FMT, self.recv_exact(16))
        token = terms = None
        if status == 0 and version >= 2:
            token = self.recv_exact(TOKEN_SIZE)
        if status == 0 and version >= 4:
            terms = struct.unpack(TERMS_FMT, self.recv_exact(struct.calcsize(TERMS_FMT)))
        return {"magic": magic, "version": version, "status": status,
                "max_frame": max_frame, "token": token, "terms": terms}

    def next_unique(self):
        self.unique += 2          # the kernel uses even uniques; any will do
        return self.unique

    def header(self, opcode, nodeid, body_len, unique, length=None,
               uid=None, gid=None, pid=None, total_extlen=0):
        if length is None:
            length = IN_HEADER.size + body_len
        return IN_HEADER.pack(length, opcode, unique, nodeid,
                              self.uid if uid is None else uid,
                              self.gid if gid is None else gid,
                              os.getpid() if pid is None else pid,
                              total_extlen, 0)

    def send(self, opcode, nodeid=FUSE_ROOT_ID, body=b"", unique=None, **hdr):
        if unique is None:
            unique = self.next_unique()
        self.raw_frame(self.header(opcode, nodeid, len(body), unique, **hdr) + body)
        return unique

    def read_message(self):
        """One server message: (error, unique, payload)."""
        head = self.recv_exact(OUT_HEADER.size)
        length, error, unique = OUT_HEADER.unpack(head)
        if length < OUT_HEADER.size or length > MAX_FRAME + 4096:
            raise AssertionError("server sent a bad reply length %d" % length)
        return error, unique, self.recv_exact(length - OUT_HEADER.size)

    def recv(self, unique):
        """Waits for the reply to `unique`: (errno >= 0, payload)."""
        while unique not in self.pending:
            error, u, payload = self.read_message()
            if u == 0:
                self.notifications.append((error, payload))
                continue
            self.pending[u] = (error, payload)
        error, payload = self.pending.pop(unique)
        if error > 0 or error < -4095:
            raise AssertionError("server sent a bad error value %d" % error)
        return -error, payload

    def request(self, opcode, nodeid=FUSE_ROOT_ID, body=b"", **hdr):
        return self.recv(self.send(opcode, nodeid, body, **hdr))

    # --- operations -------------------------------------------------------
    def init(self, minor=FUSE_KERNEL_MINOR_VERSION, flags=KERNEL_INIT_FLAGS,
             flags2=0, max_readahead=128 * 1024, short=False):
        if short:   # a 7.31-style kernel: 16-byte fuse_init_in, no flags2
            body = INIT_IN_31.pack(FUSE_KERNEL_VERSION, minor, max_readahead,
                                   flags & 0xffffffff & ~FUSE_INIT_EXT)
        else:
            body = INIT_IN.pack(FUSE_KERNEL_VERSION, minor, max_readahead,
                                flags & 0xffffffff, flags2)
        err, payload = self.request(FUSE_INIT, 0, body)
        out = None
        if err == 0 and len(payload) >= 8:
            padded = payload + bytes(max(0, INIT_OUT.size - len(payload)))
            f = INIT_OUT.unpack_from(padded)
            out = dict(zip(("major", "minor", "max_readahead", "flags",
                            "max_background", "congestion_threshold",
                            "max_write", "time_gran", "max_pages",
                            "map_alignment", "flags2"), f))
            self.setxattr_ext = bool(out["flags"] & FUSE_SETXATTR_EXT) and \
                out["minor"] >= 33
            self.init_reply = out
        return err, out

    def lookup(self, parent, name):
        """(0, entry) or (errno, payload).  A negative entry (node id 0: the
        name does not exist, cacheable for entry_valid) is ENOENT, as the
        kernel reads it; lookup_raw() shows it as it came."""
        err, entry = self.lookup_raw(parent, name)
        if err == 0 and entry["nodeid"] == 0:
            return errno.ENOENT, entry
        return err, entry

    def lookup_raw(self, parent, name):
        err, p = self.request(FUSE_LOOKUP, parent, _name(name))
        return err, (parse_entry(p) if err == 0 else p)

    def getattr(self, nodeid, fh=None):
        body = GETATTR_IN.pack(1 if fh is not None else 0, 0, fh or 0)
        err, p = self.request(FUSE_GETATTR, nodeid, body)
        return err, (parse_attr(p, ATTR_OUT.size) if err == 0 else p)

    def setattr(self, nodeid, valid, fh=0, size=0, mode=0, uid=0, gid=0,
                atime=0, mtime=0, atimensec=0, mtimensec=0):
        body = SETATTR_IN.pack(valid, 0, fh, size, 0, atime, mtime, 0,
                               atimensec, mtimensec, 0, mode, 0, uid, gid, 0)
        err, p = self.request(FUSE_SETATTR, nodeid, body)
        return err, (parse_attr(p, ATTR_OUT.size) if err == 0 else p)

    def readlink(self, nodeid):
        return self.request(FUSE_READLINK, nodeid)

    def symlink(self, parent, name, target):
        err, p = self.request(FUSE_SYMLINK, parent, _name(name) + _name(target))
        return err, (parse_entry(p) if err == 0 else p)

    def mknod(self, parent, name, mode, rdev=0, umask=0):
        err, p = self.request(FUSE_MKNOD, parent,
                              MKNOD_IN.pack(mode, rdev, umask, 0) + _name(name))
        return err, (parse_entry(p) if err == 0 else p)

    def mkdir(self, parent, name, mode=0o755, umask=0):
        err, p = self.request(FUSE_MKDIR, parent,
                              MKDIR_IN.pack(mode, umask) + _name(name))
        return err, (parse_entry(p) if err == 0 else p)

    def unlink(self, parent, name):
        return self.request(FUSE_UNLINK, parent, _name(name))[0]

    def link(self, oldnodeid, newparent, newname):
        err, p = self.request(FUSE_LINK, newparent,
                              LINK_IN.pack(oldnodeid) + _name(newname))
        return err, (parse_entry(p) if err == 0 else p)

    def rename(self, parent, name, newparent, newname):
        return self.request(FUSE_RENAME, parent, RENAME_IN.pack(newparent)
                            + _name(name) + _name(newname))[0]

    def rename2(self, parent, name, newparent, newname, flags=0):
        return self.request(FUSE_RENAME2, parent,
                            RENAME2_IN.pack(newparent, flags, 0)
                            + _name(name) + _name(newname))[0]

    def open(self, nodeid, flags=os.O_RDONLY, opcode=FUSE_OPEN):
        err, p = self.request(opcode, nodeid, OPEN_IN.pack(flags, 0))
        return err, (OPEN_OUT.unpack_from(p)[0] if err == 0 else None)

    def opendir(self, nodeid):
        return self.open(nodeid, os.O_RDONLY | os.O_DIRECTORY, FUSE_OPENDIR)

    def create(self, parent, name, flags=os.O_RDWR | os.O_CREAT, mode=0o644,
               umask=0):
        err, p = self.request(FUSE_CREATE, parent,
                              CREATE_IN.pack(flags, mode, umask, 0) + _name(name))
        if err:
            return err, None, None
        return 0, parse_entry(p), OPEN_OUT.unpack_from(p, 128)[0]

    def read(self, fh, offset, size, nodeid=FUSE_ROOT_ID):
        return self.request(FUSE_READ, nodeid,
                            READ_IN.pack(fh, offset, size, 0, 0, 0, 0))

    def write(self, fh, offset, data, nodeid=FUSE_ROOT_ID):
        err, p = self.request(FUSE_WRITE, nodeid,
                              WRITE_IN.pack(fh, offset, len(data), 0, 0, 0, 0) + data)
        return err, (WRITE_OUT.unpack_from(p)[0] if err == 0 else None)

    def release(self, nodeid, fh, opcode=FUSE_RELEASE):
        return self.request(opcode, nodeid, RELEASE_IN.pack(fh, 0, 0, 0))[0]

    def flush(self, nodeid, fh, lock_owner=0):
        return self.request(FUSE_FLUSH, nodeid, FLUSH_IN.pack(fh, 0, 0, lock_owner))[0]

    def setlk(self, nodeid, fh, owner, typ, start, end, pid=None):
        """A record lock on bytes [start, end] (no wait); returns the errno."""
        body = LK_IN.pack(fh, owner, start, end, typ,
                          os.getpid() if pid is None else pid, 0, 0)
        return self.request(FUSE_SETLK, nodeid, body)[0]

    def getlk(self, nodeid, fh, start, end, typ=1, owner=0):
        """(errno, (start, end, type, pid)) of a lock that conflicts with a
        write lock (typ 1, F_WRLCK) on [start, end]; type 2 (F_UNLCK): none."""
        err, p = self.request(FUSE_GETLK, nodeid,
                              LK_IN.pack(fh, owner, start, end, typ, 0, 0, 0))
        return err, (LK_OUT.unpack_from(p) if err == 0 else None)

    def readdir(self, nodeid, fh, size=65536, offset=0):
        """Returns (err, [(ino, off, type, name)])."""
        err, p = self.request(FUSE_READDIR, nodeid,
                              READ_IN.pack(fh, offset, size, 0, 0, 0, 0))
        if err:
            return err, []
        out, i = [], 0
        while i + 24 <= len(p):
            ino, off, namelen, typ = struct.unpack_from("<QQII", p, i)
            out.append((ino, off, typ, p[i + 24:i + 24 + namelen]))
            i += (24 + namelen + 7) & ~7
        return 0, out

    def setxattr(self, nodeid, name, value, flags=0):
        if self.setxattr_ext:
            head = SETXATTR_IN.pack(len(value), flags, 0, 0)
        else:
            head = SETXATTR_IN_COMPAT.pack(len(value), flags)
        return self.request(FUSE_SETXATTR, nodeid, head + _name(name) + value)[0]

    def getxattr(self, nodeid, name, size=4096):
        err, p = self.request(FUSE_GETXATTR, nodeid,
                              GETXATTR_IN.pack(size, 0) + _name(name))
        return err, p

    def statfs(self, nodeid=FUSE_ROOT_ID):
        return self.request(FUSE_STATFS, nodeid)

    def forget(self, nodeid, nlookup=1):
        """FORGET has no reply."""
        self.send(FUSE_FORGET, nodeid, FORGET_IN.pack(nlookup))

    def batch_forget(self, pairs):
        body = BATCH_FORGET_IN.pack(len(pairs), 0) + b"".join(
            FORGET_ONE.pack(n, c) for n, c in pairs)
        self.send(FUSE_BATCH_FORGET, 0, body)

    def alive(self):
        """A GETATTR of the root succeeds on this session."""
        err, attr = self.getattr(FUSE_ROOT_ID)
        return err == 0


def _name(name):
    if isinstance(name, str):
        name = name.encode()
    return name + b"\0"


__all__ = [n for n in dir() if not n.startswith("_")] + ["errno"]
