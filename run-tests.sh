#!/usr/bin/env bash
# run-tests.sh - THE test command of fsbridge (README, .ci/run).
#
#   ./run-tests.sh [PYTEST_ARGS...]
#
# 1. installs missing Debian packages (scripts/install-deps.sh) and checks
#    that everything the tests import or run comes from one of them
#    (scripts/check-test-deps.py),
# 2. builds build-test/ with AddressSanitizer + UndefinedBehaviorSanitizer and
#    -Werror, and build-release/ (buildtype release) with -Werror,
# 3. runs the unit tests (meson test) and the fuzz targets for a short while
#    (tests/fuzz/run-fuzz.sh, clang + libFuzzer),
# 4. fetches the VM tests' guest kernel once (tests/vm/fetch-kernel.sh, into
#    FSB_VM_CACHE, default /var/cache/fsbridge-vm),
# 5. runs a subset of the integration tests in each relay mode (io_uring on,
#    spinning for replies (the default) and not, io_uring off, one queue and
#    many, no polling: conftest.py's RELAY_MODES),
# 6. runs the VM tests (QEMU guests on virtio-fs and virtio-serial, tests/vm)
#    and the integration tests (real FUSE mounts: needs root and /dev/fuse)
#    in one pytest run, passing PYTEST_ARGS through (e.g. -k rename, -x, -v).
#
# Exits non-zero on any failure.  The last line printed is pytest's summary
# ("N passed, M skipped in ..."), which CI reads.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")"
repo=$PWD
builddir=build-test

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh
/usr/bin/python3 scripts/check-test-deps.py

# configured_opts DIR NAME...: the values of meson options NAME... of an
# existing build dir, space-separated ("address,undefined true").
configured_opts() {
    local dir=$1
    shift
    meson introspect "$dir" --buildoptions 2>/dev/null | /usr/bin/python3 -c '
import json, sys
opts = {o["name"]: o["value"] for o in json.load(sys.stdin)}
def show(v):
    return ",".join(v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else str(v)
print(" ".join(show(opts.get(n)) for n in sys.argv[1:]))' "$@"
}

# configure DIR NAME=VALUE...: meson setup DIR with those options; an
# existing DIR configured otherwise is wiped, else reconfigured.
configure() {
    local dir=$1
    shift
    local names=("${@%%=*}") want="${*#*=}" opts=("${@/#/-D}")
    if [[ ! -f $dir/meson-private/coredata.dat ]]; then
        rm -rf "$dir"
        meson setup "$dir" "${opts[@]}"
    elif [[ $(configured_opts "$dir" "${names[@]}" || true) != "$want" ]]; then
        echo "options of $dir differ: wiping it"
        meson setup --wipe "$dir" "${opts[@]}"
    else
        meson setup --reconfigure "$dir" "${opts[@]}"
    fi
}

step "configure $builddir (address,undefined sanitizers, -Werror)"
configure "$builddir" b_sanitize=address,undefined werror=true

step "build"
ninja -C "$builddir"

# The release build (what demo.sh and users build) warns differently: gcc
# -O3 sees further (e.g. maybe-uninitialized), so it gets -Werror too.
step "release build: build-release (-O3, -Werror)"
configure build-release buildtype=release werror=true
ninja -C build-release

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

export FSB_BUILD_DIR=$repo/$builddir
# The relay's modes (tests/integration/conftest.py, RELAY_MODES): each on a
# representative subset in one cache mode, to keep CI within its time; the
# whole suite runs in the default mode below.  FSB_RELAY_MATRIX=0 skips.
if [[ ${FSB_RELAY_MATRIX:-1} != 0 ]]; then
    for mode in uring-on uring-poll-0 uring-off queues-1 queues-N poll-0; do
        step "relay mode $mode (a subset of the integration tests)"
        FSB_RELAY_MODE=$mode FSB_CACHE_MODES=auto /usr/bin/python3 -m pytest -q -x \
            tests/integration/test_files.py tests/integration/test_dirs.py \
            tests/integration/test_locks.py tests/integration/test_host_changes.py \
            tests/integration/test_lifecycle.py tests/integration/test_flush_shortcut.py \
            tests/integration/test_lazy_open.py tests/integration/test_attr_notes.py \
            tests/integration/test_caps_shortcut.py tests/integration/test_no_open.py \
            tests/integration/test_missing_names.py tests/integration/test_held_forgets.py
    done
fi

step "VM tests and integration tests"
exec /usr/bin/python3 -m pytest -q -rfEs tests/vm tests/integration "$@"
