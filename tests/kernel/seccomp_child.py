"""Test helpers: hand-built classic-BPF seccomp filters, installed in forked
children (tracked by the eBPF probe before they run, or read by the audit reader).

Independent of the project's compiler and of ``sandbox.kernel`` on purpose:
the monitor, the audit reader and the tracers are checked against filters
whose every instruction is written out here and installed with plain ctypes.
Syscall numbers come from the generated tables.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
import sys
import time
import traceback
from typing import Callable

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.restype = ctypes.c_int

from bpf_filters.syscalls import AUDIT_ARCH, table

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
