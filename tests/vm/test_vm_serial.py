"""
test_vm_serial.py - fsbridge-mount inside a real guest kernel, over a
virtio-serial port.

The port's host end is a Unix-socket chardev that QEMU connects to
(`-chardev socket,server=off`) and fsbridged listens on (`--listen unix:`).
In the guest, `fsbridge-mount serial:/dev/virtio-ports/fsbridge /mnt` opens
the stream session, mounts FUSE, and the conformance program runs on it;
the results are checked on the host directory.

QEMU connects when it starts, but the guest sends its HELLO only once it
has booted and run fsbridge-mount (about 4 s later here), while fsbridged
drops a connection that says nothing for 10 s.  With `reconnect=1` QEMU
dials again after such a drop, so a slow guest costs a reconnect, not the
mount: the second test proves that with a guest that waits 12 s.
"""

import hashlib
import os
import re

import conformance_check
import vmguest

PORT = "fsbridge"

SCRIPT = f"""
section port ls -l /dev/virtio-ports/
section uptime cat /proc/uptime
section mount fsbridge-mount -o export=test,allow_other serial:/dev/virtio-ports/{PORT} /mnt
section mounts grep " /mnt " /proc/mounts
section hostfile sha256sum /mnt/from-host
section conformance fsb-conformance /mnt/conformance
section umount umount /mnt
"""


def start_stream_daemon(vm_build, vm_workdir, shared_dir):
    """fsbridged exporting shared_dir as "test" on the Unix socket that the
    port's chardev dials."""
    daemon = vmguest.StreamDaemon(vm_build / "fsbridged", shared_dir,
                                  vm_workdir / "serial.sock", "auto",
                                  vm_workdir / "fsbridged-stream.log")
    daemon.start()
    return daemon


def run_serial_guest(vm_build, vm_workdir, shared_dir, guest, script):
    """Boot a guest whose virtio-serial port PORT leads to a fresh fsbridged
    exporting shared_dir as "test"; returns (boot, fsbridged log, served),
    served being the numbers of the sessions that opened the export (a
    connection fsbridged dropped before its HELLO took a number too)."""
    daemon = start_stream_daemon(vm_build, vm_workdir, shared_dir)
    try:
        g = guest(script)
        g.add_serial_port(daemon.socket, PORT, reconnect=1)
        g.start()
        qemu_rc = g.wait(watch=[daemon])
    finally:
        daemon_rc = daemon.stop()
    boot = g.results().last
    log = daemon.log_text()
    assert boot.rcs.get("mount") == 0, \
        f"fsbridge-mount failed in the guest:\n{boot.sections.get('mount')}\n" \
        f"{daemon.log()}\n{g.diagnostics()}"
    assert boot.rcs.get("umount") == 0, boot.sections.get("umount")
    assert boot.done_rc == 0 and qemu_rc == 0, g.diagnostics()
    assert daemon_rc == 0, f"fsbridged exited {daemon_rc} on SIGTERM\n{daemon.log()}"
    served = sorted({int(n) for n in re.findall(r"session (\d+): export ", log)})
    assert served, f"fsbridged never opened a session\n{daemon.log()}"
    return boot, log, served


def test_fsbridge_mount_over_virtio_serial(vm_build, vm_workdir, shared_dir, guest):
    from_host = os.urandom(200 * 1024)
    (shared_dir / "from-host").write_bytes(from_host)
    boot, log, served = run_serial_guest(vm_build, vm_workdir, shared_dir, guest, SCRIPT)

    assert "fuse.fsbridge" in boot.sections["mounts"], boot.sections["mounts"]
    assert boot.sections["hostfile"].split()[0] == hashlib.sha256(from_host).hexdigest()
    report = conformance_check.parse(boot.sections.get("conformance", ""))
    conformance_check.assert_passed(report, shared_dir / "conformance",
                                    context="fsbridge-mount over virtio-serial: ")
    # QEMU connected at its start; the guest spoke `uptime` seconds after
    # its kernel started.
    uptime = float(boot.sections["uptime"].split()[0])
    print(f"fsbridge-mount sent its HELLO {uptime:.1f} s after the guest kernel "
          f"started; fsbridged served it as session {served}")
    for name, why in report.skipped:
        print(f"skip {name}: {why}")


# The guest speaks once 12 s have passed since its kernel started (QEMU
# connected a moment before that), not 12 s after a boot whose length the
# host's load decides: then it always lands on QEMU's second connection,
# between its dial (11 s) and fsbridged's next drop (21 s).
SLOW_SCRIPT = f"""
read up rest </proc/uptime
while [ "${{up%.*}}" -lt 12 ]; do sleep 1; read up rest </proc/uptime; done
section mount fsbridge-mount -o export=test serial:/dev/virtio-ports/{PORT} /mnt
section io sh -c 'cat /mnt/from-host && echo "written by a slow guest" >/mnt/from-guest'
section umount umount /mnt
"""


def test_guest_speaking_after_the_hello_timeout(vm_build, vm_workdir, shared_dir, guest):
    """The guest opens its port 12 s after QEMU connected: fsbridged drops
    the silent connection after its 10 s HELLO timeout, QEMU dials again
    (reconnect=1), and the mount works over that second connection.
    (Without reconnect=, see the next test.)"""
    (shared_dir / "from-host").write_text("made on the host\n")
    boot, log, served = run_serial_guest(vm_build, vm_workdir, shared_dir, guest,
                                         SLOW_SCRIPT)
    assert boot.sections["io"] == "made on the host\n"
    assert (shared_dir / "from-guest").read_text() == "written by a slow guest\n"
    assert served[0] > 1, \
        f"the first connection was served ({served}): the HELLO timeout did not " \
        f"happen, so this test tested nothing\n{log}"


def test_no_host_on_the_port_fails_cleanly(vm_build, vm_workdir, shared_dir, guest):
    """Without reconnect=, the connection fsbridged dropped after its HELLO
    timeout stays down: the port has no host side, and fsbridge-mount says
    so and exits non-zero within its 10 s handshake limit instead of
    waiting forever."""
    daemon = start_stream_daemon(vm_build, vm_workdir, shared_dir)
    try:
        g = guest(SLOW_SCRIPT)
        g.add_serial_port(daemon.socket, PORT)
        g.start()
        qemu_rc = g.wait(watch=[daemon])
    finally:
        daemon.stop()
    boot = g.results().last
    assert boot.rcs.get("mount") not in (None, 0), g.diagnostics()
    assert "no host on the other side" in boot.sections.get("mount", ""), \
        boot.sections.get("mount")
    assert qemu_rc == 0, g.diagnostics()
