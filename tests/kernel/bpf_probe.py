"""Hand-built classic BPF for the kernel tests: every filter here is written
instruction by instruction, independent of sbx's compiler and of ``sandbox.kernel``,
so the compiler, the monitor, the audit reader and the tracers are checked against
programs they did not make. Syscall numbers come from the generated tables.

Two ways to run one:

- in a forked child of the test process (``install``, ``fork_call``, ``spawn``):
  the filters of ``filter_by_nr``/``filter_arch``/``filter_program``, installed
  with plain ctypes, for the eBPF monitor and the audit reader to observe;
- in ``probe.c`` (``Probe``): any program (``bpf_filters.insn`` instructions,
  including ones the verifier must refuse) against syscalls made with the
  ``syscall`` instruction or ``int $0x80``, one forked child per point, the
  kernel's outcome as a line (``ret N``, ``trap DATA NR ARCH``, ``signal N``).
  ``kernel_outcome`` is the kernel's meaning of a single filter's return value
  in that same form, and ``Probe.check`` asks whether the kernel accepts a
  program at all.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from bpf_filters import insn as I
from bpf_filters.interp import SeccompData
from bpf_filters.syscalls import AUDIT_ARCH, table

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.restype = ctypes.c_int

# --------------------------------------------------------------------------- filters run in forked children

AUDIT_ARCH_X86_64 = AUDIT_ARCH["x86_64"]
AUDIT_ARCH_I386 = AUDIT_ARCH["i386"]
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
FLAG_LOG = 1 << 1
FLAG_NEW_LISTENER = 1 << 3
X32_BIT = 0x40000000

SYS_SECCOMP = table("x86_64").nr("seccomp")
NR_GETPPID = table("x86_64").nr("getppid")
NR_GETPGRP = table("x86_64").nr("getpgrp")
I386_NR_GETPID = table("i386").nr("getpid")
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1

_LD_ABS_W = 0x20
_JEQ_K = 0x15
_RET_K = 0x06
_INSN = struct.Struct("<HBBI")


def _rules_block(rules: dict[int, int]) -> list[tuple[int, int, int, int]]:
    """ld nr; for each rule: jeq NR ? ret ACTION : next; ret ALLOW."""
    block = [(_LD_ABS_W, 0, 0, 0)]
    for nr, action in rules.items():
        block += [(_JEQ_K, 0, 1, nr), (_RET_K, 0, 0, action)]
    return block + [(_RET_K, 0, 0, RET_ALLOW)]


def _pack(prog) -> bytes:
    assert all(jt < 256 and jf < 256 for _, jt, jf, _ in prog)
    return b"".join(_INSN.pack(*insn) for insn in prog)


def filter_by_nr(actions: dict[int, int], arch: int = AUDIT_ARCH_X86_64,
                 other_arch: int = RET_ALLOW) -> bytes:
    """ld arch; jeq arch; ld nr; (jeq nr -> ret action)*; ret allow."""
    return _pack([(_LD_ABS_W, 0, 0, 4), (_JEQ_K, 1, 0, arch), (_RET_K, 0, 0, other_arch),
                  *_rules_block(actions)])


def filter_arch(arch: int, action: int) -> bytes:
    """Return *action* for every syscall of *arch*, allow the rest."""
    return _pack([(_LD_ABS_W, 0, 0, 4), (_JEQ_K, 0, 1, arch),
                  (_RET_K, 0, 0, action), (_RET_K, 0, 0, RET_ALLOW)])


def filter_program(rules: dict[int, int], i386_rules: dict[int, int] | None = None) -> bytes:
    """A seccomp filter: x86_64 syscalls in *rules* get their action, i386
    ones (int 0x80) those in *i386_rules*; another arch, or i386 when
    *i386_rules* is None, is killed."""
    x64 = _rules_block(rules)
    prog = [(_LD_ABS_W, 0, 0, 4), (_JEQ_K, 0, len(x64), AUDIT_ARCH_X86_64), *x64]
    if i386_rules is not None:
        i386 = _rules_block(i386_rules)
        prog += [(_JEQ_K, 0, len(i386), AUDIT_ARCH_I386), *i386]
    prog.append((_RET_K, 0, 0, RET_KILL_PROCESS))
    return _pack(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes, flags: int = 0) -> int:
    """no_new_privs + seccomp(SET_MODE_FILTER); returns the listener fd if any."""
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    ret = libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog))
    if ret < 0:
        raise OSError(ctypes.get_errno(), "seccomp(SET_MODE_FILTER)")
    return ret


def call(nr: int, *args: int) -> tuple[int, int]:
    """syscall(nr, args...) -> (return value, errno)."""
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return ret, ctypes.get_errno()


def int80(nr: int, arg0: int = 0) -> int:
    """Make i386 syscall *nr* with int 0x80 from this 64-bit process."""
    code = (b"\x53"                                  # push rbx
            + b"\xbb" + struct.pack("<I", arg0)      # mov ebx, arg0
            + b"\xb8" + struct.pack("<I", nr)        # mov eax, nr
            + b"\xcd\x80"                            # int 0x80
            + b"\x5b\xc3")                           # pop rbx; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    ret = ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
    return ret


def fork_call(body: Callable[[], int]) -> int:
    """Run *body* in a forked child; return its pid (exit code = body())."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = body()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait(pid: int) -> int:
    """Reap *pid*; return its raw wait status."""
    return os.waitpid(pid, 0)[1]


def spawn(body: Callable[[], int | None], probe=None) -> int:
    """Fork a child that waits on a pipe (a blocking read, entered before it
    is tracked), gets tracked by *probe*, then runs *body* and exits with its
    return value (99 on an exception)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(write_fd)
            os.read(read_fd, 1)
            os.close(read_fd)
            code = body() or 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(read_fd)
    if probe is not None:
        probe.track_pid(pid)
    os.write(write_fd, b"x")
    os.close(write_fd)
    return pid


def reap(pid: int, timeout: float = 20.0) -> int:
    """Wait for child *pid*; its wait status."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise TimeoutError(f"child {pid} did not exit")
        time.sleep(0.005)


def drain(probe, quiet_polls: int = 3) -> list:
    """Every event until the ring buffer stays empty for *quiet_polls* polls."""
    events, quiet = [], 0
    while quiet < quiet_polls:
        batch = probe.poll(50)
        events += batch
        quiet = 0 if batch else quiet + 1
    return events


def wait_thread_gone(tid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/self/task/{tid}"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"thread {tid} still alive")
        time.sleep(0.005)


# --------------------------------------------------------------------------- the C probe

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
