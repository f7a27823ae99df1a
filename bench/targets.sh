# shellcheck shell=bash disable=SC2034,SC2154  # variables shared with the sourcing script
# targets.sh - the filesystems bench.sh and cost.sh measure, sourced by both.
#
# Needs: $work (work directory), $build (fsbridge build), the array
# $targets, and die/log functions.  Provides:
#   build_tools           passthrough_ll and fileops into $work/bin; drops
#                         pll from $targets when libfuse's example is missing
#                         and says so in $pll_note
#   start_target T        T in native pll auto always writeback; leaves the
#                         directory to measure in $dir and the pids of the
#                         processes serving it in $server_pids
#   stop_target T
#   cleanup_target        for an EXIT trap
# BENCH_MOUNT_OPTS (environment) adds -o options to fsbridge-mount, to
# compare settings such as threads=N.

pll_src=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
pll='' pll_note=''
dir='' mnt='' daemon_pid='' mount_pid='' server_pids='' fsb_sock=$work/fsbridged.sock

build_tools() {
    mkdir -p "$work/bin"
    pll_note="passthrough_ll: $pll_src (libfuse $(pkg-config --modversion fuse3))"
    if [[ -f $pll_src ]]; then
        # shellcheck disable=SC2046
        cc -O2 -o "$work/bin/passthrough_ll" -I"$(dirname "$pll_src")" "$pll_src" \
            $(pkg-config --cflags --libs fuse3) >&2 && pll=$work/bin/passthrough_ll
    fi
    if [[ -z $pll ]]; then
        pll_note="passthrough_ll: NOT AVAILABLE ($pll_src missing or did not build): column skipped"
        targets=("${targets[@]/pll/}")
    fi
    cc -O2 -Wall -o "$work/bin/fileops" bench/fileops.c >&2
}

listening() {
    awk -v p="$1" '$8 == p && $4 == "00010000" { f = 1 } END { exit !f }' /proc/net/unix
}

wait_for() { # wait_for WHAT CMD...: up to 10 s
    local what=$1
    shift
    for _ in $(seq 200); do "$@" && return 0; sleep 0.05; done
    die "timed out waiting for $what"
}

fresh_dir() { rm -rf "$1" && mkdir -p "$1"; }

start_target() {
    local t=$1 src=$work/src-$1
    mnt=$work/mnt-$1
    case $t in
    native)
        fresh_dir "$src"
        dir=$src server_pids=''
        return ;;
    pll)
        fresh_dir "$src"; mkdir -p "$mnt"
        "$pll" -f -o "source=$src,cache=auto,default_permissions" "$mnt" 2>"$work/pll.log" &
        daemon_pid=$! server_pids=$! ;;
    auto | always | writeback)
        local opts=cache=$t
        [[ $t == writeback ]] && opts=cache=auto,writeback
        fresh_dir "$src"; mkdir -p "$mnt"
        "$build/fsbridged" --export "b=$src,$opts" --listen "unix:$fsb_sock" \
            --log-level warn 2>"$work/fsbridged-$t.log" &
        daemon_pid=$!
        wait_for "fsbridged" listening "$fsb_sock"
        # In the foreground (-f) so that its pid is known; it exits at umount.
        "$build/fsbridge-mount" -f -o "export=b${BENCH_MOUNT_OPTS:+,$BENCH_MOUNT_OPTS}" "unix:$fsb_sock" "$mnt" 2>>"$work/fsbridged-$t.log" &
        mount_pid=$! server_pids="$daemon_pid,$mount_pid" ;;
    esac
    wait_for "the $t mount" mountpoint -q "$mnt"
    dir=$mnt
}

stop_target() {
    local t=$1
    if [[ $t != native ]]; then
        umount "$mnt" 2>/dev/null || umount -l "$mnt"
        [[ $t == pll ]] || kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        [[ -z $mount_pid ]] || wait "$mount_pid" 2>/dev/null || true
        daemon_pid='' mount_pid=''
    fi
    rm -rf "$work/src-$t"
}

cleanup_target() {
    [[ -n $mnt ]] && mountpoint -q "$mnt" && { umount "$mnt" 2>/dev/null || umount -l "$mnt"; }
    [[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null
    return 0
}
