"""
test_attr_notes.py - the directory GETATTRs the relay answers itself
(src/mount/attr_notes.h): after a request that changes a directory's
entries, the host sends the directory's new attributes with the reply
(an attribute note, stream protocol 4), and the relay answers the guest
kernel's next GETATTR of the directory with them instead of asking again.

The daemon's debug log names each request it serves: the tests count the
GETATTRs of the directory there (`GETATTR/3 (unique U, node N)`).
"""

import os
import stat

import pytest

import helpers
from fuse_client import ATTR_NOTE, FUSE_ROOT_ID, NOTIFY_ATTRS, FuseClient, parse_attr

EXPORT = "test"


@pytest.fixture
def daemon(export_dir, daemon_factory):
    (export_dir / "d").mkdir()
    return daemon_factory([f"{EXPORT}={export_dir}"], log_level="debug")


def untar_like(mnt, n):
    """What an untar does to a directory: create, write, close files; each
    path walks through the directory the last create changed."""
    for i in range(n):
        with open(mnt / "d" / f"f{i}", "wb") as f:
            f.write(b"x")


@pytest.mark.parametrize("mode", ["auto", "host"])
def test_creates_and_unlinks_cost_no_directory_getattr(daemon, mount_factory, export_dir, mode):
    m = mount_factory(daemon, options=[f"export={EXPORT}", f"dir_attrs={mode}"])
    os.stat(m.path / "d")
    before = daemon.stderr_text().count("FUSE_GETATTR/3")
    untar_like(m.path, 20)
    for i in range(20):
        os.unlink(m.path / "d" / f"f{i}")
    asked = daemon.stderr_text().count("FUSE_GETATTR/3") - before
    if mode == "host":
        assert asked >= 20, f"only {asked} GETATTRs: the kernel did not ask again"
    else:
        assert asked == 0, f"{asked} GETATTRs reached the host"


@pytest.mark.parametrize("mode", ["auto", "host"])
def test_a_walk_after_a_listing_costs_no_directory_getattr(export_dir, daemon_factory,
                                                           mount_factory, mode):
    """The kernel forgets a directory's atime after listing it, and find's
    next visit stats it: the listing's note answers that."""
    for i in range(10):
        (export_dir / f"sub{i}").mkdir()
        (export_dir / f"sub{i}" / "file").write_bytes(b"x")
    d = daemon_factory([f"{EXPORT}={export_dir},cache=coherent"], log_level="debug")
    m = mount_factory(d, options=[f"export={EXPORT}", f"dir_attrs={mode}"])
    for i in range(10):
        os.stat(m.path / f"sub{i}")
    before = d.stderr_text().count("FUSE_GETATTR/3")
    for i in range(10):
        assert os.listdir(m.path / f"sub{i}") == ["file"]
        guest, host = os.stat(m.path / f"sub{i}"), os.stat(export_dir / f"sub{i}")
        assert guest.st_atime_ns == host.st_atime_ns and guest.st_mtime_ns == host.st_mtime_ns
    asked = d.stderr_text().count("FUSE_GETATTR/3") - before
    if mode == "host":
        assert asked >= 10, f"only {asked} GETATTRs: the kernel did not ask again"
    else:
        assert asked == 0, f"{asked} GETATTRs reached the host"


def test_the_answer_is_the_hosts(daemon, mount_factory, export_dir):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    os.stat(m.path / "d")
    os.mkdir(m.path / "d" / "sub")              # nlink, mtime, ctime change
    (m.path / "d" / "f").write_bytes(b"")
    guest, host = os.stat(m.path / "d"), os.stat(export_dir / "d")
    for field in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
                  "st_mtime_ns", "st_ctime_ns"):
        assert getattr(guest, field) == getattr(host, field), field


def test_a_host_change_pushed_afterwards_is_not_undone(export_dir, daemon_factory, mount_factory):
    """cache=coherent keeps attributes a day: a note must not outlive the
    host's own change of the directory that came after it."""
    (export_dir / "d").mkdir()
    daemon = daemon_factory([f"{EXPORT}={export_dir},cache=coherent"], log_level="debug")
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    dfd = os.open(m.path / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd))  # a note for d
        os.chmod(export_dir / "d", 0o700)                                     # then the host's
        helpers.poll_until(lambda: stat.S_IMODE(os.stat(m.path / "d").st_mode) == 0o700,
                           timeout=5, what="the host's chmod seen through the mount")
    finally:
        os.close(dfd)


def test_a_later_change_in_the_guest_is_not_undone(daemon, mount_factory, export_dir):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    dfd = os.open(m.path / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd))
        os.chmod(dfd, 0o711)
        os.utime(dfd, ns=(10**18, 10**18))
        os.listdir(m.path / "d")  # the kernel drops d's atime: stat asks again
        st = os.stat(m.path / "d")
        assert stat.S_IMODE(st.st_mode) == 0o711 and st.st_mtime_ns == 10**18
    finally:
        os.close(dfd)


def test_dir_attrs_host_and_old_peers(daemon, mount_factory):
    """A mount with dir_attrs=host drops the notes; the kernel never sees
    one either way (it would refuse the unknown notification)."""
    m = mount_factory(daemon, options=[f"export={EXPORT}", "dir_attrs=host"])
    untar_like(m.path, 3)
    assert sorted(os.listdir(m.path / "d")) == ["f0", "f1", "f2"]


def notes(client):
    out = []
    for code, payload in client.notifications:
        if code == NOTIFY_ATTRS:
            nodeid, unique, valid, _nsec = ATTR_NOTE.unpack_from(payload)
            out.append((nodeid, unique, valid, parse_attr(payload, ATTR_NOTE.size)))
    return out


def test_protocol_note_precedes_the_reply(daemon, export_dir):
    with FuseClient(daemon.socket, export=EXPORT) as c:
        err, _ = c.mkdir(FUSE_ROOT_ID, "new")
        assert err == 0
        got = notes(c)
        assert len(got) == 1, got
        nodeid, unique, valid, attr = got[0]
        host = os.stat(export_dir)
        assert nodeid == FUSE_ROOT_ID and unique == c.unique and valid == 1  # auto's timeout
        assert attr["nlink"] == host.st_nlink and attr["mtime"] == int(host.st_mtime)
        assert c.unlink(FUSE_ROOT_ID, "missing") != 0
        assert len(notes(c)) == 1, "a failed change sent a note"
    with FuseClient(daemon.socket, export=EXPORT, version=3) as old:
        assert old.mkdir(FUSE_ROOT_ID, "old")[0] == 0
        assert notes(old) == [], "a version-3 client got a note"


def test_protocol_no_note_where_nothing_is_cached(export_dir, daemon_factory):
    daemon = daemon_factory([f"{EXPORT}={export_dir},cache=never"])
    with FuseClient(daemon.socket, export=EXPORT) as c:
        assert c.mkdir(FUSE_ROOT_ID, "new")[0] == 0
        assert notes(c) == []
