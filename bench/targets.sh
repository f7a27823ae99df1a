# shellcheck shell=bash disable=SC2034,SC2154  # variables shared with the sourcing script
# targets.sh - the filesystems bench.sh and cost.sh measure, sourced by both.
#
# Needs: $work (work directory), $build (fsbridge build), the array
# $targets, and die/log functions.  Provides:
#   build_tools           passthrough_ll and fileops into $work/bin; drops
#                         pll from $targets when libfuse's example is missing
#                         and says so in $pll_note
#   start_target T        T in native pll pll:always auto always writeback
#                         overlay, or a cache mode with a relay mode,
#                         MODE:RELAY (relay_opts); pll:always is
#                         passthrough_ll with -o cache=always (a day's
#                         timeouts and the page cache kept at open, as
#                         fsbridge's always and coherent cache);
#                         overlay: cache=auto with overlay=$work/upper (the
#                         target's directory is LOWER, its seed unchanged);
#                         leaves the directory to measure in $dir and the
#                         pids of the processes serving it in $server_pids
#   stop_target T
#   cleanup_target        for an EXIT trap
# BENCH_MOUNT_OPTS (environment) adds -o options to fsbridge-mount, to
# compare settings such as queues=N; BENCH_DAEMON_OPTS adds options to
# fsbridged (e.g. --poll-us=0).

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
        local t kept=()
        for t in "${targets[@]}"; do [[ $t == pll* ]] || kept+=("$t"); done
        targets=("${kept[@]}")
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

# seed DIR: what every target holds before it is mounted, for bench.sh's
# rows on files the workload never changed (an overlay's LOWER objects):
# the tree in DIR/unchanged and a $copyup_mb MiB file DIR/big.dat.  Only
# when the sourcing script sets seed_unchanged=1 (cost.sh and requests.sh
# measure empty directories).
seed() {
    [[ ${seed_unchanged:-} == 1 ]] || return 0
    mkdir "$1/unchanged"
    tar -xf "$tree_tar" -C "$1/unchanged"
    head -c "${copyup_mb}M" /dev/urandom >"$1/big.dat"
}

# relay_opts RELAY: fsbridge-mount's -o options for a relay mode,
# BASE[-pN][-dN]:
#   uring  FUSE-over-io_uring rings (the fuse module's enable_uring is set
#          to 1 for the run and put back)
#   fd     cloned /dev/fuse queues, with the default poll_us (uring=off)
#   old    the relay before per-CPU queues and polling: /dev/fuse queues
#          and sleeping for every reply (uring=off, poll_us=0)
#   1q     one queue, one connection (queues=1, uring=off)
#   none   open=none: the guest kernel sends no OPEN, FLUSH or RELEASE
#          (src/mount/no_open.h; in force with cache=coherent only)
#   -pN    the relay's poll_us=N (e.g. uring-p50), so that settings can
#          alternate in one run
#   -dN    fsbridged's --poll-us=N for this target (daemon_opts)
#   -h1    fsbridged --cpu-hints follow: each ring's connection is read on
#          the ring's CPU (-h0: ignore, the default), to compare
relay_opts() {
    local base=${1%%-*} poll
    poll=$(relay_suffix "$1" p)
    case $base in
    uring) echo "uring=on${poll:+,poll_us=$poll}" ;;
    fd) echo "uring=off${poll:+,poll_us=$poll}" ;;
    old) echo uring=off,poll_us=0 ;;
    1q) echo "queues=1,uring=off${poll:+,poll_us=$poll}" ;;
    none) echo "open=none${poll:+,poll_us=$poll}" ;;
    *) die "unknown relay mode '$1' (expected uring, fd, old, 1q or none, then -pN, -dN, -hN)" ;;
    esac
}

# relay_suffix RELAY LETTER: N of RELAY's -LETTER N suffix, or nothing.
relay_suffix() {
    local part parts
    IFS=- read -r -a parts <<<"$1"
    for part in "${parts[@]:1}"; do
        [[ $part =~ ^$2([0-9]+)$ ]] && { echo "${BASH_REMATCH[1]}"; return; }
        [[ $part =~ ^[pdh][0-9]+$ ]] || die "bad relay mode suffix '-$part' in '$1'"
    done
}

# daemon_opts T: fsbridged's options for target T: BENCH_DAEMON_OPTS, and
# --poll-us=N for a relay mode's -dN, --cpu-hints for its -hN.
daemon_opts() {
    local d='' h=''
    [[ $1 == *:* ]] && d=$(relay_suffix "${1#*:}" d) h=$(relay_suffix "${1#*:}" h)
    [[ -n $h ]] && h=$( ((h)) && echo follow || echo ignore)
    echo "${BENCH_DAEMON_OPTS:-}${d:+ --poll-us=$d}${h:+ --cpu-hints $h}"
}

enable_uring=/sys/module/fuse/parameters/enable_uring
uring_was=''

start_target() {
    # No ':' in the paths: fio reads it as a separator of --filename's files.
    local t=$1 src=$work/src-${1//:/-}
    mnt=$work/mnt-${1//:/-}
    case $t in
    native)
        fresh_dir "$src"; seed "$src"
        dir=$src server_pids=''
        return ;;
    pll | pll:always)
        local cache=auto
        [[ $t == pll:always ]] && cache=always
        fresh_dir "$src"; seed "$src"; mkdir -p "$mnt"
        "$pll" -f -o "source=$src,cache=$cache,default_permissions" "$mnt" 2>"$work/pll.log" &
        daemon_pid=$! server_pids=$! ;;
    auto | always | writeback | coherent | overlay | auto:* | always:* | writeback:* | coherent:*)
        local cache=${t%%:*} relay='' mount_opts=${BENCH_MOUNT_OPTS:-}
        [[ $t == *:* ]] && relay=$(relay_opts "${t#*:}")
        mount_opts=$relay${relay:+${mount_opts:+,}}$mount_opts
        if [[ $relay == uring=on* ]]; then
            [[ -w $enable_uring ]] || die "$t: this kernel has no FUSE-over-io_uring"
            uring_was=$(cat "$enable_uring")
            echo 1 >"$enable_uring"
        fi
        local opts=cache=$cache
        [[ $cache == writeback ]] && opts=cache=auto,writeback
        [[ $cache == overlay ]] && opts=cache=auto,overlay=$work/upper &&
            fresh_dir "$work/upper" && rm -rf "$work/upper.work"
        fresh_dir "$src"; seed "$src"; mkdir -p "$mnt"
        # shellcheck disable=SC2046  # daemon_opts: words on purpose
        "$build/fsbridged" --export "b=$src,$opts" --listen "unix:$fsb_sock" \
            --log-level warn $(daemon_opts "$t") 2>"$work/fsbridged-$t.log" &
        daemon_pid=$!
        wait_for "fsbridged" listening "$fsb_sock"
        # In the foreground (-f) so that its pid is known; it exits at umount.
        "$build/fsbridge-mount" -f -o "export=b${mount_opts:+,$mount_opts}" "unix:$fsb_sock" "$mnt" 2>>"$work/fsbridged-$t.log" &
        mount_pid=$! server_pids="$daemon_pid,$mount_pid" ;;
    esac
    wait_for "the $t mount" mountpoint -q "$mnt"
    dir=$mnt
}

stop_target() {
    local t=$1
    if [[ $t != native ]]; then
        umount "$mnt" 2>/dev/null || umount -l "$mnt"
        [[ $t == pll* ]] || kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        [[ -z $mount_pid ]] || wait "$mount_pid" 2>/dev/null || true
        daemon_pid='' mount_pid=''
    fi
    put_back_uring
    rm -rf "$work/src-${t//:/-}" "$work/upper" "$work/upper.work"
}

put_back_uring() {
    [[ -z $uring_was ]] || echo "$([[ $uring_was == Y ]] && echo 1 || echo 0)" >"$enable_uring"
    uring_was=''
}

cleanup_target() {
    put_back_uring
    [[ -n $mnt ]] && mountpoint -q "$mnt" && { umount "$mnt" 2>/dev/null || umount -l "$mnt"; }
    [[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null
    return 0
}
