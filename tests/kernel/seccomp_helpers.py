"""Helpers for kernel tests: hand-built filters, forked children, int 0x80.

Filters here are deliberately tiny and hand-assembled so these tests do not
depend on the project's compiler.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import traceback
from typing import Callable

from sandbox.kernel import notify

LD, JEQ, RET = notify.BPF_LD_W_ABS, notify.BPF_JEQ_K, notify.BPF_RET_K
AUDIT_ARCH_X86_64 = notify.AUDIT_ARCH_X86_64
AUDIT_ARCH_I386 = notify.AUDIT_ARCH_I386
RET_ALLOW = notify.SECCOMP_RET_ALLOW
RET_ERRNO = notify.SECCOMP_RET_ERRNO
RET_KILL_PROCESS = notify.SECCOMP_RET_KILL_PROCESS
RET_LOG = notify.SECCOMP_RET_LOG
RET_TRAP = 0x00030000
FLAG_LOG = notify.SECCOMP_FILTER_FLAG_LOG

NR_GETPPID = 110
NR_GETPGRP = 111
I386_NR_GETPID = 20

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def filter_by_nr(actions: dict[int, int], arch: int = AUDIT_ARCH_X86_64,
                 other_arch: int = RET_ALLOW) -> bytes:
    """ld arch; jeq arch; ld nr; (jeq nr -> ret action)*; ret allow."""
    insns = [(LD, 0, 0, 4), (JEQ, 1, 0, arch), (RET, 0, 0, other_arch), (LD, 0, 0, 0)]
    for nr, action in actions.items():
        insns += [(JEQ, 0, 1, nr), (RET, 0, 0, action)]
    insns.append((RET, 0, 0, RET_ALLOW))
    return notify.encode_program(insns)


def filter_arch(arch: int, action: int) -> bytes:
    """Return *action* for every syscall of *arch*, allow the rest."""
    return notify.encode_program([(LD, 0, 0, 4), (JEQ, 0, 1, arch),
                                  (RET, 0, 0, action), (RET, 0, 0, RET_ALLOW)])


def syscall(nr: int, *args: int) -> tuple[int, int]:
    """Raw x86_64 syscall: (return value, errno)."""
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return r, ctypes.get_errno()


_int80_pages: dict[int, Callable[[], int]] = {}


def int80(nr: int) -> int:
    """Make i386 syscall *nr* (no arguments) via int 0x80; returns eax."""
    if nr not in _int80_pages:
        page = mmap.mmap(-1, mmap.PAGESIZE,
                         prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        # mov eax, nr ; int 0x80 ; ret
        page.write(b"\xb8" + nr.to_bytes(4, "little") + b"\xcd\x80\xc3")
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        fn = ctypes.CFUNCTYPE(ctypes.c_int)(addr)
        fn._page = page  # keep the mapping alive
        _int80_pages[nr] = fn
    return _int80_pages[nr]()


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
