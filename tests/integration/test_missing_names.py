"""
test_missing_names.py - the relay answers the guest kernel's LOOKUP of a
name not yet created in a directory the mount has just made
(src/mount/missing_names.h): an untar into a new directory sends no
LOOKUP to the host, names made there are found again after the kernel
forgot them, and names the host or another guest adds are seen.
"""

import ctypes
import errno
import fcntl
import os
import stat
import struct
import subprocess
import threading
import time

import pytest

import helpers
from fuse_client import (EMPTY_DIR_BOUNDED, EMPTY_DIR_NOTE, FUSE_ROOT_ID, NOTIFY_EMPTY_DIR,
                         FuseClient)

EXPORT = "test"
LOOKUP = "FUSE_LOOKUP"
CHANGE_TIMEOUT = 5.0


def start_daemon(export_dir, daemon_factory):
    return daemon_factory([f"{EXPORT}={export_dir},cache=coherent"], log_level="debug")


@pytest.fixture
def daemon(export_dir, daemon_factory):
    return start_daemon(export_dir, daemon_factory)


def mount(daemon, mount_factory, *opts):
    m = mount_factory(daemon, options=[f"export={EXPORT}", *opts])
    helpers.poll_until(lambda: "tracked with fanotify" in daemon.stderr_text(), timeout=5,
                       what="the change watcher's mode in the log")
    return m


def extract(d, n=20):
    for i in range(n):
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            f.write(b"contents %d\n" % i)


def drop_dentries():
    """The kernel forgets every name nobody holds (a held directory stays)."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2")


def seen(check, what):
    def quiet():
        try:
            return check()
        except OSError:
            return False
    helpers.poll_until(quiet, timeout=CHANGE_TIMEOUT, interval=0.005, what=what)


@pytest.mark.parametrize("mode", ["auto", "host"])
def test_creating_in_a_new_directory_asks_the_host_no_lookup(daemon, mount_factory, mode):
    m = mount(daemon, mount_factory, f"lookups={mode}")
    os.mkdir(m.path / "d")
    before = helpers.served(daemon, LOOKUP)
    extract(str(m.path / "d"))
    os.mkdir(m.path / "d" / "sub")
    extract(str(m.path / "d" / "sub"), 5)
    looked_up = helpers.served(daemon, LOOKUP) - before
    if mode == "auto":
        assert looked_up == 0
    else:
        assert looked_up >= 26
    assert sorted(os.listdir(m.path / "d")) == sorted([f"f{i}" for i in range(20)] + ["sub"])
    assert (m.path / "d" / "sub" / "f4").read_bytes() == b"contents 4\n"


def test_names_made_here_are_found_after_the_kernel_forgets_them(daemon_factory, mount_factory,
                                                                 export_dir):
    # Made before the daemon watches the export: a host change reported
    # after the mount could reach the relay between the MKDIR of d and
    # its note, and d would rightly not be taken as new (seen once in CI).
    (export_dir / "elsewhere").write_bytes(b"moved in")
    daemon = start_daemon(export_dir, daemon_factory)
    m = mount(daemon, mount_factory)
    d = m.path / "d"
    os.mkdir(d)
    (d / "file").write_bytes(b"x")
    os.mkfifo(d / "fifo")
    os.mkdir(d / "dir")
    os.symlink("file", d / "sym")
    os.link(d / "file", d / "hard")
    os.rename(m.path / "elsewhere", d / "moved")
    os.rename(d / "file", d / "renamed")
    names = ["dir", "fifo", "hard", "moved", "renamed", "sym"]
    held = os.open(d, os.O_RDONLY | os.O_DIRECTORY)  # keeps d itself known to the kernel
    try:
        drop_dentries()
        before = helpers.served(daemon, LOOKUP)
        assert stat.S_ISFIFO(os.lstat(d / "fifo").st_mode)
        assert stat.S_ISDIR(os.lstat(d / "dir").st_mode)
        assert os.readlink(d / "sym") == "file"
        assert os.lstat(d / "hard").st_nlink == 2
        assert (d / "moved").read_bytes() == b"moved in"
        assert (d / "renamed").read_bytes() == b"x"
        assert helpers.served(daemon, LOOKUP) - before >= len(names)
        assert not os.path.lexists(d / "file")
        assert sorted(os.listdir(d)) == names
        # d is still new to the relay: a name never made there is not asked for
        before = helpers.served(daemon, LOOKUP)
        assert not os.path.lexists(d / "never")
        assert helpers.served(daemon, LOOKUP) == before
    finally:
        os.close(held)


def renameat2(old, new, flags):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(-100, os.fsencode(old), -100, os.fsencode(new), flags) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(old))


RENAME_EXCHANGE = 2


def test_names_linked_from_a_tmpfile_or_exchanged_in_are_found_again(daemon, mount_factory):
    m = mount(daemon, mount_factory)
    d, e = m.path / "d", m.path / "e"
    os.mkdir(d)
    os.mkdir(e)
    fd = os.open(d, os.O_TMPFILE | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"tmp")
        libc = ctypes.CDLL(None, use_errno=True)
        AT_EMPTY_PATH = 0x1000
        assert libc.linkat(fd, b"", -100, os.fsencode(d / "linked"), AT_EMPTY_PATH) == 0, \
            os.strerror(ctypes.get_errno())
    finally:
        os.close(fd)
    (d / "mine").write_bytes(b"d's")
    (e / "theirs").write_bytes(b"e's")
    (e / "mine").write_bytes(b"e's own")
    renameat2(e / "theirs", d / "mine", RENAME_EXCHANGE)  # d/mine <-> e/theirs
    held = [os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in (d, e)]
    try:
        drop_dentries()
        assert (d / "linked").read_bytes() == b"tmp"
        assert (d / "mine").read_bytes() == b"e's"
        assert (e / "theirs").read_bytes() == b"d's"
        assert sorted(os.listdir(d)) == ["linked", "mine"]
    finally:
        for h in held:
            os.close(h)


def test_a_name_the_host_adds_is_seen(daemon, mount_factory, export_dir):
    m = mount(daemon, mount_factory)
    os.mkdir(m.path / "d")
    assert not os.path.exists(m.path / "d" / "x")  # answered by the relay
    (export_dir / "d" / "x").write_bytes(b"from the host")
    seen(lambda: (m.path / "d" / "x").read_bytes() == b"from the host", "the host's new file")
    # the relay no longer answers for d: the next name goes to the host
    before = helpers.served(daemon, LOOKUP)
    (m.path / "d" / "y").write_bytes(b"guest")
    assert helpers.served(daemon, LOOKUP) > before


def test_a_name_another_guest_adds_is_seen(daemon, mount_factory):
    a = mount(daemon, mount_factory)
    b = mount(daemon, mount_factory)
    os.mkdir(a.path / "d")
    assert not os.path.exists(a.path / "d" / "from-b")
    (b.path / "d" / "from-b").write_bytes(b"b")
    seen(lambda: (a.path / "d" / "from-b").read_bytes() == b"b", "the other guest's file")


def test_a_name_renamed_in_by_the_host_is_seen(daemon, mount_factory, export_dir):
    m = mount(daemon, mount_factory)
    os.mkdir(m.path / "d")
    (export_dir / "outside").write_bytes(b"o")
    assert not os.path.exists(m.path / "d" / "in")
    os.rename(export_dir / "outside", export_dir / "d" / "in")
    seen(lambda: (m.path / "d" / "in").read_bytes() == b"o", "the host's rename into d")


def test_with_inotify_every_lookup_goes_to_the_host(export_dir, daemon_factory, mount_factory):
    """inotify watches directories as they are looked up and reports the
    session its own changes too: the host sends no empty-directory note."""
    env = dict(os.environ, FSBRIDGE_CHANGE_WATCH="inotify")
    d = daemon_factory([f"{EXPORT}={export_dir},cache=coherent"], log_level="debug", env=env)
    m = mount_factory(d, options=[f"export={EXPORT}"])
    helpers.poll_until(lambda: "tracked with inotify" in d.stderr_text(), timeout=5,
                       what="the change watcher's mode in the log")
    os.mkdir(m.path / "d")
    before = helpers.served(d, LOOKUP)
    extract(str(m.path / "d"), 5)
    assert helpers.served(d, LOOKUP) - before >= 5


FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_CASEFOLD_FL = 0x80086601, 0x40086602, 0x40000000


@pytest.fixture
def casefold_dir(fsb_workdir):
    """An empty casefolded directory (chattr +F) on a tmpfs mounted with
    casefold support; skipped where the kernel has none (CONFIG_UNICODE)."""
    top = fsb_workdir / "casefold"
    top.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "casefold", "tmpfs", str(top)],
                      capture_output=True).returncode != 0:
        pytest.skip("no casefolding tmpfs on this kernel")
    try:
        d = top / "export"
        d.mkdir()
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4))[0]
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags | FS_CASEFOLD_FL))
        finally:
            os.close(fd)
        yield d
    finally:
        subprocess.run(["umount", "-l", str(top)], check=False)


def test_in_a_casefolded_directory_another_case_of_a_name_is_found(casefold_dir,
                                                                   daemon_factory,
                                                                   mount_factory):
    """A name the relay saw made is one string; the host's casefolded
    directory finds it by any case, and a new directory inherits that."""
    d = daemon_factory([f"{EXPORT}={casefold_dir},cache=coherent"], log_level="debug")
    m = mount(d, mount_factory)
    os.mkdir(m.path / "src")
    (m.path / "src" / "Makefile").write_bytes(b"all:\n")
    assert (casefold_dir / "src" / "makefile").read_bytes() == b"all:\n"
    assert (m.path / "src" / "makefile").read_bytes() == b"all:\n"


# ---- the protocol --------------------------------------------------------

def empty_dir_notes(client):
    return [EMPTY_DIR_NOTE.unpack_from(p)[:3] for code, p in client.notifications
            if code == NOTIFY_EMPTY_DIR]


def note_flags(client):
    return [EMPTY_DIR_NOTE.unpack_from(p)[4] for code, p in client.notifications
            if code == NOTIFY_EMPTY_DIR]


def test_protocol_note_precedes_the_reply_for_version_6_only(daemon):
    with FuseClient(daemon.socket, export=EXPORT) as c:
        unique = c.next_unique() + 2  # the one mkdir() is about to use
        err, e = c.mkdir(FUSE_ROOT_ID, "new")
        assert err == 0
        assert empty_dir_notes(c) == [(e["nodeid"], unique, e["entry_valid"])]
        err, _ = c.mkdir(e["nodeid"], "sub")  # the parent is no longer empty: sub is
        assert len(empty_dir_notes(c)) == 2
        err, _ = c.mknod(e["nodeid"], "fifo", stat.S_IFIFO | 0o644)
        assert err == 0 and len(empty_dir_notes(c)) == 2  # notes come with MKDIRs only
    with FuseClient(daemon.socket, export=EXPORT, version=5) as c:
        err, _ = c.mkdir(FUSE_ROOT_ID, "old-peer")
        assert err == 0 and empty_dir_notes(c) == []


@pytest.mark.parametrize("cache, old_version, flags", [
    ("coherent", 5, 0),  # no note at all before version 6
    ("auto", 6, EMPTY_DIR_BOUNDED),  # it would take a bounded one for good
])
def test_protocol_an_older_join_gets_no_note_it_does_not_know(export_dir, daemon_factory,
                                                              cache, old_version, flags):
    """A JOIN may speak an older version than the session's first HELLO
    (as it gets no term it does not know, test_no_open.py)."""
    d = daemon_factory([f"{EXPORT}={export_dir},cache={cache}"])
    with FuseClient(d.socket, export=EXPORT) as first:
        with FuseClient(d.socket, export=EXPORT, version=old_version, join=first.token) as old:
            assert old.hello_reply["status"] == 0
            assert old.mkdir(FUSE_ROOT_ID, "by-old")[0] == 0
            assert empty_dir_notes(old) == []
        assert first.mkdir(FUSE_ROOT_ID, "by-first")[0] == 0
        assert note_flags(first) == [flags]


def test_protocol_where_nothing_is_pushed_the_note_is_bounded(export_dir, daemon_factory,
                                                              daemon):
    """cache=auto pushes nothing: a version-7 client gets the note bounded
    by the mode's 1 s timeout, an older one none; coherent's is not."""
    d = daemon_factory([f"{EXPORT}={export_dir},cache=auto"])
    with FuseClient(d.socket, export=EXPORT) as c:
        err, e = c.mkdir(FUSE_ROOT_ID, "new")
        assert err == 0 and [n[2] for n in empty_dir_notes(c)] == [1] == [e["entry_valid"]]
        assert note_flags(c) == [EMPTY_DIR_BOUNDED]
    with FuseClient(d.socket, export=EXPORT, version=6) as c:
        err, _ = c.mkdir(FUSE_ROOT_ID, "old-peer")
        assert err == 0 and empty_dir_notes(c) == []
    with FuseClient(daemon.socket, export=EXPORT) as c:  # coherent: pushed
        err, _ = c.mkdir(FUSE_ROOT_ID, "pushed")
        assert err == 0 and note_flags(c) == [0]
    # cache=always keeps entries a day, the bounded note a second at most:
    # it hides every name there, where a LOOKUP hides one
    d = daemon_factory([f"{EXPORT}={export_dir / 'new'},cache=always"])
    with FuseClient(d.socket, export=EXPORT) as c:
        err, e = c.mkdir(FUSE_ROOT_ID, "a-day")
        assert err == 0 and e["entry_valid"] == 86400
        assert [n[2] for n in empty_dir_notes(c)] == [1] and note_flags(c) == [EMPTY_DIR_BOUNDED]


def test_in_cache_auto_a_new_directory_is_answered_for_its_timeout(export_dir, daemon_factory,
                                                                   mount_factory):
    """No pushes: the relay answers for the new directory for the 1 s a
    negative entry may be cached in cache=auto, counted from the MKDIR's
    forwarding, so a name the host makes there shows within that second,
    as it would after any LOOKUP; then the lookups go to the host again."""
    d = daemon_factory([f"{EXPORT}={export_dir},cache=auto"], log_level="debug")
    m = mount_factory(d, options=[f"export={EXPORT}"], extra_args=["-d"])
    start = time.monotonic()
    os.mkdir(m.path / "d")
    before = helpers.served(d, LOOKUP)
    extract(str(m.path / "d"), 5)
    # the first lookup comes milliseconds after the mkdir: the relay's
    if time.monotonic() - start < 0.8:  # and all of them, made within the second
        assert helpers.served(d, LOOKUP) == before
    assert "LOOKUP answered by the relay (a new directory)" in m.stderr_text()
    (export_dir / "d" / "x").write_bytes(b"from the host")
    seen(lambda: (m.path / "d" / "x").read_bytes() == b"from the host", "the host's new file")
    before = helpers.served(d, LOOKUP)
    (m.path / "d" / "late").write_bytes(b"guest")  # the second is over: asked
    assert helpers.served(d, LOOKUP) > before


def test_protocol_no_note_for_a_directory_filled_before_the_session_knew_it(export_dir,
                                                                          daemon_factory):
    """A name the host makes in the new directory before the session has
    its node is never pushed (no session knew the directory): the host
    checks the directory is empty once the node is in."""
    env = dict(os.environ, FSBRIDGE_TEST_JOIN_DELAY_MS="500")
    d = daemon_factory([f"{EXPORT}={export_dir},cache=coherent"], env=env)
    with FuseClient(d.socket, export=EXPORT) as c:
        def fill():
            helpers.poll_until(lambda: (export_dir / "new").is_dir(), timeout=5,
                               what="the guest's mkdir on the host")
            (export_dir / "new" / "early").write_bytes(b"")
        t = threading.Thread(target=fill)
        t.start()
        err, e = c.mkdir(FUSE_ROOT_ID, "new")
        t.join()
        assert err == 0
        assert empty_dir_notes(c) == []
        assert c.lookup(e["nodeid"], "early")[0] == 0
        # and without a name, the same delay gives a note
        err, e = c.mkdir(FUSE_ROOT_ID, "new2")
        assert err == 0 and [n[0] for n in empty_dir_notes(c)] == [e["nodeid"]]


def test_protocol_a_hostile_guest_cannot_make_the_host_send_notes_elsewhere(daemon):
    """A note is sent only after the MKDIR itself succeeded."""
    with FuseClient(daemon.socket, export=EXPORT) as c:
        assert c.mkdir(FUSE_ROOT_ID, "x")[0] == 0
        assert c.mkdir(FUSE_ROOT_ID, "x")[0] == errno.EEXIST
        assert c.mkdir(12345, "y")[0] != 0
        assert len(empty_dir_notes(c)) == 1


@pytest.mark.parametrize("other_cache", ["coherent", "auto"])
def test_a_name_made_through_another_export_of_the_same_directory_is_seen(
        export_dir, daemon_factory, mount_factory, other_cache):
    """fanotify drops the events fsbridged causes itself and the backend
    posts them to its own export's watcher only: a second export of the
    same directory changes it unheard, so no note may promise otherwise."""
    d = daemon_factory([f"{EXPORT}={export_dir},cache=coherent",
                        f"other={export_dir},cache={other_cache}"], log_level="debug")
    a = mount(d, mount_factory)
    b = mount_factory(d, options=["export=other"])
    os.mkdir(a.path / "d")
    (b.path / "d" / "x").write_bytes(b"b")
    seen(lambda: (a.path / "d" / "x").read_bytes() == b"b",
         "the file made through the other export")
    # and a negative entry a's kernel caches is dropped as well
    os.mkdir(a.path / "e")
    assert not os.path.exists(a.path / "e" / "y")
    (b.path / "e" / "y").write_bytes(b"b")
    seen(lambda: (a.path / "e" / "y").read_bytes() == b"b",
         "the file made through the other export, after a's kernel looked for it")
