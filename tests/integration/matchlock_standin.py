"""
matchlock_standin.py - a small stand-in for matchlock's ORIGINAL host VFS
server (github.com/jingkaihe/matchlock at 060d87a, see
docs/matchlock-protocol.md), to prove that fsbridge-mount --protocol=matchlock
degrades cleanly against a host without fsbridge's additions.

It behaves as matchlock's server does, shortcomings included:
  - path based: a guest path under PREFIX maps to the host directory by
    string; the host FOLLOWS symlinks (Lookup/Getattr stat the target);
  - ops 14-18 (MkdirAll, Truncate, Symlink, Readlink, Link) and unknown ops
    answer ENOSYS;
  - errors collapse as Go's os.Is* helpers make them: EPERM -> EACCES,
    ENOTEMPTY -> EEXIST, ENOENT/EACCES/EEXIST kept, anything else -> EIO;
  - `mode` in Go os.FileMode layout, mtime in seconds, no owner, no nlink;
  - Setattr is chmod only (permission bits);
  - Create opens read-write, creating and truncating, whatever the flags;
  - a write on a handle opened with O_APPEND fails (EIO), as Go's WriteAt
    does on such a file;
  - handles are global to the server and never freed when a connection
    drops; every connection is served (a thread each).

Run:  python3 matchlock_standin.py --listen SOCKET --export /workspace=DIR
      [--max-connections N]   close connections beyond N at once
      [--read-delay SECONDS]  answer each Read that much later (requests overlap)
      [--pad-readdir NAME:N]  pad the Readdir response of directories called NAME
                              with N bytes under an unknown key (an oversized frame)
      [--log FILE]            one line per connection and per request op
Prints "ready" on stdout once listening.
"""

import argparse
import errno
import os
import socket
import sys
import threading
import time

import cbor2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlproto  # noqa: E402


def collapse(e):
    """Go's errnoFromError: what matchlock's server answers for an OSError."""
    code = e.errno
    if code == errno.ENOENT:
        return -errno.ENOENT
    if code in (errno.EACCES, errno.EPERM):
        return -errno.EACCES
    if code in (errno.EEXIST, errno.ENOTEMPTY):
        return -errno.EEXIST
    return -errno.EIO


class Handle:
    def __init__(self, fd, append):
        self.fd = fd
        self.append = append


class Server:
    def __init__(self, prefix, root, max_connections=None, log=None, read_delay=0.0,
                 pad_readdir=None):
        self.prefix = prefix.rstrip("/") or "/"
        self.root = os.path.abspath(root)
        self.max_connections = max_connections
        self.log = log
        self.read_delay = read_delay
        self.pad_readdir = pad_readdir  # (name, bytes) or None
        self.lock = threading.Lock()
        self.handles = {}
        self.next_fh = 0
        self.connections = 0

    # ----------------------------------------------------------------
    # paths

    def host_path(self, path):
        """The host path of a guest path, by string (as matchlock does)."""
        if path == self.prefix:
            return self.root
        base = "" if self.prefix == "/" else self.prefix
        if not path.startswith(base + "/"):
            raise FileNotFoundError(errno.ENOENT, "outside the export", path)
        return os.path.join(self.root, path[len(base) + 1:])

    def note(self, text):
        if self.log:
            with self.lock:
                self.log.write(text + "\n")
                self.log.flush()

    # ----------------------------------------------------------------
    # operations

    def stat_response(self, host):
        st = os.stat(host)  # follows symlinks, as matchlock's server does
        return {"stat": mlproto.stat_map(st)}

    def new_handle(self, fd, append):
        with self.lock:
            self.next_fh += 1
            self.handles[self.next_fh] = Handle(fd, append)
            return self.next_fh

    def handle(self, fh):
        with self.lock:
            return self.handles.get(fh)

    def op_lookup(self, req):
        return self.stat_response(self.host_path(req.get("path", "")))

    def op_setattr(self, req):
        host = self.host_path(req.get("path", ""))
        os.chmod(host, req.get("mode", 0) & 0o777)
        return self.stat_response(host)

    def op_read(self, req):
        h = self.handle(req.get("fh", 0))
        if h is None:
            return {"err": -errno.EBADF}
        time.sleep(self.read_delay)
        return {"data": os.pread(h.fd, req.get("sz", 0), req.get("off", 0))}

    def op_write(self, req):
        h = self.handle(req.get("fh", 0))
        if h is None:
            return {"err": -errno.EBADF}
        if h.append:
            return {"err": -errno.EIO}  # Go: WriteAt on an O_APPEND file
        return {"written": os.pwrite(h.fd, req.get("data", b""), req.get("off", 0))}

    def op_create(self, req):
        host = self.host_path(req.get("path", ""))
        fd = os.open(host, os.O_RDWR | os.O_CREAT | os.O_TRUNC, req.get("mode", 0) & 0o777)
        st = os.fstat(fd)
        return {"fh": self.new_handle(fd, False), "stat": mlproto.stat_map(st)}

    def op_mkdir(self, req):
        host = self.host_path(req.get("path", ""))
        os.mkdir(host, req.get("mode", 0) & 0o777)
        return self.stat_response(host)

    def op_remove(self, req):
        host = self.host_path(req.get("path", ""))
        try:
            os.unlink(host)  # Go's os.Remove: unlink, then rmdir
        except IsADirectoryError:
            os.rmdir(host)
        except PermissionError:
            os.rmdir(host)
        return {}

    def op_rename(self, req):
        os.rename(self.host_path(req.get("path", "")), self.host_path(req.get("new_path", "")))
        return {}

    def op_open(self, req):
        flags = req.get("flags", 0)
        keep = os.O_ACCMODE | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_TRUNC
        fd = os.open(self.host_path(req.get("path", "")), flags & keep, 0o644)
        return {"fh": self.new_handle(fd, bool(flags & os.O_APPEND))}

    def op_release(self, req):
        with self.lock:
            h = self.handles.pop(req.get("fh", 0), None)
        if h is not None:
            os.close(h.fd)
        return {}

    def op_readdir(self, req):
        host = self.host_path(req.get("path", ""))
        entries = []
        for name in sorted(os.listdir(host)):
            try:
                st = os.lstat(os.path.join(host, name))
            except OSError:
                continue
            entries.append(mlproto.dirent_map(name, st))
        return {"entries": entries}

    def op_fsync(self, req):
        h = self.handle(req.get("fh", 0))
        if h is not None:
            os.fsync(h.fd)
        return {}

    OPS = {
        mlproto.OP_LOOKUP: op_lookup,
        mlproto.OP_GETATTR: op_lookup,
        mlproto.OP_SETATTR: op_setattr,
        mlproto.OP_READ: op_read,
        mlproto.OP_WRITE: op_write,
        mlproto.OP_CREATE: op_create,
        mlproto.OP_MKDIR: op_mkdir,
        mlproto.OP_UNLINK: op_remove,
        mlproto.OP_RMDIR: op_remove,
        mlproto.OP_RENAME: op_rename,
        mlproto.OP_OPEN: op_open,
        mlproto.OP_RELEASE: op_release,
        mlproto.OP_READDIR: op_readdir,
        mlproto.OP_FSYNC: op_fsync,
    }

    def answer(self, req):
        op = req.get("op", 0)
        self.note(f"op {mlproto.OP_NAMES.get(op, op)}")
        fn = self.OPS.get(op)
        if fn is None:
            return {"err": -errno.ENOSYS}
        try:
            return fn(self, req)
        except OSError as e:
            return {"err": collapse(e)}

    def body(self, req):
        """The CBOR body answering REQ."""
        m = mlproto.response_map(**self.answer(req))
        if (self.pad_readdir and req.get("op") == mlproto.OP_READDIR
                and os.path.basename(req.get("path", "")) == self.pad_readdir[0]):
            m["pad"] = bytes(self.pad_readdir[1])
        return cbor2.dumps(m)

    # ----------------------------------------------------------------
    # connections

    def serve_connection(self, conn):
        with self.lock:
            self.connections += 1
            number = self.connections
        if self.max_connections is not None and number > self.max_connections:
            self.note(f"connection {number} refused")
            conn.close()
            return
        self.note(f"connection {number}")
        with conn:
            try:
                while True:
                    req = cbor2.loads(mlproto.recv_frame(conn, limit=1 << 30))
                    mlproto.send_frame(conn, self.body(req))
            except (mlproto.Closed, ConnectionError):
                pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--export", required=True, help="PREFIX=DIR")
    ap.add_argument("--max-connections", type=int)
    ap.add_argument("--log")
    ap.add_argument("--read-delay", type=float, default=0.0)
    ap.add_argument("--pad-readdir")
    args = ap.parse_args()
    prefix, _, root = args.export.partition("=")
    log = open(args.log, "a") if args.log else None
    pad = None
    if args.pad_readdir:
        name, _, size = args.pad_readdir.rpartition(":")
        pad = (name, int(size))
    server = Server(prefix, root, args.max_connections, log, args.read_delay, pad)

    if os.path.exists(args.listen):
        os.unlink(args.listen)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.listen)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=server.serve_connection, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
