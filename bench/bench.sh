#!/usr/bin/env bash
# bench.sh - fsbridge against a native directory and libfuse's passthrough_ll.
#
#   bench/bench.sh                              (as root; not part of CI)
#   BENCH_SIZE_MB=64 BENCH_RUNS=1 bench/bench.sh   (a quick run, a few minutes)
#
# Prints one table (stdout; progress goes to stderr): the median of
# BENCH_RUNS runs of each workload on each target:
#
#   native           a directory on the same disk
#   passthrough_ll   libfuse's example low-level passthrough filesystem, built
#                    here from the source Debian ships in libfuse3-dev's
#                    examples, with -o cache=auto (1 s timeouts, page cache) and
#                    default_permissions, as fsbridge-mount mounts
#   pll always       the same with -o cache=always (a day's timeouts, the page
#                    cache kept at open): the base of the always and coherent
#                    columns' ratios when it runs, since they cache as long
#   fsbridge auto    fsbridged --export ...,cache=auto   + fsbridge-mount over a
#   fsbridge always  ...,cache=always                       Unix socket (the
#   fsbridge coherent ...,cache=coherent (always's caching, host changes pushed)
#   fsbridge writeback ...,cache=auto,writeback              stream transport)
#   auto uring       fsbridge auto with the relay's modes (targets.sh,
#   auto fd          relay_opts): FUSE-over-io_uring rings; /dev/fuse queues;
#   auto old         the relay before per-CPU queues and polling
#                    (uring=off,poll_us=0); auto 1q: one queue and connection
#   fsbridge overlay ...,cache=auto,overlay=UPPER: the export is LOWER (a
#                    copy-on-write export); the "unchanged" rows read LOWER's
#                    files, the others write UPPER
#
# Each fsbridge cell also shows its ratio to passthrough_ll (always and
# coherent: to pll always, when it runs), oriented so that
# >= 1.00x means at least as fast (throughput / passthrough_ll's, or
# passthrough_ll's time / the time).
#
# Environment:
#   BENCH_RUNS        runs per cell, the median is shown (default 3)
#   BENCH_SIZE_MB     size of the sequential and random I/O file (default 1024)
#   BENCH_FILES       files of the create/stat/unlink rows (default 10000)
#   BENCH_TREE_FILES  files of the synthetic source tree (default 15000)
#   BENCH_TARGETS     subset of: native pll pll:always auto always coherent writeback overlay
#                     auto:uring auto:fd auto:old auto:1q coherent:none (any cache mode
#                     takes :RELAY; a relay mode takes -pN for poll_us=N and
#                     -dN for fsbridged --poll-us=N, e.g. auto:uring-p50)
#   BENCH_COPYUP_MB   size of the file whose first write is timed (default 256)
#   BENCH_DIR         work directory on a local disk (default /var/tmp/fsbridge-bench)
#   FSB_BUILD_DIR     fsbridge build to measure (default: build-bench/, a
#                     release build this script configures and builds)
#   BENCH_MOUNT_OPTS  extra -o options for fsbridge-mount (e.g. threads=1)
#   BENCH_WORKLOADS   subset of: unchanged io meta tree (default all); the
#                     table shows - for the rows left out
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."
repo=$PWD
runs=${BENCH_RUNS:-3}
size_mb=${BENCH_SIZE_MB:-1024}
nfiles=${BENCH_FILES:-10000}
tree_files=${BENCH_TREE_FILES:-15000}
read -r -a targets <<<"${BENCH_TARGETS:-native pll auto always coherent writeback overlay auto:uring auto:old}"
copyup_mb=${BENCH_COPYUP_MB:-256}
read -r -a workloads <<<"${BENCH_WORKLOADS:-unchanged io meta tree}"
seed_unchanged=1 # targets.sh: every target starts with the unchanged files
work=${BENCH_DIR:-/var/tmp/fsbridge-bench}
build=${FSB_BUILD_DIR:-$repo/build-bench}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

((EUID == 0)) || die "run as root (mounts, and drop_caches for the cold rows)"
[[ $runs =~ ^[1-9][0-9]*$ && $size_mb =~ ^[1-9][0-9]*$ ]] || die "bad BENCH_RUNS or BENCH_SIZE_MB"
if busy=$(pgrep -af '[n]inja|[c]c1|[p]ytest'); then
    log "WARNING: other work is running; numbers will be noisy:"
    printf '  %s\n' "$busy" >&2
fi

# ---------------------------------------------------------------------------
# Preparation: packages, builds, the tree tarball

scripts/install-deps.sh fio >&2
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"

if [[ -z ${FSB_BUILD_DIR:-} ]]; then
    [[ -f $build/meson-private/coredata.dat ]] ||
        meson setup "$build" --buildtype=release >&2
    ninja -C "$build" >&2
fi
[[ -x $build/fsbridged && -x $build/fsbridge-mount ]] || die "no fsbridge build in $build"

# shellcheck source=bench/targets.sh
source bench/targets.sh
build_tools

tree_tar=$work/tree-$tree_files.tar
[[ -s $tree_tar ]] || /usr/bin/python3 bench/make-tree.py "$tree_tar" "$tree_files"
tree_mb=$(($(stat -c %s "$tree_tar") / 1048576))

trap cleanup_target EXIT

# ---------------------------------------------------------------------------
# Workloads

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# fio_run RW BS [extra...]: prints "MiB/s IOPS" of the one job.
fio_run() {
    local rw=$1 bs=$2
    shift 2
    fio --name=bench --filename="$dir/seq.dat" --rw="$rw" --bs="$bs" --size="${size_mb}M" \
        --ioengine=psync --fallocate=none --invalidate=0 --output-format=json "$@" |
        /usr/bin/python3 -c '
import json, sys
job = json.load(sys.stdin)["jobs"][0]
side = job["write"] if job["write"]["io_bytes"] else job["read"]
print("%.0f %.0f" % (side["bw_bytes"] / 1048576, side["iops"]))'
}

# seconds CMD...: runs CMD, prints its wall time in seconds.
seconds() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null
    local t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}

declare -A results
record() { results[$1|$2]+=" $3"; }

# The files every target held before the run (seed, targets.sh): on an
# overlay export they are LOWER's, read through the merged view; the first
# write to big.dat is a copy-up there (per MiB), a plain write elsewhere.
run_unchanged() {
    local t=$1
    grep -rq no_such_needle_here "$dir/unchanged" || true # warm
    record u_read "$t" "$(seconds grep -r fsbridge_needle "$dir/unchanged")"
    record u_stat "$t" "$(seconds find "$dir/unchanged" -printf '%s %m\n')"
    drop_caches
    record u_read_cold "$t" "$(seconds grep -r fsbridge_needle "$dir/unchanged")"
    drop_caches
    record u_stat_cold "$t" "$(seconds find "$dir/unchanged" -printf '%s %m\n')"
    local s
    s=$(seconds dd if=/dev/zero of="$dir/big.dat" bs=1 count=1 conv=notrunc,fsync status=none)
    record copyup "$t" "$(awk -v s="$s" -v m="$copyup_mb" 'BEGIN { printf "%.2f", s * 1000 / m }')"
}

run_io() {
    local t=$1 v
    rm -f "$dir/seq.dat"
    read -r v _ < <(fio_run write 1M --end_fsync=1);  record seqwrite "$t" "$v"
    drop_caches
    read -r v _ < <(fio_run read 1M);                 record seqread_cold "$t" "$v"
    read -r v _ < <(fio_run read 1M);                 record seqread_warm "$t" "$v"
    read -r _ v < <(fio_run randread 4k);             record randread "$t" "$v"
    rm -f "$dir/seq.dat"
}

run_meta() {
    local t=$1 c s u
    mkdir "$dir/meta"
    read -r c s u < <("$work/bin/fileops" "$dir/meta" "$nfiles")
    record create "$t" "$c"; record stat "$t" "$s"; record unlink "$t" "$u"
    rmdir "$dir/meta"
}

run_tree() {
    local t=$1 hits
    mkdir "$dir/tree"
    record untar "$t" "$(seconds tar -xf "$tree_tar" -C "$dir/tree")"
    # The first walk and read after the untar: the untar changed every
    # directory, and a FUSE kernel drops the pages it wrote when tar sets
    # each file's mtime (the attributes changed), so these list and read
    # again; the second ones are served from the guest's caches, as
    # native's first ones are.
    record find_first "$t" "$(seconds find "$dir/tree")"
    record find "$t" "$(seconds find "$dir/tree")"
    record du "$t" "$(seconds du -s "$dir/tree")"
    record grep_first "$t" "$(seconds grep -r fsbridge_needle "$dir/tree")"
    hits=$(grep -rl fsbridge_needle "$dir/tree" | wc -l)
    ((hits > 0)) || die "$t: grep found nothing in the tree"
    record grep "$t" "$(seconds grep -r fsbridge_needle "$dir/tree")"
    drop_caches
    record find_cold "$t" "$(seconds find "$dir/tree")"
    record rm "$t" "$(seconds rm -rf "$dir/tree")"
}

run_workloads() {
    local w
    for w in "${workloads[@]}"; do
        case $w in
        unchanged | io | meta | tree) "run_$w" "$1" ;;
        *) die "unknown workload '$w' in BENCH_WORKLOADS" ;;
        esac
    done
}

# Other work makes the per-request rows swing both ways (a busy CPU wakes
# faster than an idle one in a VM), so the table says how loaded it was.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((run = 1; run <= runs; run++)); do
    for t in "${targets[@]}"; do
        [[ -n $t ]] || continue
        log "run $run/$runs: $t"
        start_target "$t"
        run_workloads "$t"
        stop_target "$t"
    done
done

# ---------------------------------------------------------------------------
# The table

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
    else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# key|label|better (h: higher is better, l: lower is better)
rows=(
    "seqwrite|seq write 1 MiB blocks + fsync (MiB/s)|h"
    "seqread_cold|seq read 1 MiB blocks, cold (MiB/s)|h"
    "seqread_warm|seq read 1 MiB blocks, warm (MiB/s)|h"
    "randread|4 KiB random read, warm (IOPS)|h"
    "create|create $nfiles empty files (files/s)|h"
    "stat|stat $nfiles files (files/s)|h"
    "unlink|unlink $nfiles files (files/s)|h"
    "untar|untar tree (s)|l"
    "find_first|find tree, first after untar (s)|l"
    "find|find tree, warm (s)|l"
    "du|du -s tree, warm (s)|l"
    "grep_first|grep -r tree, first after untar (s)|l"
    "grep|grep -r tree, warm (s)|l"
    "find_cold|find tree, cold (s)|l"
    "rm|rm -rf tree (s)|l"
    "u_read|grep -r unchanged tree, warm (s)|l"
    "u_stat|find -printf (stat) unchanged tree, warm (s)|l"
    "u_read_cold|grep -r unchanged tree, cold (s)|l"
    "u_stat_cold|find -printf unchanged tree, cold (s)|l"
    "copyup|first 1-byte write to a $copyup_mb MiB file (ms/MiB)|l"
)
# The columns of the targets that ran: the plain ones in this order, then
# the relay modes as asked for.
all=() heads=()
plain=(native pll pll:always auto always coherent writeback overlay)
plain_heads=(native passthrough_ll "pll always" "fsbridge auto" "fsbridge always" "fsbridge coherent"
    "fsbridge writeback" "fsbridge overlay")
for i in "${!plain[@]}"; do
    [[ " ${targets[*]} " == *" ${plain[$i]} "* ]] || continue
    all+=("${plain[$i]}")
    heads+=("${plain_heads[$i]}")
done
for t in "${targets[@]}"; do
    [[ $t == *:* && $t != pll:always ]] || continue
    all+=("$t")
    heads+=("${t%%:*} ${t#*:}")
done

with_pll_always=false
[[ " ${targets[*]} " == *" pll:always "* ]] && with_pll_always=true
# base_of T: the column T's ratio is taken against: passthrough_ll with
# -o cache=always for the modes that cache as long (always, coherent),
# when that column ran; passthrough_ll's cache=auto otherwise.
base_of() {
    if [[ ($1 == always* || $1 == coherent*) ]] && $with_pll_always; then
        echo pll:always
    else
        echo pll
    fi
}

src_dir=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["directories"]["source"])' \
    "$build/meson-info/meson-info.json" 2>/dev/null || echo "$repo")
buildtype=$(meson introspect "$build" --buildoptions 2>/dev/null | /usr/bin/python3 -c \
    'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "buildtype"][0])' || echo '?')
echo "fsbridge benchmark: median of $runs run(s); $(uname -r), $(nproc) CPUs"
echo "load average (1, 5, 15 min): $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "fsbridge: $build ($buildtype) from $src_dir at $(git -C "$src_dir" describe --always --dirty 2>/dev/null || echo '?')"
echo "work dir $work on $(df -T "$work" | awk 'NR == 2 { print $2 " " $1 }'); I/O file ${size_mb} MiB; cold = after sync + drop_caches"
echo "tree: synthetic, bench/make-tree.py: $tree_files files in $((tree_files / 15)) dirs, $tree_mb MiB (C-like text)"
echo "$pll_note"
echo "(x.xx) = fsbridge relative to passthrough_ll; >= 1.00x is as fast or faster"
$with_pll_always &&
    echo "        (the always and coherent columns: relative to passthrough_ll always, which caches as long)"
echo
printf '%-42s' "workload"
for i in "${!all[@]}"; do printf ' | %18s' "${heads[$i]}"; done
echo
printf '%s\n' "$(printf '%.0s-' $(seq $((42 + 21 * ${#all[@]}))))"
slow=()
for row in "${rows[@]}"; do
    IFS='|' read -r key label better <<<"$row"
    printf '%-42s' "$label"
    for t in "${all[@]}"; do
        v=$(median <<<"${results[$key|$t]:-}")
        cell=$v
        base=$(median <<<"${results[$key|$(base_of "$t")]:-}")
        if [[ $v != - && $base != - && $t != native && $t != pll* ]]; then
            ratio=$(awk -v v="$v" -v b="$base" -v h="$better" \
                'BEGIN { r = (h == "h") ? (b > 0 ? v / b : 0) : (v > 0 ? b / v : 0); printf "%.2f", r }')
            cell="$v (${ratio}x)"
            awk -v r="$ratio" 'BEGIN { exit !(r < 0.9) }' && slow+=("$label: $t ${ratio}x")
        fi
        printf ' | %18s' "$cell"
    done
    echo
done
echo
# The overlay's target: unchanged files within 1.2x of the plain export.
for key in u_read u_stat u_read_cold u_stat_cold; do
    a=$(median <<<"${results[$key|auto]:-}") o=$(median <<<"${results[$key|overlay]:-}")
    [[ $a != - && $o != - ]] || continue
    awk -v k="$key" -v a="$a" -v o="$o" 'BEGIN { r = a > 0 ? o / a : 0
        printf "overlay / auto, %s: %.2fx (target <= 1.20x)%s\n", k, r, r > 1.2 ? "  OVER" : "" }'
done
if ((${#slow[@]})); then
    echo "below 0.9x of their passthrough_ll column:"
    printf '  %s\n' "${slow[@]}"
else
    echo "every fsbridge cell is at least 0.9x passthrough_ll"
fi
