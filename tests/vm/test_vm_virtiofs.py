"""
test_vm_virtiofs.py - the guest kernel's own virtio-fs driver on the
vhost-user-fs backend, in every cache mode.

One boot per cache mode: the guest mounts the export with
`mount -t virtiofs`, reads a file the host made, runs the conformance
program (tests/conformance, the same checks as the stream suite) and
unmounts; the guest powers off, QEMU exits, and the backend must then exit
by itself (it serves one frontend).  Afterwards every expectation the
program printed is checked on the host directory.
"""

import hashlib
import os

import pytest

import conformance_check
import vmguest

TAG = "fsbtest"

SCRIPT = """
mount -t virtiofs {tag} /mnt || {{ echo "mount -t virtiofs failed"; exit 1; }}
section mounts grep " /mnt " /proc/mounts
section hostfile sha256sum /mnt/from-host
section conformance fsb-conformance /mnt/conformance
section umount umount /mnt
"""


def request_queues(kind):
    # The legacy C virtiofsd exits when QEMU sets up a second request queue.
    return 1 if kind == "virtiofsd" else 2


@pytest.mark.parametrize("cache", ["never", "metadata", "auto", "always"])
def test_conformance_over_virtiofs(cache, vm_backend, shared_dir, virtiofs, guest):
    kind, _ = vm_backend
    from_host = os.urandom(300 * 1024)
    (shared_dir / "from-host").write_bytes(from_host)
    daemon = virtiofs(cache)
    g = guest(SCRIPT.format(tag=TAG))
    g.add_virtiofs(daemon.socket, TAG, queue_size=1024,
                   num_request_queues=request_queues(kind))
    g.start()
    qemu_rc = g.wait(watch=[daemon])
    boot = g.results().last

    assert boot.done_rc is not None, f"the guest script did not finish\n{g.diagnostics()}"
    assert boot.rcs.get("mounts") == 0 and "virtiofs" in boot.sections["mounts"], \
        f"no virtiofs mount in the guest\n{g.diagnostics()}"
    assert boot.sections["hostfile"].split()[0] == hashlib.sha256(from_host).hexdigest(), \
        "a file written on the host reads differently in the guest"
    report = conformance_check.parse(boot.sections.get("conformance", ""))
    conformance_check.assert_passed(report, shared_dir / "conformance",
                                    context=f"virtio-fs, {kind}, cache={cache}: ")
    assert boot.rcs.get("umount") == 0, boot.sections.get("umount")
    assert qemu_rc == 0, f"QEMU exited {qemu_rc}\n{g.diagnostics()}"

    # The frontend is gone: the backend exits by itself, cleanly.
    rc = daemon.wait(timeout=10)
    assert rc == 0, f"{kind} exit status {rc} after QEMU quit\n{daemon.log()}"
    assert not vmguest.processes_using(shared_dir), vmguest.processes_using(shared_dir)
    for name, why in report.skipped:
        print(f"skip {name}: {why}")
