"""
test_sessions.py - stream protocol version 2: one FUSE session carried by
many connections (docs/stream-protocol.md, "Sessions of many connections").

Everything here talks to a real fsbridged through fuse_client.py, the
independent client written from the protocol document: the first
connection's HELLO reply carries the session token, a HELLO with the JOIN
flag and that token adds a connection to the session.
"""

import errno
import os
import socket
import struct

import pytest

import helpers
from fuse_client import (
    FUSE_ROOT_ID, STREAM_VERSION, TERMS_PUSHES, TOKEN_SIZE, FuseClient, HelloRefused, connect_unix,
    hello_bytes,
)

EXPORT = "data"
FUSE_SETLK = 32
FUSE_SETLKW = 33
LK_IN = struct.Struct("<QQQQIIII")       # fuse_lk_in, 48 bytes
F_WRLCK = 1
FOPEN_DIRECT_IO = 1


def lk_body(fh, owner, typ=F_WRLCK):
    return LK_IN.pack(fh, owner, 0, 2**64 - 1, typ, 0, 0, 0)


@pytest.fixture
def export_dir(fsb_workdir):
    d = fsb_workdir / "export"
    d.mkdir()
    (d / "file").write_bytes(b"shared by every connection\n")
    return d


@pytest.fixture
def daemon(export_dir, fsb_workdir, daemon_factory):
    other = fsb_workdir / "other"
    other.mkdir()
    # Every connection is one of its guest's sessions (test_budgets.py):
    # room for a session with all its 64 connections and a few more.
    return daemon_factory([f"{EXPORT}={export_dir},cache=never", f"other={other}"],
                          ["--guest-max-sessions", "100"])


def join(daemon, token, export=EXPORT, **kw):
    return FuseClient(daemon.socket, export=export, join=token, **kw)


def refused_join(daemon, token, export=EXPORT, sock=None):
    """A JOIN that must be refused (on SOCK, default the daemon's socket):
    returns the status after checking the refusal's form (max frame 0,
    then the connection closes)."""
    c = FuseClient(sock or daemon.socket, hello=False, init=False, timeout=10)
    with c:
        reply = c.hello(export, join=token)
        assert reply["status"] != 0, f"join with token {token.hex()} accepted"
        assert reply["max_frame"] == 0 and reply["token"] is None, reply
        assert c.is_closed(5), "a refused join leaves the connection open"
        return reply["status"]


def assert_closed_without_reply(s):
    try:
        data = s.recv(16)
    except ConnectionResetError:     # closed with our bytes unread
        return
    assert data == b"", f"the server answered: {data!r}"


def log_has(daemon, text, timeout=10):
    helpers.poll_until(lambda: text in daemon.stderr_text(), timeout=timeout,
                       what=f"'{text}' in the daemon's log")


def test_v4_reply_carries_the_session_terms_and_joins_get_the_same(daemon):
    with FuseClient(daemon.socket, export=EXPORT) as a:
        features, open_flags = a.hello_reply["terms"]
        assert not features & TERMS_PUSHES   # cache=never: no change is pushed
        assert open_flags == FOPEN_DIRECT_IO # what its OPEN replies say
        with join(daemon, a.token) as b:
            assert b.hello_reply["terms"] == a.hello_reply["terms"]
    with FuseClient(daemon.socket, export=EXPORT, version=3) as old:
        assert old.hello_reply["version"] == 3 and old.hello_reply["terms"] is None
        assert old.getattr(FUSE_ROOT_ID)[0] == 0


def test_v2_reply_carries_a_token_and_joins_share_nodes_and_handles(daemon):
    with FuseClient(daemon.socket, export=EXPORT) as a:
        assert a.hello_reply["version"] == STREAM_VERSION
        assert len(a.token) == TOKEN_SIZE
        err, e = a.lookup(FUSE_ROOT_ID, "file")
        assert err == 0
        nid = e["nodeid"]
        err, fh = a.open(nid, os.O_RDWR)
        assert err == 0
        with join(daemon, a.token) as b:
            assert b.hello_reply["token"] == a.token
            assert b.hello_reply["max_frame"] == a.hello_reply["max_frame"]
            # A's node id and file handle are good on B: one session.
            err, data = b.read(fh, 0, 100, nodeid=nid)
            assert err == 0 and data == b"shared by every connection\n"
            err, attr = b.getattr(nid)
            assert err == 0 and attr["size"] == len(data)
            assert b.write(fh, 0, b"S", nodeid=nid) == (0, 1)
            # A joined connection carries no INIT: the session has one.
            err, _ = b.init()
            assert err == errno.EPROTO
            assert b.release(nid, fh) == 0
        # The handle B released was the session's: A sees it gone.
        err, _ = a.read(fh, 0, 100, nodeid=nid)
        assert err != 0, "a handle released on B still reads on A"
        assert a.alive()


def test_replies_come_back_on_the_connection_of_their_request(daemon):
    with FuseClient(daemon.socket, export=EXPORT) as a, join(daemon, a.token) as b:
        # Same unique on both connections, sent before either is read: each
        # connection gets exactly its own answer.
        ua = a.send(3, FUSE_ROOT_ID, struct.pack("<IIQ", 0, 0, 0), unique=1000)
        ub = b.send(3, 12345, struct.pack("<IIQ", 0, 0, 0), unique=1000)
        assert a.recv(ua)[0] == 0
        assert b.recv(ub)[0] == errno.ESTALE
        for c in (a, b):
            c.settimeout(0.3)
            with pytest.raises(socket.timeout):
                c.read_message()


def test_locks_are_the_sessions(daemon):
    """A SETLKW on one connection waits for a lock taken through another,
    and the unlock on that other connection ends the wait."""
    with FuseClient(daemon.socket, export=EXPORT) as a, join(daemon, a.token) as b:
        nid = a.lookup(FUSE_ROOT_ID, "file")[1]["nodeid"]
        fha = a.open(nid, os.O_RDWR)[1]
        fhb = b.open(nid, os.O_RDWR)[1]
        assert a.request(FUSE_SETLK, nid, lk_body(fha, 1))[0] == 0
        u = b.send(FUSE_SETLKW, nid, lk_body(fhb, 2))
        b.settimeout(0.5)
        with pytest.raises(socket.timeout):
            b.recv(u)
        b.settimeout(10)
        assert a.request(FUSE_SETLK, nid, lk_body(fha, 1, typ=2))[0] == 0   # F_UNLCK
        assert b.recv(u)[0] == 0


def test_forged_token_is_refused(daemon):
    with FuseClient(daemon.socket, export=EXPORT) as a:
        forged = bytes(b ^ 0x01 for b in a.token)
        assert refused_join(daemon, forged) == errno.ESTALE
        assert refused_join(daemon, os.urandom(TOKEN_SIZE)) == errno.ESTALE
        assert refused_join(daemon, bytes(TOKEN_SIZE)) == errno.ESTALE
        assert a.alive()


def test_token_of_another_export_is_refused(daemon):
    with FuseClient(daemon.socket, export=EXPORT) as a:
        assert refused_join(daemon, a.token, export="other") == errno.ESTALE
        assert refused_join(daemon, a.token, export="nope") == errno.ENOENT
        assert a.alive()


def test_join_before_init_is_refused(daemon):
    a = FuseClient(daemon.socket, export=EXPORT, init=False)
    with a:
        assert refused_join(daemon, a.token) == errno.ESTALE
        err, _ = a.init()
        assert err == 0
        with join(daemon, a.token) as b:
            assert b.alive()


# Run as another uid: argv[1] the tests' directory, argv[2] the socket,
# argv[3] the export, argv[4] the token (hex); prints the JOIN's status.
JOIN_AS_USER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from fuse_client import FuseClient
c = FuseClient(sys.argv[2], hello=False, init=False)
print(c.hello(sys.argv[3], join=bytes.fromhex(sys.argv[4]))["status"])
"""


def test_join_from_another_uid_is_refused(fsb_workdir, export_dir, daemon_factory):
    """On a socket that local users share, each peer uid (SO_PEERCRED) is a
    guest of its own: a token that leaks to another user joins nothing."""
    sock = fsb_workdir / "shared.sock"
    d = daemon_factory([f"{EXPORT}={export_dir}"], listen=[f"unix:{sock}"])
    helpers.poll_until(lambda: helpers.listening(sock), what="the listener")
    os.chmod(sock, 0o666)   # shared by local users on purpose
    with FuseClient(sock, export=EXPORT) as a:
        r = helpers.run_python(JOIN_AS_USER, os.path.dirname(__file__), sock, EXPORT,
                               a.token.hex(), uid=helpers.NOBODY_UID, gid=helpers.NOBODY_GID)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout) == errno.ESTALE
        with FuseClient(sock, export=EXPORT, join=a.token) as b:   # its own uid may
            assert b.alive()
        assert a.alive()
    assert d.alive()


def test_join_through_another_listener_is_refused(fsb_workdir, export_dir, daemon_factory):
    """A session is joined through the listener it was opened on: another
    listener may have other rules (--allow-uid, its exports)."""
    socks = [fsb_workdir / "one.sock", fsb_workdir / "two.sock"]
    d = daemon_factory([f"{EXPORT}={export_dir}"], listen=[f"unix:{s}" for s in socks])
    helpers.poll_until(lambda: helpers.listening(*socks), what="both listeners")
    with FuseClient(socks[0], export=EXPORT) as a:
        assert refused_join(d, a.token, sock=socks[1]) == errno.ESTALE
        with FuseClient(socks[0], export=EXPORT, join=a.token) as b:
            assert b.alive()


def test_stale_token_is_refused_and_closing_every_connection_frees_the_session(
        daemon, export_dir):
    pid = daemon.pid
    baseline = helpers.settled_fd_count(pid)
    a = FuseClient(daemon.socket, export=EXPORT)
    token = a.token
    b = join(daemon, token)
    nid = b.lookup(FUSE_ROOT_ID, "file")[1]["nodeid"]
    err, fh = b.open(nid)
    assert err == 0
    err, _, fh2 = a.create(FUSE_ROOT_ID, "made-by-a")
    assert err == 0
    # The first connection goes: the session lives on in B, with A's file.
    a.close()
    log_has(daemon, " closed")      # A's reader and workers are done
    assert b.write(fh2, 0, b"after A left")[0] == 0
    assert b.read(fh, 0, 6, nodeid=nid) == (0, b"shared")
    with join(daemon, token) as c:
        assert c.alive()
    # The last one goes: everything of the session is released.
    b.close()
    log_has(daemon, "ended")
    helpers.poll_until(lambda: helpers.fd_count(pid) <= baseline, timeout=10,
                       what=f"the daemon's fds back to {baseline}")
    assert (export_dir / "made-by-a").read_bytes() == b"after A left"
    assert refused_join(daemon, token) == errno.ESTALE


def test_dropped_connection_fails_only_its_requests(daemon):
    """B drops while its SETLKW waits: that wait is given up (it must not
    take the lock for a connection that is gone), A's session goes on."""
    with FuseClient(daemon.socket, export=EXPORT) as a:
        nid = a.lookup(FUSE_ROOT_ID, "file")[1]["nodeid"]
        fha = a.open(nid, os.O_RDWR)[1]
        assert a.request(FUSE_SETLK, nid, lk_body(fha, 1))[0] == 0
        b = join(daemon, a.token)
        fhb = b.open(nid, os.O_RDWR)[1]
        u = b.send(FUSE_SETLKW, nid, lk_body(fhb, 2))
        b.settimeout(0.5)
        with pytest.raises(socket.timeout):
            b.recv(u)
        b.close()
        log_has(daemon, f"connection {b_id(daemon)} closed")
        assert a.request(FUSE_SETLK, nid, lk_body(fha, 1, typ=2))[0] == 0   # unlock
        # Had B's wait gone on, owner 2 would now hold the lock.
        assert a.request(FUSE_SETLK, nid, lk_body(fha, 3))[0] == 0
        assert a.alive()
        assert "ended" not in daemon.stderr_text()


def b_id(daemon):
    """The id of the connection that joined last, from the daemon's log."""
    lines = [ln for ln in daemon.stderr_text().splitlines() if " joined" in ln]
    assert lines, "no join in the daemon's log"
    return lines[-1].split("connection ")[1].split()[0]


def test_joins_beyond_64_connections_are_refused(daemon):
    with FuseClient(daemon.socket, export=EXPORT) as a:
        joined = []
        try:
            for _ in range(63):
                joined.append(join(daemon, a.token))
            assert refused_join(daemon, a.token) == errno.EMFILE
            joined.pop().close()
            helpers.poll_until(lambda: try_join(daemon, a.token), timeout=10,
                               what="a join once a connection left")
        finally:
            for c in joined:
                c.close()
        assert a.alive()


def try_join(daemon, token):
    try:
        with join(daemon, token) as c:
            return c.alive()
    except HelloRefused as e:
        assert e.status == errno.EMFILE
        return False


def test_joined_connections_count_on_the_guests_session_budget(export_dir, daemon_factory):
    """A guest's connections, joined ones too, hold a thread each: they
    count on its --guest-max-sessions, and one beyond is closed at once."""
    d = daemon_factory([f"{EXPORT}={export_dir}"], ["--guest-max-sessions", "2"])
    with FuseClient(d.socket, export=EXPORT) as a, join(d, a.token) as b:
        assert b.alive()
        for hello in (hello_bytes(EXPORT), hello_bytes(EXPORT, join=a.token)):
            with connect_unix(d.socket) as s:   # a session or a join: over the budget
                s.settimeout(5)
                try:
                    s.sendall(hello)
                except BrokenPipeError:   # the budget is checked at accept: may close first
                    pass
                assert_closed_without_reply(s)
        assert a.alive() and b.alive()


def test_version_1_client_gets_one_connection_and_no_token(daemon):
    """An older client (version 1) keeps working: its reply is version 1,
    16 bytes with no token, and INIT follows at once."""
    with FuseClient(daemon.socket, export=EXPORT, version=1) as old:
        assert old.hello_reply["version"] == 1 and old.hello_reply["token"] is None
        assert old.init_reply is not None
        err, e = old.lookup(FUSE_ROOT_ID, "file")
        assert err == 0
        err, fh = old.open(e["nodeid"])
        assert old.read(fh, 0, 6, nodeid=e["nodeid"]) == (0, b"shared")
    # A version-1 HELLO cannot ask to join: byte 7 is reserved there.
    with connect_unix(daemon.socket) as s:
        s.settimeout(5)
        s.sendall(hello_bytes(EXPORT, version=1, flags=1) + bytes(TOKEN_SIZE))
        assert_closed_without_reply(s)


@pytest.mark.parametrize("poll_us", [0, 1000])
def test_an_idle_daemon_uses_no_cpu(export_dir, daemon_factory, poll_us):
    """Hybrid polling spins only in a wait that just began: a daemon whose
    sessions are open but idle sleeps, even with the largest --poll-us."""
    d = daemon_factory([f"{EXPORT}={export_dir}"], [f"--poll-us={poll_us}"])
    with FuseClient(d.socket, export=EXPORT) as a, join(d, a.token) as b:
        for _ in range(200):                  # busy, so the windows grow
            assert a.getattr(FUSE_ROOT_ID)[0] == 0
            assert b.getattr(FUSE_ROOT_ID)[0] == 0
        used = helpers.quietest_cpu_window([d.pid])[d.pid]
        assert used < 0.05, f"an idle daemon used {used:.2f} s of CPU in 2 s"
        assert a.alive() and b.alive()


# --- CPU hints (version 3) ------------------------------------------------

def burst_of_getattrs(c, n):
    """N GETATTRs in one write: the reader hands them to workers, which it
    starts (from its own thread) for them; all answered."""
    body = struct.pack("<IIQ", 0, 0, 0)
    uniques = [c.next_unique() for _ in range(n)]
    c.raw_frame(b"".join(c.header(3, FUSE_ROOT_ID, len(body), u) + body for u in uniques))
    assert all(c.recv(u)[0] == 0 for u in uniques)


def test_cpu_hint_moves_the_joined_connections_reader_and_nothing_else(export_dir,
                                                                       daemon_factory):
    """With --cpu-hints follow, a joined connection whose HELLO names one of
    the daemon's CPUs is read on that CPU (under the default seccomp
    filter, as root); the workers its reader starts for a burst run
    anywhere, and so does everything else."""
    daemon = daemon_factory([f"{EXPORT}={export_dir}"], ["--cpu-hints", "follow"])
    cpu = max(os.sched_getaffinity(daemon.pid))
    with FuseClient(daemon.socket, export=EXPORT) as a, join(daemon, a.token, cpu=cpu) as b:
        assert b.hello_reply["status"] == 0 and b.hello_reply["version"] == STREAM_VERSION
        assert b.getattr(FUSE_ROOT_ID)[0] == 0
        burst_of_getattrs(b, 16)
        # A worker starts on its reader's CPU and leaves it first thing: one
        # that started late may be seen before it has.
        try:
            helpers.poll_until(
                lambda: list(helpers.narrowed_threads(daemon.pid).values()) == [{cpu}],
                timeout=5, what=f"the reader alone on CPU {cpu}")
        except TimeoutError:
            pytest.fail(f"threads on fewer CPUs: {helpers.narrowed_threads(daemon.pid)}, "
                        f"want the reader alone on {cpu}")
        assert a.alive() and b.alive()


@pytest.mark.parametrize("hint", ["outside", "ignored", "default"])
def test_cpu_hint_outside_the_daemons_cpus_or_ignored_pins_nothing(export_dir, daemon_factory,
                                                                   hint):
    """A hint of a CPU the daemon may not run on (any 16-bit value is a
    valid HELLO), or any hint under --cpu-hints ignore, the default: the
    join works and no thread is moved."""
    opts = {"outside": ["--cpu-hints", "follow"], "ignored": ["--cpu-hints", "ignore"]}
    d = daemon_factory([f"{EXPORT}={export_dir}"], opts.get(hint, []))
    cpu = 65535 if hint == "outside" else min(os.sched_getaffinity(d.pid))
    with FuseClient(d.socket, export=EXPORT) as a, join(d, a.token, cpu=cpu) as b:
        assert b.getattr(FUSE_ROOT_ID)[0] == 0
        burst_of_getattrs(b, 4)
        assert helpers.narrowed_threads(d.pid) == {}
        assert a.alive() and b.alive()


def test_cpu_hint_needs_version_3_and_its_flag(daemon):
    """The CPU flag in a version-2 HELLO, or bytes 14-15 set without it,
    are protocol errors: closed without a reply, like any reserved bit."""
    with FuseClient(daemon.socket, export=EXPORT) as a:
        for hello in (hello_bytes(EXPORT, version=2, join=a.token, cpu=0),
                      hello_bytes(EXPORT, join=a.token, flags=0x01, cpu=1)):
            with connect_unix(daemon.socket) as s:
                s.settimeout(5)
                s.sendall(hello)
                assert_closed_without_reply(s)
        assert a.alive()
