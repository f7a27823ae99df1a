"""
test_conformance.py - the POSIX conformance program (tests/conformance) on
the stream transport, in every cache mode.

The same static program runs inside the QEMU guests of tests/vm against
virtio-fs and against fsbridge-mount over virtio-serial: the checks are
written once, in C, and used on both transports.  Here it runs on the host
against an fsbridge-mount of fsbridged; afterwards every expectation it
printed is checked on the exported host directory.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))
import conformance_check  # noqa: E402
import matchlock_limits  # noqa: E402


@pytest.fixture(scope="session")
def conformance_binary(build_dir):
    path = build_dir / "tests" / "conformance" / "fsb-conformance"
    if not path.exists():
        pytest.skip(f"{path} is not built (ninja -C {build_dir})")
    return path


@pytest.mark.deadline(300)
def test_conformance(fs, conformance_binary):
    args = matchlock_limits.conformance_args() if fs.mode == "matchlock" else ()
    report = conformance_check.run(
        conformance_binary, fs.mnt / "conformance", args=args, timeout=280)
    conformance_check.assert_passed(report, fs.host / "conformance",
                                    context=f"cache={fs.mode}: ")
    assert report.returncode == 0, report.text[-2000:]
    for name, why in report.skipped:
        print(f"skip {name}: {why}")
