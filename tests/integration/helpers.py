"""
helpers.py - small tools shared by the integration tests.

Everything here is bounded in time: polling has a deadline, subprocesses
have a timeout.  Nothing here sleeps to synchronise except bounded polling.
"""

import os
import re
import stat
import subprocess
import threading
import time

PYTHON = "/usr/bin/python3"

# A user that is not root, for permission tests.  It need not exist in
# /etc/passwd: the kernel only cares about the numbers.
NOBODY_UID = 1000
NOBODY_GID = 1000


def poll_until(predicate, timeout=10.0, interval=0.01, what="condition"):
    """Call predicate() until it returns a true value; return that value.

    Raises TimeoutError after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)


def unescape_mount_field(field):
    """Undo the octal escapes of /proc/mounts (space is \\040 and so on)."""
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountinfo():
    """Parse /proc/self/mountinfo: list of dicts (mountpoint, fstype, dev)."""
    entries = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf = left.split()
            rf = right.split()
            entries.append({
                "dev": lf[2],
                "mountpoint": unescape_mount_field(lf[4]),
                "fstype": rf[0] if rf else "",
                "source": unescape_mount_field(rf[1]) if len(rf) > 1 else "",
            })
    return entries


def mount_entry(path):
    """The mountinfo entry whose mountpoint is exactly `path` (last one), or None."""
    path = os.path.realpath(str(path))
    found = None
    for e in mountinfo():
        if e["mountpoint"] == path:
            found = e
    return found


def containing_mount(path):
    """The mountinfo entry of the filesystem that holds `path`."""
    path = os.path.realpath(str(path))
    best = None
    for e in mountinfo():
        mp = e["mountpoint"]
        if path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) >= len(best["mountpoint"]):
                best = e
    return best


def fuse_connection(dev):
    """The fusectl identity of the FUSE connection mounted as "major:minor"
    dev: its number and the inode of its /sys/fs/fuse/connections directory,
    or None without fusectl.

    A connection's number is its device number, reused as soon as it ends;
    the directory's inode is not.  An abort aimed at a connection that has
    ended (a stale Mount, a watchdog firing late, another test run on this
    machine) must not reach the newer mount that got its number.
    """
    major, _, minor = dev.partition(":")
    conn = (int(major) << 20) | int(minor)
    try:
        return conn, os.stat(f"/sys/fs/fuse/connections/{conn}").st_ino
    except OSError:
        return None


def fuse_abort(connection):
    """Abort a FUSE connection (from fuse_connection()) through fusectl.

    Every pending and later request on it fails with ENOTCONN; used by the
    per-test watchdog so that a hung filesystem fails a test instead of
    hanging the run.  Returns True when the abort file was written, False
    when the connection has ended (or was never known).
    """
    if connection is None:
        return False
    conn, ino = connection
    path = f"/sys/fs/fuse/connections/{conn}"
    try:
        fd = os.open(f"{path}/abort", os.O_WRONLY)
    except OSError:
        return False
    try:
        # Checked after the open: the file now open belongs to the
        # directory stat-ed, so a reused number cannot slip in between.
        if os.stat(path).st_ino != ino:
            return False
        os.write(fd, b"1")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def served(daemon, opcode):
    """Requests of OPCODE (its name, e.g. "FUSE_OPEN"; a regex) that DAEMON,
    started with log_level="debug", has served: its log names each."""
    return len(re.findall(rf"{opcode}/\d+ \(unique", daemon.stderr_text()))


def as_user(uid=NOBODY_UID, gid=NOBODY_GID, umask=None, groups=()):
    """A preexec_fn that drops to uid/gid with the given supplementary groups."""
    def drop():
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(uid)
        if umask is not None:
            os.umask(umask)
    return drop


def run(cmd, timeout=30, check=True, **kwargs):
    """subprocess.run with a timeout and captured text output."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("text", True)
    proc = subprocess.run(cmd, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command {cmd!r} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_python(code, *args, uid=None, gid=None, umask=None, groups=(), timeout=20, cwd=None):
    """Run a Python snippet in a child process (optionally as uid/gid).

    The child gets `args` as sys.argv[1:].  Returns the CompletedProcess;
    the snippet reports through stdout.
    """
    preexec = None
    if uid is not None:
        preexec = as_user(uid, gid if gid is not None else uid, umask, groups)
    elif umask is not None:
        def preexec():
            os.umask(umask)
    return subprocess.run([PYTHON, "-c", code, *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, cwd=cwd,
                          preexec_fn=preexec)


def host_tool(name):
    """Path of a host tool, or None."""
    for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":") + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None



def put_bytes(path, data):
    """Writes DATA to PATH (through the mount or on the host)."""
    with open(path, "wb") as f:
        f.write(data)


def get_bytes(path):
    """Reads all of PATH."""
    with open(path, "rb") as f:
        return f.read()


def fd_count(pid):
    """How many fds process PID has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fd_count(pid, timeout=5.0):
    """PID's fd count once it stops changing (sessions that were just closed
    may be torn down asynchronously)."""
    deadline = time.monotonic() + timeout
    last = fd_count(pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = fd_count(pid)
        if now == last:
            return now
        last = now
    return last


def cpu_seconds(pid):
    """User + system CPU time of every thread of PID so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quietest_cpu_window(pids, window=2.0, tries=5, quiet=0.05):
    """{pid: CPU seconds used in WINDOW} of idle processes PIDS: the first
    window in which each used under QUIET seconds, else the quietest of
    TRIES.  Work still finishing when the test went idle (on a loaded
    machine it may take a while) spoils one window, not the check; a
    process that spins spoils every one."""
    best = None
    for _ in range(tries):
        before = {p: cpu_seconds(p) for p in pids}
        time.sleep(window)
        used = {p: cpu_seconds(p) - before[p] for p in pids}
        if best is None or max(used.values()) < max(best.values()):
            best = used
        if max(used.values()) < quiet:
            break
    return best


def narrowed_threads(pid):
    """{tid: CPUs} of PID's threads that may run on fewer CPUs than PID
    (its main thread) may: those that pinned themselves."""
    every = os.sched_getaffinity(pid)
    cpus = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        try:
            cpus[tid] = os.sched_getaffinity(tid)
        except ProcessLookupError:        # a thread that just ended
            pass
    return {tid: c for tid, c in cpus.items() if c != every}


def unix_socket_listening(path):
    """True when a listening Unix socket is bound at `path`.

    Read from /proc/net/unix (flag __SO_ACCEPTCON) rather than by connecting,
    so that waiting for readiness does not open a session of its own (or,
    on a vhost-user socket, become its frontend).
    """
    if path is None:
        return False
    want = str(path)
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[7] == want and int(fields[3], 16) & 0x10000:
                    return True
    except OSError:
        return os.path.exists(want) and stat.S_ISSOCK(os.stat(want).st_mode)
    return False


def listening(*paths):
    """True when every one of the Unix sockets PATHS listens.  A daemon
    binds (the file appears), sets the file's group, then listens: a
    connect between those is refused, and the group not yet set."""
    return all(unix_socket_listening(p) for p in paths)


# A program run as a given user (run_python(FILE_CHANGE_OPS, OP, PATH, ...)):
# one change OP to the file PATH, the ways a writer or owner changes a file
# (write, append, truncate, open_trunc, fallocate, copy_range; chown PATH UID
# GID); prints "ok" or the error's strerror.
FILE_CHANGE_OPS = r"""
import os, sys
op, path = sys.argv[1], sys.argv[2]
try:
    if op == "write":
        with open(path, "r+b") as f:
            f.write(b"new")
    elif op == "append":
        with open(path, "ab") as f:
            f.write(b"more")
    elif op == "truncate":
        os.truncate(path, 1)
    elif op == "open_trunc":
        os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
    elif op == "fallocate":
        fd = os.open(path, os.O_WRONLY)
        os.posix_fallocate(fd, 0, 8192)
        os.close(fd)
    elif op == "copy_range":
        # Bytes [0, 3) of the file copied to [5, 8) of itself: the guest
        # kernel sends COPY_FILE_RANGE, a write that carries no flag.
        src, dst = os.open(path, os.O_RDONLY), os.open(path, os.O_WRONLY)
        os.copy_file_range(src, dst, 3, 0, 5)
        os.close(src)
        os.close(dst)
    elif op == "chown":
        os.chown(path, int(sys.argv[3]), int(sys.argv[4]))
    print("ok")
except OSError as e:
    print(e.strerror)
"""


def race_guest_and_host(guest_file, guest_step, host_step, seconds=4):
    """For SECONDS, a guest thread writes and reads GUEST_FILE (a path in a
    mount) in a loop, calling GUEST_STEP() after each round, while this
    thread calls HOST_STEP(n) for n = 0, 1, ...: a host change that
    invalidates what the guest holds (page locks, the inode lock) must
    never wait for a reply that waits for it.  Fails if the guest loop
    hangs or gets an error."""
    stop = time.monotonic() + seconds
    errors = []

    def guest_loop():
        try:
            with open(guest_file, "r+b") as f:
                while time.monotonic() < stop:
                    f.seek(0)
                    f.write(b"g" * 4096)
                    f.flush()
                    os.pread(f.fileno(), 65536, 0)
                    guest_step()
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=guest_loop)
    t.start()
    n = 0
    while time.monotonic() < stop:
        host_step(n)
        n += 1
    t.join(timeout=20)
    assert not t.is_alive(), "the guest loop hung"
    assert not errors, errors
