"""
test_dirs.py - directories and renames through a real mount.

Checks both the mount and the exported host directory after every step.
"""

import ctypes
import errno
import os
import random
import stat

import pytest

import helpers

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def renameat2(old, new, flags):
    libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                               ctypes.c_char_p, ctypes.c_uint]
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(old), None, str(new))


put = helpers.put_bytes
get = helpers.get_bytes


def test_mkdir_rmdir(fs):
    os.mkdir(fs.mnt / "d", 0o750)
    os.makedirs(fs.mnt / "d" / "a" / "b" / "c")
    assert stat.S_ISDIR(os.stat(fs.host / "d" / "a" / "b" / "c").st_mode)
    assert stat.S_IMODE(os.stat(fs.host / "d").st_mode) == 0o750 & ~current_umask()
    assert os.stat(fs.mnt / "d" / "a").st_nlink == os.stat(fs.host / "d" / "a").st_nlink == 3
    with pytest.raises(FileExistsError):
        os.mkdir(fs.mnt / "d")
    with pytest.raises(OSError) as e:
        os.rmdir(fs.mnt / "d" / "a")
    assert e.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    os.rmdir(fs.mnt / "d" / "a" / "b" / "c")
    assert not os.path.exists(fs.host / "d" / "a" / "b" / "c")
    assert not os.path.exists(fs.mnt / "d" / "a" / "b" / "c")
    put(fs.mnt / "d" / "file", b"x")
    with pytest.raises(NotADirectoryError):
        os.rmdir(fs.mnt / "d" / "file")
    with pytest.raises(IsADirectoryError):
        os.unlink(fs.mnt / "d" / "a")
    os.unlink(fs.mnt / "d" / "file")
    assert not os.path.exists(fs.host / "d" / "file")


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_rename_file_over_file(fs):
    put(fs.mnt / "a", b"AAA")
    put(fs.mnt / "b", b"BBBBBB")
    ino_a = os.stat(fs.host / "a").st_ino
    os.rename(fs.mnt / "a", fs.mnt / "b")
    assert not os.path.lexists(fs.mnt / "a")
    assert not os.path.lexists(fs.host / "a")
    assert get(fs.mnt / "b") == b"AAA"
    assert get(fs.host / "b") == b"AAA"
    assert os.stat(fs.host / "b").st_ino == ino_a
    assert sorted(os.listdir(fs.mnt)) == sorted(os.listdir(fs.host)) == ["b"]


def test_rename_open_file_keeps_handle(fs):
    put(fs.mnt / "old", b"content")
    with open(fs.mnt / "old", "r+b") as f:
        os.rename(fs.mnt / "old", fs.mnt / "new")
        f.seek(0, os.SEEK_END)
        f.write(b"+more")
    assert get(fs.host / "new") == b"content+more"
    assert get(fs.mnt / "new") == b"content+more"


def test_rename_directories(fs):
    os.mkdir(fs.mnt / "src")
    put(fs.mnt / "src" / "inside", b"i")
    os.mkdir(fs.mnt / "empty")
    os.mkdir(fs.mnt / "full")
    put(fs.mnt / "full" / "x", b"x")
    put(fs.mnt / "plain", b"p")

    # Over a non-empty directory: refused, nothing moves.
    with pytest.raises(OSError) as e:
        os.rename(fs.mnt / "src", fs.mnt / "full")
    assert e.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    assert get(fs.host / "full" / "x") == b"x"
    assert get(fs.host / "src" / "inside") == b"i"

    # Directory over a file, file over a directory.
    with pytest.raises(NotADirectoryError):
        os.rename(fs.mnt / "src", fs.mnt / "plain")
    with pytest.raises(IsADirectoryError):
        os.rename(fs.mnt / "plain", fs.mnt / "empty")
    # Into its own subdirectory.
    with pytest.raises(OSError) as e:
        os.rename(fs.mnt / "src", fs.mnt / "src" / "sub")
    assert e.value.errno == errno.EINVAL

    # Over an empty directory: replaces it.
    os.rename(fs.mnt / "src", fs.mnt / "empty")
    assert get(fs.host / "empty" / "inside") == b"i"
    assert get(fs.mnt / "empty" / "inside") == b"i"
    assert not os.path.exists(fs.host / "src")
    assert sorted(os.listdir(fs.mnt)) == sorted(os.listdir(fs.host)) == ["empty", "full", "plain"]


def test_rename_into_other_directories(fs):
    for d in ("d1", "d2", "d2/deep"):
        os.mkdir(fs.mnt / d)
    put(fs.mnt / "d1" / "f", b"moved file")
    os.mkdir(fs.mnt / "d1" / "sub")
    put(fs.mnt / "d1" / "sub" / "g", b"moved with its dir")
    n1 = os.stat(fs.mnt / "d1").st_nlink

    os.rename(fs.mnt / "d1" / "f", fs.mnt / "d2" / "deep" / "renamed")
    os.rename(fs.mnt / "d1" / "sub", fs.mnt / "d2" / "sub")
    assert os.listdir(fs.mnt / "d1") == os.listdir(fs.host / "d1") == []
    assert get(fs.host / "d2" / "deep" / "renamed") == b"moved file"
    assert get(fs.mnt / "d2" / "deep" / "renamed") == b"moved file"
    assert get(fs.host / "d2" / "sub" / "g") == b"moved with its dir"
    assert get(fs.mnt / "d2" / "sub" / "g") == b"moved with its dir"
    # ".." of the moved directory follows it.
    assert os.stat(fs.mnt / "d2" / "sub" / "..").st_ino == os.stat(fs.mnt / "d2").st_ino
    # Link counts of both parents follow the moved subdirectory.
    assert os.stat(fs.mnt / "d1").st_nlink == os.stat(fs.host / "d1").st_nlink == n1 - 1
    assert os.stat(fs.mnt / "d2").st_nlink == os.stat(fs.host / "d2").st_nlink == 4
    # And back, over an existing file.
    put(fs.mnt / "d1" / "target", b"old")
    os.rename(fs.mnt / "d2" / "deep" / "renamed", fs.mnt / "d1" / "target")
    assert get(fs.host / "d1" / "target") == b"moved file"
    assert os.listdir(fs.host / "d2" / "deep") == []


def test_rename_noreplace(fs):
    put(fs.mnt / "a", b"a")
    put(fs.mnt / "b", b"b")
    with pytest.raises(FileExistsError):
        renameat2(fs.mnt / "a", fs.mnt / "b", RENAME_NOREPLACE)
    assert get(fs.host / "a") == b"a" and get(fs.host / "b") == b"b"
    assert get(fs.mnt / "a") == b"a" and get(fs.mnt / "b") == b"b"
    renameat2(fs.mnt / "a", fs.mnt / "c", RENAME_NOREPLACE)
    assert sorted(os.listdir(fs.host)) == sorted(os.listdir(fs.mnt)) == ["b", "c"]
    assert get(fs.host / "c") == b"a"


def test_rename_exchange(fs):
    put(fs.mnt / "file", b"i am a file")
    os.mkdir(fs.mnt / "dir")
    put(fs.mnt / "dir" / "child", b"child")
    ino_file = os.stat(fs.host / "file").st_ino
    ino_dir = os.stat(fs.host / "dir").st_ino

    renameat2(fs.mnt / "file", fs.mnt / "dir", RENAME_EXCHANGE)
    assert os.stat(fs.host / "dir").st_ino == ino_file
    assert os.stat(fs.host / "file").st_ino == ino_dir
    assert get(fs.host / "dir") == b"i am a file"
    assert get(fs.host / "file" / "child") == b"child"
    assert get(fs.mnt / "dir") == b"i am a file"
    assert get(fs.mnt / "file" / "child") == b"child"
    assert stat.S_ISDIR(os.stat(fs.mnt / "file").st_mode)
    assert stat.S_ISREG(os.stat(fs.mnt / "dir").st_mode)

    # Exchange needs both names.
    with pytest.raises(FileNotFoundError):
        renameat2(fs.mnt / "dir", fs.mnt / "missing", RENAME_EXCHANGE)
    # NOREPLACE and EXCHANGE together are invalid.
    with pytest.raises(OSError) as e:
        renameat2(fs.mnt / "dir", fs.mnt / "file", RENAME_EXCHANGE | RENAME_NOREPLACE)
    assert e.value.errno == errno.EINVAL


def test_unlink_open_file(fs):
    put(fs.mnt / "ghost", b"still readable")
    with open(fs.mnt / "ghost", "rb") as f:
        os.unlink(fs.mnt / "ghost")
        assert not os.path.lexists(fs.host / "ghost")
        assert not os.path.lexists(fs.mnt / "ghost")
        assert f.read() == b"still readable"
    assert os.listdir(fs.host) == []


# --------------------------------------------------------------------------
# Big directories.  10,000 entries cost tens of thousands of requests per
# run; they run in the two modes whose directory paths differ most: "never"
# (nothing cached: every readdir and lookup goes to the host) and "always"
# (entries, attributes and directory contents cached by the guest kernel).
# "metadata", "auto" and "writeback" differ from those only in how file
# *data* is cached, which a directory listing does not touch.

N_ENTRIES = 10000


def make_entries(fs, dirname, n=N_ENTRIES):
    d = fs.mnt / dirname
    os.mkdir(d)
    names = {f"entry-{i:05d}-{'x' * (i % 37)}" for i in range(n)}
    for name in names:
        os.close(os.open(d / name, os.O_WRONLY | os.O_CREAT, 0o644))
    return names


@pytest.mark.modes("never", "always")
@pytest.mark.deadline(120)
def test_listdir_10000_entries(fs):
    names = make_entries(fs, "big")
    host = os.listdir(fs.host / "big")
    assert len(host) == N_ENTRIES and set(host) == names
    listed = os.listdir(fs.mnt / "big")
    assert len(listed) == len(set(listed)), "duplicate entries in the listing"
    assert set(listed) == names
    # scandir types come from readdir(plus): all regular files.
    with os.scandir(fs.mnt / "big") as it:
        kinds = {e.name: e.is_file(follow_symlinks=False) for e in it}
    assert len(kinds) == N_ENTRIES and all(kinds.values())
    # A second listing (served from the guest's cache in "always") agrees.
    assert sorted(os.listdir(fs.mnt / "big")) == sorted(names)


@pytest.mark.modes("never", "always")
@pytest.mark.deadline(120)
def test_scandir_stable_while_removing(fs):
    """Remove entries, seen and not yet seen, while a listing is in progress.

    POSIX: an entry removed during the walk may or may not be returned; every
    other entry is returned exactly once.
    """
    names = make_entries(fs, "walk")
    rng = random.Random(1234)
    seen = []
    seen_set = set()
    removed = set()
    with os.scandir(fs.mnt / "walk") as it:
        for entry in it:
            assert entry.name not in seen_set, f"{entry.name} returned twice"
            seen.append(entry.name)
            seen_set.add(entry.name)
            if len(seen) >= 1000 and len(seen) % 50 == 0:
                unseen = sorted(names - seen_set - removed)
                victims = rng.sample(unseen, min(5, len(unseen)))
                victims += rng.sample(sorted(seen_set - removed), 5)
                for v in victims:
                    os.unlink(fs.mnt / "walk" / v)
                    removed.add(v)
    assert removed, "the walk removed nothing: the test did not test anything"
    missing = names - removed - seen_set
    assert not missing, f"{len(missing)} entries never removed were not returned, e.g. {sorted(missing)[:5]}"
    assert seen_set <= names
    left = names - removed
    assert set(os.listdir(fs.host / "walk")) == left
    listed = os.listdir(fs.mnt / "walk")
    assert len(listed) == len(left) and set(listed) == left


def test_readdir_after_changes(fs):
    """A listing reflects creates and removals made through the mount."""
    os.mkdir(fs.mnt / "d")
    for i in range(100):
        put(fs.mnt / "d" / f"f{i}", b"")
    assert len(os.listdir(fs.mnt / "d")) == 100
    for i in range(0, 100, 2):
        os.unlink(fs.mnt / "d" / f"f{i}")
    os.mkdir(fs.mnt / "d" / "newdir")
    os.symlink("f1", fs.mnt / "d" / "link")
    want = {f"f{i}" for i in range(1, 100, 2)} | {"newdir", "link"}
    assert set(os.listdir(fs.mnt / "d")) == want
    assert set(os.listdir(fs.host / "d")) == want
    with os.scandir(fs.mnt / "d") as it:
        kinds = {e.name: (e.is_dir(follow_symlinks=False), e.is_symlink()) for e in it}
    assert kinds["newdir"] == (True, False)
    assert kinds["link"] == (False, True)
    assert kinds["f1"] == (False, False)


@pytest.mark.parametrize("cache,timeout", [("never", None), ("auto", 1), ("always", 86400)])
def test_missing_name_is_a_cached_negative_entry(fsb_workdir, daemon_factory, cache, timeout):
    # A name that does not exist is answered as a negative entry (node id 0)
    # that the guest may cache as long as a found one; never caches nothing.
    from fuse_client import FuseClient
    export = fsb_workdir / "e"
    export.mkdir()
    (export / "d").mkdir()
    d = daemon_factory([f"test={export},cache={cache}"])
    with FuseClient(d.socket, export="test", init=True, timeout=10) as c:
        err, e = c.lookup_raw(1, "missing")
        if timeout is None:
            assert err == errno.ENOENT
        else:
            assert err == 0 and e["nodeid"] == 0 and e["entry_valid"] == timeout
        # ".." and "." are never negative.
        err, dot = c.lookup(1, "d")
        assert err == 0
        assert c.lookup_raw(dot["nodeid"], "..")[0] == 0


def test_create_over_a_cached_missing_name(fs):
    # The guest's own create replaces its negative entry at once, in every
    # mode; so do mkdir, symlink and rename onto the name.
    for name in ("f", "d", "l", "r"):
        assert not os.path.exists(fs.mnt / name)
    (fs.mnt / "f").write_text("x")
    os.mkdir(fs.mnt / "d")
    os.symlink("f", fs.mnt / "l")
    (fs.mnt / "src").write_text("y")
    os.rename(fs.mnt / "src", fs.mnt / "r")
    assert (fs.mnt / "f").read_text() == "x" and (fs.mnt / "l").read_text() == "x"
    assert os.path.isdir(fs.mnt / "d") and (fs.mnt / "r").read_text() == "y"
    assert sorted(os.listdir(fs.host)) == ["d", "f", "l", "r"]
    os.unlink(fs.mnt / "f")
    assert not os.path.exists(fs.mnt / "f") and not (fs.host / "f").exists()
