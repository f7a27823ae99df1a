"""
test_links.py - hard links, symbolic links and FIFOs through a real mount.
"""

import hashlib
import os
import stat
import subprocess

import pytest

import helpers


put = helpers.put_bytes
get = helpers.get_bytes


def test_hard_links(fs):
    put(fs.mnt / "a", b"shared")
    os.mkdir(fs.mnt / "sub")
    os.link(fs.mnt / "a", fs.mnt / "sub" / "b")

    ma, mb = os.stat(fs.mnt / "a"), os.stat(fs.mnt / "sub" / "b")
    assert ma.st_ino == mb.st_ino
    assert ma.st_nlink == mb.st_nlink == 2
    ha, hb = os.stat(fs.host / "a"), os.stat(fs.host / "sub" / "b")
    assert ha.st_ino == hb.st_ino, "the host holds two files, not one linked inode"
    assert ha.st_nlink == 2

    # A write through one name is seen through the other, on both sides.
    with open(fs.mnt / "sub" / "b", "ab") as f:
        f.write(b"+appended")
    assert get(fs.mnt / "a") == b"shared+appended"
    assert get(fs.host / "a") == b"shared+appended"

    # Linking a directory, or onto an existing name, is refused.
    with pytest.raises(PermissionError):
        os.link(fs.mnt / "sub", fs.mnt / "sublink")
    with pytest.raises(FileExistsError):
        os.link(fs.mnt / "a", fs.mnt / "sub" / "b")

    os.unlink(fs.mnt / "a")
    assert os.stat(fs.mnt / "sub" / "b").st_nlink == 1
    assert os.stat(fs.host / "sub" / "b").st_nlink == 1
    assert get(fs.host / "sub" / "b") == b"shared+appended"
    assert not os.path.exists(fs.host / "a")


def test_many_links_same_inode(fs):
    put(fs.mnt / "orig", b"x")
    for i in range(20):
        os.link(fs.mnt / "orig", fs.mnt / f"l{i}")
    inos = {os.stat(fs.mnt / f"l{i}").st_ino for i in range(20)}
    assert inos == {os.stat(fs.mnt / "orig").st_ino}
    assert os.stat(fs.mnt / "l7").st_nlink == 21
    assert os.stat(fs.host / "l7").st_nlink == 21
    for i in range(20):
        os.unlink(fs.mnt / f"l{i}")
    assert os.stat(fs.mnt / "orig").st_nlink == os.stat(fs.host / "orig").st_nlink == 1


def test_symlinks(fs):
    put(fs.mnt / "target.txt", b"through the link")
    os.mkdir(fs.mnt / "dir")
    put(fs.mnt / "dir" / "inner", b"inner")
    long_target = "/".join(["component"] * 100)        # 999 bytes

    links = {
        "rel": "target.txt",
        "reldir": "dir",
        "up": "../target.txt",       # created inside dir/
        "abs": "/etc/hostname",
        "dangling": "does/not/exist",
        "long": long_target,
    }
    for name, target in links.items():
        where = fs.mnt / "dir" if name == "up" else fs.mnt
        os.symlink(target, where / name)

    for name, target in links.items():
        rel = os.path.join("dir", name) if name == "up" else name
        assert os.readlink(fs.mnt / rel) == target
        assert os.readlink(fs.host / rel) == target     # stored verbatim on the host
        assert stat.S_ISLNK(os.lstat(fs.mnt / rel).st_mode)
        assert stat.S_ISLNK(os.lstat(fs.host / rel).st_mode)
        assert os.lstat(fs.mnt / rel).st_size == len(target)

    # The guest resolves links itself.
    assert get(fs.mnt / "rel") == b"through the link"
    assert get(fs.mnt / "dir" / "up") == b"through the link"
    assert sorted(os.listdir(fs.mnt / "reldir")) == ["inner", "up"]
    assert get(fs.mnt / "reldir" / "inner") == b"inner"
    with pytest.raises(FileNotFoundError):
        get(fs.mnt / "dangling")
    assert not os.path.exists(fs.mnt / "dangling")
    assert os.path.lexists(fs.mnt / "dangling")
    # An absolute link names the guest's /etc, whatever the host has there.
    if os.path.exists("/etc/hostname"):
        assert get(fs.mnt / "abs") == get("/etc/hostname")

    # Writing through a link writes the target.
    with open(fs.mnt / "rel", "ab") as f:
        f.write(b"!")
    assert get(fs.host / "target.txt") == b"through the link!"

    # Removing the link leaves the target.
    os.unlink(fs.mnt / "rel")
    assert not os.path.lexists(fs.host / "rel")
    assert os.path.exists(fs.host / "target.txt")

    # readlink of something that is not a link.
    with pytest.raises(OSError):
        os.readlink(fs.mnt / "target.txt")


def test_symlink_rename_and_hardlink(fs):
    os.symlink("target", fs.mnt / "s")
    os.rename(fs.mnt / "s", fs.mnt / "s2")
    assert os.readlink(fs.host / "s2") == "target"
    # link(2) does not follow symlinks: a second name of the link itself.
    os.link(fs.mnt / "s2", fs.mnt / "s3", follow_symlinks=False)
    assert os.readlink(fs.mnt / "s3") == "target"
    assert os.lstat(fs.host / "s3").st_ino == os.lstat(fs.host / "s2").st_ino
    assert os.lstat(fs.mnt / "s3").st_nlink == 2


def test_ls_l_shows_link_target(fs):
    put(fs.mnt / "file", b"")
    os.symlink("file", fs.mnt / "link")
    os.symlink("/nowhere/at/all", fs.mnt / "broken")
    out = helpers.run(["ls", "-l", str(fs.mnt)], env={"LC_ALL": "C", "PATH": os.environ["PATH"]}).stdout
    lines = out.splitlines()
    assert any(line.startswith("l") and line.endswith("link -> file") for line in lines), out
    assert any(line.startswith("l") and line.endswith("broken -> /nowhere/at/all") for line in lines), out
    assert any(line.startswith("-") and line.endswith(" file") for line in lines), out


def test_fifo(fs):
    os.mkfifo(fs.mnt / "pipe", 0o644)
    os.mknod(fs.mnt / "pipe2", stat.S_IFIFO | 0o600)
    for name in ("pipe", "pipe2"):
        assert stat.S_ISFIFO(os.stat(fs.host / name).st_mode)
        assert stat.S_ISFIFO(os.stat(fs.mnt / name).st_mode)
    assert stat.S_IMODE(os.stat(fs.host / "pipe2").st_mode) == 0o600

    # A reader and a writer meet through the mount (the guest kernel makes
    # the pipe).  More than a pipe buffer flows, so both sides must run.
    payload_size = 200 * 1024
    reader = subprocess.Popen(
        [helpers.PYTHON, "-c",
         "import sys, hashlib\n"
         "data = open(sys.argv[1], 'rb').read()\n"
         "print(len(data), hashlib.sha256(data).hexdigest())",
         str(fs.mnt / "pipe")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = subprocess.Popen(
        [helpers.PYTHON, "-c",
         "import sys\n"
         "with open(sys.argv[1], 'wb') as f:\n"
         "    f.write(bytes(range(256)) * (int(sys.argv[2]) // 256))",
         str(fs.mnt / "pipe"), str(payload_size)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wout, werr = writer.communicate(timeout=15)
        rout, rerr = reader.communicate(timeout=15)
    finally:
        for p in (reader, writer):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert writer.returncode == 0, werr
    assert reader.returncode == 0, rerr
    want = hashlib.sha256(bytes(range(256)) * (payload_size // 256)).hexdigest()
    assert rout.split() == [str(payload_size), want]
    # Nothing of the pipe's traffic landed in the host node.
    assert os.stat(fs.host / "pipe").st_size == 0
