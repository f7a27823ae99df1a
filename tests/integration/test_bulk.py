"""
test_bulk.py - bulk data through a real mount: large reads and writes are
byte-exact on the splice path (host file -> pipe -> socket in fsbridged,
socket -> pipe -> /dev/fuse in the relay) and on the copy paths it falls
back to (a READ too large for a pipe, every pipe of the daemon in use).

In every cache mode (and every relay mode of FSB_RELAY_MODE): the data
must not depend on the path it took.
"""

import os
import threading

import pytest

import helpers
from test_files import pattern, read_file, write_file

KiB = 1024
MiB = 1024 * KiB


def pread_all(fd, size, offset):
    """Reads SIZE bytes at OFFSET (fewer at end of file), however the
    kernel splits them."""
    out = bytearray()
    while len(out) < size:
        chunk = os.pread(fd, size - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def odirect_buffer(size):
    """O_DIRECT wants memory aligned to the block size: an anonymous mmap."""
    import mmap
    return mmap.mmap(-1, size)


def io_counts(pid):
    """rchar and wchar of /proc/PID/io: bytes moved by read(2)/write(2)
    and their kin, which splice(2) does not count."""
    fields = dict(line.split(": ") for line in open(f"/proc/{pid}/io").read().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def test_large_sequential_read_is_exact(fs):
    data = pattern(9 * MiB + 12345, seed=1)
    (fs.host / "big").write_bytes(data)
    assert read_file(fs.mnt / "big") == data


def test_reads_at_unaligned_offsets(fs):
    """Reads that start and end inside pages, of sizes around the splice
    thresholds and the pipes' room, through the page cache and O_DIRECT
    (which hands the host the guest's own unaligned offsets)."""
    data = pattern(6 * MiB + 777, seed=2)
    (fs.host / "f").write_bytes(data)
    cases = [(1, 32 * KiB), (4097, 300 * KiB), (12345, 1 * MiB), (3 * MiB - 5, 1 * MiB + 9),
             (len(data) - 100 * KiB - 3, 100 * KiB + 3)]
    fd = os.open(fs.mnt / "f", os.O_RDONLY)
    try:
        for off, size in cases:
            assert pread_all(fd, size, off) == data[off:off + size], (off, size)
    finally:
        os.close(fd)
    if fs.mode == "matchlock":
        return  # its libfuse mount has no O_DIRECT of its own to test
    fd = os.open(fs.mnt / "f", os.O_RDONLY | os.O_DIRECT)
    try:
        for off, size in cases:
            assert pread_all(fd, size, off) == data[off:off + size], ("O_DIRECT", off, size)
    finally:
        os.close(fd)


def test_short_read_at_end_of_file(fs):
    """A READ past the end gets the bytes there are, not a padded page."""
    data = pattern(1 * MiB + 5000, seed=3)
    (fs.host / "f").write_bytes(data)
    fd = os.open(fs.mnt / "f", os.O_RDONLY)
    try:
        assert os.pread(fd, 2 * MiB, 1 * MiB - 100) == data[1 * MiB - 100:]
        assert os.pread(fd, 1 * MiB, len(data)) == b""
    finally:
        os.close(fd)


def test_sparse_file_reads_zeros_in_holes(fs):
    size = 12 * MiB
    chunks = {0: pattern(4 * KiB, 4), 3 * MiB + 5: pattern(200 * KiB, 5),
              size - 64 * KiB: pattern(64 * KiB, 6)}
    fd = os.open(fs.host / "sparse", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, size)
        for off, chunk in chunks.items():
            os.pwrite(fd, chunk, off)
    finally:
        os.close(fd)
    want = bytearray(size)
    for off, chunk in chunks.items():
        want[off:off + len(chunk)] = chunk
    assert read_file(fs.mnt / "sparse") == bytes(want)


def test_large_writes_at_unaligned_offsets(fs):
    base = pattern(5 * MiB, seed=7)
    write_file(fs.mnt / "w", base)
    want = bytearray(base)
    fd = os.open(fs.mnt / "w", os.O_WRONLY)
    try:
        for off, size, seed in ((3, 1 * MiB + 1, 8), (2 * MiB + 4095, 700 * KiB, 9),
                                (5 * MiB - 10, 3 * MiB, 10)):
            chunk = pattern(size, seed)
            assert os.pwrite(fd, chunk, off) == size
            want.extend(bytes(max(0, off + size - len(want))))
            want[off:off + size] = chunk
        os.fsync(fd)
    finally:
        os.close(fd)
    assert (fs.host / "w").read_bytes() == bytes(want)
    assert read_file(fs.mnt / "w") == bytes(want)


def test_many_parallel_readers(fs):
    """More large READs at once than fsbridged has pipes (16): the rest are
    copied, and every reader still gets its own bytes."""
    size = 2 * MiB
    for i in range(24):
        (fs.host / f"p{i}").write_bytes(pattern(size, seed=100 + i))
    flags = os.O_RDONLY | (os.O_DIRECT if fs.mode != "matchlock" else 0)
    errors = []

    def reader(i):
        try:
            fd = os.open(fs.mnt / f"p{i}", flags)
            try:
                buf = odirect_buffer(size)
                n = os.preadv(fd, [buf], 0)
                if buf[:n] != pattern(size, seed=100 + i):
                    errors.append(f"p{i}: wrong bytes")
            finally:
                os.close(fd)
        except OSError as e:
            errors.append(f"p{i}: {e}")

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


@pytest.mark.parametrize("fs", ["auto"], indirect=True)
def test_read_data_is_spliced_not_copied(fs):
    """The point of the splice path: the data of a large read passes neither
    the relay's nor the daemon's read(2)/write(2) (rchar and wchar count
    those, splice(2) they do not).  Requests and headers still are."""
    size = 32 * MiB
    (fs.host / "big").write_bytes(pattern(size, seed=11))
    relay, daemon = fs.mount.proc.pid, fs.daemon.pid
    before = io_counts(relay) + io_counts(daemon)
    assert read_file(fs.mnt / "big") == pattern(size, seed=11)
    after = io_counts(relay) + io_counts(daemon)
    relay_read, relay_written, daemon_read, daemon_written = (
        a - b for a, b in zip(after, before))
    # With copies each of these is the whole 32 MiB or more.  The mounted
    # line says how the relay runs; it may follow the mount's appearance.
    mounted = helpers.poll_until(
        lambda: [x for x in fs.mount.stderr_text().splitlines() if "mounted " in x],
        timeout=10, what="fsbridge-mount's mounted line")
    if "io_uring" not in mounted[0]:
        # A ring entry's buffer is the kernel's interface: the relay reads
        # the data into it (once), so only /dev/fuse queues splice.
        assert relay_read < size // 4, relay_read
    assert relay_written < size // 4, relay_written
    assert daemon_read < size // 4, daemon_read
    assert daemon_written < size // 4, daemon_written
