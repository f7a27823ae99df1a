#!/usr/bin/python3
"""outside-writes.py - what a steady writer beside a cache=coherent export
costs (bench/README.md): the daemon's CPU for the events of its
filesystem-wide fanotify mark, and whether the guest's replies stay cached.

    sudo bench/outside-writes.py [WRITES]     (default 20,000; needs root)

Starts fsbridged (FSB_BUILD_DIR, default build-bench/) with one
cache=coherent export and fsbridge-mount on a Unix socket, as bench.sh
does, in BENCH_DIR (/var/tmp/fsbridge-bench): the export (1,000 files) and
a directory "outside" beside it, on the same filesystem.  The host writes
WRITES times beside the export (appends to 8 log files in turn, and every
10th write a new file created and removed), twice:
 1. with the guest idle: the daemon's CPU time over the writes (all of it
    the change watcher's), per event, and the watcher's own counts from
    its log line at exit (events, file handles opened);
 2. with a fresh daemon and mount, while the guest stats the 1,000 files
    twice: the kernel's fuse_request_send tracepoint (Linux 6.14+) counts
    the requests of each round.  The first looks every file up; the
    second should need no request at all.
"""

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("FSB_BUILD_DIR", REPO / "build-bench"))
WORK = Path(os.environ.get("BENCH_DIR", "/var/tmp/fsbridge-bench")) / "outside-writes"
TRACING = Path("/sys/kernel/tracing")
FILES = 1000


def wait_for(pred, what, timeout=10.0):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit(f"outside-writes: timed out waiting for {what}")
        time.sleep(0.01)


def cpu_seconds(pid):
    """User + system time of process PID, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Trace:
    """fuse_request_send of one mount's connection, in a tracing instance."""

    def __init__(self, mnt):
        self.dir = None
        if not (TRACING / "events").is_dir():
            subprocess.run(["mount", "-t", "tracefs", "tracefs", str(TRACING)], check=False)
        if not (TRACING / "events/fuse/fuse_request_send").is_dir():
            return
        dev = os.stat(mnt).st_dev
        conn = (os.major(dev) << 20) | os.minor(dev)
        self.dir = TRACING / "instances" / f"fsb-outside-writes-{os.getpid()}"
        self.dir.mkdir()
        (self.dir / "buffer_size_kb").write_text("8192\n")
        (self.dir / "events/fuse/fuse_request_send/filter").write_text(f"connection == {conn}\n")
        (self.dir / "events/fuse/fuse_request_send/enable").write_text("1\n")

    def take(self):
        if not self.dir:
            return "n/a"
        text = (self.dir / "trace").read_text()
        (self.dir / "trace").write_text("")
        return len(re.findall(r"opcode \d+ \(FUSE_(?!FORGET|BATCH_FORGET)", text))

    def close(self):
        if self.dir:
            (self.dir / "events/fuse/fuse_request_send/enable").write_text("0\n")
            self.dir.rmdir()


def start():
    subprocess.run(["rm", "-rf", str(WORK)], check=True)
    export, outside, mnt = WORK / "export", WORK / "outside", WORK / "mnt"
    for d in (export, outside, mnt):
        d.mkdir(parents=True)
    for i in range(FILES):
        (export / f"f{i:04}").write_bytes(b"x")
    log = open(WORK / "fsbridged.log", "wb")
    sock = WORK / "d.sock"
    daemon = subprocess.Popen([str(BUILD / "fsbridged"), "--export",
                               f"b={export},cache=coherent", "--listen", f"unix:{sock}",
                               "--log-level", "info"], stdout=log, stderr=log)
    wait_for(sock.exists, "fsbridged")
    mount = subprocess.Popen([str(BUILD / "fsbridge-mount"), "-f", "-o", "export=b",
                              f"unix:{sock}", str(mnt)], stdout=log, stderr=log)
    wait_for(lambda: os.path.ismount(mnt), "the mount")
    return outside, mnt, daemon, mount


class Writer(threading.Thread):
    def __init__(self, outside, n):
        super().__init__()
        self.outside, self.n, self.done = outside, n, 0

    def run(self):
        logs = [open(self.outside / f"log{i}", "ab", buffering=0) for i in range(8)]
        for i in range(self.n):
            logs[i % 8].write(b"a line of a build log\n")
            if i % 10 == 0:
                tmp = self.outside / f"tmp{i}"
                tmp.write_bytes(b"o")
                tmp.unlink()
            self.done = i + 1
        for f in logs:
            f.close()


def settle(pid):
    """Waits until the daemon stops using CPU (the watcher drained its queue)."""
    last = cpu_seconds(pid)
    while True:
        time.sleep(0.3)
        now = cpu_seconds(pid)
        if now == last:
            return now
        last = now


def stop(mnt, daemon, mount):
    subprocess.run(["umount", str(mnt)], check=False)
    mount.wait(timeout=10)
    daemon.terminate()
    daemon.wait(timeout=10)
    text = (WORK / "fsbridged.log").read_text()
    m = re.search(r"change watcher: (\d+) events, (\d+) file handles opened", text)
    return (int(m[1]), int(m[2])) if m else (None, None)


def watcher_cost(n):
    """The daemon's CPU seconds over N writes beside the export, with the
    guest idle, and the watcher's counts."""
    outside, mnt, daemon, mount = start()
    try:
        settle(daemon.pid)
        cpu0 = cpu_seconds(daemon.pid)
        writer = Writer(outside, n)
        writer.run()
        cpu = settle(daemon.pid) - cpu0
    finally:
        counts = stop(mnt, daemon, mount)
    return cpu, counts


def guest_rounds(n):
    """Requests of the guest's two rounds of stats while the host writes
    beside the export, and whether the writer outlasted them."""
    outside, mnt, daemon, mount = start()
    trace = Trace(mnt)
    try:
        names = [mnt / f"f{i:04}" for i in range(FILES)]
        trace.take()
        writer = Writer(outside, n)
        writer.start()
        wait_for(lambda: writer.done >= 100, "the writer")
        rounds = []
        for _ in range(2):
            for p in names:
                os.lstat(p)
            rounds.append(trace.take())
        during = writer.is_alive()
        writer.join()
    finally:
        trace.close()
        stop(mnt, daemon, mount)
    return rounds, during


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    cpu, (events, opens) = watcher_cost(n)
    rounds, during = guest_rounds(n)
    print(f"build: {BUILD}")
    print(f"host writes beside the export: {n} (+{(n + 9) // 10} files created and removed)")
    print(f"daemon CPU over the writes, guest idle: {cpu:.2f} s")
    if events:
        print(f"watcher: {events} events, {opens} file handles opened, "
              f"{cpu / events * 1e6:.1f} us of CPU per event")
    else:
        print("watcher: no count in the log (a build before outside-writes.py's)")
    print(f"guest requests, stat of {FILES} files while the writer ran: "
          f"round 1 (lookups) {rounds[0]}, round 2 {rounds[1]}"
          f"{'' if during else ' (the writer ended before round 2 did: use more WRITES)'}")


if __name__ == "__main__":
    main()
