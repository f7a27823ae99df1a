# shellcheck shell=bash disable=SC2034,SC2154  # variables shared with the sourcing script
# common.sh - how cost.sh, requests.sh and seq.sh start, sourced from the
# repository's root with $bench_name set (the name their messages carry).
# Provides:
#   $repo         the repository (the current directory)
#   $work         BENCH_DIR, default /var/tmp/fsbridge-bench
#   $build        FSB_BUILD_DIR, default build-bench/ (bench.sh makes it)
#   log, die      a line on stderr that names the script; die exits 1
#   need_root WHY dies unless run as root
#   need_build    dies unless $build has fsbridged and fsbridge-mount
repo=$PWD
work=${BENCH_DIR:-/var/tmp/fsbridge-bench}
build=${FSB_BUILD_DIR:-$repo/build-bench}

log() { printf '%s: %s\n' "$bench_name" "$*" >&2; }
die() {
    log "$*"
    exit 1
}
need_root() { ((EUID == 0)) || die "run as root ($1)"; }
need_build() {
    [[ -x $build/fsbridged && -x $build/fsbridge-mount ]] ||
        die "no fsbridge build in $build (run bench.sh once, or set FSB_BUILD_DIR)"
}
