"""The shape of the code base, as the design promises it: no import cycles, a pure
``bpf_filters``, one of each kernel seam, every package installed, and syscall numbers
from the generated tables only."""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sandbox", "bpf_filters")


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


MODULES = _modules()


def _imports(name: str, top_level_only: bool) -> set[str]:
    """The project modules *name* imports (at module level only, or anywhere)."""
    path, is_pkg = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:     # module level includes imports under if/try at module level
        nodes = [n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.ClassDef,
                                                                  ast.AsyncFunctionDef))
                 for n in ast.walk(top)]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES]
            out.update(subs if len(subs) == len(node.names) else subs + [mod])
    return {m for m in out if m in MODULES and m != name}


def _cycles(top_level_only: bool) -> list[list[str]]:
    graph = {m: _imports(m, top_level_only) for m in MODULES}
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def strong(v):                       # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            strong(m)
    return found


@pytest.mark.parametrize("top_level_only", [True, False], ids=["module level", "anywhere"])
def test_no_import_cycle_between_modules(top_level_only):
    # not even through an import inside a function: a lazy import keeps start-up
    # fast, it must not hide a cycle. ``from pkg import mod`` is an edge to pkg.mod.
    assert _cycles(top_level_only) == []


def test_bpf_filters_imports_nothing_from_sandbox_and_no_os_module():
    os_modules = {"os", "sys", "subprocess", "ctypes", "socket", "_socket", "mmap", "fcntl",
                  "signal", "shutil", "tempfile", "io", "pathlib", "select", "resource", "platform"}
    for name, (path, _) in MODULES.items():
        if not name.startswith("bpf_filters"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for m in mods:
                assert not m.startswith("sandbox"), f"{path}: imports {m}"
                assert m.split(".")[0] not in os_modules, f"{path}: imports {m} (an OS module)"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{path}:{node.lineno}: open()"


def _grep(pattern: str) -> list[str]:
    rx = re.compile(pattern)
    hits = []
    for name, (path, _) in MODULES.items():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if rx.search(code):
                hits.append(f"{path.relative_to(ROOT)}:{n}")
    return hits


@pytest.mark.parametrize("what,pattern,where", [
    ("the filter install (seccomp SET_MODE_FILTER)", r"SECCOMP_SET_MODE_FILTER\s*,", "sandbox/kernel/seccomp.py"),
    ("the fork of a command", r"os\.fork\(\)", "sandbox/kernel/spawn.py"),
    ("the audit netlink socket", r"AF_NETLINK\s*,", "sandbox/kernel/netlink.py"),
    ("the exec of a command", r"os\.execve?\(|execve\b.*libc", "sandbox/kernel/spawn.py"),
])
def test_one_of_each_kernel_seam(what, pattern, where):
    hits = _grep(pattern)
    assert hits and all(h.startswith(where + ":") for h in hits), f"{what}: {hits}"
    assert len(hits) == 1, f"{what} is done in more than one place: {hits}"


def test_no_hand_typed_syscall_numbers():
    # NR_x = 123 / SYS_x = 123 / __NR_x: numbers come from bpf_filters.syscalls tables
    hits = [h for h in _grep(r"\b(?:__)?(?:NR|SYS)_[a-z0-9_]+\s*=\s*\d")
            if not h.startswith("bpf_filters/syscalls/_")]
    assert hits == [], hits


def test_every_package_is_installed():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, (_, is_pkg) in MODULES.items() if is_pkg}
    assert packages <= declared, f"packages missing from pyproject.toml: {sorted(packages - declared)}"
