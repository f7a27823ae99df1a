"""
initramfs.py - the test guest's initramfs, written as newc cpio archives.

The guest boots Debian's kernel with an initramfs made of two archives
(the kernel unpacks concatenated cpio archives one after the other):

  base    busybox (static), the kernel modules of fetch-kernel.sh in load
          order, the programs under test with the shared libraries ldd names
          (fsbridge-mount), the static conformance program, and /init.
          Built once per set of inputs and cached by content hash.
  script  /test.sh, the per-test shell script: a few hundred bytes, made
          for every boot.

/init mounts proc, sys and devtmpfs, loads the modules, creates the
/dev/virtio-ports/NAME links that udev would make, runs /test.sh with its
output on the second serial port (/dev/ttyS1, the harness's results file)
and powers the guest off.  Results are marker lines (see vmguest.py).

Everything is written here in Python (no root, no mknod, no cpio(1)), so the
archive is the same bytes on every machine for the same inputs.

Command line (a base archive to look into): python3 initramfs.py OUT KERNEL_DIR [FILE...]
"""

import gzip
import hashlib
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

BUSYBOX = "/bin/busybox"

# /init: PID 1 of the guest.  `fsb_result` lines go to the results port.
INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /run
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin:/sbin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
while read -r m; do
    insmod "/lib/modules/$m.ko" || echo "init: insmod $m failed" >/dev/console
done </lib/modules/order
# What udev would do: /dev/virtio-ports/NAME -> /dev/vportNpM.
mkdir -p /dev/virtio-ports
for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    ln -sf "../${p##*/}" "/dev/virtio-ports/$(cat "$p/name")"
done
ulimit -c 0
echo "@@FSB boot $(cat /proc/sys/kernel/random/boot_id)" >/dev/ttyS1
sh /test.sh >/dev/ttyS1 2>&1 </dev/null
echo "@@FSB done rc=$?" >/dev/ttyS1
sync
poweroff -f
"""


class Cpio:
    """A newc ("070701") cpio archive under construction."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1
        self.dirs = set()

    def _entry(self, name, mode, data=b"", nlink=1, rdev=(0, 0)):
        name_b = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(name_b), 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self.buf.write(name_b)
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self):
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def mkdir(self, name, mode=0o755):
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.dirs:
                self.dirs.add(d)
                self._entry(d, stat.S_IFDIR | mode, nlink=2)

    def file(self, name, data, mode=0o755):
        name = name.strip("/")
        if "/" in name:
            self.mkdir(name.rsplit("/", 1)[0])
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        name = name.strip("/")
        if "/" in name:
            self.mkdir(name.rsplit("/", 1)[0])
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name.strip("/"), stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def shared_libraries(binary):
    """The absolute paths of the libraries ldd says `binary` loads (with the
    dynamic loader); empty for a static binary."""
    out = subprocess.run(["ldd", str(binary)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True).stdout
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            path = line.split("=>", 1)[1].split("(")[0].strip()
        else:
            path = line.split("(")[0].strip()
        if path.startswith("/"):
            libs.append(path)
    return libs


def _inputs(kernel_dir, programs):
    """(path in the guest, host path) of every file of the base archive."""
    kernel_dir = Path(kernel_dir)
    order = (kernel_dir / "modules" / "order").read_text().split()
    files = [("bin/busybox", Path(BUSYBOX))]
    files += [(f"lib/modules/{m}.ko", kernel_dir / "modules" / f"{m}.ko") for m in order]
    files.append(("lib/modules/order", kernel_dir / "modules" / "order"))
    libs = {}
    for guest_path, host_path in programs:
        files.append((guest_path.strip("/"), Path(host_path)))
        for lib in shared_libraries(host_path):
            libs[lib.strip("/")] = Path(os.path.realpath(lib))
    files += sorted(libs.items())
    return files


def base_archive(kernel_dir, programs):
    """The base archive (gzip'ed cpio) as bytes.

    programs: [(path in the guest, host path)], e.g. ("bin/fsbridge-mount",
    build/fsbridge-mount); their shared libraries are added at the paths
    ldd prints.
    """
    c = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "run", "etc"):
        c.mkdir(d)
    # The console must exist before devtmpfs is mounted: the kernel opens it
    # for init's stdin/stdout.
    c.chardev("dev/console", 5, 1)
    c.file("init", INIT.encode())
    c.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n", 0o644)
    c.file("etc/group", b"root:x:0:\n", 0o644)
    for guest_path, host_path in _inputs(kernel_dir, programs):
        mode = 0o755 if os.access(host_path, os.X_OK) else 0o644
        c.file(guest_path, host_path.read_bytes(), mode)
    return gzip.compress(c.finish(), compresslevel=1)


def script_archive(script):
    """A gzip'ed cpio archive holding only /test.sh."""
    c = Cpio()
    c.file("test.sh", script.encode(), 0o755)
    return gzip.compress(c.finish(), compresslevel=1)


def inputs_digest(kernel_dir, programs):
    """A hash of everything the base archive is made of."""
    h = hashlib.sha256(INIT.encode())
    for guest_path, host_path in _inputs(kernel_dir, programs):
        st = os.stat(host_path)
        h.update(f"{guest_path}\0{host_path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def cached_base(cache_dir, kernel_dir, programs):
    """The path of the base archive for these inputs, built if missing."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"base-{inputs_digest(kernel_dir, programs)}.cpio.gz"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(base_archive(kernel_dir, programs))
        os.replace(tmp, path)
        # Older bases of other inputs are not needed any more.
        for old in cache_dir.glob("base-*.cpio.gz"):
            if old != path and old.stat().st_mtime < path.stat().st_mtime - 3600:
                old.unlink(missing_ok=True)
    return path


def write_initrd(out, base_path, script):
    """Write base + script archive to `out` (the -initrd file of one boot)."""
    base = Path(base_path).read_bytes()
    with open(out, "wb") as f:
        f.write(base)
        f.write(b"\0" * (-len(base) % 4))     # the kernel skips zero padding
        f.write(script_archive(script))
    return out


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out, kernel_dir, files = argv[1], argv[2], argv[3:]
    programs = [(f"bin/{os.path.basename(f)}", f) for f in files]
    Path(out).write_bytes(base_archive(kernel_dir, programs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
