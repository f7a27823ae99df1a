"""
test_sockets.py - who may connect to fsbridged's Unix sockets.

The daemon serves whoever connects as whatever uid the FUSE headers claim,
so its Unix sockets are the boundary towards local users: they are created
0600 (the daemon's user only), or with --socket-mode / --socket-group, and
--allow-uid checks the peer's credentials (SO_PEERCRED).  Each check below
connects as a user that is not root, in a child process that has dropped
to that uid (root would pass any file permission).
"""

import os
import stat
from pathlib import Path

import pytest

import helpers
from fuse_client import ConnectionClosed, FuseClient

EXPORT = "data"
HERE = Path(__file__).resolve().parent

# Some uids and a gid that need not exist in /etc/passwd: the kernel only
# compares numbers.
STRANGER = 4321
OTHER = 4322
GROUP = 4242

# Connects to argv[1] and says what happened: "EACCES" (or another errno
# name) when connect() fails, otherwise, with argv[2] == "hello", the HELLO
# reply's status for export argv[3]; without, "closed" if the daemon closes
# the connection within argv[5] seconds, "open" if it keeps it.
PROBE = r"""
import errno, socket, sys
sys.path.insert(0, sys.argv[4])
import fuse_client
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
    sys.exit(0)
def hello():
    status = fuse_client.hello_status_on(s, sys.argv[3])
    return status if status == "closed" else "status %d" % status
def wait():
    s.settimeout(float(sys.argv[5]))
    try:
        return "closed" if s.recv(1) == b"" else "data"
    except socket.timeout:
        return "open"
try:
    print(hello() if sys.argv[2] == "hello" else wait())
except (BrokenPipeError, ConnectionResetError):
    print("closed")
"""


def probe(sock, uid, groups=(), hello=True, export=EXPORT, within=1.0):
    """WITHIN: how long a raw probe waits for a close.  "open" is checked
    with the short default; a close that must come gets longer, for a
    loaded machine."""
    r = helpers.run_python(PROBE, sock, "hello" if hello else "raw", export, HERE, within,
                           uid=uid, gid=uid, groups=groups)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def export_dir(fsb_workdir):
    d = fsb_workdir / "export"
    d.mkdir()
    (d / "file").write_text("hello\n")
    return d


def start_stream(daemon_factory, fsb_workdir, export_dir, *extra, umask=None):
    sock = fsb_workdir / "s.sock"
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    daemon_factory([f"{EXPORT}={export_dir}"], extra, listen=[f"unix:{sock}"], wait=False,
                   preexec_fn=preexec)
    helpers.poll_until(lambda: helpers.listening(sock), what="the daemon's socket")
    return sock


def start_vhost(daemon_factory, fsb_workdir, export_dir, *extra):
    sock = fsb_workdir / "vu.sock"
    d = daemon_factory([], [f"--socket-path={sock}", f"--shared-dir={export_dir}", *extra],
                       listen=[])
    d.socket = sock
    d.wait_ready()
    return d, sock


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_default_stream_socket_is_for_the_daemons_user_only(fsb_workdir, export_dir,
                                                            daemon_factory):
    # Started with a permissive umask: the socket's mode must not come from it.
    sock = start_stream(daemon_factory, fsb_workdir, export_dir, umask=0)
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert mode_of(sock) == 0o600 and st.st_uid == os.geteuid()
    assert probe(sock, STRANGER) == "EACCES"
    assert probe(sock, STRANGER, groups=(0,)) == "EACCES"   # root's group: still no
    with FuseClient(sock, export=EXPORT) as c:               # the daemon's user: yes
        assert c.alive()


def test_default_vhost_socket_is_for_the_daemons_user_only(fsb_workdir, export_dir,
                                                           daemon_factory):
    d, sock = start_vhost(daemon_factory, fsb_workdir, export_dir)
    assert mode_of(sock) == 0o600
    assert probe(sock, STRANGER, hello=False) == "EACCES"
    assert d.alive()


def test_socket_group_lets_members_in_and_no_one_else(fsb_workdir, export_dir,
                                                      daemon_factory):
    sock = start_stream(daemon_factory, fsb_workdir, export_dir, f"--socket-group={GROUP}")
    st = os.lstat(sock)
    assert (mode_of(sock), st.st_gid) == (0o660, GROUP)
    assert probe(sock, STRANGER, groups=(GROUP,)) == "status 0"
    assert probe(sock, STRANGER) == "EACCES"


def test_socket_group_by_name(fsb_workdir, export_dir, daemon_factory):
    import grp
    g = grp.getgrgid(65534)    # nogroup on Debian
    sock = start_stream(daemon_factory, fsb_workdir, export_dir, "--socket-group", g.gr_name)
    assert os.lstat(sock).st_gid == 65534
    assert probe(sock, STRANGER, groups=(65534,)) == "status 0"


def test_socket_group_on_the_vhost_socket(fsb_workdir, export_dir, daemon_factory):
    d, sock = start_vhost(daemon_factory, fsb_workdir, export_dir, f"--socket-group={GROUP}")
    assert (mode_of(sock), os.lstat(sock).st_gid) == (0o660, GROUP)
    assert probe(sock, STRANGER, hello=False) == "EACCES"
    assert d.alive()
    # A member is the frontend; when it goes, the daemon ends as virtiofsd does.
    assert probe(sock, STRANGER, groups=(GROUP,), hello=False) == "open"
    assert d.wait() == 0


def test_socket_mode_is_exact_whatever_the_umask(fsb_workdir, export_dir, daemon_factory):
    sock = start_stream(daemon_factory, fsb_workdir, export_dir, "--socket-mode=0666",
                        umask=0o077)
    assert mode_of(sock) == 0o666
    assert probe(sock, STRANGER) == "status 0"


def test_socket_mode_and_group_together(fsb_workdir, export_dir, daemon_factory):
    sock = start_stream(daemon_factory, fsb_workdir, export_dir, "--socket-mode", "0620",
                        "--socket-group", str(GROUP))
    assert (mode_of(sock), os.lstat(sock).st_gid) == (0o620, GROUP)
    assert probe(sock, STRANGER, groups=(GROUP,)) == "status 0"


def test_allow_uid_refuses_other_peers(fsb_workdir, export_dir, daemon_factory):
    sock = start_stream(daemon_factory, fsb_workdir, export_dir, "--socket-mode=0666",
                        f"--allow-uid={STRANGER}")
    assert probe(sock, STRANGER) == "status 0"
    assert probe(sock, OTHER) == "closed"
    with pytest.raises((ConnectionClosed, BrokenPipeError, ConnectionResetError)):
        # root is not implied
        FuseClient(sock, export=EXPORT)


def test_allow_uid_list_and_repeats(fsb_workdir, export_dir, daemon_factory):
    sock = start_stream(daemon_factory, fsb_workdir, export_dir, "--socket-mode=0666",
                        f"--allow-uid={OTHER},0", "--allow-uid", str(STRANGER))
    assert probe(sock, STRANGER) == "status 0"
    assert probe(sock, OTHER) == "status 0"
    assert probe(sock, STRANGER + 2) == "closed"
    with FuseClient(sock, export=EXPORT) as c:
        assert c.alive()


def test_allow_uid_on_the_vhost_socket(fsb_workdir, export_dir, daemon_factory):
    d, sock = start_vhost(daemon_factory, fsb_workdir, export_dir, "--socket-mode=0666",
                          f"--allow-uid={STRANGER}")
    assert probe(sock, OTHER, hello=False, within=10) == "closed"
    assert d.alive()                        # still waiting for its frontend
    assert probe(sock, STRANGER, hello=False) == "open"
    assert d.wait() == 0


@pytest.mark.parametrize("args, why", [
    (["--socket-mode=0888"], "bad --socket-mode"),
    (["--socket-mode=01777"], "bad --socket-mode"),
    (["--socket-mode="], "bad --socket-mode"),
    (["--socket-group=no-such-group-fsb"], "no such group"),
    (["--allow-uid=12,x"], "bad --allow-uid"),
    (["--allow-uid=,"], "bad --allow-uid"),
])
def test_bad_socket_options_are_usage_errors(build_dir, export_dir, args, why):
    r = helpers.run([str(build_dir / "fsbridged"), "--export", f"{EXPORT}={export_dir}",
                     "--listen", "unix:/nonexistent/s.sock", *args], check=False)
    assert r.returncode == 2 and why in r.stderr, r.stderr


def test_files_created_for_guests_keep_their_exact_modes(fsb_workdir, export_dir,
                                                        daemon_factory):
    """The daemon's own umask (here 077 at start) never reaches a guest's file:
    the guest's kernel applied the guest's umask already."""
    sock = start_stream(daemon_factory, fsb_workdir, export_dir, umask=0o077)
    with FuseClient(sock, export=EXPORT) as c:
        err, _ = c.mkdir(1, "d", mode=0o777)
        assert err == 0
        assert c.create(1, "f", mode=0o666)[0] == 0
    assert mode_of(export_dir / "d") == 0o777
    assert mode_of(export_dir / "f") == 0o666
