#!/usr/bin/env bash
# install-deps.sh - install the Debian packages fsbridge needs to build, test
# and run, and make sure /dev/fuse exists.
#
#   scripts/install-deps.sh [EXTRA_PACKAGE...]
#   scripts/install-deps.sh --list      prints the package list, one a line
#
# Idempotent: it asks dpkg which packages are missing and runs apt-get only
# when something is.  Works as root on a fresh Debian 12; as another user it
# uses sudo when a package is missing.  Extra package names on the command
# line are installed too (bench/bench.sh passes fio).  --list is for
# scripts/check-test-deps.py, the guard run-tests.sh runs next: what the tests
# import or run must come from these packages (or what they depend on).
set -euo pipefail

PACKAGES=(
    # build
    build-essential meson ninja-build pkg-config
    libfuse3-dev fuse3 libcbor-dev libseccomp-dev libcap-ng-dev liburing-dev
    # fuzzing (tests/fuzz/run-fuzz.sh: clang's libFuzzer and sanitizers)
    clang libclang-rt-dev
    # tests (tests/integration: pytest, matchlock's CBOR, xattrs, file
    # capabilities (setcap/getcap, test_xattr_map.py), git round trip,
    # process tools)
    python3 python3-pytest python3-cbor2 attr libcap2-bin git util-linux mount procps psmisc kmod
    tar diffutils
    # VM tests (tests/vm: QEMU guests with Debian's kernel and a busybox
    # initramfs; the legacy virtiofsd of qemu-system-common for comparison)
    qemu-system-x86 qemu-system-common busybox-static zstd xz-utils
    # packaging and service tests (tests/integration/test_package.py,
    # test_service.py: dpkg-buildpackage, lintian, systemd-analyze verify)
    debhelper dpkg-dev lintian systemd
    # libvirt test (tests/vm/test_vm_libvirt.py: libvirtd and its qemu
    # driver in a namespace of the test's own; not libvirt-daemon-system,
    # which without systemd as init pulls in systemd-sysv)
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
)
if [[ ${1:-} == --list ]]; then
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
fi
PACKAGES+=("$@")

say() { printf 'install-deps: %s\n' "$*" >&2; }

# Another apt (unattended-upgrades on a fresh machine) may hold the dpkg
# lock: wait for it instead of failing at once.  apt-get install waits with
# DPkg::Lock::Timeout; apt-get update ignores that option for the lock of
# /var/lib/apt/lists (apt 2.6), so it is retried here until the timeout.
LOCK_TIMEOUT=${FSB_APT_LOCK_TIMEOUT:-600}

apt_update() {
    local waited=0 out
    until out=$("${as_root[@]}" apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT" update 2>&1); do
        if [[ $out != *"Could not get lock"* ]] || ((waited >= LOCK_TIMEOUT)); then
            printf '%s\n' "$out" >&2
            ((waited == 0)) || say "gave up waiting for apt's lock after ${waited}s"
            return 1
        fi
        ((waited == 0)) && say "$(grep -m1 'Could not get lock' <<<"$out" | sed 's/^E: //'): waiting"
        sleep 2
        waited=$((waited + 2))
    done
    printf '%s\n' "$out"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
    [[ $status == ii* ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    if ((EUID == 0)); then
        as_root=()
    elif command -v sudo >/dev/null; then
        as_root=(sudo)
    else
        say "not root and no sudo: install these packages as root, then run again"
        exit 1
    fi
    say "waiting up to ${LOCK_TIMEOUT}s for apt's locks when another apt or dpkg holds them"
    apt_update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT" install -y --no-install-recommends \
        "${missing[@]}"
else
    say "all ${#PACKAGES[@]} packages present"
fi

# The FUSE device: load the module when the device node is missing.
if [[ ! -c /dev/fuse ]]; then
    say "/dev/fuse is missing: loading the fuse module"
    if ((EUID == 0)); then modprobe fuse || true; else sudo modprobe fuse || true; fi
fi
if [[ ! -c /dev/fuse ]]; then
    say "WARNING: /dev/fuse still does not exist; building works, mounting will not"
    say "         (this kernel has no FUSE, or this container was started without /dev/fuse)"
fi
exit 0
