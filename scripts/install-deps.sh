#!/usr/bin/env bash
# install-deps.sh - install the Debian packages fsbridge needs to build, test
# and run, and make sure /dev/fuse exists.
#
#   scripts/install-deps.sh [EXTRA_PACKAGE...]
#
# Idempotent: it asks dpkg which packages are missing and runs apt-get only
# when something is.  Works as root on a fresh Debian 12; as another user it
# uses sudo when a package is missing.  Extra package names on the command
# line are installed too (bench/bench.sh passes fio).
set -euo pipefail

PACKAGES=(
    # build
    build-essential meson ninja-build pkg-config
    libfuse3-dev fuse3 libcbor-dev libseccomp-dev libcap-ng-dev
    # fuzzing (tests/fuzz/run-fuzz.sh: clang's libFuzzer and sanitizers)
    clang libclang-rt-dev
    # tests (tests/integration: pytest, xattrs, git round trip, process tools)
    python3 python3-pytest attr git util-linux mount procps psmisc kmod tar diffutils
    # VM tests (tests/vm: QEMU guests with Debian's kernel and a busybox
    # initramfs; the legacy virtiofsd of qemu-system-common for comparison)
    qemu-system-x86 qemu-system-common busybox-static zstd xz-utils
)
PACKAGES+=("$@")

say() { printf 'install-deps: %s\n' "$*" >&2; }

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
    "${as_root[@]}" apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
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
