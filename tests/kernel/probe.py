"""Build and drive ``probe.c``: real seccomp filters deciding real syscalls.

``Probe.run`` installs a filter in a forked child per point, makes the syscall
(``syscall`` or ``int $0x80``) and returns what the kernel did as one line per
point (``ret N``, ``trap DATA NR ARCH``, ``signal N``). ``kernel_outcome`` is
the kernel's meaning of a single filter's return value in that same form, so a
test compares the interpreter's value with the kernel's line directly.
``Probe.check`` asks the kernel whether it accepts a program at all.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytest

from bpf_filters import insn as I
from bpf_filters.interp import SeccompData
from bpf_filters.syscalls import AUDIT_ARCH, table
from tests.conftest import need

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
SOURCE = Path(__file__).with_name("probe.c")
MAX_ERRNO = 4095              # the kernel clamps RET_ERRNO data to this
ENOSYS = 38
SIGSYS = 31
TIMEOUT_S = 300
# seccomp never filters these on x86_64 (kernel/seccomp.c seccomp_uprobe_exception, 6.11+)
SECCOMP_BYPASS_X86_64 = frozenset({335, 336})


class ProbeError(Exception):
    """The probe could not build, start, or run a point."""


@dataclass(frozen=True)
class Point:
    """One syscall: MODE 64 is the ``syscall`` instruction (arch x86_64, the x32
    half when nr has bit 30), MODE 32 is ``int $0x80`` (arch i386, args
    truncated to their low 32 bits)."""
    mode: int
    nr: int
    args: tuple[int, ...] = (0,) * 6

    def __post_init__(self):
        if self.mode not in (32, 64):
            raise ValueError(f"mode must be 32 or 64, not {self.mode}")
        if len(self.args) != 6:
            raise ValueError("a point has exactly six arguments")

    @property
    def arch(self) -> int:
        return AUDIT_ARCH["x86_64"] if self.mode == 64 else AUDIT_ARCH["i386"]

    @property
    def seen_args(self) -> tuple[int, ...]:
        """The arguments as seccomp_data holds them."""
        top = M64 if self.mode == 64 else M32
        return tuple(a & top for a in self.args)

    def line(self) -> str:
        return f"{self.mode} {self.nr & M32:#x} " + " ".join(f"{a & M64:#x}" for a in self.args)

    def __str__(self) -> str:
        abi = "syscall" if self.mode == 64 else "int 0x80"
        return f"{abi} nr={self.nr:#x} args=[{', '.join(hex(a) for a in self.args)}]"


def signed32(v: int) -> int:
    v &= M32
    return v - (1 << 32) if v & 0x80000000 else v


def runs_syscall(value: int) -> bool:
    """Whether the kernel lets the syscall run for this return value of a
    single filter (LOG, and every value whose action part is ALLOW)."""
    return I.action_of(value) in (I.RET_LOG, I.RET_ALLOW)


def nonexistent(point: Point) -> bool:
    """No syscall of the point's ABI has this number: if it ran, -ENOSYS."""
    nr = point.nr & M32
    if point.mode == 32:
        return nr not in table("i386").by_nr
    return (nr not in table("x86_64").by_nr and nr not in table("x32").by_nr
            and nr not in SECCOMP_BYPASS_X86_64)


def kernel_outcome(value: int, point: Point) -> str:
    """The probe line the kernel produces when a single filter returns *value*.

    kernel/seccomp.c: ERRNO data is clamped to MAX_ERRNO; TRACE without a
    tracer and USER_NOTIF without a listener fail with -ENOSYS; an unknown
    action kills like KILL_PROCESS; a single-threaded KILL_THREAD kills the
    process too.  ALLOW and LOG run the syscall: only defined for numbers that
    do not exist, which then return -ENOSYS.
    """
    action, data = I.action_of(value), value & I.RET_DATA
    if action == I.RET_ERRNO:
        return f"ret {-min(data, MAX_ERRNO)}"
    if action == I.RET_TRAP:
        return f"trap {data} {signed32(point.nr)} {point.arch}"
    if action in (I.RET_TRACE, I.RET_USER_NOTIF):
        return f"ret {-ENOSYS}"
    if runs_syscall(value):
        if not nonexistent(point):
            raise ProbeError(f"{point}: return value {value:#x} would run a real syscall")
        return f"ret {-ENOSYS}"
    return f"signal {SIGSYS}"


def unsafe_returns(prog: Sequence[I.Insn]) -> list[int]:
    """Program counters whose RET could let a syscall run (RET A, ALLOW, LOG)."""
    bad = []
    for pc, ins in enumerate(prog):
        if ins.code == I.RET | I.RET_A or (ins.code == I.RET | I.K and runs_syscall(ins.k)):
            bad.append(pc)
    return bad


class Probe:
    """A built probe binary plus a scratch directory for filter files."""

    def __init__(self, exe: Path, workdir: Path):
        self.exe = exe
        self.workdir = workdir
        out = self._call([str(exe), "--ip"]).split()
        self.ip64, self.ip32 = int(out[0]), int(out[1])

    def _call(self, argv: list[str], stdin=None) -> str:
        try:
            proc = subprocess.run(argv, stdin=stdin, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, check=True)
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", "") or ""
            raise ProbeError(f"probe {' '.join(argv[1:])} failed: {err} {detail}".strip()) from err
        return proc.stdout

    def _write(self, prog: Sequence[I.Insn] | bytes, suffix: str = ".bpf") -> Path:
        data = prog if isinstance(prog, bytes) else I.pack(prog)
        fd, name = tempfile.mkstemp(suffix=suffix, dir=self.workdir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return Path(name)

    def data(self, point: Point) -> SeccompData:
        """The seccomp_data the kernel builds for *point* (ip included)."""
        ip = self.ip64 if point.mode == 64 else self.ip32
        return SeccompData(point.nr & M32, point.arch, point.seen_args, ip)

    def check(self, progs: Sequence[Sequence[I.Insn] | bytes]) -> list[str]:
        """For each program: ``ok`` if the kernel installs it, else ``errno N``."""
        paths = [self._write(p) for p in progs]
        try:
            out = self._call([str(self.exe), "--check", *map(str, paths)]).splitlines()
        finally:
            for p in paths:
                p.unlink()
        if len(out) != len(paths):
            raise ProbeError(f"probe --check answered {len(out)} lines for {len(paths)} programs")
        return out

    def run(self, prog: Sequence[I.Insn] | bytes, points: Sequence[Point], jobs: int = 2) -> list[str]:
        """The kernel's outcome for every point, in order (points split over *jobs*)."""
        if not points:
            return []
        path = self._write(prog)
        size = -(-len(points) // jobs)
        chunks = [points[i:i + size] for i in range(0, len(points), size)]
        files, procs = [], []
        try:
            for chunk in chunks:
                inp = self._write("".join(p.line() + "\n" for p in chunk).encode(), ".in")
                out = inp.with_suffix(".out")
                files += [inp, out]
                with open(inp, "rb") as fin, open(out, "wb") as fout:
                    procs.append(subprocess.Popen([str(self.exe), str(path)], stdin=fin,
                                                  stdout=fout, stderr=subprocess.PIPE))
            lines = []
            for proc, chunk, out in zip(procs, chunks, files[1::2]):
                _, err = proc.communicate(timeout=TIMEOUT_S)
                got = out.read_text().splitlines()
                if proc.returncode or len(got) != len(chunk):
                    raise ProbeError(f"probe exited {proc.returncode} after {len(got)} of "
                                     f"{len(chunk)} points: {err.decode(errors='replace')}")
                lines += got
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for f in files + [path]:
                f.unlink(missing_ok=True)
        errors = [(p, l) for p, l in zip(points, lines) if l.startswith("error")]
        if errors:
            raise ProbeError(f"{errors[0][0]}: {errors[0][1]}")
        return lines


_BUILT: dict[Path, Probe] = {}


def build_probe(workdir: Path) -> Probe:
    """Compile probe.c into *workdir* (non-PIE, so the syscall addresses that
    seccomp reports as instruction_pointer are the same in every run)."""
    if workdir in _BUILT:
        return _BUILT[workdir]
    workdir.mkdir(parents=True, exist_ok=True)
    exe = workdir / "probe"
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-no-pie", "-o", str(exe), str(SOURCE)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise ProbeError(f"cannot build the probe: {' '.join(cmd)}\n{proc.stderr}")
    _BUILT[workdir] = Probe(exe, workdir)
    return _BUILT[workdir]


@pytest.fixture(scope="session", name="probe")
def probe_fixture(tmp_path_factory) -> Probe:
    """The probe, built once per session; skips off x86_64 or without gcc."""
    need(platform.machine() == "x86_64", "the probe's inline assembly is x86_64 only")
    need(shutil.which("gcc") is not None, "gcc is needed to build tests/kernel/probe.c")
    pr = build_probe(tmp_path_factory.getbasetemp() / "seccomp-probe")
    need(pr.check([[I.ret(I.RET_ERRNO | 1)]]) == ["ok"], "the kernel refuses seccomp filters")
    return pr


@pytest.fixture(scope="session", name="int80")
def int80_fixture(probe) -> Probe:
    """The probe, where ``int $0x80`` reaches the kernel (IA32 emulation on)."""
    got = probe.run([I.ret(I.RET_ERRNO | 4000)], [Point(32, 20)], jobs=1)
    need(got == ["ret -4000"], f"int $0x80 is not available (IA32 emulation off?): {got}")
    return probe
