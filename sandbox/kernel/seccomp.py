"""Install seccomp filters (the one install routine of sbx) and read seccomp state from /proc.

A filter is laid out in C memory before fork (``PreparedFilter``), so that
installing it in the child is one seccomp(2) call. Every filter sbx installs
goes through ``PreparedFilter.install`` (``install_filter`` wraps it for
callers that install in a throwaway thread, like the audit marker).
"""
from __future__ import annotations

import _struct
import os

from . import libc

# include/uapi/linux/prctl.h and seccomp.h
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_GET_SECCOMP = 21
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
BPF_MAXINSNS = 4096       # include/uapi/linux/bpf_common.h: the kernel refuses longer programs


class SeccompError(libc.KernelError):
    pass


def native_arch() -> str:
    """The ``native`` architecture of profiles: the machine the kernel reports
    (uname), not this process's ABI. A filter judges the command sbx executes,
    whatever ABI sbx's own Python has; ``native`` names the kernel's main ABI,
    and the profile's ``arches:`` adds the others (i386, x32)."""
    return libc.machine()


def set_no_new_privs() -> None:
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
        raise libc.fail("prctl(PR_SET_NO_NEW_PRIVS)")


class PreparedFilter:
    """A filter laid out in C memory ahead of time, so installing it in a
    freshly forked child needs no allocation: one seccomp(2) call."""

    def __init__(self, program: bytes, flags: int = 0):
        if not program or len(program) % 8 or len(program) // 8 > BPF_MAXINSNS:
            raise SeccompError(0, f"invalid filter of {len(program)} bytes")
        self._buf = libc.Buffer(program)
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
        self._fprog = libc.Buffer(_struct.pack("=H6xQ", len(program) // 8, self._buf.addr))
        self.flags = flags
        self._nr = libc.sysno("seccomp")

    @property
    def listener(self) -> bool:
        """True if installing returns a user-notification listener descriptor."""
        return bool(self.flags & SECCOMP_FILTER_FLAG_NEW_LISTENER)

    def install(self) -> int:
        """seccomp(SET_MODE_FILTER) on the calling thread; no_new_privs must be set.
        Returns the listener fd with NEW_LISTENER, else 0. Raises SeccompError."""
        rc = libc.call("syscall", self._nr, SECCOMP_SET_MODE_FILTER, self.flags, self._fprog.addr)
        if rc < 0:
            e = libc.errno()
            raise SeccompError(e, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(e)}")
        return rc


def install_filter(program: bytes, flags: int = 0) -> int:
    """no_new_privs, then install *program* on the calling thread (irreversible:
    call it in a child or a throwaway thread)."""
    set_no_new_privs()
    return PreparedFilter(program, flags).install()


def action_available(action: int) -> bool:
    """SECCOMP_GET_ACTION_AVAIL for one return value."""
    buf = libc.Buffer(_struct.pack("=I", action))
    return libc.syscall("seccomp", SECCOMP_GET_ACTION_AVAIL, 0, buf.addr) == 0


def proc_status(pid: int | str = "self", proc: str = "/proc") -> dict[str, str]:
    """Seccomp-related lines of /proc/PID/status (Seccomp, Seccomp_filters, NoNewPrivs)."""
    out = {}
    with open(f"{proc}/{pid}/status") as fh:
        for line in fh:
            key, _, val = line.partition(":")
            if key in ("Name", "Seccomp", "Seccomp_filters", "NoNewPrivs", "PPid"):
                out[key] = val.strip()
    return out


class NoNewPrivs:
    """The spawn step that sets no_new_privs: execve can then grant nothing
    (no setuid, no file capabilities), and Landlock and seccomp may be applied
    without CAP_SYS_ADMIN."""

    stage = "no_new_privs"

    def apply(self) -> None:
        set_no_new_privs()
