#!/usr/bin/python3
"""coherent-delay.py - the delay from a host change to a cache=coherent guest
seeing it (bench/README.md): median and 99th percentile over N changes.

    sudo bench/coherent-delay.py [N]        (default 1,000; needs root)

Starts fsbridged (FSB_BUILD_DIR, default build-bench/) with one
cache=coherent export and fsbridge-mount on a Unix socket, as bench.sh does.
Each round changes the host file (alternately its mode and its bytes, which
the guest holds in its page cache) and times, from the host's syscall
returning, until the guest's stat or read through the mount shows the new
value: a busy poll, so the number is the push's delay, not a poll interval.
Also times cache=auto's delay for the same change, for comparison (its
1 s timeout, unless the guest looks up again).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("FSB_BUILD_DIR", REPO / "build-bench"))


def wait_for(pred, what, timeout=10.0):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit(f"coherent-delay: timed out waiting for {what}")
        time.sleep(0.01)


def start(work, cache):
    src, mnt, sock = work / f"src-{cache}", work / f"mnt-{cache}", work / f"{cache}.sock"
    src.mkdir()
    mnt.mkdir()
    log = open(work / f"{cache}.log", "wb")
    daemon = subprocess.Popen([str(BUILD / "fsbridged"), "--export", f"b={src},cache={cache}",
                               "--listen", f"unix:{sock}", "--log-level", "warn"],
                              stdout=log, stderr=log)
    wait_for(sock.exists, "fsbridged")
    mount = subprocess.Popen([str(BUILD / "fsbridge-mount"), "-f", "-o", "export=b",
                              f"unix:{sock}", str(mnt)], stdout=log, stderr=log)
    wait_for(lambda: os.path.ismount(mnt), "the mount")
    return src, mnt, daemon, mount


def stop(mnt, daemon, mount):
    subprocess.run(["umount", str(mnt)], check=False)
    mount.wait(timeout=10)
    daemon.terminate()
    daemon.wait(timeout=10)


def one_change(src, mnt, fd, i, limit):
    """Seconds until the guest sees change I (None: not within LIMIT)."""
    if i % 2:
        mode = 0o600 if i % 4 == 1 else 0o640
        os.chmod(src / "f", mode)
        seen = lambda: os.stat(mnt / "f").st_mode & 0o777 == mode  # noqa: E731
    else:
        data = b"%08d" % i
        with open(src / "f", "r+b") as h:
            h.write(data)
        seen = lambda: os.pread(fd, 8, 0) == data  # noqa: E731
    t0 = time.perf_counter()
    while not seen():
        if time.perf_counter() - t0 > limit:
            return None
    return time.perf_counter() - t0


def measure(work, cache, n, limit):
    src, mnt, daemon, mount = start(work, cache)
    try:
        (src / "f").write_bytes(b"00000000")
        fd = os.open(mnt / "f", os.O_RDONLY)
        os.pread(fd, 8, 0)
        delays = [one_change(src, mnt, fd, i, limit) for i in range(n)]
        os.close(fd)
    finally:
        stop(mnt, daemon, mount)
    return delays


def report(cache, delays):
    got = sorted(d for d in delays if d is not None)
    missed = len(delays) - len(got)
    if not got:
        print(f"{cache:9} no change seen")
        return
    p99 = got[min(len(got) - 1, int(len(got) * 0.99))]
    print(f"{cache:9} {len(delays)} changes: median {statistics.median(got) * 1e3:.3f} ms, "
          f"p99 {p99 * 1e3:.3f} ms, max {got[-1] * 1e3:.3f} ms"
          + (f", {missed} not seen within the limit" if missed else ""))


def main():
    if os.geteuid() != 0:
        raise SystemExit("coherent-delay: run as root (mounts)")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory(prefix="fsb-delay-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        report("coherent", measure(work, "coherent", n, limit=5.0))
        report("auto", measure(work, "auto", min(n, 20), limit=5.0))


if __name__ == "__main__":
    main()
