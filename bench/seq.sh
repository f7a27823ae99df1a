#!/usr/bin/env bash
# seq.sh - the sequential rows of bench.sh, with what each MiB costs.
#
#   bench/seq.sh                                 (as root; not part of CI)
#   SEQ_TARGETS="pll auto auto:uring" SEQ_SIZE_MB=128 bench/seq.sh
#
# For bulk data the count that explains the speed is how often each byte is
# copied, which no counter shows directly; CPU time and system calls per
# MiB do, on a busy machine too.  Each workload runs once per target while
# `perf stat` counts in the serving processes (passthrough_ll, or fsbridged
# and fsbridge-mount) and in fio itself:
#
#   MiB/s        fio's bandwidth (needs an idle machine to compare)
#   cpu ms/MiB   task-clock of servers + fio (fio's includes the guest
#                kernel's FUSE work: its copies into and out of the page
#                cache) per MiB
#   srv ms/MiB   the servers' part of it
#   syscalls/MiB system calls of the servers per MiB
#
# Workloads: seqwrite (fio 1 MiB writes of SEQ_SIZE_MB MiB + fsync), then
# seqread_cold (the caches dropped) and seqread_warm (at once again).
#
# Environment: SEQ_TARGETS (pll auto auto:uring), SEQ_SIZE_MB (256),
# BENCH_DIR (/var/tmp/fsbridge-bench), FSB_BUILD_DIR (default build-bench/,
# as bench.sh), BENCH_MOUNT_OPTS / BENCH_DAEMON_OPTS (targets.sh).
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "$(readlink -f "$0")")/common.sh" seq "${SEQ_TARGETS:-pll auto auto:uring}"
size_mb=${SEQ_SIZE_MB:-256}
events=task-clock,raw_syscalls:sys_enter

bench_setup "mounts, drop_caches, perf counters of other processes" perf

# measure T NAME RW [fio options...]: one fio run of RW on target T, one row.
measure() {
    local t=$1 name=$2 rw=$3
    shift 3
    # fio splits --filename at ':' (mnt-auto:uring): escaped.
    local srv=$work/perf-servers app=$work/perf-app out=$work/fio.json
    perf_counted "$events" fio --name=seq --filename="${dir//:/\\:}/seq.dat" \
        --rw="$rw" --bs=1M --size="${size_mb}M" --ioengine=psync --fallocate=none \
        --invalidate=0 --output-format=json "$@" >"$out"
    local mibs srv_ms app_ms
    mibs=$(/usr/bin/python3 -c '
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
side = job["write"] if job["write"]["io_bytes"] else job["read"]
print("%.0f" % (side["bw_bytes"] / 1048576))' "$out")
    srv_ms=$(perf_sum "$srv" task-clock) app_ms=$(perf_sum "$app" task-clock)
    awk -v t="$t" -v w="$name" -v n="$size_mb" -v bw="$mibs" -v s="$srv_ms" -v a="$app_ms" \
        -v sc="$(perf_sum "$srv" raw_syscalls:sys_enter)" \
        'BEGIN { printf "%-12s %-13s %7d %10.2f %10.2f %12.1f\n", t, w, bw, (s + a) / n,
                 s / n, sc / n }'
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

print_header "sequential, ${size_mb} MiB in 1 MiB blocks"
printf '%-12s %-13s %7s %10s %10s %12s\n' target workload MiB/s "cpu ms/MiB" "srv ms/MiB" \
    syscalls/MiB
run_workloads() {
    local t=$1
    measure "$t" seqwrite write --end_fsync=1
    drop_caches
    measure "$t" seqread_cold read
    measure "$t" seqread_warm read
}
each_target run_workloads
