"""
test_demo.py - demo.sh's failure paths (issue 8): when it fails, its
message names what exists -- the cause, or the log of the fsbridged this
run started -- never a daemon log that was not written.
"""

import os
import re
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parents[2]


def run_demo(demo_dir, timeout=120):
    env = {**os.environ, "FSB_DEMO_DIR": str(demo_dir)}
    return helpers.run([str(REPO / "demo.sh")], check=False, timeout=timeout, env=env)


def named_paths(text):
    return re.findall(r"(/[\w./+-]+)", text)


def test_unusable_demo_dir_names_the_cause(fsb_workdir):
    """Before anything is built: the message says FSB_DEMO_DIR is the
    problem, and names no log (none was written)."""
    blocker = fsb_workdir / "a-file"
    blocker.write_text("")
    r = run_demo(blocker / "demo", timeout=30)
    assert r.returncode != 0
    assert f"cannot work in FSB_DEMO_DIR={blocker}/demo" in r.stderr, r.stderr
    assert "Not a directory" in r.stderr, r.stderr      # mkdir's own reason
    assert 'failed (exit 1) in step "1. Dependencies and build", before fsbridged started' \
        in r.stderr, r.stderr
    assert "log" not in r.stderr, r.stderr
    assert "fsbridged" not in r.stdout, "the demo went on past the failure"


@pytest.mark.deadline(600)
def test_daemon_that_fails_to_start_points_at_its_log(fsb_workdir):
    """fsbridged refuses a socket path longer than a Unix socket takes: the
    demo stops and shows the log that daemon wrote, which exists.  (Builds
    build/ as demo.sh does, when it is not built yet.)"""
    demo_dir = fsb_workdir / ("d" * 100)
    r = run_demo(demo_dir, timeout=540)
    assert r.returncode != 0, r.stdout[-2000:]
    assert "demo.sh: fsbridged exited at start" in r.stderr, r.stderr
    line = next(x for x in r.stderr.splitlines() if "fsbridged's log" in x)
    log = demo_dir / "fsbridged.log"
    assert str(log) in line, line
    assert log.exists(), f"the demo named {log}, which does not exist"
    assert "longer than 107 bytes" in log.read_text()   # fsbridged's own reason
    assert all(os.path.exists(p) for p in named_paths(line)), line
    assert helpers.mount_entry(demo_dir / "mnt") is None
