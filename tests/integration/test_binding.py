"""
test_binding.py - listeners bound to exports, and vsock peers to CIDs.

One daemon serving several VMs gives each VM its own listener (a
Firecracker VM's hybrid-vsock socket) bound to its own export with
`--listen ADDRESS,exports=NAME`: a client of one listener reaches only
that listener's exports, natively (fuse_client.py, and the real
fsbridge-mount) and over matchlock's protocol.  A HELLO for an export the
listener does not serve is answered as one for an unknown export.  On
vsock, `cid=` on the listener or on an export filters peers by CID; the
decision itself is unit-tested (tests/unit/test_peer_rules.c), and end to
end here only where a vsock loopback exists.
"""

import errno
import os
import socket
import subprocess

import pytest

import helpers
import mlproto as ml
from fuse_client import FuseClient, HelloRefused, hello_status_on

VSOCK_PORT_BASE = 47000


@pytest.fixture
def two_vms(fsb_workdir, daemon_factory):
    """Exports a and b, listener A serving a, listener B serving b."""
    dirs = {}
    for name in ("a", "b"):
        d = fsb_workdir / f"export-{name}"
        d.mkdir()
        os.chmod(d, 0o755)
        (d / f"only-{name}").write_text(f"this is {name}\n")
        dirs[name] = d
    socks = {"a": fsb_workdir / "vm-a.sock", "b": fsb_workdir / "vm-b.sock"}
    d = daemon_factory([f"a={dirs['a']}", f"b={dirs['b']}"],
                       listen=[f"unix:{socks['a']},exports=a", f"unix:{socks['b']},exports=b"],
                       wait=False)
    for s in socks.values():
        d.socket = s
        d.wait_ready()
    return d, dirs, socks


def hello_status(sock, export):
    try:
        with FuseClient(sock, export=export, init=False):
            return 0
    except HelloRefused as e:
        return e.status


def test_each_listener_serves_only_its_exports(two_vms):
    d, _, socks = two_vms
    for mine, other in (("a", "b"), ("b", "a")):
        assert hello_status(socks[mine], mine) == 0
        assert hello_status(socks[mine], other) == errno.ENOENT
        assert hello_status(socks[mine], "no-such-export") == errno.ENOENT
        # The default export of a listener is the first one it serves.
        with FuseClient(socks[mine]) as c:
            assert c.lookup(1, f"only-{mine}")[0] == 0
            assert c.lookup(1, f"only-{other}")[0] == errno.ENOENT
    # Refused as an unknown export is, in the log too.
    log = d.stderr_text()
    assert "refused (export 'b'): No such file or directory" in log
    assert "refused (export 'no-such-export'): No such file or directory" in log


def test_fsbridge_mount_reaches_only_its_listeners_export(two_vms, mount_factory):
    _, dirs, socks = two_vms
    m = mount_factory(f"unix:{socks['a']}", options=["export=a"])
    assert (m.path / "only-a").read_text() == "this is a\n"
    assert not (m.path / "only-b").exists()
    m_default = mount_factory(f"unix:{socks['b']}")
    assert (m_default.path / "only-b").read_text() == "this is b\n"
    (m_default.path / "new").write_text("x")
    assert (dirs["b"] / "new").exists() and not (dirs["a"] / "new").exists()

    refused = mount_factory(f"unix:{socks['a']}", options=["export=b"], wait=False)
    rc = refused.proc.wait(timeout=10)
    assert rc != 0 and not refused.is_mounted()
    assert "export 'b' not found on host" in refused.stderr_text(), refused.stderr_text()


def test_matchlock_sees_only_its_listeners_exports(two_vms):
    _, _, socks = two_vms
    with ml.Client.connect(socks["a"]) as c:
        assert c.check(ml.OP_LOOKUP, path="/a/only-a")["stat"]["size"] == len("this is a\n")
        assert -c.call(ml.OP_LOOKUP, path="/b/only-b")["err"] == errno.ENOENT
        assert -c.call(ml.OP_LOOKUP, path="/b")["err"] == errno.ENOENT
        assert -c.call(ml.OP_CREATE, path="/b/sneaked", mode=0o644)["err"] == errno.ENOENT
        names = {e["name"] for e in c.check(ml.OP_READDIR, path="/")["entries"]}
        assert names == {"a"}
    with ml.Client.connect(socks["b"]) as c:
        assert c.check(ml.OP_LOOKUP, path="/b/only-b")["stat"]["size"] == len("this is b\n")
        assert -c.call(ml.OP_LOOKUP, path="/a/only-a")["err"] == errno.ENOENT


def test_one_listener_serving_two_of_three_exports(fsb_workdir, daemon_factory):
    dirs = {}
    for name in ("a", "b", "c"):
        dirs[name] = fsb_workdir / name
        dirs[name].mkdir()
    sock = fsb_workdir / "ab.sock"
    # exports= takes ':'-separated names, and may be repeated.
    d = daemon_factory([f"{n}={p}" for n, p in dirs.items()],
                       listen=[f"unix:{sock},exports=b:a", f"unix:{fsb_workdir / 'c.sock'},"
                               f"exports=c,exports=a"], wait=False)
    d.socket = sock
    d.wait_ready()
    assert hello_status(sock, "a") == 0 and hello_status(sock, "b") == 0
    assert hello_status(sock, "c") == errno.ENOENT
    # The default is the first of the daemon's exports that the listener
    # serves (a), not the first named in exports=.
    (dirs["a"] / "in-a").touch()
    with FuseClient(sock) as c:
        assert c.lookup(1, "in-a")[0] == 0
    d.socket = fsb_workdir / "c.sock"
    d.wait_ready()
    assert hello_status(d.socket, "a") == 0 and hello_status(d.socket, "b") == errno.ENOENT


@pytest.mark.parametrize("listen, why", [
    ("unix:{w}/s.sock,exports=nope", "no --export named 'nope'"),
    ("unix:{w}/s.sock,exports=", "unknown --listen option"),
    ("unix:{w}/s.sock,exports=::", "exports= names no export"),
    ("unix:{w}/s.sock,cid=3", "cid= is for vsock: and fd: listeners"),
    ("unix:{w}/s.sock,color=red", "unknown --listen option 'color=red'"),
    ("vsock:5001,cid=x", "bad cid="),
    ("vsock:5001,cid=3:", "bad cid="),
])
def test_bad_bindings_are_usage_errors(build_dir, fsb_workdir, listen, why):
    r = helpers.run([str(build_dir / "fsbridged"), "--export", f"a={fsb_workdir}",
                     "--export", f"b={fsb_workdir},cid=3:4",
                     "--listen", listen.format(w=fsb_workdir)], check=False)
    assert r.returncode == 2 and why in r.stderr, r.stderr


def test_bad_export_cid_is_a_usage_error(build_dir, fsb_workdir):
    r = helpers.run([str(build_dir / "fsbridged"), "--export", f"a={fsb_workdir},cid=three",
                     "--listen", f"unix:{fsb_workdir}/s.sock"], check=False)
    assert r.returncode == 2 and "unknown export option 'cid=three'" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# vsock


def _vsock_listen_works():
    try:
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    except (AttributeError, OSError) as e:
        return f"no AF_VSOCK here ({e})"
    s.close()
    return None


def _free_vsock_ports(n):
    """N distinct vsock ports that nothing holds now (bound together, so
    that the second is not the first again)."""
    held = []
    try:
        for port in range(VSOCK_PORT_BASE, VSOCK_PORT_BASE + 500):
            s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            try:
                s.bind((socket.VMADDR_CID_ANY, port))
            except OSError:
                s.close()
                continue
            held.append(s)
            if len(held) == n:
                return [h.getsockname()[1] for h in held]
    finally:
        for h in held:
            h.close()
    pytest.skip(f"not {n} free vsock ports")


def _free_vsock_port():
    return _free_vsock_ports(1)[0]


def _start_vsock_daemon(daemon_factory, exports, listen, extra=()):
    d = daemon_factory(exports, extra, listen=listen, wait=False)
    helpers.poll_until(lambda: "listening on vsock:" in d.stderr_text() or not d.alive(),
                       what="fsbridged listening on vsock")
    assert d.alive(), d.stderr_text()
    return d


WARNING = "every guest that can connect may mount all"


def test_unbound_vsock_listener_with_several_exports_warns(fsb_workdir, daemon_factory):
    why = _vsock_listen_works()
    if why:
        pytest.skip(why)
    a, b = fsb_workdir / "a", fsb_workdir / "b"
    a.mkdir()
    b.mkdir()
    port = _free_vsock_port()
    d = _start_vsock_daemon(daemon_factory, [f"a={a}", f"b={b}"], [f"vsock:{port}"])
    assert WARNING in d.stderr_text()
    d.stop()
    bound = [
        ([f"a={a}", f"b={b}"], [f"vsock:{port},exports=a"]),
        ([f"a={a}", f"b={b}"], [f"vsock:{port},cid=3"]),
        ([f"a={a},cid=3", f"b={b},cid=4"], [f"vsock:{port}"]),
        ([f"a={a}"], [f"vsock:{port}"]),                 # one export: nothing to cross
    ]
    for exports, listen in bound:
        d = _start_vsock_daemon(daemon_factory, exports, listen)
        assert WARNING not in d.stderr_text(), (exports, listen, d.stderr_text())
        d.stop()


def _vsock_loopback():
    """None when a connection to CID 1 (VMADDR_CID_LOCAL) reaches a local
    vsock listener, else why not.  Tries to load vsock_loopback once."""
    why = _vsock_listen_works()
    if why:
        return why
    subprocess.run(["modprobe", "vsock_loopback"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)
    port = _free_vsock_port()
    srv = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    cli = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        srv.bind((socket.VMADDR_CID_ANY, port))
        srv.listen(1)
        cli.settimeout(3)
        cli.connect((1, port))
        return None
    except OSError as e:
        return (f"no vsock peer with a known CID here: no vhost-vsock guest, and no vsock "
                f"loopback (modprobe vsock_loopback failed or CID 1 has no transport: "
                f"connecting to 1:{port} gave {e}); the CID filter's decisions are "
                f"covered by tests/unit/test_peer_rules.c")
    finally:
        cli.close()
        srv.close()


@pytest.fixture(scope="module")
def vsock_loopback():
    why = _vsock_loopback()
    if why:
        pytest.skip(why)


def _vsock_hello(port, export):
    with socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect((1, port))
        except ConnectionResetError:
            return "closed"
        return hello_status_on(s, export)


def test_vsock_cid_filters_end_to_end(vsock_loopback, fsb_workdir, daemon_factory):
    a, b = fsb_workdir / "a", fsb_workdir / "b"
    a.mkdir()
    b.mkdir()
    port = _free_vsock_port()
    # The loopback peer is CID 1: a local user of this host, refused
    # unless a listener's cid= names it.
    d = _start_vsock_daemon(daemon_factory, [f"a={a}"], [f"vsock:{port}"])
    assert _vsock_hello(port, "a") == "closed"
    assert "local vsock CID" in d.stderr_text()
    d.stop()
    d = _start_vsock_daemon(daemon_factory, [f"a={a},cid=1", f"b={b},cid=3"],
                            [f"vsock:{port},cid=1:3"])
    assert _vsock_hello(port, "a") == 0
    assert _vsock_hello(port, "b") == errno.ENOENT
    d.stop()
    d = _start_vsock_daemon(daemon_factory, [f"a={a}"], [f"vsock:{port},cid=3"])
    assert _vsock_hello(port, "a") == "closed"
    assert "not in the listener's cid=" in d.stderr_text()
    d.stop()


def test_vsock_join_through_another_listener_is_refused(vsock_loopback, fsb_workdir,
                                                        daemon_factory):
    """A CID's connections share one guest whichever port they come
    through, but a session is joined only through the listener it was
    opened on (stream_server.c, conn_new: the connection's own listener,
    not its guest's).  Unix peers cannot show this bug: their guest is
    per listener already (test_sessions.py covers their JOIN rules)."""
    a = fsb_workdir / "a"
    a.mkdir()
    one, two = _free_vsock_ports(2)
    d = _start_vsock_daemon(daemon_factory, [f"a={a},cid=1"],
                            [f"vsock:{one},cid=1", f"vsock:{two},cid=1"])
    # The guest's first connection comes through TWO: on the broken code
    # every later connection of CID 1 carried TWO as its listener.
    with FuseClient((1, two), export="a") as first, FuseClient((1, one), export="a") as s:
        c = FuseClient((1, two), hello=False, init=False)
        with c:
            assert c.hello("a", join=s.token)["status"] == errno.ESTALE
        with FuseClient((1, one), export="a", join=s.token) as b:
            assert b.alive()
        assert first.alive()
    d.stop()
