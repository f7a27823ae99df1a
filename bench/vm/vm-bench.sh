#!/usr/bin/env bash
# vm-bench.sh - the same guest workloads on fsbridged's vhost-user-fs backend
# and on the legacy C virtiofsd that Debian ships in qemu-system-common,
# inside the same QEMU guest (Debian's kernel, as in tests/vm), same cache
# mode; one table, side by side.
#
#   bench/vm/vm-bench.sh                        (as root; not part of CI)
#   VMBENCH_RUNS=1 VMBENCH_SIZE_MB=64 bench/vm/vm-bench.sh      (quick)
#
# Rows: sequential write and read of VMBENCH_SIZE_MB MiB in 1 MiB blocks,
# 4 KiB random reads, create/stat/unlink of VMBENCH_FILES files, untar and
# rm -rf of a synthetic source tree (bench/make-tree.py).  The guest runs
# under software emulation (-accel tcg): its CPU is slow, so the numbers
# compare the two backends under the same guest, they are not what a KVM
# guest would see.
#
# Environment:
#   VMBENCH_RUNS        boots per backend, the median is shown (default 3)
#   VMBENCH_CACHE       never, auto or always for both (default auto; the
#                       legacy virtiofsd has no metadata mode)
#   VMBENCH_SIZE_MB     sequential file size (default 256)
#   VMBENCH_RANDREADS   4 KiB random reads (default 8192)
#   VMBENCH_FILES       files of the create/stat/unlink rows (default 5000)
#   VMBENCH_TREE_FILES  files of the source tree (default 3000, about 18 MiB)
#   VMBENCH_THREADS     --thread-pool-size for both (default: each its own:
#                       fsbridged 4, virtiofsd 64)
#   VMBENCH_DIR         work directory (default /var/tmp/fsbridge-vm-bench)
#   VIRTIOFSD           the legacy daemon (default /usr/lib/qemu/virtiofsd)
#   FSB_BUILD_DIR       fsbridge build to measure (default: build-bench/, a
#                       release build this script configures and builds)
#   FSB_VM_CACHE        where tests/vm keeps the guest kernel
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/../.."
repo=$PWD
work=${VMBENCH_DIR:-/var/tmp/fsbridge-vm-bench}
build=${FSB_BUILD_DIR:-$repo/build-bench}
tree_files=${VMBENCH_TREE_FILES:-3000}

log() { printf 'vm-bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

((EUID == 0)) || die "run as root (vhost-user backends, the legacy virtiofsd's sandbox)"
if busy=$(pgrep -af '[n]inja|[c]c1|[p]ytest|[q]emu-system'); then
    log "WARNING: other work is running; numbers will be noisy:"
    printf '  %s\n' "$busy" >&2
fi

scripts/install-deps.sh >&2
if [[ -z ${FSB_BUILD_DIR:-} ]]; then
    [[ -f $build/meson-private/coredata.dat ]] ||
        meson setup "$build" --buildtype=release >&2
    ninja -C "$build" >&2
fi
[[ -x $build/fsbridged ]] || die "no fsbridged in $build"

# The guest's programs: static, it has no libraries.
mkdir -p "$work/bin"
cc -O2 -Wall -static -o "$work/bin/guestbench" bench/vm/guestbench.c >&2
cc -O2 -Wall -static -o "$work/bin/fileops" bench/fileops.c >&2
tree_tar=$work/tree-$tree_files.tar
[[ -f $tree_tar ]] || /usr/bin/python3 bench/make-tree.py "$tree_tar" "$tree_files"

args=(--build "$build" --tools "$work/bin" --tree "$tree_tar" --work "$work"
      --cache "${VMBENCH_CACHE:-auto}" --runs "${VMBENCH_RUNS:-3}"
      --size-mb "${VMBENCH_SIZE_MB:-256}" --randreads "${VMBENCH_RANDREADS:-8192}"
      --files "${VMBENCH_FILES:-5000}" --virtiofsd "${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}")
[[ -n ${VMBENCH_THREADS:-} ]] && args+=(--threads "$VMBENCH_THREADS")
exec /usr/bin/python3 bench/vm/vm_bench.py "${args[@]}"
