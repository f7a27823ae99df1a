"""
test_vm_libvirt.py - the drop-in claim, proved with Debian's libvirt 9:
a TCG domain whose <filesystem><driver type='virtiofs'/><binary/> is
fsbridged.  libvirt starts fsbridged itself (virtiofsd's command line:
--fd=N -o source=DIR), QEMU connects, the guest (Debian's kernel, the
initramfs of initramfs.py) mounts with `mount -t virtiofs`, reads a host
file and writes one that must reach the host.

libvirtd runs as root in a private mount namespace of the test's own: its
configuration (/etc/libvirt), state, cache and log directories are the
test's work directory there, and the user libvirt-qemu its qemu driver
resolves at start-up (libvirt-daemon-system would create it) exists only in
that namespace's /etc/passwd.  Nothing of the machine's libvirt setup is
read or changed, and nothing outlives the test.  The packages are
libvirt-daemon, libvirt-daemon-driver-qemu and libvirt-clients, not
libvirt-daemon-system: on a machine without systemd as init that one pulls
in systemd-sysv (a new init) and upgrades systemd, and the test needs none
of its service setup.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import initramfs
import vmguest

TAG = "fsbtest"
GUEST_TIMEOUT = float(os.environ.get("FSB_VM_TIMEOUT", "240"))

SCRIPT = """
mount -t virtiofs {tag} /mnt || {{ echo "mount -t virtiofs failed"; exit 1; }}
section mounts grep " /mnt " /proc/mounts
section hostfile cat /mnt/from-host
section write sh -c 'echo "written in the libvirt guest" > /mnt/from-guest && sync'
section umount umount /mnt
"""

# What libvirtd and its qemu driver need here: the guest runs as root (no
# libvirt-qemu files exist outside the namespace), with no security
# driver, cgroups or private /dev (a container may refuse them), and QEMU's
# output goes to a file (no virtlogd).
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""

LIBVIRTD_CONF = """\
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

# Bound over the machine's directories inside the namespace.
STATE_DIRS = {"run": "/run/libvirt", "lib": "/var/lib/libvirt",
              "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}

START = """\
set -e
mount --bind {w}/etc/passwd /etc/passwd
mount --bind {w}/etc/group /etc/group
mount -t tmpfs -o mode=0755 fsbtest-libvirt /etc/libvirt
cp {w}/etc/libvirtd.conf {w}/etc/qemu.conf /etc/libvirt/
{binds}
exec libvirtd -f /etc/libvirt/libvirtd.conf
"""

DOMAIN = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=4 rdinit=/init</cmdline>
  </os>
  <features>
    <!-- without it libvirt passes -no-acpi, and the guest's poweroff only halts -->
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs' queue='1024'/>
      <binary path='{binary}'/>
      <source dir='{shared}'/>
      <target dir='{tag}'/>
    </filesystem>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
    <serial type='file'>
      <source path='{results}'/>
      <target port='1'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


class Libvirtd:
    """libvirtd in a mount namespace of its own, configured from `work`."""

    def __init__(self, work):
        self.work = work
        self.socket = work / "run" / "libvirt-sock"
        self.log = work / "log" / "libvirtd.log"
        self.proc = None
        self.made_dirs = []
        self.namespace = None

    def prepare(self):
        etc = self.work / "etc"
        etc.mkdir()
        (etc / "qemu.conf").write_text(QEMU_CONF)
        (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF)
        (etc / "passwd").write_text(Path("/etc/passwd").read_text() +
                                    "libvirt-qemu:x:64055:64055:fsbridge test:"
                                    "/var/lib/libvirt:/usr/sbin/nologin\n")
        (etc / "group").write_text(Path("/etc/group").read_text() + "libvirt-qemu:x:64055:\n")
        for sub, target in STATE_DIRS.items():
            (self.work / sub).mkdir()
            if not os.path.isdir(target):       # a mount point is needed; removed at the end
                os.mkdir(target)
                self.made_dirs.append(target)
        if not os.path.isdir("/etc/libvirt"):
            os.mkdir("/etc/libvirt")
            self.made_dirs.append("/etc/libvirt")
        binds = "\n".join(f"mount --bind {self.work / sub} {target}"
                          for sub, target in STATE_DIRS.items())
        (self.work / "start.sh").write_text(START.format(w=self.work, binds=binds))

    def start(self, timeout=60.0):
        with open(self.work / "libvirtd.out", "wb") as out:
            self.proc = subprocess.Popen(["unshare", "--mount", "sh", str(self.work / "start.sh")],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                pytest.fail(f"libvirtd not listening after {timeout:.0f} s\n{self.diagnostics()}",
                            pytrace=False)
            time.sleep(0.1)
        self.namespace = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
        return True

    def answers(self):
        """libvirtd accepts connections (it bound /run/libvirt/libvirt-sock
        in its namespace: /proc/net/unix names that path, not ours)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(self.socket))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def virsh(self, *args, check=True, timeout=120):
        uri = f"qemu+unix:///system?socket={self.socket}"
        r = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"virsh {' '.join(args)}: {r.stdout}{r.stderr}\n{self.diagnostics()}",
                        pytrace=False)
        return r

    def diagnostics(self, chars=3000):
        parts = [("libvirtd output", self.work / "libvirtd.out"), ("libvirtd log", self.log)]
        parts += [(p.name, p) for p in sorted((self.work / "log").glob("qemu/*.log"))]
        return "".join(f"---- {what} (last {chars} chars) ----\n"
                       f"{vmguest._read(path)[-chars:].rstrip()}\n" for what, path in parts)

    def processes_in_namespace(self):
        pids = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/ns/mnt") == self.namespace:
                    pids.append(int(pid))
            except OSError:
                pass
        return pids

    def stop(self):
        """SIGTERM libvirtd, then kill what is left in its namespace (QEMU,
        fsbridged) so that its mounts go with it; remove the mount points
        made for it.  Returns the pids that had to be killed."""
        killed = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.namespace:
            for pid in self.processes_in_namespace():
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            vmguest_deadline = time.monotonic() + 10
            while self.processes_in_namespace() and time.monotonic() < vmguest_deadline:
                time.sleep(0.1)
        for d in reversed(self.made_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass
        return killed


@pytest.fixture
def libvirtd(vm_build, vm_workdir, request):
    if shutil.which("libvirtd") is None or shutil.which("virsh") is None:
        pytest.skip("libvirtd or virsh is not installed (Debian packages libvirt-daemon, "
                    "libvirt-daemon-driver-qemu, libvirt-clients)")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"libvirtd cannot run here: no private mount namespace for it "
                    f"({probe.stderr.strip()})")
    d = Libvirtd(vm_workdir)
    d.prepare()
    try:
        if not d.start():
            pytest.skip(f"libvirtd cannot run here: it exited {d.proc.returncode} at "
                        f"start-up\n{d.diagnostics(1500)}")
        yield d
    finally:
        killed = d.stop()
        rep = getattr(request.node, "vm_rep_call", None)
        if rep is not None and rep.failed:
            print(d.diagnostics(6000))
    assert not killed, f"processes left in libvirtd's namespace after it stopped: {killed}"


def wait_gone(libvirtd, name, results_path, timeout):
    """Until the transient domain is gone (the guest powered off)."""
    deadline = time.monotonic() + timeout
    while name in libvirtd.virsh("list", "--name").stdout.split():
        if time.monotonic() > deadline:
            libvirtd.virsh("destroy", name, check=False)
            pytest.fail(f"the guest ran over {timeout:.0f} s (destroyed)\n"
                        f"results:\n{vmguest._read(results_path)[-2000:]}\n"
                        f"{libvirtd.diagnostics()}", pytrace=False)
        time.sleep(0.5)


def test_libvirt_domain_with_fsbridged_as_virtiofs_binary(vm_build, vm_kernel, vm_initrd,
                                                          vm_workdir, shared_dir, libvirtd):
    binary = vm_build / "fsbridged"
    if not vmguest.fsbridged_has_vhost_user(binary):
        pytest.skip(f"{binary} answers no vhost-user capabilities")
    (shared_dir / "from-host").write_text("made on the host\n")
    initrd = vm_workdir / "initrd.img"
    initramfs.write_initrd(initrd, vm_initrd, vmguest.guest_script(SCRIPT.format(tag=TAG)))
    name = f"fsbtest-{os.getpid()}"
    console, results = vm_workdir / "console.log", vm_workdir / "results.log"
    xml = vm_workdir / "domain.xml"
    xml.write_text(DOMAIN.format(name=name, kernel=vm_kernel / "vmlinuz", initrd=initrd,
                                 binary=binary, shared=shared_dir, tag=TAG, console=console,
                                 results=results))

    libvirtd.virsh("create", str(xml))
    wait_gone(libvirtd, name, results, GUEST_TIMEOUT)

    boot = vmguest.Results(vmguest._read(results)).last
    where = f"\nresults:\n{vmguest._read(results)[-2000:]}\n{libvirtd.diagnostics()}"
    assert boot.done_rc == 0, "the guest script did not finish cleanly" + where
    assert "virtiofs" in boot.sections.get("mounts", ""), where
    assert boot.sections.get("hostfile") == "made on the host\n", where
    assert boot.rcs.get("write") == 0, where
    assert (shared_dir / "from-guest").read_text() == "written in the libvirt guest\n"
    assert boot.rcs.get("umount") == 0, where
    # The backend libvirt ran was fsbridged, started with virtiofsd's options.
    fs_log = vmguest._read(vm_workdir / "log" / "qemu" / f"{name}-fs0-virtiofsd.log")
    assert "fsbridged" in fs_log, where
