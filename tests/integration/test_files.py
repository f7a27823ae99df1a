"""
test_files.py - regular file I/O through a real mount, in every cache mode.

Each test checks both sides: what the mount shows and what the exported
host directory holds (read directly on the host).  Host contents are
checked after close (or fsync), which is when writeback mode promises them.
"""

import ctypes
import errno
import hashlib
import mmap
import os
import stat

import pytest

import helpers

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

libc = ctypes.CDLL(None, use_errno=True)
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


def write_file(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode=0o644):
    fd = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def pattern(size, seed=0):
    """Deterministic, non-repeating-looking bytes (no two 4 KiB pages alike)."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:size])


def fallocate(fd, mode, offset, length):
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# --------------------------------------------------------------------------


def test_create_write_read(fs):
    small = b"hello, fsbridge\n"
    write_file(fs.mnt / "small", small)
    assert read_file(fs.mnt / "small") == small
    assert read_file(fs.host / "small") == small
    assert os.stat(fs.host / "small").st_size == len(small)
    assert stat.S_ISREG(os.stat(fs.mnt / "small").st_mode)

    # Bigger than one 1 MiB frame: the relay and the daemon must split it.
    big = pattern(3 * MiB + 12345, seed=1)
    write_file(fs.mnt / "big", big)
    assert os.stat(fs.mnt / "big").st_size == len(big)
    assert os.stat(fs.host / "big").st_size == len(big)
    assert hashlib.sha256(read_file(fs.host / "big")).digest() == hashlib.sha256(big).digest()
    assert hashlib.sha256(read_file(fs.mnt / "big")).digest() == hashlib.sha256(big).digest()


def test_overwrite_in_place(fs):
    data = bytearray(pattern(64 * KiB, seed=2))
    write_file(fs.mnt / "f", bytes(data))
    fd = os.open(fs.mnt / "f", os.O_RDWR)
    try:
        assert os.pwrite(fd, b"XYZ" * 1000, 5000) == 3000
        assert os.pwrite(fd, b"tail!", len(data) - 2) == 5   # extends by 3 bytes
        assert os.pread(fd, 3000, 5000) == b"XYZ" * 1000
    finally:
        os.close(fd)
    data[5000:8000] = b"XYZ" * 1000
    data[len(data) - 2:] = b"tail!"
    assert read_file(fs.host / "f") == bytes(data)
    assert read_file(fs.mnt / "f") == bytes(data)
    assert os.stat(fs.mnt / "f").st_size == 64 * KiB + 3


def test_o_append(fs):
    p = fs.mnt / "log"
    write_file(p, b"start\n")
    a = os.open(p, os.O_WRONLY | os.O_APPEND)
    b = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(a, b"one\n")
        os.write(b, b"two\n")
        os.lseek(a, 0, os.SEEK_SET)      # O_APPEND ignores the offset
        os.write(a, b"three\n")
        assert os.fstat(b).st_size == len(b"start\none\ntwo\nthree\n")
    finally:
        os.close(a)
        os.close(b)
    want = b"start\none\ntwo\nthree\n"
    assert read_file(p) == want
    assert read_file(fs.host / "log") == want
    assert os.stat(fs.host / "log").st_size == len(want)


def test_o_excl(fs):
    write_file(fs.mnt / "exists", b"keep me")
    with pytest.raises(FileExistsError):
        os.open(fs.mnt / "exists", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    assert read_file(fs.host / "exists") == b"keep me"

    # O_EXCL does not follow a symlink, even a dangling one.
    os.symlink("nowhere", fs.mnt / "dangling")
    with pytest.raises(FileExistsError):
        os.open(fs.mnt / "dangling", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    assert not os.path.lexists(fs.host / "nowhere")

    fd = os.open(fs.mnt / "fresh", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"new")
    os.close(fd)
    assert read_file(fs.host / "fresh") == b"new"
    assert stat.S_IMODE(os.stat(fs.host / "fresh").st_mode) == 0o600 & ~current_umask()


def test_open_flags(fs):
    """Flags that tools pass on open (tar: O_NOFOLLOW|O_NOATIME, databases:
    O_DIRECT/O_SYNC/O_DSYNC) are honoured, not turned into errors."""
    data = pattern(8192, seed=11)
    write_file(fs.mnt / "f", data)
    os.symlink("f", fs.mnt / "link")
    for extra in (os.O_NOFOLLOW, os.O_NOATIME, os.O_NOFOLLOW | os.O_NOATIME | os.O_NONBLOCK,
                  os.O_CLOEXEC, os.O_NOCTTY):
        fd = os.open(fs.mnt / "f", os.O_RDONLY | extra)
        try:
            assert os.read(fd, 100) == data[:100], f"flags {extra:#o}"
        finally:
            os.close(fd)
    # O_NOFOLLOW on the link itself: ELOOP, from the guest kernel.
    with pytest.raises(OSError) as e:
        os.open(fs.mnt / "link", os.O_RDONLY | os.O_NOFOLLOW)
    assert e.value.errno == errno.ELOOP

    for extra in (os.O_SYNC, os.O_DSYNC):
        fd = os.open(fs.mnt / "f", os.O_WRONLY | extra)
        try:
            os.pwrite(fd, b"sync", 0)
        finally:
            os.close(fd)
        assert read_file(fs.host / "f")[:4] == b"sync"

    # O_DIRECT with page-aligned buffers.
    buf = mmap.mmap(-1, 4096)
    buf.write(b"D" * 4096)
    fd = os.open(fs.mnt / "f", os.O_RDWR | os.O_DIRECT)
    try:
        assert os.pwritev(fd, [buf], 4096) == 4096
        rbuf = mmap.mmap(-1, 4096)
        assert os.preadv(fd, [rbuf], 4096) == 4096
        assert rbuf[:] == b"D" * 4096
    finally:
        os.close(fd)
    assert read_file(fs.host / "f")[4096:] == b"D" * 4096
    assert read_file(fs.mnt / "f")[4096:] == b"D" * 4096


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_o_trunc(fs):
    write_file(fs.mnt / "t", pattern(100 * KiB, seed=3))
    assert read_file(fs.mnt / "t")[:10] == pattern(10, seed=3)   # now cached, in cached modes
    fd = os.open(fs.mnt / "t", os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        assert os.stat(fs.host / "t").st_size == 0
        os.write(fd, b"short")
    finally:
        os.close(fd)
    assert read_file(fs.host / "t") == b"short"
    assert read_file(fs.mnt / "t") == b"short"
    assert os.stat(fs.mnt / "t").st_size == 5


def test_truncate_down_and_up(fs):
    data = pattern(10000, seed=4)
    write_file(fs.mnt / "f", data)

    os.truncate(fs.mnt / "f", 100)
    assert os.stat(fs.mnt / "f").st_size == 100
    assert read_file(fs.host / "f") == data[:100]
    assert read_file(fs.mnt / "f") == data[:100]

    os.truncate(fs.mnt / "f", 5000)
    assert os.stat(fs.host / "f").st_size == 5000
    want = data[:100] + bytes(4900)     # the old bytes must not come back
    assert read_file(fs.host / "f") == want
    assert read_file(fs.mnt / "f") == want


def test_ftruncate_down_and_up(fs):
    data = pattern(3 * 4096 + 17, seed=5)
    fd = os.open(fs.mnt / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, 4096 + 1)
        assert os.fstat(fd).st_size == 4097
        assert os.pread(fd, 10000, 0) == data[:4097]
        os.ftruncate(fd, 20000)
        assert os.fstat(fd).st_size == 20000
        assert os.pread(fd, 30000, 0) == data[:4097] + bytes(20000 - 4097)
        os.pwrite(fd, b"end", 19997)
    finally:
        os.close(fd)
    want = data[:4097] + bytes(20000 - 4097 - 3) + b"end"
    assert read_file(fs.host / "f") == want
    assert read_file(fs.mnt / "f") == want


def test_sparse_file_past_4gib(fs):
    off = 5 * GiB
    fd = os.open(fs.mnt / "sparse", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.pwrite(fd, b"end", off) == 3
        assert os.fstat(fd).st_size == off + 3
        assert os.pread(fd, 4096, 4 * GiB) == bytes(4096)
        assert os.pread(fd, 4096, 0) == bytes(4096)
        assert os.pread(fd, 100, off - 5) == bytes(5) + b"end"
    finally:
        os.close(fd)
    st = os.stat(fs.host / "sparse")
    assert st.st_size == off + 3
    assert st.st_blocks * 512 <= 1 * MiB, f"host file is not sparse: {st.st_blocks} blocks"
    with open(fs.host / "sparse", "rb") as f:
        f.seek(off - 5)
        assert f.read() == bytes(5) + b"end"
    assert os.stat(fs.mnt / "sparse").st_size == off + 3
    assert os.stat(fs.mnt / "sparse").st_blocks * 512 <= 1 * MiB


def test_seek_data_seek_hole(fs):
    """data [0, 64K), hole [64K, 2M), data [2M, 2M+64K), EOF."""
    p = fs.mnt / "holes"
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, pattern(64 * KiB, seed=6), 0)
        os.pwrite(fd, pattern(64 * KiB, seed=7), 2 * MiB)
        os.fsync(fd)     # writeback: the host must hold the extents now
        size = 2 * MiB + 64 * KiB
        hfd = os.open(fs.host / "holes", os.O_RDONLY)
        try:
            probes = [(0, os.SEEK_DATA), (0, os.SEEK_HOLE), (64 * KiB, os.SEEK_DATA),
                      (100 * KiB, os.SEEK_HOLE), (2 * MiB, os.SEEK_HOLE),
                      (2 * MiB + 4096, os.SEEK_DATA)]
            for offset, whence in probes:
                host = os.lseek(hfd, offset, whence)
                got = os.lseek(fd, offset, whence)
                assert got == host, f"lseek({offset}, {whence}) = {got}, host says {host}"
        finally:
            os.close(hfd)
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 64 * KiB
        assert os.lseek(fd, 64 * KiB, os.SEEK_DATA) == 2 * MiB
        assert os.lseek(fd, 2 * MiB, os.SEEK_HOLE) == size
        with pytest.raises(OSError) as e:
            os.lseek(fd, size, os.SEEK_DATA)
        assert e.value.errno == errno.ENXIO
        # The file offset really moved: a read from it returns the data.
        os.lseek(fd, 64 * KiB, os.SEEK_DATA)
        assert os.read(fd, 16) == pattern(16, seed=7)
    finally:
        os.close(fd)


def test_posix_fallocate(fs):
    fd = os.open(fs.mnt / "alloc", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"abc")
        os.posix_fallocate(fd, 0, 1 * MiB)
        assert os.fstat(fd).st_size == 1 * MiB
        assert os.pread(fd, 10, 0) == b"abc" + bytes(7)
    finally:
        os.close(fd)
    st = os.stat(fs.host / "alloc")
    assert st.st_size == 1 * MiB
    # Really allocated on the host, not just a size change (the glibc
    # fallback writes zeros, which would also allocate: both are fine).
    assert st.st_blocks * 512 >= 1 * MiB
    assert read_file(fs.host / "alloc") == b"abc" + bytes(MiB - 3)

    # KEEP_SIZE: blocks past EOF, size unchanged.
    fd = os.open(fs.mnt / "keep", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 256 * KiB)
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)
    st = os.stat(fs.host / "keep")
    assert st.st_size == 0
    assert st.st_blocks * 512 >= 256 * KiB


def test_fallocate_punch_hole(fs):
    data = pattern(256 * KiB, seed=8)
    write_file(fs.mnt / "punch", data)
    assert read_file(fs.mnt / "punch") == data      # in the page cache now
    blocks_before = os.stat(fs.host / "punch").st_blocks

    fd = os.open(fs.mnt / "punch", os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 * KiB, 64 * KiB)
        assert os.fstat(fd).st_size == 256 * KiB
        assert os.pread(fd, 64 * KiB, 64 * KiB) == bytes(64 * KiB)
    finally:
        os.close(fd)
    # util-linux's fallocate(1), through the mount.
    helpers.run(["fallocate", "-p", "-o", str(192 * KiB), "-l", str(32 * KiB),
                 str(fs.mnt / "punch")])

    want = bytearray(data)
    want[64 * KiB:128 * KiB] = bytes(64 * KiB)
    want[192 * KiB:224 * KiB] = bytes(32 * KiB)
    assert read_file(fs.host / "punch") == bytes(want)
    assert read_file(fs.mnt / "punch") == bytes(want)
    st = os.stat(fs.host / "punch")
    assert st.st_size == 256 * KiB
    assert st.st_blocks < blocks_before, "punch hole freed no blocks on the host"
    assert (blocks_before - st.st_blocks) * 512 >= 96 * KiB


def test_copy_file_range(fs):
    src = pattern(300 * KiB + 7, seed=9)
    write_file(fs.mnt / "src", src)
    write_file(fs.mnt / "dst", b"=" * (50 * KiB))
    sfd = os.open(fs.mnt / "src", os.O_RDONLY)
    dfd = os.open(fs.mnt / "dst", os.O_WRONLY)
    try:
        # Copy src[1000:] into dst at 10 KiB, in as many calls as it takes.
        done = 0
        want = len(src) - 1000
        while done < want:
            n = os.copy_file_range(sfd, dfd, want - done, 1000 + done, 10 * KiB + done)
            assert n > 0, "copy_file_range returned 0 before the end"
            done += n
        # The explicit offsets left both file offsets alone.
        assert os.lseek(sfd, 0, os.SEEK_CUR) == 0
        assert os.lseek(dfd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(sfd)
        os.close(dfd)
    expect = b"=" * (10 * KiB) + src[1000:]
    assert read_file(fs.host / "dst") == expect
    assert read_file(fs.mnt / "dst") == expect
    assert os.stat(fs.mnt / "dst").st_size == len(expect)
    assert read_file(fs.host / "src") == src


def test_mmap_shared_write_reaches_host(fs):
    size = 3 * 4096
    write_file(fs.mnt / "m", bytes(size))
    with open(fs.mnt / "m", "r+b") as f:
        try:
            m = mmap.mmap(f.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            if e.errno == errno.ENODEV and fs.direct_io:
                pytest.skip(f"cache={fs.mode} is direct-io: shared mmap needs "
                            f"FUSE_DIRECT_IO_ALLOW_MMAP (kernel >= 6.6), mmap gave ENODEV "
                            f"on kernel {os.uname().release}")
            raise
        try:
            m[100:105] = b"hello"
            m[5000:5005] = b"world"
            m[size - 3:] = b"END"
            m.flush()       # msync(MS_SYNC)
        finally:
            m.close()
    data = read_file(fs.host / "m")
    assert len(data) == size
    assert data[100:105] == b"hello"
    assert data[5000:5005] == b"world"
    assert data[size - 3:] == b"END"
    assert data[:100] == bytes(100)
    assert read_file(fs.mnt / "m")[5000:5005] == b"world"


def test_mmap_read_sees_file_contents(fs):
    data = pattern(5 * 4096 + 100, seed=10)
    write_file(fs.mnt / "r", data)
    with open(fs.mnt / "r", "rb") as f:
        try:
            m = mmap.mmap(f.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError as e:
            if e.errno == errno.ENODEV and fs.direct_io:
                pytest.skip(f"cache={fs.mode} is direct-io: shared mmap needs "
                            f"FUSE_DIRECT_IO_ALLOW_MMAP (kernel >= 6.6), got ENODEV")
            raise
        try:
            assert m[:] == data
        finally:
            m.close()


def test_fsync_and_fdatasync(fs):
    fd = os.open(fs.mnt / "durable", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"first")
        os.fsync(fd)
        # Before close, even in writeback mode.
        assert read_file(fs.host / "durable") == b"first"
        os.write(fd, b"+second")
        os.fdatasync(fd)
        assert read_file(fs.host / "durable") == b"first+second"
    finally:
        os.close(fd)
    dfd = os.open(fs.mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)       # FUSE_FSYNCDIR
    finally:
        os.close(dfd)


def test_statvfs_matches_host(fs):
    m = os.statvfs(fs.mnt)
    h = os.statvfs(fs.host)
    assert m.f_bsize > 0 and m.f_frsize > 0
    assert m.f_namemax == h.f_namemax == 255
    total_m, total_h = m.f_blocks * m.f_frsize, h.f_blocks * h.f_frsize
    assert abs(total_m - total_h) <= total_h // 100, (total_m, total_h)
    # Free space moves while other things run: within 1 GiB.
    assert abs(m.f_bavail * m.f_frsize - h.f_bavail * h.f_frsize) <= 1 * GiB
    assert abs(m.f_bfree * m.f_frsize - h.f_bfree * h.f_frsize) <= 1 * GiB
    assert m.f_bavail <= m.f_bfree <= m.f_blocks
    assert m.f_files == h.f_files
    assert abs(m.f_ffree - h.f_ffree) <= 100000


def test_name_length_limits(fs):
    name255 = "n" * 255
    write_file(fs.mnt / name255, b"long name")
    assert read_file(fs.host / name255) == b"long name"
    assert name255 in os.listdir(fs.mnt)
    os.mkdir(fs.mnt / ("d" * 255))
    assert os.path.isdir(fs.host / ("d" * 255))

    # 255 bytes of UTF-8 (127 two-byte characters and one ASCII byte).
    utf = "\u00e9" * 127 + "x"
    assert len(utf.encode()) == 255
    write_file(fs.mnt / utf, b"utf")
    assert read_file(fs.host / utf) == b"utf"

    name256 = "n" * 256
    for op in (lambda p: os.open(p, os.O_WRONLY | os.O_CREAT, 0o644),
               lambda p: os.mkdir(p),
               lambda p: os.symlink("target", p),
               lambda p: os.rename(fs.mnt / name255, p),
               lambda p: os.link(fs.mnt / name255, p),
               lambda p: os.stat(p)):
        with pytest.raises(OSError) as e:
            op(fs.mnt / name256)
        assert e.value.errno == errno.ENAMETOOLONG
    assert sorted(os.listdir(fs.host)) == sorted([name255, "d" * 255, utf])


@pytest.mark.modes("never", "auto")
def test_host_changes_seen_through_mount(fs):
    """Another writer on the host: in cache=never the next read sees it at
    once; auto caches names and attributes for about a second and drops
    cached pages when size/mtime change, so it gets bounded polling.
    (metadata and always cache names for long: only the guest may change
    those exports.)"""
    write_file(fs.mnt / "shared", b"guest version")
    assert read_file(fs.mnt / "shared") == b"guest version"
    with open(fs.host / "shared", "wb") as f:
        f.write(b"host version, longer")
    if fs.mode == "never":
        assert read_file(fs.mnt / "shared") == b"host version, longer"
    else:
        helpers.poll_until(lambda: read_file(fs.mnt / "shared") == b"host version, longer",
                           timeout=5, what="the host's write to show through the mount")
    (fs.host / "newfile").write_bytes(b"made on the host")
    helpers.poll_until(lambda: "newfile" in os.listdir(fs.mnt), timeout=5,
                       what="a host-created file to be listed")
    assert read_file(fs.mnt / "newfile") == b"made on the host"
    os.unlink(fs.host / "newfile")
    helpers.poll_until(lambda: not os.path.exists(fs.mnt / "newfile"), timeout=5,
                       what="a host-removed file to disappear")


def test_inode_number_reuse(fs):
    """ext4 hands a freed inode number to the next new file at once.  A file
    created right after another was deleted must never show the old file's
    data or size (stale inode table entry, stale page cache)."""
    reused = 0
    for i in range(200):
        first = f"first file {i} ".encode() * (i + 3)
        write_file(fs.mnt / "f", first)
        assert read_file(fs.mnt / "f") == first
        old_ino = os.stat(fs.host / "f").st_ino
        os.unlink(fs.mnt / "f")
        second = f"second {i}".encode()
        write_file(fs.mnt / "g", second)
        reused += os.stat(fs.host / "g").st_ino == old_ino
        assert os.stat(fs.mnt / "g").st_size == len(second)
        assert read_file(fs.mnt / "g") == second, f"round {i}: new file shows old data"
        os.unlink(fs.mnt / "g")
    if reused == 0:
        pytest.skip("the host filesystem never reused an inode number: nothing was tested")


AT_EMPTY_PATH = 0x1000


def linkat_empty_path(fd, dirfd, name):
    """linkat(fd, "", dirfd, name, AT_EMPTY_PATH): names an open file
    (needs CAP_DAC_READ_SEARCH; the tests run as root)."""
    libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_int]
    if libc.linkat(fd, b"", dirfd, os.fsencode(name), AT_EMPTY_PATH) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), name)


def test_tmpfile_then_linkat(fs):
    # open(dir, O_TMPFILE) makes an unnamed file (glibc's tmpfile(), systemd
    # and editors try it first); linkat names it, through /proc/self/fd or
    # with AT_EMPTY_PATH.  (os.link of a /proc/self/fd path without a dir fd
    # is link(2), which links procfs's symlink itself: EXDEV on any
    # filesystem.  That, not the daemon, failed an earlier version of this
    # test; dst_dir_fd makes it linkat with AT_SYMLINK_FOLLOW.)
    if fs.mode == "matchlock":
        pytest.skip("matchlock protocol: no unnamed files (O_TMPFILE gives EOPNOTSUPP)")
    os.mkdir(fs.mnt / "d")
    if fs.mode == "overlay":
        with pytest.raises(OSError) as e:
            os.open(fs.mnt / "d", os.O_TMPFILE | os.O_RDWR, 0o640)
        assert e.value.errno == errno.EOPNOTSUPP  # documented: no tmpfile in overlay exports
        return
    dirfd = os.open(fs.mnt / "d", os.O_RDONLY | os.O_DIRECTORY)
    fds = [os.open(fs.mnt / "d", os.O_TMPFILE | os.O_RDWR, 0o640) for _ in range(2)]
    try:
        for i, fd in enumerate(fds):
            os.write(fd, b"unnamed data %d" % i)
        assert os.listdir(fs.host / "d") == []
        assert os.fstat(fds[0]).st_nlink == 0
        os.link(f"/proc/self/fd/{fds[0]}", "by-proc", dst_dir_fd=dirfd)
        linkat_empty_path(fds[1], dirfd, "by-fd")
        assert os.fstat(fds[1]).st_nlink == 1
    finally:
        for fd in fds:
            os.close(fd)
    for i, name in enumerate(["by-proc", "by-fd"]):
        assert (fs.host / "d" / name).read_bytes() == b"unnamed data %d" % i
        assert stat.S_IMODE(os.stat(fs.host / "d" / name).st_mode) == 0o640
    # O_EXCL: never linkable.
    fd = os.open(fs.mnt / "d", os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o600)
    try:
        with pytest.raises(OSError) as e:
            os.link(f"/proc/self/fd/{fd}", "other", dst_dir_fd=dirfd)
        assert e.value.errno == errno.ENOENT
    finally:
        os.close(fd)
        os.close(dirfd)
    assert sorted(os.listdir(fs.host / "d")) == ["by-fd", "by-proc"]
