#!/usr/bin/python3
"""check-test-deps.py - the dependency guard: everything the tests import or
run comes from a Debian package that scripts/install-deps.sh installs.

    scripts/check-test-deps.py [--packages "PKG ..."] [PATH ...]

run-tests.sh runs it right after install-deps.sh, so a test that needs a
package nobody listed fails here, on every machine, naming the package --
not at collection on a fresh machine while CI stays green on one where the
package was installed by hand (issue 8: python3-cbor2).

PATH (default: tests/integration tests/vm tests/conformance) are Python
files or directories of them.  For each file it reads, with `ast`:

  imports   every `import X` / `from X import ...` (top-level name X).  The
            project's own modules (a X.py or X/ in a scanned directory) and
            modules built into the interpreter are aside; every other module
            is located with importlib (as /usr/bin/python3, the tests'
            interpreter, would import it) and its file looked up with
            `dpkg-query -S`.  The standard library and pytest's plugins need
            no special case: they come from python3 and python3-pytest.
  programs  the program of every subprocess call (run, Popen, check_output,
            call, check_call, shutil.which, os.exec*) whose argv starts with
            a string the file spells out (a literal or a module-level
            constant, also another scanned module's `mod.NAME`), and every
            absolute path literal naming an executable file; plus
            INDIRECT_PROGRAMS below (programs of the shell scripts the tests
            run, when the test running the script is checked).  Each is found on PATH (and the sbin directories) and its
            file looked up with `dpkg-query -S`.

A package "is installed by install-deps.sh" when it is in the list
`install-deps.sh --list` prints, is Essential or of Priority required (on
every Debian system: what debootstrap's minbase installs), or is pulled in
by those through Depends / Pre-Depends (as installed here; of alternatives
"a | b" the first installed one).  Anything else -- a module
or program no installed package provides, a file no package owns (pip), a
package outside that set -- is a failure, one line each, naming the file
and line that first uses it, the module or program, and the package to add.  Exit 0 when all
is provided, 1 otherwise.
"""

import argparse
import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_DEPS = REPO / "scripts" / "install-deps.sh"
DEFAULT_PATHS = ["tests/integration", "tests/vm", "tests/conformance"]

# Programs the tests run that no Python file names: those of the shell
# scripts a test executes, {script: (the test file running it, programs)},
# counted when that test file is checked.  Keep in step with the scripts.
INDIRECT_PROGRAMS = {
    "tests/vm/fetch-kernel.sh": ("tests/vm/conftest.py",
                                 ["bash", "apt-get", "dpkg-deb", "modinfo", "find", "sed",
                                  "zstd", "xz", "mktemp"]),
    "demo.sh": ("tests/integration/test_demo.py",
                ["bash", "meson", "ninja", "git", "awk", "mountpoint", "umount", "fusermount3",
                 "seq", "df", "stat", "tail"]),
    # the START script of the libvirt test, and what libvirtd runs
    "test_vm_libvirt.py START": ("tests/vm/test_vm_libvirt.py",
                                 ["mount", "cp", "libvirtd", "qemu-system-x86_64"]),
}

# Calls whose first argument is a command line (argv list or program name).
RUNNER_CALLS = {"run", "Popen", "check_output", "check_call", "call", "which",
                "execv", "execvp", "execve", "execvpe", "spawnv", "spawnvp"}
SEARCH_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
# Absolute paths of programs: under the directories packages put them in.
ABS_PATH = re.compile(r"^/(usr/|opt/)?(s?bin|lib|libexec)(/[\w.+-]+)+$")


class Need:
    """One thing a test needs: a module or program, and where it is named."""

    def __init__(self, kind, name, where):
        self.kind, self.name, self.where = kind, name, where

    def __str__(self):
        verb = "imports" if self.kind == "module" else "runs"
        return f"{self.where}: {verb} {self.name}"


# --- what the tests need -------------------------------------------------

def python_files(paths):
    files = []
    for p in paths:
        p = Path(p)
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return files


def local_module_names(files):
    """The project's own modules: what the scanned directories hold."""
    names = set()
    for d in {f.parent for f in files}:
        names |= {c.stem for c in d.glob("*.py")}
        names |= {c.name for c in d.iterdir() if (c / "__init__.py").is_file()}
    return names


def module_constants(tree):
    """NAME = "string" at module level, as {NAME: string}."""
    consts = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    consts[t.id] = node.value.value
    return consts


def string_value(node, consts, all_consts):
    """The string `node` spells: a literal, NAME or mod.NAME; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return all_consts.get(node.value.id, {}).get(node.attr)
    return None


def call_name(call):
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)


def program_of_call(call, consts, all_consts):
    """The program a runner call starts, when the file spells it out."""
    if call_name(call) not in RUNNER_CALLS or not call.args:
        return None
    if any(k.arg == "executable" for k in call.keywords):
        return None     # argv[0] is only a name; the program is elsewhere
    first = call.args[0]
    if isinstance(first, (ast.List, ast.Tuple)):
        if not first.elts:
            return None
        first = first.elts[0]
    prog = string_value(first, consts, all_consts)
    if prog is None or not prog or " " in prog:
        return None
    return prog


def needs_of_file(path, tree, consts, all_consts, local):
    where = lambda node: f"{rel(path)}:{node.lineno}"
    needs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            needs += [Need("module", a.name.split(".")[0], where(node)) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            needs.append(Need("module", node.module.split(".")[0], where(node)))
        elif isinstance(node, ast.Call):
            prog = program_of_call(node, consts, all_consts)
            if prog:
                needs.append(Need("program", prog, where(node)))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and ABS_PATH.match(node.value) and is_executable_file(node.value)
              and not Path(node.value).resolve().is_relative_to(REPO)):
            needs.append(Need("program", node.value, where(node)))
    return [n for n in needs if not (n.kind == "module" and n.name in local)]


def test_needs(paths):
    files = python_files(paths)
    trees = {f: ast.parse(f.read_text(), str(f)) for f in files}
    consts = {f: module_constants(t) for f, t in trees.items()}
    by_module = {f.stem: c for f, c in consts.items()}
    local = local_module_names(files)
    needs = []
    for f, tree in trees.items():
        needs += needs_of_file(f, tree, consts[f], by_module, local)
    scanned = {rel(f) for f in files}
    for script, (runner, progs) in INDIRECT_PROGRAMS.items():
        if runner in scanned:
            needs += [Need("program", p, script) for p in progs]
    return needs


def rel(path):
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def is_executable_file(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


# --- where it comes from -------------------------------------------------

def module_file(name):
    """The file `name` would be imported from; "" for interpreter built-ins;
    None when it cannot be imported."""
    if name in sys.builtin_module_names:
        return ""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return None
    if spec.origin == "frozen":     # the stdlib's frozen modules keep their file
        return getattr(spec.loader_state, "filename", "") or ""
    if spec.origin and spec.origin != "namespace":
        return spec.origin
    locations = list(spec.submodule_search_locations or [])
    return locations[0] if locations else None


def program_file(name):
    if "/" in name:
        return name if is_executable_file(name) else None
    path = os.environ.get("PATH", "").split(":") + SEARCH_DIRS
    return shutil.which(name, path=":".join(path))


def path_aliases(path):
    """dpkg knows a file by the path its package ships; with merged /usr,
    /usr/bin/ls is /bin/ls and the like, so try both spellings (and the
    symlink's target)."""
    out = []
    for p in (path, os.path.realpath(path)):
        out.append(p)
        for top in ("/bin", "/sbin", "/lib", "/lib64"):
            if p.startswith("/usr" + top + "/"):
                out.append(p[len("/usr"):])
            elif p.startswith(top + "/"):
                out.append("/usr" + p)
    return list(dict.fromkeys(out))


def owners(paths):
    """{path: [package, ...]} for the paths some installed package owns."""
    found = {}
    if not paths:
        return found
    r = subprocess.run(["dpkg-query", "-S", *paths], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("diversion by") or ": " not in line:
            continue
        pkgs, path = line.split(": ", 1)
        found[path] = [p.strip().split(":")[0] for p in pkgs.split(",")]
    return found


def owner_of(path, owned):
    for alias in path_aliases(path):
        if alias in owned:
            return owned[alias]
    return None


# --- what install-deps.sh installs ---------------------------------------

def listed_packages():
    r = subprocess.run([str(INSTALL_DEPS), "--list"], stdout=subprocess.PIPE, text=True,
                       check=True)
    return r.stdout.split()


def dependency_names(field):
    """"a (>= 1) | b:any, c" -> [["a", "b"], ["c"]]"""
    groups = []
    for group in filter(None, (g.strip() for g in field.split(","))):
        alts = [re.split(r"[\s(:\[<]", a.strip(), maxsplit=1)[0] for a in group.split("|")]
        groups.append([a for a in alts if a])
    return groups


def installed_packages():
    """{name: (on every system, [dependency groups], [provided names])}"""
    fmt = ("${Package}\t${db:Status-Abbrev}\t${Essential} ${Priority}\t"
           "${Pre-Depends}, ${Depends}\t${Provides}\n")
    r = subprocess.run(["dpkg-query", "-W", "-f", fmt], stdout=subprocess.PIPE, text=True,
                       check=True)
    pkgs = {}
    for line in r.stdout.splitlines():
        name, status, base, deps, provides = line.split("\t")
        if status.startswith("ii"):
            essential, _, priority = base.partition(" ")
            pkgs[name] = (essential == "yes" or priority == "required", dependency_names(deps),
                          [p[0] for p in dependency_names(provides)])
    return pkgs


def provided_packages(listed, installed):
    """The listed packages, those on every system, and what they depend on."""
    providers = {}
    for name, (_, _, provides) in installed.items():
        for virtual in provides:
            providers.setdefault(virtual, name)
    todo = list(listed) + [n for n, (ess, _, _) in installed.items() if ess]
    done = set()
    while todo:
        name = todo.pop()
        if name in done or name not in installed:
            continue
        done.add(name)
        for group in installed[name][1]:
            chosen = next((a if a in installed else providers[a] for a in group
                           if a in installed or a in providers), None)
            if chosen:
                todo.append(chosen)
    return done


# --- the check ----------------------------------------------------------

def guess_package(need):
    """For a module nothing provides: Debian's name for it, if apt knows it."""
    if need.kind != "module":
        return None
    guess = "python3-" + need.name.lower().replace("_", "-")
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", guess],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return guess if r.returncode == 0 else None


def grouped(needs):
    """One Need per module or program, naming where it is first used and
    how many other places use it."""
    groups = {}
    for n in needs:
        groups.setdefault((n.kind, n.name), []).append(n.where)
    out = []
    for (kind, name), wheres in groups.items():
        more = f" (and {len(wheres) - 1} other places)" if len(wheres) > 1 else ""
        out.append(Need(kind, name, wheres[0] + more))
    return out


def problem(need, path, owned, provided):
    """What is wrong with where `need` comes from, or None."""
    deps = rel(INSTALL_DEPS)
    if path == "":
        return None         # built into the interpreter
    if path is None:
        guess = guess_package(need)
        return (f"{need}, which no installed package provides; "
                + (f"Debian's package is probably {guess}: add it to {deps}" if guess
                   else f"add the Debian package that provides it to {deps}"))
    pkgs = owner_of(path, owned)
    if pkgs is None:
        return (f"{need} from {path}, which no Debian package owns (installed by hand "
                f"or pip?): use a Debian package and list it in {deps}")
    if not provided & set(pkgs):
        return (f"{need} from {path}, of Debian package {pkgs[0]}, which {deps} "
                f"does not install: add {pkgs[0]} to its PACKAGES")
    return None


def problems(needs, listed):
    installed = installed_packages()
    provided = provided_packages(listed, installed)
    out = [f"{INSTALL_DEPS.name} lists {p}, which is not installed (run it first)"
           for p in listed if p not in installed]
    paths = {n: module_file(n.name) if n.kind == "module" else program_file(n.name)
             for n in grouped(needs)}
    owned = owners([a for f in paths.values() if f for a in path_aliases(f)])
    found = (problem(n, f, owned, provided) for n, f in paths.items())
    return out + [p for p in found if p]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", help="the package list to check against "
                    "(default: what install-deps.sh --list prints)")
    ap.add_argument("paths", nargs="*", help="Python files or directories")
    args = ap.parse_args()
    paths = args.paths or [REPO / p for p in DEFAULT_PATHS]
    listed = args.packages.split() if args.packages is not None else listed_packages()
    needs = test_needs(paths)
    found = problems(needs, listed)
    for line in found:
        print(f"check-test-deps: {line}", file=sys.stderr)
    if found:
        return 1
    modules = len({n.name for n in needs if n.kind == "module"})
    programs = len({n.name for n in needs if n.kind == "program"})
    print(f"check-test-deps: the {modules} modules and {programs} programs the tests use "
          f"come from packages {INSTALL_DEPS.name} installs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
