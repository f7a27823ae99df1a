#!/usr/bin/env bash
# vhost-bench.sh - requests per second per core of fsbridged's vhost-user-fs
# backend next to the legacy C virtiofsd that Debian ships in
# qemu-system-common, through our own vhost-user frontend
# (tests/vhost/vhost-bench): no VM, the same requests to both.
#
#   bench/vhost-bench.sh                          (as root; not part of CI)
#   VHOST_BENCH_SECONDS=1 VHOST_BENCH_RUNS=1 bench/vhost-bench.sh   (quick)
#
# Rows: GETATTR of the root and 4 KiB READs at random offsets of a 64 MiB
# file (in the host page cache), with 1 and 16 requests in flight.  Both
# backends get the same cache mode and the same --thread-pool-size.  Columns
# per backend: requests per second (wall clock, bounded by the frontend and
# by the machine's free cores) and requests per second per core (requests
# divided by the backend's CPU seconds, all its processes and threads:
# the cost of one request).  The last column is fsbridged's per-core figure
# over virtiofsd's: 1.00x or more means fsbridged spends no more CPU per
# request.  Each cell is the median of VHOST_BENCH_RUNS runs.
#
# Environment:
#   VHOST_BENCH_SECONDS  measured seconds per run (default 5)
#   VHOST_BENCH_RUNS     runs per cell, the median is shown (default 3)
#   VHOST_BENCH_CACHE    never, auto or always for both (default auto;
#                        virtiofsd calls never "none")
#   VHOST_BENCH_THREADS  --thread-pool-size for both (default 0: requests run
#                        on the queue threads)
#   VHOST_BENCH_DEPTHS   requests in flight per queue (default "1,16")
#   VHOST_BENCH_QUEUES   request queues (default 1: the legacy virtiofsd
#                        serves one)
#   VHOST_BENCH_DIR      work directory (default /var/tmp/fsbridge-vhost-bench)
#   VIRTIOFSD            the legacy daemon (default /usr/lib/qemu/virtiofsd)
#   VHOST_BENCH_FSB_OPTS more fsbridged options (e.g. --poll-us=50)
#   FSB_BUILD_DIR        fsbridge build to measure (default: build-bench/, a
#                        release build this script configures and builds)
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."
repo=$PWD
seconds=${VHOST_BENCH_SECONDS:-5}
runs=${VHOST_BENCH_RUNS:-3}
cache=${VHOST_BENCH_CACHE:-auto}
threads=${VHOST_BENCH_THREADS:-0}
depths=${VHOST_BENCH_DEPTHS:-1,16}
queues=${VHOST_BENCH_QUEUES:-1}
work=${VHOST_BENCH_DIR:-/var/tmp/fsbridge-vhost-bench}
virtiofsd=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
build=${FSB_BUILD_DIR:-$repo/build-bench}

log() { printf 'vhost-bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

((EUID == 0)) || die "run as root (the legacy virtiofsd sandboxes itself with namespaces)"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "bad VHOST_BENCH_RUNS: $runs"
case $cache in
never) legacy_cache=none ;;
auto | always) legacy_cache=$cache ;;
*) die "VHOST_BENCH_CACHE: never, auto or always (the legacy virtiofsd has no $cache)" ;;
esac
[[ -x $virtiofsd ]] || die "$virtiofsd missing (Debian package qemu-system-common)"
if busy=$(pgrep -af '[n]inja|[c]c1|[p]ytest|[q]emu-system'); then
    log "WARNING: other work is running; numbers will be noisy:"
    printf '  %s\n' "$busy" >&2
fi

if [[ -z ${FSB_BUILD_DIR:-} ]]; then
    [[ -f $build/meson-private/coredata.dat ]] ||
        meson setup "$build" --buildtype=release >&2
    ninja -C "$build" >&2
fi
tool=$build/tests/vhost/vhost-bench
[[ -x $build/fsbridged && -x $tool ]] || die "no fsbridged or vhost-bench in $build"

shared=$work/shared
mkdir -p "$shared" "$work/results"
rm -f "$work"/results/*
if [[ $(stat -c %s "$shared/bench.dat" 2>/dev/null || echo 0) != 67108864 ]]; then
    head -c 64M /dev/urandom >"$shared/bench.dat"
fi
cat "$shared/bench.dat" >/dev/null # into the host page cache

declare -A command=(
    [fsbridged]="$build/fsbridged --socket-path=@SOCKET@ --shared-dir=$shared --cache=$cache --thread-pool-size=$threads --log-level=error ${VHOST_BENCH_FSB_OPTS:-}"
    [virtiofsd]="$virtiofsd --socket-path=@SOCKET@ -o source=$shared -o cache=$legacy_cache --thread-pool-size=$threads -o log_level=err"
)

for run in $(seq "$runs"); do
    for backend in fsbridged virtiofsd; do
        log "run $run/$runs: $backend"
        # shellcheck disable=SC2086
        "$tool" --tsv --seconds "$seconds" --queues "$queues" --depth "$depths" \
            --file bench.dat -- ${command[$backend]} >"$work/results/$backend.$run" ||
            log "$backend: some rows failed (see $work/results/$backend.$run)"
    done
done

/usr/bin/python3 - "$work/results" "$cache" "$threads" "$seconds" "$runs" "$build" <<'EOF'
import statistics
import sys
from pathlib import Path

results, cache, threads, seconds, runs, build = sys.argv[1:]
cells = {}  # (backend, op, queues, depth) -> [(req/s, req/s/core) or None]
for f in sorted(Path(results).iterdir()):
    backend = f.name.split(".")[0]
    for line in f.read_text().splitlines():
        op, q, d, n, wall, cpu, _front, err = line.split("\t")
        key = (backend, op, int(q), int(d))
        ok = err == "-" and float(wall) > 0 and float(cpu) > 0
        cells.setdefault(key, []).append(
            (int(n) / float(wall), int(n) / float(cpu)) if ok else None)

def median(key, i):
    values = [v[i] for v in cells.get(key, []) if v]
    return statistics.median(values) if values else None

def fmt(v):
    return f"{v:>10.0f}" if v is not None else f"{'failed':>10}"

rows = sorted({k[1:] for k in cells})
print(f"vhost-user-fs requests through tests/vhost/vhost-bench: cache={cache}, "
      f"--thread-pool-size={threads}, {seconds} s per run, median of {runs}; build {build}")
print(f"{'op':<8} {'queues':>6} {'depth':>5} | {'fsbridged':>10} {'per core':>10} | "
      f"{'virtiofsd':>10} {'per core':>10} | per core fsbridged/virtiofsd")
behind = []
for op, q, d in rows:
    f_rate, f_core = median(("fsbridged", op, q, d), 0), median(("fsbridged", op, q, d), 1)
    v_rate, v_core = median(("virtiofsd", op, q, d), 0), median(("virtiofsd", op, q, d), 1)
    ratio = f"{f_core / v_core:.2f}x" if f_core and v_core else "-"
    print(f"{op:<8} {q:>6} {d:>5} | {fmt(f_rate)} {fmt(f_core)} | {fmt(v_rate)} {fmt(v_core)} | {ratio}")
    if f_core and v_core and f_core < v_core:
        behind.append(f"{op} q={q} depth={d}")
print("req/s: wall clock; per core: requests per second of backend CPU time")
if behind:
    print("fsbridged behind the legacy virtiofsd per core: " + ", ".join(behind))
EOF
