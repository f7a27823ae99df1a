"""
test_leftovers.py - the suite removes what it creates (issue 8): the
engine harness's scratch directories (/tmp/fsb-unit-*) of the unit tests
and of the engine fuzz target replayed over its corpus, which writes files,
links and symlinks there.  (fusectl, mounted by conftest.py's build_dir
fixture only when it was not mounted, is unmounted at the end of the
session: that cannot be observed from inside the session.)
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
