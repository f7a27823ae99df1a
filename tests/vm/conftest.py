"""
conftest.py - fixtures of the VM suite: a Debian kernel, an initramfs with
the programs under test, QEMU guests and the host daemons they talk to.

Fixtures:

  vm_build     session: the build directory (FSB_BUILD_DIR, default
               <repo>/build) with fsbridged, fsbridge-mount and
               tests/conformance/fsb-conformance.
  vm_kernel    session: the kernel dir of fetch-kernel.sh (downloaded once
               into FSB_VM_CACHE); skips when it cannot be downloaded.
  vm_initrd    session: the cached base initramfs (busybox, modules,
               fsb-conformance, fsbridge-mount and its libraries).
  vm_backend   session: (kind, binary) of the vhost-user-fs backend under
               test: FSB_VM_BACKEND=fsbridged (default) or virtiofsd (the
               legacy C virtiofsd of qemu-system-common).
  vm_workdir   a fresh directory with a short path (socket paths), kept
               when the test fails.
  shared_dir   an empty export directory in vm_workdir, mode 0755.
  virtiofs     start(cache, **kw) -> VirtiofsDaemon serving shared_dir;
               stopped at teardown.
  guest        make(script, **kw) -> vmguest.Guest (not started); killed at
               teardown, its console and results printed when the test
               failed.

Environment: FSB_BUILD_DIR, FSB_VM_CACHE (default /var/cache/fsbridge-vm),
FSB_VM_BACKEND, FSB_VM_TIMEOUT (seconds per guest, default 240).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "conformance"))

import initramfs  # noqa: E402
import vmguest  # noqa: E402

CACHE = Path(os.environ.get("FSB_VM_CACHE", "/var/cache/fsbridge-vm"))
GUEST_TIMEOUT = float(os.environ.get("FSB_VM_TIMEOUT", "240"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "vm_rep_" + rep.when, rep)


def _failed(request):
    return any(getattr(request.node, f"vm_rep_{w}", None) is not None and
               getattr(request.node, f"vm_rep_{w}").failed for w in ("setup", "call"))


@pytest.fixture(scope="session")
def vm_build():
    if os.geteuid() != 0:
        pytest.skip("the VM tests run QEMU with vhost-user and virtiofsd: run as root")
    if not vmguest.have_qemu():
        pytest.skip(f"{vmguest.QEMU} is not installed (Debian package qemu-system-x86)")
    if not os.access(initramfs.BUSYBOX, os.X_OK):
        pytest.skip(f"{initramfs.BUSYBOX} is missing (Debian package busybox-static)")
    path = Path(os.environ.get("FSB_BUILD_DIR", REPO / "build")).resolve()
    wanted = ["fsbridged", "fsbridge-mount", "tests/conformance/fsb-conformance"]
    missing = [p for p in wanted if not os.access(path / p, os.X_OK)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not built in {path} (ninja -C {path}, "
                    f"or set FSB_BUILD_DIR)")
    return path


@pytest.fixture(scope="session")
def vm_kernel(vm_build):
    r = subprocess.run([str(HERE / "fetch-kernel.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=900,
                       env={**os.environ, "FSB_VM_CACHE": str(CACHE)})
    if r.returncode == 3:
        pytest.skip(f"no guest kernel: {r.stderr.strip().splitlines()[-1]}")
    if r.returncode != 0:
        pytest.fail(f"fetch-kernel.sh exited {r.returncode}:\n{r.stderr}", pytrace=False)
    return Path(r.stdout.strip())


@pytest.fixture(scope="session")
def vm_initrd(vm_build, vm_kernel):
    programs = [("bin/fsb-conformance", vm_build / "tests/conformance/fsb-conformance"),
                ("bin/fsbridge-mount", vm_build / "fsbridge-mount")]
    return initramfs.cached_base(CACHE / "initramfs", vm_kernel, programs)


@pytest.fixture(scope="session")
def vm_backend(vm_build):
    kind = os.environ.get("FSB_VM_BACKEND", "fsbridged")
    if kind == "virtiofsd":
        if not os.access(vmguest.LEGACY_VIRTIOFSD, os.X_OK):
            pytest.skip(f"{vmguest.LEGACY_VIRTIOFSD} is missing (qemu-system-common)")
        return kind, vmguest.LEGACY_VIRTIOFSD
    if kind != "fsbridged":
        pytest.fail(f"FSB_VM_BACKEND={kind}: expected fsbridged or virtiofsd", pytrace=False)
    binary = vm_build / "fsbridged"
    if not vmguest.fsbridged_has_vhost_user(binary):
        pytest.skip(f"{binary} is no vhost-user backend yet (--print-capabilities "
                    f"does not answer type fs); FSB_VM_BACKEND=virtiofsd runs these "
                    f"tests against {vmguest.LEGACY_VIRTIOFSD}")
    return kind, binary


@pytest.fixture
def vm_workdir(request):
    path = Path(tempfile.mkdtemp(prefix="fsbvm-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    if _failed(request) or os.environ.get("FSB_KEEP_TMP"):
        print(f"VM work directory kept: {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared_dir(vm_workdir):
    path = vm_workdir / "shared"
    path.mkdir()
    os.chmod(path, 0o755)
    return path


@pytest.fixture
def virtiofs(vm_backend, vm_workdir, shared_dir, request):
    """start(cache, *, socket=None, extra=()) -> VirtiofsDaemon."""
    kind, binary = vm_backend
    daemons = []

    def start(cache, *, socket=None, extra=()):
        if not vmguest.VirtiofsDaemon.supports(kind, cache):
            pytest.skip(f"the legacy virtiofsd has no cache={cache}")
        n = len(daemons)
        d = vmguest.VirtiofsDaemon(kind, binary, shared_dir,
                                   socket or vm_workdir / f"vfs{n}.sock", cache,
                                   vm_workdir / f"{kind}{n}.log", extra)
        daemons.append(d)
        try:
            return d.start()
        except RuntimeError as e:
            pytest.fail(str(e), pytrace=False)

    yield start
    for d in daemons:
        d.stop()
        if _failed(request):
            print(d.log())


@pytest.fixture
def guest(vm_kernel, vm_initrd, vm_workdir, request):
    """make(script, **Guest kwargs) -> Guest (configure it, then start())."""
    guests = []

    def make(script, **kw):
        kw.setdefault("timeout", GUEST_TIMEOUT)
        kw.setdefault("name", f"guest{len(guests)}")
        g = vmguest.Guest(vm_workdir, vm_kernel, vm_initrd, script, **kw)
        guests.append(g)
        return g

    yield make
    for g in guests:
        g.kill()
        if _failed(request):
            print(f"---- {g.name}: {' '.join(g.argv())}")
            print(g.diagnostics(6000))
