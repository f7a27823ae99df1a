"""
test_leftovers.py - the suite removes what it creates (issue 8): the
engine harness's scratch directories (/tmp/fsb-unit-*) of the unit tests
and of the engine fuzz target replayed over its corpus, which writes files,
links and symlinks there.  (fusectl, mounted by conftest.py's build_dir
fixture only when it was not mounted, is unmounted at the end of the
session: that cannot be observed from inside the session.)  And the
suite's own aborts through fusectl reach only the connection they aim at.
"""

import glob
import os
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parents[2]


def scratch_dirs():
    return set(glob.glob("/tmp/fsb-unit-*"))


@pytest.mark.parametrize("program, args", [
    ("test_engine", []),
    ("replay_engine", [str(REPO / "tests" / "fuzz" / "corpus" / "engine")]),
])
def test_engine_harness_removes_its_scratch_directory(build_dir, program, args):
    exe = build_dir / "tests" / program
    if not exe.exists():
        pytest.skip(f"{exe} is not built (a -Dfuzz=true build has no replay programs)")
    before = scratch_dirs()
    helpers.run([str(exe), *args], timeout=120)
    assert scratch_dirs() - before == set(), f"{program} left its scratch directory"


def test_fusectl_is_mounted_during_the_session(build_dir):
    """The watchdog aborts hung mounts through fusectl: build_dir mounts it
    for the session when it is missing (and unmounts it at the end)."""
    if not os.path.isdir("/sys/fs/fuse/connections"):
        pytest.skip("this kernel has no /sys/fs/fuse/connections")
    assert any(e["fstype"] == "fusectl" for e in helpers.mountinfo())


def test_an_abort_aimed_at_an_ended_connection_misses_its_successor(
        export_dir, daemon_factory, mount_factory):
    """FUSE connection numbers are reused at once: the watchdog's abort of a
    mount that has already gone must not kill the next mount, which would
    make a healthy test fail with ECONNABORTED (stop 15's CI)."""
    d = daemon_factory([f"test={export_dir}"])
    (export_dir / "f").write_bytes(b"x")
    first = mount_factory(d, options=["export=test"])
    gone = first.connection
    assert gone is not None
    first.umount()
    for _ in range(20):   # get the number again (the next free one is taken)
        second = mount_factory(d, options=["export=test"])
        if second.connection is None:
            pytest.skip("fusectl has no directory for the new connection")
        if second.connection[0] == gone[0]:
            break
        second.umount()
    else:
        pytest.skip("the kernel did not reuse the connection number in 20 mounts")
    assert not helpers.fuse_abort(gone)
    assert (second.path / "f").read_bytes() == b"x"
    (second.path / "g").write_bytes(b"y")
    assert helpers.fuse_abort(second.connection)
    with pytest.raises(OSError):   # a create always reaches the (dead) server
        (second.path / "new").write_bytes(b"y")
    second.umount(expect_rc=None)
