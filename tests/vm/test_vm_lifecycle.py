"""
test_vm_lifecycle.py - the vhost-user-fs backend across a guest's life:
a reboot with virtio-fs mounted and requests in flight (the rings are
stopped with GET_VRING_BASE, reset, and set up again by the next boot's
driver), QEMU killed outright, and SIGTERM while a guest is using it.

Each time the backend must end cleanly: exit status 0 (or a non-zero status
with a message, never a signal or a sanitizer report) and nothing left that
has a file of the export open.
"""

import signal
import time

import pytest

import conformance_check
import vmguest

TAG = "fsbtest"

# Boot 1 writes a file, starts I/O in a loop and resets the machine under
# it; boot 2 finds the file, runs part of the conformance program and
# powers off.
REBOOT_SCRIPT = f"""
mount -t virtiofs {TAG} /mnt || {{ echo "mount failed"; exit 1; }}
if [ ! -e /mnt/phase1 ]; then
    section before sh -c 'echo one >/mnt/phase1 &&
        dd if=/dev/urandom of=/mnt/before bs=64k count=16 2>/dev/null && sha256sum /mnt/before'
    (while :; do dd if=/dev/zero of=/mnt/busy bs=64k count=64 2>/dev/null
                 cat /mnt/busy >/dev/null; done) &
    sleep 1
    mark rebooting
    reboot -f
    sleep 60
fi
section after sh -c 'cat /mnt/phase1 && sha256sum /mnt/before'
section conformance fsb-conformance --only files,rename,dirs /mnt/conformance
echo two >/mnt/phase2
section umount umount /mnt
"""

# I/O in a loop until the harness kills QEMU (or stops the backend).
BUSY_SCRIPT = f"""
mount -t virtiofs {TAG} /mnt || {{ echo "mount failed"; exit 1; }}
(while :; do dd if=/dev/urandom of=/mnt/busy bs=64k count=32 2>/dev/null
             cat /mnt/busy >/dev/null; done) &
(while :; do ls -l /mnt >/dev/null; stat /mnt/busy >/dev/null 2>&1; done) &
sleep 2
mark busy
sleep 600
"""


def check_clean_exit(daemon, rc, shared_dir, what):
    """The backend ended by itself (rc is its status, None: still running),
    without a signal or a sanitizer report, holding nothing of the export."""
    log = daemon.log_text()
    assert rc is not None, f"{daemon.kind} still runs 10 s after {what}\n{daemon.log()}"
    assert rc >= 0, f"{daemon.kind} died of signal {-rc} after {what}\n{daemon.log()}"
    if rc != 0:
        last = log.strip().splitlines()[-1:] or [""]
        assert last[0].strip(), f"{daemon.kind} exited {rc} without a message after {what}"
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert bad not in log, f"{bad} in the {daemon.kind} log after {what}\n{daemon.log()}"
    left = vmguest.processes_using(shared_dir)
    assert not left, f"still open below the export after {what}: {left}"


def test_guest_reboot_with_virtiofs_mounted(vm_backend, shared_dir, virtiofs, guest):
    daemon = virtiofs("auto")
    g = guest(REBOOT_SCRIPT, reboot=True)
    g.add_virtiofs(daemon.socket, TAG)
    g.start()
    qemu_rc = g.wait(watch=[daemon])
    res = g.results()

    assert len(res.boots) == 2, f"{len(res.boots)} boots, expected 2\n{g.diagnostics()}"
    first, second = res.boots
    assert first.boot_id != second.boot_id
    assert "rebooting" in first.marks and first.rcs.get("before") == 0, g.diagnostics()
    written = first.sections["before"].split()[0]
    after = second.sections.get("after", "").split()
    assert after[:2] == ["one", written], \
        f"after the reboot the guest reads {after}, expected ['one', '{written}', ...]"
    report = conformance_check.parse(second.sections.get("conformance", ""))
    conformance_check.assert_passed(report, shared_dir / "conformance",
                                    context="after a guest reboot: ")
    assert second.rcs.get("umount") == 0 and second.done_rc == 0
    assert (shared_dir / "phase2").read_text() == "two\n"
    assert qemu_rc == 0
    check_clean_exit(daemon, daemon.wait(timeout=10), shared_dir, "QEMU quit")


def kill_qemu(g, daemon):
    """QEMU killed outright: the backend sees its connection drop."""
    time.sleep(0.5)
    g.kill(signal.SIGKILL)
    return daemon.wait(timeout=10)


def sigterm_backend(g, daemon):
    """SIGTERM to the backend: it must end with status 0."""
    daemon.proc.send_signal(signal.SIGTERM)
    rc = daemon.wait(timeout=10)
    g.kill(signal.SIGKILL)          # its requests can never complete now
    assert rc == 0, f"{daemon.kind} exit status {rc} on SIGTERM\n{daemon.log()}"
    return rc


@pytest.mark.parametrize("end, what", [(kill_qemu, "QEMU was killed"),
                                       (sigterm_backend, "SIGTERM")],
                         ids=["qemu_killed", "sigterm"])
def test_backend_ends_cleanly_under_a_busy_guest(vm_backend, shared_dir, virtiofs, guest,
                                                 end, what):
    daemon = virtiofs("auto")
    g = guest(BUSY_SCRIPT)
    g.add_virtiofs(daemon.socket, TAG)
    g.start()
    g.wait_mark("busy", timeout=120)
    check_clean_exit(daemon, end(g, daemon), shared_dir, what)
