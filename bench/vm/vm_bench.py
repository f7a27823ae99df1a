#!/usr/bin/python3
"""
vm_bench.py - the guest workloads of bench/vm/vm-bench.sh: one QEMU guest
per backend and run, the same workloads, one table.

    vm_bench.py --build DIR --tools DIR --tree TAR [options]

Each boot mounts the backend's export with `mount -t virtiofs`, runs the
workloads in the guest (guestbench and fileops, built static by
vm-bench.sh; busybox tar and rm) and reports each figure on the results
port; the table shows the median of the runs per backend and fsbridged's
ratio to the legacy virtiofsd (>= 1.00x: at least as fast).

Uses the VM test harness (tests/vm: fetch-kernel.sh, initramfs.py,
vmguest.py).  Progress goes to stderr, the table to stdout.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "vm"))

import initramfs  # noqa: E402
import vmguest  # noqa: E402

TAG = "bench"

# key, label, "h" (higher is better) or "l" (lower is better)
ROWS = [
    ("seqwrite", "seq write, 1 MiB blocks + fsync (MiB/s)", "h"),
    ("seqread", "seq read, 1 MiB blocks (MiB/s)", "h"),
    ("randread", "4 KiB random reads (IOPS)", "h"),
    ("create", "create {files} empty files (files/s)", "h"),
    ("stat", "stat {files} files (files/s)", "h"),
    ("unlink", "unlink {files} files (files/s)", "h"),
    ("untar", "untar the tree (s)", "l"),
    ("rmtree", "rm -rf the tree (s)", "l"),
]

# The guest's page cache is dropped before each read workload, so reads go
# to the backend (whose host page cache is warm: the file was just written).
SCRIPT = """
mount -t virtiofs {tag} /mnt || {{ echo "mount failed"; exit 1; }}
drop() {{ sync; echo 3 >/proc/sys/vm/drop_caches; }}
section seqwrite guestbench seqwrite /mnt/seq.dat {size_mb}
drop
section seqread guestbench seqread /mnt/seq.dat
drop
section randread guestbench randread /mnt/seq.dat {randreads}
rm -f /mnt/seq.dat
mkdir /mnt/meta
section fileops fileops /mnt/meta {files}
rmdir /mnt/meta
mkdir /mnt/tree
section untar guestbench time tar -xf /bench/tree.tar -C /mnt/tree
drop
section rmtree guestbench time rm -rf /mnt/tree
section umount umount /mnt
"""


def log(msg):
    print(f"vm-bench: {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--build", required=True, type=Path, help="fsbridge build directory")
    p.add_argument("--tools", required=True, type=Path,
                   help="directory with the static guestbench and fileops")
    p.add_argument("--tree", required=True, type=Path, help="source tree tarball")
    p.add_argument("--work", type=Path, default=Path("/var/tmp/fsbridge-vm-bench"))
    p.add_argument("--cache", default="auto", choices=["never", "auto", "always"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size-mb", type=int, default=256)
    p.add_argument("--randreads", type=int, default=8192)
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--mem-mb", type=int, default=1024)
    p.add_argument("--threads", type=int, default=None,
                   help="--thread-pool-size for both backends (default: each its own)")
    p.add_argument("--targets", default="fsbridged,virtiofsd")
    p.add_argument("--virtiofsd", default=vmguest.LEGACY_VIRTIOFSD)
    return p.parse_args()


def kernel_dir():
    r = subprocess.run([str(REPO / "tests" / "vm" / "fetch-kernel.sh")],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("vm-bench: no guest kernel (tests/vm/fetch-kernel.sh failed)")
    return Path(r.stdout.strip())


def one_boot(args, kind, binary, kernel, base, run):
    """Boot one guest on a fresh backend; returns {key: value}."""
    work = args.work / f"{kind}-{run}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "shared").mkdir(parents=True)
    extra = [] if args.threads is None else [f"--thread-pool-size={args.threads}"]
    daemon = vmguest.VirtiofsDaemon(kind, binary, work / "shared", work / "vfs.sock",
                                    args.cache, work / "backend.log", extra)
    daemon.start()
    script = SCRIPT.format(tag=TAG, size_mb=args.size_mb, randreads=args.randreads,
                           files=args.files)
    guest = vmguest.Guest(work, kernel, base, script, mem_mb=args.mem_mb, timeout=900)
    guest.add_virtiofs(daemon.socket, TAG, num_request_queues=1)
    try:
        guest.start()
        guest.wait(watch=[daemon])
    except vmguest.GuestTimeout as e:
        sys.exit(f"vm-bench: {kind}, run {run}: {e}")
    finally:
        guest.kill()
        daemon.stop()
    boot = guest.results().last
    failed = [k for k, rc in boot.rcs.items() if rc != 0]
    if boot.done_rc != 0 or failed:
        sys.exit(f"vm-bench: {kind}, run {run}: {failed or 'the script'} failed\n"
                 f"{guest.diagnostics()}\n{daemon.log()}")
    values = {k: float(boot.sections[k].split()[0]) for k in
              ("seqwrite", "seqread", "randread", "untar", "rmtree")}
    values.update(zip(("create", "stat", "unlink"), map(float, boot.sections["fileops"].split())))
    return values, " ".join(daemon.argv())


def table(args, results, argvs):
    targets = list(results)
    print(f"fsbridge virtio-fs guest benchmark: median of {args.runs} run(s); "
          f"host {os.uname().release}, {os.cpu_count()} CPUs")
    print(f"guest: Debian {(kernel_version())}, qemu -accel tcg -smp 2 -m {args.mem_mb}M, "
          f"vhost-user-fs-pci with 1 request queue, cache={args.cache}")
    for t in targets:
        print(f"  {t}: {argvs[t]}")
    print(f"seq file {args.size_mb} MiB; {args.randreads} random reads; {args.files} files; "
          f"tree {args.tree.name} ({args.tree.stat().st_size >> 20} MiB tar)")
    print("the guest's page cache is dropped before each read row; the host's is warm")
    print()
    heads = targets + (["fsbridged/virtiofsd"] if len(targets) == 2 else [])
    print(f"{'workload':<42}" + "".join(f" | {h:>19}" for h in heads))
    print("-" * (42 + 22 * len(heads)))
    slow = []
    for key, label, better in ROWS:
        label = label.format(files=args.files)
        medians = [statistics.median(results[t][key]) for t in targets]
        cells = [f"{m:.2f}" if m < 100 else f"{m:.0f}" for m in medians]
        if len(targets) == 2 and all(medians):
            a, b = medians
            ratio = a / b if better == "h" else b / a
            cells.append(f"{ratio:.2f}x")
            if ratio < 1.0:
                slow.append(f"{label}: {ratio:.2f}x")
        print(f"{label:<42}" + "".join(f" | {c:>19}" for c in cells))
    print()
    if len(targets) == 2:
        if slow:
            print("fsbridged behind the legacy virtiofsd:")
            for s in slow:
                print(f"  {s}")
        else:
            print("fsbridged is at or ahead of the legacy virtiofsd on every row")


def kernel_version():
    try:
        return (Path(os.environ.get("FSB_VM_CACHE", "/var/cache/fsbridge-vm")) /
                "kernel" / "version").read_text().strip()
    except OSError:
        return "?"


def main():
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    kernel = kernel_dir()
    programs = [("bin/guestbench", args.tools / "guestbench"),
                ("bin/fileops", args.tools / "fileops"),
                ("bench/tree.tar", args.tree)]
    base = initramfs.cached_base(args.work / "initramfs", kernel, programs)
    binaries = {"fsbridged": args.build / "fsbridged", "virtiofsd": args.virtiofsd}
    targets = [t for t in args.targets.split(",") if t]
    results = {t: {key: [] for key, _, _ in ROWS} for t in targets}
    argvs = {}
    for run in range(1, args.runs + 1):
        for kind in targets:
            log(f"run {run}/{args.runs}: {kind}")
            t0 = time.monotonic()
            values, argvs[kind] = one_boot(args, kind, binaries[kind], kernel, base, run)
            for key, v in values.items():
                results[kind][key].append(v)
            log(f"  {time.monotonic() - t0:.0f} s: " +
                ", ".join(f"{k} {v:g}" for k, v in values.items()))
    table(args, results, argvs)


if __name__ == "__main__":
    main()
