# shellcheck shell=bash disable=SC2034,SC2154  # variables shared with the sourcing script
# common.sh - how cost.sh, requests.sh and seq.sh start and run:
#   source "$(dirname "$(readlink -f "$0")")/common.sh" NAME TARGETS
# NAME: what their messages carry; TARGETS: the targets.sh targets to
# measure, space-separated (into the array $targets).  It moves to the
# repository's root.  Provides:
#   $repo         the repository (the current directory)
#   $work         BENCH_DIR, default /var/tmp/fsbridge-bench
#   $build        FSB_BUILD_DIR, default build-bench/ (bench.sh makes it)
#   log, die      a line on stderr that names the script; die exits 1
#   bench_setup WHY TOOL...
#                 dies unless run as root (for WHY), with each TOOL, and a
#                 build in $build; installs fio, sources targets.sh (the
#                 script's $targets), builds its tools, and ends every
#                 target at exit (cleanup_target, then the script's
#                 cleanup_extra if it has one)
#   print_header TITLE
#                 TITLE with the kernel, CPUs and load, then the build and
#                 the passthrough_ll source measured
#   each_target FUNC
#                 for every target but native (no servers, no requests):
#                 starts it, runs FUNC T, stops it
#   perf_counted EVENTS CMD...
#                 runs CMD while `perf stat` counts EVENTS in the target's
#                 servers ($work/perf-servers) and in CMD ($work/perf-app);
#                 CMD's wall time in $counted_wall (seconds)
#   perf_sum FILE EVENT
#                 the event's count in such a file
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
bench_name=$1
read -r -a targets <<<"$2"
repo=$PWD
work=${BENCH_DIR:-/var/tmp/fsbridge-bench}
build=${FSB_BUILD_DIR:-$repo/build-bench}

log() { printf '%s: %s\n' "$bench_name" "$*" >&2; }
die() {
    log "$*"
    exit 1
}

bench_setup() {
    ((EUID == 0)) || die "run as root ($1)"
    shift
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is missing"
    done
    [[ -x $build/fsbridged && -x $build/fsbridge-mount ]] ||
        die "no fsbridge build in $build (run bench.sh once, or set FSB_BUILD_DIR)"
    scripts/install-deps.sh fio >&2
    mkdir -p "$work"
    # shellcheck source=bench/targets.sh
    source bench/targets.sh
    build_tools
    trap 'declare -F cleanup_extra >/dev/null && cleanup_extra; cleanup_target' EXIT
}

print_header() {
    echo "$1: $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "fsbridge: $build at $(git describe --always --dirty 2>/dev/null || echo '?')"
    echo "$pll_note"
}

each_target() {
    local t
    for t in "${targets[@]}"; do
        [[ -n $t && $t != native ]] || continue
        log "$t"
        start_target "$t"
        "$1" "$t"
        stop_target "$t"
    done
}

perf_counted() {
    local events=$1
    shift
    perf stat -x, -e "$events" -p "$server_pids" -o "$work/perf-servers" &
    local perf_pid=$!
    sleep 0.5 # perf attaches
    local status=0 t0=$EPOCHREALTIME
    perf stat -x, -e "$events" -o "$work/perf-app" -- "$@" || status=$?
    counted_wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    return "$status"
}

perf_sum() { awk -F, -v e="$2" '$3 == e { s += $1 } END { print s + 0 }' "$1"; }
