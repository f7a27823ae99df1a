"""
test_scale.py - tens of thousands of inodes through a daemon allowed 1024
open files.

The guest kernel keeps every inode it has looked up until it sends FORGET,
so after creating 50,000 files it holds 50,000 node ids.  fsbridged keeps
inodes as file handles, not open fds (DESIGN.md, "The passthrough backend"),
so it must get through this under RLIMIT_NOFILE = 1024 without EMFILE, lose
nothing, and log no error.  Everything runs in-process with os.* calls so
that the test measures the filesystem, not process start-up.
"""

import os
import random
import re
import resource
import subprocess
import time

import pytest

import helpers
from fuse_client import FuseClient, FUSE_ROOT_ID

EXPORT = "scale"
# FSB_SCALE_DIRS shrinks the tree for a quick run of the test's own logic.
DIRS = int(os.environ.get("FSB_SCALE_DIRS", "50"))   # top-level directories
SUBDIRS = 10       # subdirectories in each
FILES = 100        # files in each subdirectory: 50 x 10 x 100 = 50,000
TOTAL = DIRS * SUBDIRS * FILES
NOFILE = 1024
# A hang guard, not a speed check (bench/ measures speed): the run takes
# what the machine's load makes it take.
DEADLINE = 600.0


def content(i, j, k):
    return f"file {i}/{j}/{k}\n".encode()


def rel(i, j, k):
    return f"d{i:02}/s{j}/f{k:03}"


def error_lines(text):
    return [line for line in text.splitlines()
            if re.match(r"^\S+: error:", line)
            or "Too many open files" in line or "EMFILE" in line or "ENFILE" in line]


@pytest.fixture
def scale_fs(fsb_workdir, daemon_factory, mount_factory):
    host = fsb_workdir / "export"
    host.mkdir()
    # One guest, as a daemon serving one VM: its open-file budget is not the
    # default share of 100 guests but the whole fd pool (test_budgets.py
    # tests the budgets).
    d = daemon_factory([f"{EXPORT}={host},cache=auto"], ["--guest-max-open", "100000"],
                       rlimits={resource.RLIMIT_NOFILE: (NOFILE, NOFILE)})
    with open(f"/proc/{d.pid}/limits") as f:
        limits = f.read()
    assert re.search(rf"Max open files\s+{NOFILE}\s+{NOFILE}", limits), limits
    m = mount_factory(d, fsb_workdir / "mnt", options=[f"export={EXPORT}"])
    return host, m.path, d, m


def phase(timings, name, t0):
    timings.append((name, time.monotonic() - t0))
    return time.monotonic()


@pytest.mark.deadline(DEADLINE)
def test_fifty_thousand_files_under_rlimit_nofile_1024(scale_fs):
    host, mnt, daemon, mount = scale_fs
    tree = mnt / "tree"
    start = t = time.monotonic()
    timings = []
    max_fds = 0

    def sample_fds():
        nonlocal max_fds
        max_fds = max(max_fds, len(os.listdir(f"/proc/{daemon.pid}/fd")))

    # Create: mkdir + open(O_CREAT|O_EXCL) + write + close for each file.
    os.mkdir(tree)
    for i in range(DIRS):
        os.mkdir(tree / f"d{i:02}")
        for j in range(SUBDIRS):
            os.mkdir(tree / f"d{i:02}" / f"s{j}")
            for k in range(FILES):
                path = tree / rel(i, j, k)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    try:
                        assert os.write(fd, content(i, j, k)) == len(content(i, j, k))
                    finally:
                        os.close(fd)
                except OSError as e:
                    pytest.fail(f"creating {rel(i, j, k)} (file #{(i * SUBDIRS + j) * FILES + k})"
                                f": {e}\nfsbridged stderr:\n{daemon.stderr_text()[-2000:]}")
        sample_fds()
    t = phase(timings, "create", t)

    # Stat every file through the mount.
    for i in range(DIRS):
        for j in range(SUBDIRS):
            for k in range(FILES):
                try:
                    st = os.stat(tree / rel(i, j, k))
                except OSError as e:
                    pytest.fail(f"stat {rel(i, j, k)}: {e}")
                assert st.st_size == len(content(i, j, k)), rel(i, j, k)
        sample_fds()
    t = phase(timings, "stat", t)

    # Directory listings through the mount.
    for i in range(DIRS):
        for j in range(SUBDIRS):
            names = os.listdir(tree / f"d{i:02}" / f"s{j}")
            assert len(names) == FILES, f"d{i:02}/s{j} lists {len(names)} files"
    t = phase(timings, "list", t)

    # Read a sample back through the mount.
    rng = random.Random(5)
    sample = [(rng.randrange(DIRS), rng.randrange(SUBDIRS), rng.randrange(FILES))
              for _ in range(min(2000, TOTAL))]
    for i, j, k in sample:
        with open(tree / rel(i, j, k), "rb") as f:
            assert f.read() == content(i, j, k), rel(i, j, k)
    sample_fds()
    t = phase(timings, "read sample", t)

    # The host sees exactly the same tree.
    count = 0
    for dirpath, dirnames, filenames in os.walk(host / "tree"):
        count += len(filenames)
    assert count == TOTAL, f"host has {count} files, expected {TOTAL}"
    for i, j, k in sample[:500]:
        assert (host / "tree" / rel(i, j, k)).read_bytes() == content(i, j, k)
    t = phase(timings, "host check", t)

    # Remove it all through the mount.
    r = subprocess.run(["rm", "-rf", str(tree)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=DEADLINE / 2)
    assert r.returncode == 0, f"rm -rf through the mount: {r.stderr[-2000:]}"
    assert not os.path.exists(tree)
    sample_fds()
    t = phase(timings, "rm -rf", t)

    assert os.listdir(host) == [], f"left on the host: {os.listdir(host)[:20]}"
    assert os.listdir(mnt) == []
    elapsed = time.monotonic() - start
    report = ", ".join(f"{n} {s:.1f}s" for n, s in timings)
    print(f"{TOTAL} files: {report}; total {elapsed:.1f}s; fsbridged max fds {max_fds}")
    assert daemon.alive()
    errors = error_lines(daemon.stderr_text())
    assert not errors, "fsbridged logged errors:\n" + "\n".join(errors[:20])
    errors = error_lines(mount.stderr_text())
    assert not errors, "fsbridge-mount logged errors:\n" + "\n".join(errors[:20])


@pytest.mark.deadline(120)
def test_open_files_beyond_the_daemon_fd_limit(scale_fs, mount_factory, fsb_workdir):
    """More files held open in the guest than the daemon may open: opens past
    the limit fail with an errno (no crash, no hang), and everything works
    again once they are closed."""
    host, mnt, daemon, mount = scale_fs
    want = 3 * NOFILE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want + 1000), hard))
    try:
        for n in range(want):
            (host / f"f{n}").write_bytes(b"%d\n" % n)
        fds, errors = [], {}
        try:
            for n in range(want):
                try:
                    fds.append((n, os.open(mnt / f"f{n}", os.O_RDONLY)))
                except OSError as e:
                    errors[e.errno] = errors.get(e.errno, 0) + 1
            assert daemon.alive(), daemon.stderr_text()[-2000:]
            # One session may hold 3/8 of the daemon's fds after its reserve
            # (passthrough_global_init), so that it cannot starve others.
            assert len(fds) >= NOFILE // 3, (
                f"only {len(fds)} files could be opened; errors {errors}")
            # The handles that did open still read correctly.
            for n, fd in fds[::50]:
                assert os.pread(fd, 100, 0) == b"%d\n" % n
            # A second guest works while the first one holds all the handles
            # it may hold (its own further opens fail until it closes some).
            other = mount_factory(daemon, fsb_workdir / "mnt2", options=[f"export={EXPORT}"])
            r = subprocess.run(["ls", str(other.path)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=20)
            assert r.returncode == 0, r.stderr
            other.umount()
        finally:
            for _, fd in fds:
                os.close(fd)
        print(f"opened {len(fds)} of {want}; errors {errors}")

        # Once closed (RELEASE is asynchronous in the kernel), all open again.
        def all_open():
            ok = []
            try:
                for n in range(0, want, 3):
                    ok.append(os.open(mnt / f"f{n}", os.O_RDONLY))
                    if len(ok) >= NOFILE // 3:
                        break
                return True
            except OSError:
                return False
            finally:
                for fd in ok:
                    os.close(fd)
        helpers.poll_until(all_open, timeout=20,
                           what="opens to succeed again after closing every file")
        assert daemon.alive()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_inodes_evicted_from_the_fd_cache_stay_usable(fsb_workdir, daemon_factory):
    """The daemon keeps only a bounded set of inode fds (about half of
    RLIMIT_NOFILE) and reopens the others from their file handles.  2,000
    looked-up inodes under a 1,024 limit: the first ones have certainly been
    evicted, and every operation on them must still work."""
    host = fsb_workdir / "export"
    host.mkdir()
    n = 2000
    for i in range(n):
        (host / f"f{i}").write_bytes(b"%d\n" % i)
    os.mkdir(host / "dir")
    d = daemon_factory([f"{EXPORT}={host}"],
                       rlimits={resource.RLIMIT_NOFILE: (NOFILE, NOFILE)})
    with FuseClient(d.socket, export=EXPORT) as c:
        err, dent = c.lookup(FUSE_ROOT_ID, "dir")
        assert err == 0
        ids = []
        for i in range(n):
            err, e = c.lookup(FUSE_ROOT_ID, f"f{i}")
            assert err == 0, f"LOOKUP f{i}: {os.strerror(err)}"
            ids.append(e["nodeid"])
        failures = []
        for i in range(0, n, 97):
            err, attr = c.getattr(ids[i])
            if err:
                failures.append(f"GETATTR f{i}: {os.strerror(err)}")
                continue
            err, fh = c.open(ids[i])
            if err:
                failures.append(f"OPEN f{i}: {os.strerror(err)}")
                continue
            err, data = c.read(fh, 0, 100, nodeid=ids[i])
            if (err, data) != (0, b"%d\n" % i):
                failures.append(f"READ f{i}: {err} {data!r}")
            c.release(ids[i], fh)
        # A directory evicted long ago still serves as a parent.
        err, e, fh = c.create(dent["nodeid"], "new")
        if err:
            failures.append(f"CREATE in the evicted directory: {os.strerror(err)}")
        err, _ = c.mkdir(dent["nodeid"], "sub")
        if err:
            failures.append(f"MKDIR in the evicted directory: {os.strerror(err)}")
        assert not failures, (f"{len(failures)} operations on evicted inodes failed:\n"
                              + "\n".join(failures[:10]))
    assert d.alive()
