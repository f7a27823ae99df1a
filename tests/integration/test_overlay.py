"""
test_overlay.py - copy-on-write exports (--export NAME=LOWER,overlay=UPPER).

The oracle is the host kernel's overlayfs: after a session of changes
through fsbridged, `mount -t overlay` of LOWER+UPPER must show exactly what
the guest saw, and LOWER must be unchanged.  Also: st_ino across copy-up,
the guest's attempts to forge overlay metadata, symlinks pointing outside
in both layers, a rename race between layers, and a daemon killed during
the copy-up of a large file, and seeded random fsx- and fsstress-like
operations (neither tool is packaged in Debian) checked by the oracle.
"""

import collections
import errno
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

import helpers
import overlay_tree


class Overlay:
    def __init__(self, root, daemon, mount):
        self.root = root
        self.lower = root / "lower"
        self.upper = root / "upper"
        self.mnt = mount.path
        self.daemon = daemon
        self.mount = mount


@pytest.fixture
def ovl(fsb_workdir, daemon_factory, mount_factory):
    lower, upper = fsb_workdir / "lower", fsb_workdir / "upper"
    overlay_tree.populate(lower)
    os.chmod(lower, 0o755)
    upper.mkdir()
    before = overlay_tree.snapshot(lower, times=True)
    daemon = daemon_factory([f"t={lower},overlay={upper}"])
    m = mount_factory(daemon, fsb_workdir / "mnt", options=["export=t", "allow_other"])
    o = Overlay(fsb_workdir, daemon, m)
    yield o
    if not m.unmounted:
        m.umount(expect_rc=0)
    if daemon.alive():
        daemon.stop(expect_rc=0)
    changed = overlay_tree.diff(before, overlay_tree.snapshot(lower, times=True))
    assert not changed, "LOWER changed:\n" + "\n".join(changed[:20])


def stop(o):
    o.mount.umount(expect_rc=0)
    o.daemon.stop(expect_rc=0)


def assert_oracle(o, guest_view):
    with overlay_tree.kernel_overlay(o.lower, o.upper, o.root / "kwork", o.root / "kmnt") as k:
        kernel_view = overlay_tree.snapshot(k)
    guest_view.pop(".", None)
    kernel_view.pop(".", None)
    problems = overlay_tree.diff(kernel_view, guest_view)
    assert not problems, "kernel overlayfs and the guest differ:\n" + "\n".join(problems[:30])


def scripted_session(mnt):
    """Changes of every kind, on LOWER objects and new ones."""
    with open(mnt / "file0.txt", "a") as f:                 # copy-up by write
        f.write("appended\n")
    os.truncate(mnt / "file5.txt", 3)                         # by truncate
    os.chmod(mnt / "file6.txt", 0o640)                        # by chmod
    os.chown(mnt / "file7.txt", 42, 43)                       # by chown
    os.utime(mnt / "file8.txt", ns=(1_000_000_000, 2_000_000_000))  # by utimes
    os.setxattr(mnt / "file9.txt", "user.added", b"v")       # by xattr
    os.removexattr(mnt / "file2.txt", "user.origin")
    os.link(mnt / "file10.txt", mnt / "file10.link")          # by link
    os.rename(mnt / "file11.txt", mnt / "src" / "moved.txt")  # by rename
    os.unlink(mnt / "file12.txt")                              # whiteout
    os.unlink(mnt / "src" / "link-out")
    os.rename(mnt / "file13.txt", mnt / "file14.txt")          # over a lower file
    deep = mnt / "deep" / "d0" / "d1" / "d2"
    with open(deep / "new-deep", "w") as f:                    # parents copied up
        f.write("new\n")
    subprocess.run(["rm", "-rf", str(mnt / "deep" / "d0" / "d1" / "d2" / "d3")], check=True)
    os.mkdir(mnt / "newdir")
    with open(mnt / "newdir" / "x", "w") as f:
        f.write("x")
    os.symlink("newdir/x", mnt / "newlink")
    os.rename(mnt / "newdir", mnt / "renamed-dir")             # upper-only dir
    os.unlink(mnt / "file15.txt")
    with open(mnt / "file15.txt", "w") as f:                    # over a whiteout
        f.write("recreated\n")
    with open(mnt / "sparse.img", "r+b") as f:                  # sparse copy-up
        f.seek(1 << 20)
        f.write(b"one")
    os.mkfifo(mnt / "newfifo")
    # A LOWER directory removed and made again: opaque.
    subprocess.run(["rm", "-rf", str(mnt / "src" / "pkg")], check=True)
    os.mkdir(mnt / "src" / "pkg")
    with open(mnt / "src" / "pkg" / "other.c", "w") as f:
        f.write("/* new */\n")


def test_session_matches_kernel_overlayfs(ovl):
    scripted_session(ovl.mnt)
    guest = overlay_tree.snapshot(ovl.mnt)
    assert "file12.txt" not in guest and "src/pkg/main.c" not in guest
    assert guest["src/moved.txt"][5] == overlay_tree.snapshot(ovl.lower)["file11.txt"][5]
    stop(ovl)
    assert_oracle(ovl, guest)
    # UPPER is in overlayfs's own format.
    wh = os.lstat(ovl.upper / "file12.txt")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(ovl.upper / "src" / "pkg", "trusted.overlay.opaque") == b"y"


def test_reads_do_not_copy_up(ovl):
    for dirpath, dirs, files in os.walk(ovl.mnt):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not stat.S_ISFIFO(os.lstat(p).st_mode):
                with open(p, "rb") as f:
                    f.read()
        for name in dirs:
            os.listdir(os.path.join(dirpath, name))
    assert os.listdir(ovl.upper) == []


def test_inode_number_survives_copy_up(ovl, mount_factory, daemon_factory):
    before = os.stat(ovl.mnt / "file0.txt").st_ino
    assert before == os.stat(ovl.lower / "file0.txt").st_ino
    dir_before = os.stat(ovl.mnt / "src").st_ino
    with open(ovl.mnt / "file0.txt", "a") as f:
        f.write("x")
    os.chmod(ovl.mnt / "src" / "pkg" / "main.c", 0o600)  # copies src/ and pkg/ up
    assert os.stat(ovl.mnt / "file0.txt").st_ino == before
    assert os.stat(ovl.mnt / "src").st_ino == dir_before
    assert (ovl.upper / "file0.txt").exists()
    ino_in_listing = {e.name: e.inode() for e in os.scandir(ovl.mnt)}
    assert ino_in_listing["file0.txt"] == before
    # And in the next session (the copy carries the number).
    stop(ovl)
    d = daemon_factory([f"t={ovl.lower},overlay={ovl.upper}"])
    m = mount_factory(d, ovl.root / "mnt2", options=["export=t"])
    assert os.stat(m.path / "file0.txt").st_ino == before
    m.umount(expect_rc=0)
    d.stop(expect_rc=0)


def test_guest_cannot_forge_overlay_metadata(ovl):
    os.mkdir(ovl.mnt / "d")
    for name in ("trusted.overlay.opaque", "user.overlay.opaque",
                 "trusted.overlay.fsbridge.ino", "user.overlay.redirect"):
        with pytest.raises(OSError) as e:
            os.setxattr(ovl.mnt / "d", name, b"y")
        assert e.value.errno in (errno.EPERM, errno.EOPNOTSUPP), name
    # A whiteout is a 0/0 character device: the guest may not make one.
    with pytest.raises(PermissionError):
        os.mknod(ovl.mnt / "fake", stat.S_IFCHR | 0o644, os.makedev(0, 0))
    assert not os.path.lexists(ovl.upper / "fake")
    # Nor over a LOWER file it removed (which would make the removal look
    # like overlayfs's own).
    os.unlink(ovl.mnt / "file1.txt")
    with pytest.raises(PermissionError):
        os.mknod(ovl.mnt / "file1.txt", stat.S_IFCHR | 0o644, os.makedev(0, 0))
    # The overlay's own xattrs on copied-up files are not shown.
    with open(ovl.mnt / "file3.txt", "a") as f:
        f.write("x")
    assert os.listxattr(ovl.upper / "file3.txt")  # the inode note is there ...
    assert not [n for n in os.listxattr(ovl.mnt / "file3.txt") if ".overlay." in n]
    with pytest.raises(OSError) as e:
        os.getxattr(ovl.mnt / "file3.txt", "trusted.overlay.fsbridge.ino")
    assert e.value.errno == errno.ENODATA


def test_whiteout_planted_in_upper_hides_and_guest_sees_no_device(ovl):
    # Whatever UPPER holds is interpreted as overlayfs would (the host's
    # user put it there); the guest only ever sees the merged result.
    os.mknod(ovl.upper / "file16.txt", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    assert not os.path.lexists(ovl.mnt / "file16.txt")
    assert "file16.txt" not in os.listdir(ovl.mnt)


def test_symlinks_pointing_outside_are_not_followed(ovl):
    outside = ovl.root / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    os.symlink(str(outside), ovl.upper / "up-out")   # planted in UPPER
    assert os.readlink(ovl.mnt / "up-out") == str(outside)
    assert os.readlink(ovl.mnt / "src" / "link-out") == "/etc/passwd"
    # The guest resolves them itself: inside its own mount namespace the
    # absolute target is the host path here, so use lookups through the
    # mount only: a chmod/chown/xattr of the link must not reach the target.
    before = os.stat(outside / "secret")
    os.chown(ovl.mnt / "src" / "link-up", 7, 7, follow_symlinks=False)  # copy-up of the link
    assert os.lstat(ovl.upper / "src" / "link-up").st_uid == 7
    assert os.readlink(ovl.upper / "src" / "link-up") == "../../../../.."
    # A copy-up of a symlink copies the link, not its target.
    os.chown(ovl.mnt / "src" / "link-out", 8, 8, follow_symlinks=False)
    assert os.readlink(ovl.upper / "src" / "link-out") == "/etc/passwd"
    assert os.stat("/etc/passwd").st_uid == 0
    assert os.stat(outside / "secret") == before
    assert sorted(os.listdir(outside)) == ["secret"]


def test_rename_race_between_layers(ovl):
    """Renames of LOWER files back and forth while others read and stat them:
    every name is always either the old file or the new one, whole."""
    lower_texts = {f"file{i}.txt": (ovl.lower / f"file{i}.txt").read_text() for i in range(20)}
    stop_flag = threading.Event()
    errors = []

    def mover(i):
        a, b = ovl.mnt / f"file{i}.txt", ovl.mnt / f"moved{i}.txt"
        for _ in range(30):
            os.rename(a, b)
            os.rename(b, a)

    def reader():
        while not stop_flag.is_set():
            for i in range(4):
                for name in (f"file{i}.txt", f"moved{i}.txt"):
                    try:
                        text = (ovl.mnt / name).read_text()
                    except FileNotFoundError:
                        continue
                    if text != lower_texts[f"file{i}.txt"]:
                        errors.append((name, text[:40]))

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join()
    stop_flag.set()
    for t in readers:
        t.join()
    assert not errors
    for i in range(4):
        assert (ovl.mnt / f"file{i}.txt").read_text() == lower_texts[f"file{i}.txt"]
        assert not os.path.lexists(ovl.mnt / f"moved{i}.txt")
    guest = overlay_tree.snapshot(ovl.mnt)
    stop(ovl)
    assert_oracle(ovl, guest)


def test_lower_directory_rename_is_exdev(ovl):
    with pytest.raises(OSError) as e:
        os.rename(ovl.mnt / "src", ovl.mnt / "src2")
    assert e.value.errno == errno.EXDEV
    # mv copies instead, as over overlayfs without redirect_dir.
    subprocess.run(["mv", str(ovl.mnt / "src"), str(ovl.mnt / "src2")], check=True)
    assert (ovl.mnt / "src2" / "pkg" / "main.c").read_text().startswith("int main")
    assert not os.path.lexists(ovl.mnt / "src")
    guest = overlay_tree.snapshot(ovl.mnt)
    stop(ovl)
    assert_oracle(ovl, guest)


@pytest.mark.deadline(180)
def test_daemon_killed_during_copy_up(fsb_workdir, daemon_factory, mount_factory):
    """Old content or the whole new one after a kill mid copy-up, never a mix."""
    lower, upper = fsb_workdir / "lower", fsb_workdir / "upper"
    lower.mkdir()
    upper.mkdir()
    size = 512 << 20
    with open(lower / "big", "wb") as f:
        block = bytes(range(256)) * 4096
        for _ in range(size // len(block)):
            f.write(block)
    staging = fsb_workdir / "upper.work" / "staging"
    caught = False
    for attempt in range(3):
        d = daemon_factory([f"t={lower},overlay={upper}"], check_exit=False)
        m = mount_factory(d, fsb_workdir / f"mnt{attempt}", options=["export=t"])
        writer = subprocess.Popen(
            ["dd", "if=/dev/zero", f"of={m.path / 'big'}", "bs=1", "count=1", "conv=notrunc"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not caught:
            # the file is made at full size first (holes), so look at the
            # blocks copied so far
            partial = [st for st in stats(staging.glob("copy-*"))
                       if 0 < st.st_size and 0 < st.st_blocks * 512 < size]
            if partial:
                d.kill(signal.SIGKILL)
                caught = True
            time.sleep(0.001)
        writer.wait(timeout=60)
        d.proc.wait(timeout=10)
        d.reaped = True
        m.umount(expect_rc=None)
        if caught:
            break
        # Too late this time: start again from LOWER's content.
        subprocess.run(["rm", "-rf", str(upper)], check=True)
        upper.mkdir()
    if not caught:
        pytest.fail("the copy-up always finished before the kill (machine too fast?)")
    assert not (upper / "big").exists(), "a partial copy became visible"
    d = daemon_factory([f"t={lower},overlay={upper}"])
    m = mount_factory(d, fsb_workdir / "mnt-after", options=["export=t"])
    assert list(staging.iterdir()) == []  # the stray copy was removed
    with open(m.path / "big", "rb") as f:
        head = f.read(4096)
    assert head == (bytes(range(256)) * 16)  # the old content
    with open(m.path / "big", "r+b") as f:  # and a copy-up now completes
        f.write(b"\0")
    with open(m.path / "big", "rb") as f:
        data = f.read(1 << 20)
    assert data[0] == 0 and data[1:] == (bytes(range(256)) * 4096)[1:]
    assert os.path.getsize(upper / "big") == size
    m.umount(expect_rc=0)
    d.stop(expect_rc=0)


# --------------------------------------------------------------------------
# fsbridge-overlay: status, diff, commit, discard

TOOL = str(Path(__file__).resolve().parents[2] / "src" / "tools" / "fsbridge-overlay")


def stats(paths):
    """os.stat of each of PATHS that is still there: a copy being watched
    may be renamed away between its listing and its stat."""
    out = []
    for p in paths:
        try:
            out.append(os.stat(p))
        except FileNotFoundError:
            pass
    return out


def tool(*args, check=True):
    r = subprocess.run([TOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def session_then_stop(fsb_workdir, daemon_factory, mount_factory, script):
    lower, upper = fsb_workdir / "lower", fsb_workdir / "upper"
    overlay_tree.populate(lower)
    upper.mkdir()
    d = daemon_factory([f"t={lower},overlay={upper}"])
    m = mount_factory(d, fsb_workdir / "mnt", options=["export=t"])
    busy = tool("commit", "--lower", str(lower), "--upper", str(upper), check=False)
    assert busy.returncode == 2 and "fsbridged serves" in busy.stderr
    script(m.path)
    guest = overlay_tree.snapshot(m.path)
    m.umount(expect_rc=0)
    d.stop(expect_rc=0)
    return lower, upper, guest


def test_status_diff_commit(fsb_workdir, daemon_factory, mount_factory):
    lower, upper, guest = session_then_stop(fsb_workdir, daemon_factory, mount_factory,
                                            scripted_session)
    lu = ("--lower", str(lower), "--upper", str(upper))
    status = tool("status", "--porcelain", *lu).stdout.splitlines()
    assert "M file0.txt" in status and "D file12.txt" in status
    assert "A newfifo" in status and "A renamed-dir/x" in status
    assert "R file11.txt src/moved.txt" in status
    assert "M src/pkg" in status and "A src/pkg/other.c" in status
    assert not any(s.endswith(" file1.txt") for s in status)  # read only: unchanged
    assert "modified: file0.txt" in tool("status", *lu).stdout
    diff = tool("diff", *lu).stdout
    assert "--- a/file0.txt\n+++ b/file0.txt\n" in diff and "\n+appended\n" in diff
    assert "+++ /dev/null" in diff  # a deletion
    tool("commit", *lu)
    assert os.listdir(upper) == []
    committed = overlay_tree.snapshot(lower)
    committed.pop(".", None)
    guest.pop(".", None)
    problems = overlay_tree.diff(guest, committed)
    assert not problems, "\n".join(problems[:20])
    assert tool("status", *lu).stdout.strip() == "no changes"


def test_discard(fsb_workdir, daemon_factory, mount_factory):
    def script(mnt):
        (mnt / "file0.txt").write_text("changed")
        os.unlink(mnt / "file1.txt")
    lower, upper, _ = session_then_stop(fsb_workdir, daemon_factory, mount_factory, script)
    before = overlay_tree.snapshot(lower, times=True)
    tool("discard", "--lower", str(lower), "--upper", str(upper))
    assert os.listdir(upper) == []
    assert overlay_tree.snapshot(lower, times=True) == before


def interrupt_commit(lu, tmp):
    """Runs a commit and kills it once TMP (its copy of "big") has bytes;
    returns its exit status (0: it finished first)."""
    proc = subprocess.Popen([TOOL, "commit", *lu], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(0 < st.st_size for st in stats([tmp])):
            proc.kill()
            break
        time.sleep(0.001)
    return proc.wait(timeout=30)


@pytest.mark.deadline(360)
def test_commit_interrupted_and_resumed(fsb_workdir, daemon_factory, mount_factory):
    def script(mnt):
        with open(mnt / "big", "wb") as f:
            f.truncate(0)
            block = b"n" * (1 << 20)
            for _ in range(512):
                f.write(block)
        os.unlink(mnt / "file1.txt")
        (mnt / "zz-last").write_text("last")
    # The kill has to land while the copy runs: a loaded machine may not
    # run this poll in time, so up to three sessions are tried.
    for attempt in range(3):
        base = fsb_workdir / f"try{attempt}"
        base.mkdir()
        lower, upper, guest = session_then_stop(base, daemon_factory, mount_factory, script)
        (lower / "big").write_bytes(b"o" * 100)  # the old LOWER file the commit replaces
        # (the host changed LOWER after the session: the commit still applies UPPER)
        guest["big"] = overlay_tree.snapshot(upper)["big"]
        lu = ("--lower", str(lower), "--upper", str(upper))
        tmp = lower / ".fsbridge-commit.big"
        if interrupt_commit(lu, tmp) != 0:
            break
    else:
        pytest.fail("the commit always finished before it could be interrupted")
    # Interrupted: each file is old or new, never a mix.
    assert (lower / "big").read_bytes() in (b"o" * 100,) or \
        os.path.getsize(lower / "big") == 512 << 20
    assert tool("discard", *lu, check=False).returncode != 0  # half done: refused
    out = tool("commit", *lu).stdout
    assert "resuming" in out
    committed = overlay_tree.snapshot(lower)
    committed.pop(".", None)
    guest.pop(".", None)
    problems = overlay_tree.diff(guest, committed)
    assert not problems, "\n".join(problems[:20])
    assert not tmp.exists()


def test_unprivileged_daemon_writes_userxattr_format(fsb_workdir, daemon_factory,
                                                     mount_factory):
    """Not root: UPPER uses overlayfs's userxattr variant (user.overlay.*),
    and `mount -t overlay -o userxattr` shows what the guest saw."""
    nobody = 65534
    lower, upper, run = fsb_workdir / "lower", fsb_workdir / "upper", fsb_workdir / "run"
    overlay_tree.populate(lower)
    for d in (upper, run, fsb_workdir / "upper.work"):
        d.mkdir()
    for dirpath, dirs, files in os.walk(fsb_workdir):
        for name in dirs + files + ["."]:
            os.chown(os.path.join(dirpath, name), nobody, nobody, follow_symlinks=False)

    def drop():
        os.setgroups([])
        os.setgid(nobody)
        os.setuid(nobody)

    sock = run / "s"
    d = daemon_factory([f"t={lower},overlay={upper}"], listen=[f"unix:{sock}"],
                       preexec_fn=drop)
    deadline = time.monotonic() + 10
    while not helpers.listening(sock):
        assert d.alive() and time.monotonic() < deadline, d.stderr_text()
        time.sleep(0.01)
    m = mount_factory(f"unix:{sock}", fsb_workdir / "mnt", options=["export=t"])
    with open(m.path / "file0.txt", "a") as f:
        f.write("more\n")
    os.unlink(m.path / "file12.txt")
    subprocess.run(["rm", "-rf", str(m.path / "src" / "pkg")], check=True)
    os.mkdir(m.path / "src" / "pkg")
    (m.path / "src" / "pkg" / "new.c").write_text("new")
    guest = overlay_tree.snapshot(m.path)
    m.umount(expect_rc=0)
    d.stop(expect_rc=0)
    assert os.getxattr(upper / "src" / "pkg", "user.overlay.opaque") == b"y"
    assert os.getxattr(upper / "file0.txt", "user.overlay.fsbridge.ino")
    with overlay_tree.kernel_overlay(lower, upper, fsb_workdir / "kwork", fsb_workdir / "kmnt",
                                     userxattr=True) as k:
        kernel = overlay_tree.snapshot(k)
    guest.pop(".", None)
    kernel.pop(".", None)
    problems = overlay_tree.diff(kernel, guest)
    assert not problems, "\n".join(problems[:20])


# --------------------------------------------------------------------------
# Random operations (fsx- and fsstress-like: neither is packaged in Debian,
# so a small seeded generator of our own), then the oracle.


def fsx_ops(mnt, rng, names, steps):
    """fsx's core: random writes, truncates and reads on files that start in
    LOWER (so copy-up happens mid-run); every read is checked against an
    in-memory model of the file."""
    model = {n: bytearray((mnt / n).read_bytes()) for n in names}
    for step in range(steps):
        name = rng.choice(names)
        data = model[name]
        op = rng.choice(("write", "write", "truncate", "read"))
        with open(mnt / name, "r+b") as f:
            if op == "write":
                off = rng.randrange(0, len(data) + 4096)
                buf = bytes([step % 251]) * rng.randrange(1, 8192)
                f.seek(off)
                f.write(buf)
                data.extend(bytes(max(0, off + len(buf) - len(data))))
                data[off:off + len(buf)] = buf
            elif op == "truncate":
                size = rng.randrange(0, len(data) + 8192)
                f.truncate(size)
                del data[size:]
                data.extend(bytes(size - len(data)))
            off, n = rng.randrange(0, len(data) + 1), rng.randrange(1, 16384)
            f.seek(off)
            assert f.read(n) == bytes(data[off:off + n]), f"step {step}: {name} differs"
    for name in names:
        assert (mnt / name).read_bytes() == bytes(model[name]), name


def fsstress_ops(mnt, rng, steps):
    """fsstress's mix on the namespace: create, mkdir, unlink, rmdir, rm -r,
    rename, link, symlink, chmod, setxattr, over LOWER and new names alike;
    some new names are names removed before (made over a whiteout).  Returns a Counter of the operations that
    succeeded."""
    def entries():      # sorted: the run is the same whatever the listing order
        out = []
        for d, dirs, files in os.walk(mnt):
            out += [Path(d) / n for n in dirs + files]
        return sorted(out)

    done, gone, first = collections.Counter(), [], set(entries())
    for step in range(steps):
        es = entries()
        op = rng.choice(("create", "mkdir", "unlink", "rmdir", "rmtree", "rename", "link",
                         "symlink", "chmod", "setxattr"))
        # Half of the unlinks and renames take a name of LOWER's tree: what
        # leaves whiteouts.
        lowers = [e for e in es if e in first] if op in ("unlink", "rename") else []
        target = rng.choice(lowers if lowers and rng.random() < 0.5 else es) if es else mnt
        parent = target if target.is_dir() and not target.is_symlink() else target.parent
        # A directory made again where LOWER's tree had a name lands on a
        # whiteout and is opaque; other names are reused less, so that
        # whiteouts stay too.
        pool = [g for g in gone if g in first] if op == "mkdir" else gone
        reuse = 0.25 if op == "mkdir" else 0.1
        new = rng.choice(pool) if pool and rng.random() < reuse else parent / f"n{step}"
        is_dir = target.is_dir() and not target.is_symlink()
        try:
            if op == "create":
                new.write_text(f"step {step}\n")
            elif op == "mkdir":
                new.mkdir()
            elif op == "unlink" and not is_dir:
                target.unlink()
            elif op == "rmdir" and target != mnt:
                target.rmdir()
            elif op == "rmtree" and is_dir and target != mnt:
                shutil.rmtree(target)
            elif op == "rename" and target != mnt:
                os.rename(target, rng.choice([mnt, parent]) / f"r{step}")
            elif op == "link" and target.is_file() and not target.is_symlink():
                os.link(target, new)
            elif op == "symlink":
                os.symlink(f"../x{step}", new)
            elif op == "chmod" and not target.is_symlink():
                os.chmod(target, 0o700 | rng.randrange(0, 0o100))
            elif op == "setxattr" and (target.is_file() or target.is_dir()) \
                    and not target.is_symlink() and not stat.S_ISFIFO(os.lstat(target).st_mode):
                os.setxattr(target, f"user.s{step % 3}", b"v%d" % step)
            else:
                continue
        except OSError as e:
            # What a local filesystem refuses too (not empty, EXDEV for a
            # LOWER directory, a name that is gone) is part of the mix.
            assert e.errno in (errno.ENOTEMPTY, errno.EXDEV, errno.ENOENT, errno.EEXIST,
                               errno.ENOTDIR, errno.EISDIR, errno.EINVAL), (op, target, e)
            continue
        done[op] += 1
        if op in ("unlink", "rmdir", "rmtree", "rename"):
            gone.append(target)
        elif op in ("create", "mkdir", "link", "symlink") and new in gone:
            gone.remove(new)
            done["made over a removed name"] += 1
    return done


def upper_format_counts(upper):
    """What UPPER holds of overlayfs's format: whiteouts, opaque
    directories, and copied-up non-directories (they carry the overlay's
    fsbridge.ino xattr: the st_ino kept from LOWER)."""
    counts = collections.Counter()
    for d, dirs, files in os.walk(upper):
        for name in dirs + files:
            path = os.path.join(d, name)
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                counts["whiteouts"] += 1
            elif stat.S_ISLNK(st.st_mode):
                continue
            elif stat.S_ISDIR(st.st_mode):
                counts["opaque dirs"] += _xattr(path, "trusted.overlay.opaque") == b"y"
            else:
                counts["copied up"] += _xattr(path, "trusted.overlay.fsbridge.ino") is not None
    return counts


def _xattr(path, name):
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


@pytest.mark.deadline(240)
def test_random_operations_match_kernel_overlayfs(ovl):
    import random
    rng = random.Random(1313)
    fsx_ops(ovl.mnt, rng, ["file0.txt", "file5.txt", "sparse.img", "src/pkg/main.c"], 400)
    done = fsstress_ops(ovl.mnt, rng, 700)
    guest = overlay_tree.snapshot(ovl.mnt)
    stop(ovl)
    # The oracle says something only about what the run reached: each
    # piece of the format, and renames, must have come up several times.
    reached = upper_format_counts(ovl.upper) + collections.Counter(
        renames=done["rename"], remade=done["made over a removed name"])
    print(f"reached: {dict(reached)}")
    for what in ("whiteouts", "opaque dirs", "copied up", "renames", "remade"):
        assert reached[what] >= 5, f"the random run reached {what} {reached[what]} times " \
            f"(operations: {dict(done)})"
    assert_oracle(ovl, guest)
