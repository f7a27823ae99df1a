"""
test_deps_guard.py - scripts/check-test-deps.py, the guard run-tests.sh runs
before any test, and scripts/install-deps.sh's waiting for apt's lock
(issue 8, items 1 and 2).

The guard is run on small test files written here, against the real package
list or that list with one package taken out: a module or program that no
listed package provides must fail the guard, naming the package to add.
"""

import fcntl
import os
import time
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parents[2]
GUARD = REPO / "scripts" / "check-test-deps.py"
INSTALL_DEPS = REPO / "scripts" / "install-deps.sh"


def listed_packages():
    return helpers.run([str(INSTALL_DEPS), "--list"]).stdout.split()


def guard(tmp_path, source, packages=None):
    """Runs the guard on one test file holding `source`."""
    test_file = tmp_path / "test_fake.py"
    test_file.write_text(source)
    args = [] if packages is None else ["--packages", " ".join(packages)]
    return helpers.run([helpers.PYTHON, str(GUARD), *args, str(test_file)], check=False)


def without(package):
    pkgs = listed_packages()
    assert package in pkgs
    return [p for p in pkgs if p != package]


def test_the_suite_passes_the_guard():
    r = helpers.run([helpers.PYTHON, str(GUARD)], check=False)
    assert r.returncode == 0, r.stderr
    assert "come from packages install-deps.sh installs" in r.stdout


def test_stdlib_pytest_and_listed_packages_pass(tmp_path):
    r = guard(tmp_path, "import os, json, sqlite3\nimport pytest\nimport cbor2\n"
                        "import subprocess\nsubprocess.run(['ls', '/'])\n")
    assert r.returncode == 0, r.stderr


def test_a_module_nothing_provides_fails_with_its_name(tmp_path):
    r = guard(tmp_path, "import os\nimport fsb_guard_no_such_module\n")
    assert r.returncode == 1
    assert "test_fake.py:2: imports fsb_guard_no_such_module, which no installed package provides" \
        in r.stderr


def test_a_module_of_an_unlisted_package_names_the_package(tmp_path):
    # issue 8's bug: cbor2 installed by hand, python3-cbor2 not listed.
    r = guard(tmp_path, "from cbor2 import dumps\n", packages=without("python3-cbor2"))
    assert r.returncode == 1
    assert "imports cbor2" in r.stderr
    assert "add python3-cbor2 to its PACKAGES" in r.stderr


def test_a_program_of_an_unlisted_package_names_the_package(tmp_path):
    r = guard(tmp_path, "import subprocess\nsubprocess.check_output(['git', '--version'])\n",
              packages=without("git"))
    assert r.returncode == 1
    assert "test_fake.py:2: runs git from" in r.stderr
    assert "add git to its PACKAGES" in r.stderr


def test_a_program_nothing_provides_fails(tmp_path):
    r = guard(tmp_path, "import subprocess\nsubprocess.Popen(['fsb-no-such-program'])\n")
    assert r.returncode == 1
    assert "runs fsb-no-such-program, which no installed package provides" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="holding apt's lock needs root")
def test_install_deps_waits_for_apt_lock_then_says_it_gave_up():
    # Hold the lock of the package lists as another apt would; a missing
    # package makes install-deps.sh run apt-get update, which must wait
    # (and say so) instead of failing at once, and give up after the timeout.
    with open("/var/lib/apt/lists/lock", "a") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        start = time.monotonic()
        r = helpers.run([str(INSTALL_DEPS), "fsb-no-such-package"], check=False, timeout=60,
                        env={**os.environ, "FSB_APT_LOCK_TIMEOUT": "4"})
        waited = time.monotonic() - start
    assert r.returncode != 0
    assert "waiting up to 4s for apt's locks" in r.stderr
    assert "Could not get lock /var/lib/apt/lists/lock" in r.stderr
    assert "gave up waiting for apt's lock after 4s" in r.stderr
    assert waited >= 4
