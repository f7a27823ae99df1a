#!/usr/bin/env bash
# fetch-kernel.sh - Debian's guest kernel for the VM tests, in a cache dir.
#
#   tests/vm/fetch-kernel.sh            prints the kernel dir on stdout
#
# Downloads Debian's `linux-image-amd64` package and the versioned image
# package it depends on with `apt-get download` (nothing is installed),
# extracts them with `dpkg-deb -x`, and keeps only what a test guest needs:
#
#   $FSB_VM_CACHE/kernel/vmlinuz
#   $FSB_VM_CACHE/kernel/modules/NAME.ko   (uncompressed)
#   $FSB_VM_CACHE/kernel/modules/order     (load order, dependencies first)
#   $FSB_VM_CACHE/kernel/version           (the package version, e.g. 6.1.0-56-amd64)
#
# Idempotent: once kernel/version exists it does nothing (FSB_VM_REFRESH=1
# fetches again).  Exit status 3 means "could not download" (no network, no
# apt sources): the VM tests skip with that reason.
#
# Environment: FSB_VM_CACHE (default /var/cache/fsbridge-vm).
set -euo pipefail

cache=${FSB_VM_CACHE:-/var/cache/fsbridge-vm}
kdir=$cache/kernel
# The guest needs PCI virtio, virtio-fs and virtio-serial; everything else
# it uses (8250 serial console, devtmpfs, initramfs) is built in.
WANTED=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
        fuse virtiofs virtio_console)

say() { printf 'fetch-kernel: %s\n' "$*" >&2; }

if [[ -f $kdir/version && -z ${FSB_VM_REFRESH:-} ]]; then
    echo "$kdir"
    exit 0
fi

mkdir -p "$cache/debs"
work=$(mktemp -d "$cache/extract.XXXXXX")
trap 'rm -rf "$work"' EXIT

# apt-get download writes into the current directory; as root it warns that
# the _apt user cannot write there, so download as root explicitly.
download() {
    (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root "$1" >&2) || {
        say "cannot download $1 (no network or no apt sources?)"
        exit 3
    }
}

download linux-image-amd64
meta=$(ls -t "$cache"/debs/linux-image-amd64_*.deb | head -n1)
# Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)
image_pkg=$(dpkg-deb -f "$meta" Depends | sed -E 's/^ *([^ ,|]+).*/\1/')
[[ $image_pkg == linux-image-* ]] || { say "unexpected Depends of $meta: $image_pkg"; exit 1; }
download "$image_pkg"
image_deb=$(ls -t "$cache"/debs/"${image_pkg}"_*.deb | head -n1)

say "extracting $image_deb"
dpkg-deb -x "$image_deb" "$work/root"
release=${image_pkg#linux-image-}
moddir=$work/root/lib/modules/$release
[[ -d $moddir ]] || { say "no $moddir in $image_deb"; exit 1; }

module_file() {
    find "$moddir" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -n1
}

# Dependencies first (depth-first over modinfo's "depends"), each once.
order=()
add_module() {
    local name=$1 file dep
    for dep in "${order[@]}"; do [[ $dep == "$name" ]] && return 0; done
    file=$(module_file "$name")
    [[ -n $file ]] || { say "module $name not in $image_deb"; exit 1; }
    for dep in $(modinfo -F depends "$file" | tr ',' ' '); do
        add_module "$dep"
    done
    order+=("$name")
}
for m in "${WANTED[@]}"; do add_module "$m"; done

rm -rf "$kdir.new"
mkdir -p "$kdir.new/modules"
cp "$work/root/boot/vmlinuz-$release" "$kdir.new/vmlinuz"
for m in "${order[@]}"; do
    file=$(module_file "$m")
    case $file in
        *.xz) xz -dc "$file" >"$kdir.new/modules/$m.ko" ;;
        *.zst) zstd -qdc "$file" >"$kdir.new/modules/$m.ko" ;;
        *) cp "$file" "$kdir.new/modules/$m.ko" ;;
    esac
done
printf '%s\n' "${order[@]}" >"$kdir.new/modules/order"
echo "$release" >"$kdir.new/version"
rm -rf "$kdir"
mv "$kdir.new" "$kdir"
say "kernel $release ready in $kdir (modules: ${order[*]})"
echo "$kdir"
