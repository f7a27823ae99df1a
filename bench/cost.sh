#!/usr/bin/env bash
# cost.sh - what one request costs on each target, in figures that hold on a
# busy machine: CPU time, context switches and system calls per operation.
#
#   bench/cost.sh                               (as root; not part of CI)
#   COST_TARGETS="pll auto" COST_FILES=5000 bench/cost.sh
#
# bench.sh's wall-clock rates need an idle machine; these counts do not (CPU
# time still grows somewhat with cache contention).  Each workload runs once
# per target while `perf stat` counts, in the serving processes (the
# passthrough_ll daemon, or fsbridged and fsbridge-mount) and in the
# workload itself:
#
#   cpu us/op    task-clock of servers + workload (the workload's includes
#                the guest kernel's FUSE work) per operation
#   ctxsw/op     context switches of servers + workload per operation: each
#                thread hand-off (a wake-up and a sleep) is one or two
#   syscalls/op  system calls of the servers per operation
#   futex/op     of those, futex calls: thread hand-offs and lock waits
#   wall us/op   elapsed time, for reference only (needs an idle machine)
#
# The first lines also give what fsbridge pays on every request beyond
# passthrough_ll, whatever its own code does: one round trip over a Unix
# socket between two processes (bench/pingpong.c), relay to daemon and back,
# with both sides sleeping in poll() and with both spinning first (50 us, as
# --poll-us does), free-running and on one CPU, each with its CPU time.
#
# Compare fsbridged settings with BENCH_DAEMON_OPTS, e.g. the hybrid
# polling off and on:  BENCH_DAEMON_OPTS=--poll-us=0 bench/cost.sh
#
# Workloads (per operation): create, stat, unlink (bench/fileops.c, per
# file), randread (fio 4 KiB random reads of a COST_SIZE_MB file with the
# host page cache warm, per read), untar and grep -r (of bench/make-tree.py's
# tree of COST_TREE_FILES files, per file).
#
# Environment: COST_TARGETS (pll auto always writeback), COST_FILES (3000),
# COST_SIZE_MB (64), COST_TREE_FILES (3000), BENCH_DIR
# (/var/tmp/fsbridge-bench), FSB_BUILD_DIR (default build-bench/, as bench.sh).
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "$(readlink -f "$0")")/common.sh" cost "${COST_TARGETS:-pll auto always writeback}"
nfiles=${COST_FILES:-3000}
size_mb=${COST_SIZE_MB:-64}
tree_files=${COST_TREE_FILES:-3000}
events=task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_futex

bench_setup "mounts, perf counters of other processes" perf
tree_tar=$work/tree-$tree_files.tar
[[ -s $tree_tar ]] || /usr/bin/python3 bench/make-tree.py "$tree_tar" "$tree_files"

# measure T NAME OPS CMD...: runs CMD on target T while counting, prints a row.
measure() {
    local t=$1 name=$2 ops=$3
    shift 3
    local srv=$work/perf-servers app=$work/perf-app
    perf_counted "$events" "$@" >/dev/null
    awk -v t="$t" -v w="$name" -v n="$ops" -v wall="$counted_wall" \
        -v cpu="$(($(perf_sum "$srv" task-clock | cut -d. -f1) + $(perf_sum "$app" task-clock | cut -d. -f1)))" \
        -v cs="$(($(perf_sum "$srv" context-switches) + $(perf_sum "$app" context-switches)))" \
        -v sc="$(perf_sum "$srv" raw_syscalls:sys_enter)" -v fx="$(perf_sum "$srv" syscalls:sys_enter_futex)" \
        'BEGIN { printf "%-10s %-9s %9.1f %9.2f %11.1f %9.2f %10.1f\n", t, w,
                 cpu * 1000 / n, cs / n, sc / n, fx / n, wall * 1e6 / n }'
}

run_workloads() {
    local t=$1 f=$work/bin/fileops
    mkdir "$dir/meta"
    measure "$t" create "$nfiles" "$f" "$dir/meta" "$nfiles" create
    measure "$t" stat "$nfiles" "$f" "$dir/meta" "$nfiles" stat
    measure "$t" unlink "$nfiles" "$f" "$dir/meta" "$nfiles" unlink
    head -c "$((size_mb << 20))" /dev/urandom >"$dir/rand.dat"
    cat "$dir/rand.dat" >/dev/null
    measure "$t" randread "$((size_mb * 256))" fio --name=cost --filename="$dir/rand.dat" \
        --rw=randread --bs=4k --size="${size_mb}M" --ioengine=psync --invalidate=0
    mkdir "$dir/tree"
    measure "$t" untar "$tree_files" tar -xf "$tree_tar" -C "$dir/tree"
    measure "$t" grep "$tree_files" grep -r fsbridge_needle "$dir/tree"
}

cc -O2 -Wall -o "$work/bin/pingpong" bench/pingpong.c >&2

print_header "cost per operation"
echo "fsbridged options: ${BENCH_DAEMON_OPTS:-(defaults)}; fsbridge-mount -o ${BENCH_MOUNT_OPTS:-(defaults)}"
# pingpong_row WHAT CMD...: "WHAT: X us, cpu Y us" for one round trip.
pingpong_row() {
    local what=$1 r
    shift
    read -r -a r <<<"$("$@")"
    printf '  %-28s %6s us, cpu %6s us\n' "$what:" "${r[0]}" "${r[1]}"
}
echo "the extra hop alone: one Unix socket round trip between two processes (bench/pingpong.c):"
pingpong_row "sleeping in poll()" "$work/bin/pingpong"
pingpong_row "spinning 50 us first" "$work/bin/pingpong" 20000 64 50
pingpong_row "one CPU, sleeping" taskset -c 0 "$work/bin/pingpong"
pingpong_row "one CPU, spinning" taskset -c 0 "$work/bin/pingpong" 20000 64 50
printf '%-10s %-9s %9s %9s %11s %9s %10s\n' target workload "cpu us/op" ctxsw/op \
    syscalls/op futex/op "wall us/op"
each_target run_workloads
