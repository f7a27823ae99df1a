#!/usr/bin/env bash
# run-tests.sh - THE test command of fsbridge (README, .ci/run).
#
#   ./run-tests.sh [PYTEST_ARGS...]
#
# 1. installs missing Debian packages (scripts/install-deps.sh),
# 2. builds build-test/ with AddressSanitizer + UndefinedBehaviorSanitizer and
#    -Werror,
# 3. runs the unit tests (meson test) and the fuzz targets for a short while
#    (tests/fuzz/run-fuzz.sh, clang + libFuzzer),
# 4. fetches the VM tests' guest kernel once (tests/vm/fetch-kernel.sh, into
#    FSB_VM_CACHE, default /var/cache/fsbridge-vm),
# 5. runs the VM tests (QEMU guests on virtio-fs and virtio-serial, tests/vm)
#    and the integration tests (real FUSE mounts: needs root and /dev/fuse)
#    in one pytest run, passing PYTEST_ARGS through (e.g. -k rename, -x, -v).
#
# Exits non-zero on any failure.  The last line printed is pytest's summary
# ("N passed, M skipped in ..."), which CI reads.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")"
repo=$PWD
builddir=build-test
setup_opts=("-Db_sanitize=address,undefined" -Dwerror=true)

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh

# The configured options of an existing build dir, as "b_sanitize werror".
configured_opts() {
    meson introspect "$builddir" --buildoptions 2>/dev/null | /usr/bin/python3 -c '
import json, sys
opts = {o["name"]: o["value"] for o in json.load(sys.stdin)}
san = opts.get("b_sanitize")
print(",".join(san) if isinstance(san, list) else san, str(opts.get("werror")).lower())'
}

step "configure $builddir (address,undefined sanitizers, -Werror)"
if [[ ! -f $builddir/meson-private/coredata.dat ]]; then
    rm -rf "$builddir"
    meson setup "$builddir" "${setup_opts[@]}"
elif [[ $(configured_opts || true) != "address,undefined true" ]]; then
    echo "options of $builddir differ: wiping it"
    meson setup --wipe "$builddir" "${setup_opts[@]}"
else
    meson setup --reconfigure "$builddir" "${setup_opts[@]}"
fi

step "build"
ninja -C "$builddir"

# Sanitizer reports abort the process that hit them: a daemon with undefined
# behaviour dies (and the test that used it fails) instead of going on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}

step "unit tests"
meson test -C "$builddir" --no-rebuild --print-errorlogs

step "fuzz targets (libFuzzer, a short run from the corpus)"
tests/fuzz/run-fuzz.sh "${FSB_FUZZ_SECONDS:-20}"

step "VM guest kernel (Debian linux-image-amd64, cached)"
# Without a network the VM tests skip, naming the reason.
tests/vm/fetch-kernel.sh >/dev/null || echo "no guest kernel: the VM tests will skip"

step "VM tests and integration tests"
export FSB_BUILD_DIR=$repo/$builddir
exec /usr/bin/python3 -m pytest -q -rfEs tests/vm tests/integration "$@"
