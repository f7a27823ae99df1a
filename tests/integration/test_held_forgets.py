"""
test_held_forgets.py - the relay holds the guest kernel's FORGETs back and
sends them as one BATCH_FORGET with the next request, or on their own
when none comes (src/mount/held_forgets.h): the host still lets go of
what the guest forgot, soon, and no FORGET travels alone.
"""

import os

import helpers

EXPORT = "test"


def daemon_fds(daemon):
    pid = daemon.proc.pid
    out = []
    for f in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{f}"))
        except OSError:
            pass  # closed meanwhile
    return out


def start(export_dir, daemon_factory, mount_factory, cache):
    d = daemon_factory([f"{EXPORT}={export_dir},cache={cache}"], log_level="debug")
    return d, mount_factory(d, options=[f"export={EXPORT}"])


def test_a_removed_file_is_let_go_by_the_host_with_no_request_after(export_dir, daemon_factory,
                                                                   mount_factory):
    d, m = start(export_dir, daemon_factory, mount_factory, "coherent")
    (m.path / "gone").write_bytes(b"x" * 65536)
    os.stat(m.path / "gone")
    assert any(p.endswith("/gone") for p in daemon_fds(d))  # the host holds its node
    os.unlink(m.path / "gone")
    # nothing else happens on the mount: the relay's own thread sends it
    helpers.poll_until(lambda: not any("/gone" in p for p in daemon_fds(d)), timeout=5,
                       what="the host closing the removed file's node")
    assert helpers.served(d, "FUSE_FORGET") == 0
    assert helpers.served(d, "FUSE_BATCH_FORGET") >= 1


def test_forgets_go_with_the_next_requests(export_dir, daemon_factory, mount_factory):
    d, m = start(export_dir, daemon_factory, mount_factory, "auto")
    for i in range(50):
        (m.path / f"victim{i}").write_bytes(b"data")
    for i in range(50):
        os.unlink(m.path / f"victim{i}")
    helpers.poll_until(lambda: not any("/victim" in p for p in daemon_fds(d)), timeout=5,
                       what="the host letting go of every removed file")
    assert helpers.served(d, "FUSE_FORGET") == 0
    batches = helpers.served(d, "FUSE_BATCH_FORGET")
    assert 1 <= batches <= 50
    assert sorted(os.listdir(m.path)) == []
