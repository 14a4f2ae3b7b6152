"""Trace every syscall of a command through seccomp user notification.

The unprivileged fallback of ``sbx trace`` (eBPF needs root). The child
installs a one-instruction filter, ``ret SECCOMP_RET_USER_NOTIF``, with
SECCOMP_FILTER_FLAG_NEW_LISTENER; the parent receives each notification,
records (pid, arch, nr, args) and answers SECCOMP_USER_NOTIF_FLAG_CONTINUE,
so the program runs unchanged while every syscall of it, of its threads and
of its forked children (filters are inherited) is counted exactly. The
filter needs no arch check: it notifies for every arch and each notification
carries data.arch, so int 0x80 calls are recorded as i386, never missed.

Handing the listener to the parent: once the filter is in place every
syscall of the child waits for an answer from a listener only the child
holds, so the child cannot send it (sendmsg would wait forever). Instead
the child reserves the lowest free descriptor number N, writes N to a pipe,
and calls seccomp(); the kernel gives the listener that lowest free number.
The parent copies the descriptor out of the child with
pidfd_getfd(pidfd, N) (same-uid ptrace access: works unprivileged), checks
it is "anon_inode:seccomp notify", and starts answering. The child makes no
syscall for the hand-off after the filter exists; the parent only spins for
the two syscalls between the child's write and its seccomp() call.

Exec failures come back CPython-subprocess style over a close-on-exec pipe.
If the filter cannot be installed the command is never executed.

Differences from an untraced run: no_new_privs is set (setuid bits are
ignored), the child is made dumpable for pidfd_getfd, a traced program
cannot install a listener of its own (seccomp says EBUSY), and if this
process dies every later syscall of the traced tasks fails with ENOSYS.

Also home of the two small seccomp primitives other kernel modules share:
``encode_program`` and ``install_filter``.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from bpf_filters import insn

from . import seccomp

# seccomp(2) and prctl(2) constants (include/uapi/linux/seccomp.h, prctl.h).
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}
SYS_PIDFD_GETFD = 438
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_SET_NO_NEW_PRIVS = 38

# ioctl numbers: _IOWR('!', 0, struct seccomp_notif) and
# _IOWR('!', 1, struct seccomp_notif_resp).
NOTIF_SIZE, RESP_SIZE = 80, 24
SECCOMP_IOCTL_NOTIF_RECV = 0xC0000000 | (NOTIF_SIZE << 16) | (0x21 << 8) | 0
SECCOMP_IOCTL_NOTIF_SEND = 0xC0000000 | (RESP_SIZE << 16) | (0x21 << 8) | 1
# _IOW('!', 4, __u64); SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (6.6+) wakes the
# traced task on the answering CPU: tar cf of /usr/share/doc (62,722 syscalls)
# traced in 535 ms with it, 958 ms without (median of 7; untraced 203 ms).
SECCOMP_IOCTL_NOTIF_SET_FLAGS = 0x40000000 | (8 << 16) | (0x21 << 8) | 4
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1
# struct seccomp_notif { u64 id; u32 pid; u32 flags;
#   struct seccomp_data { s32 nr; u32 arch; u64 ip; u64 args[6]; } }
_NOTIF = struct.Struct("=QIIiIQ6Q")
_RESP = struct.Struct("=QqiI")
_ZERO_NOTIF = bytes(NOTIF_SIZE)  # RECV rejects a buffer that is not zeroed

# classic BPF opcodes used by the hand-built programs here and in audit.py
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000
ARCH_NAMES = {AUDIT_ARCH_X86_64: "x86_64", AUDIT_ARCH_I386: "i386",
              0xC00000B7: "aarch64", 0x40000028: "arm"}

# Arguments whose values are counted, {(arch, nr): {argidx: mask}}: those a
# profile narrows with `when:` conditions, masked as sandbox.monitor masks
# them (int arguments: low 32 bits; socket type without SOCK_NONBLOCK and
# SOCK_CLOEXEC) so both tracers report the same values. Numbers from
# arch/x86/entry/syscalls/syscall_{64,32}.tbl; x32 without its 0x40000000 bit.
_INT, _LONG = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
_SOCK_TYPE = _INT & ~(0x800 | 0x80000)
_SPEC = {"socket": {0: _INT, 1: _SOCK_TYPE}, "socketpair": {0: _INT}, "ioctl": {1: _INT},
         "prctl": {0: _INT}, "clone": {0: _LONG}, "mmap": {2: _LONG}, "mmap2": {2: _INT},
         "mprotect": {2: _LONG}, "personality": {0: _INT}, "fcntl": {1: _INT},
         "fcntl64": {1: _INT}, "setsockopt": {1: _INT, 2: _INT}}
_COMMON = {"socket": 41, "socketpair": 53, "prctl": 157, "clone": 56, "mmap": 9,
           "mprotect": 10, "personality": 135, "fcntl": 72}
_NUMBERS = {
    "x86_64": {**_COMMON, "ioctl": 16, "setsockopt": 54},
    "x32": {**_COMMON, "ioctl": 514, "setsockopt": 541},
    "i386": {"socket": 359, "socketpair": 360, "ioctl": 54, "prctl": 172, "clone": 120,
             "mmap2": 192, "mprotect": 125, "personality": 136, "fcntl": 55,
             "fcntl64": 221, "setsockopt": 366},
}
ARG_SPECS: dict[tuple[str, int], dict[int, int]] = {
    (arch, nr): _SPEC[name] for arch, table in _NUMBERS.items() for name, nr in table.items()}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong, ctypes.c_ulong]


class NotifyError(Exception):
    """The supervisor could not be set up; the command did not run."""


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass(frozen=True)
class SyscallRecord:
    """One notified syscall: thread id (in the supervisor's pid namespace),
    AUDIT_ARCH_* value, number as the kernel saw it (x32 bit included) and
    the six raw 64-bit argument registers."""
    pid: int
    arch: int
    nr: int
    args: tuple[int, ...]


@dataclass
class TraceResult:
    """What a supervised run did, keyed like the eBPF monitor's results.

    ``calls``: (arch name, nr) -> count; arch name is "x86_64", "i386" or
    "x32" (nr then without the x32 bit). ``arg_values``: (arch name, nr,
    argidx) -> {masked value: count} for the arguments in ARG_SPECS.
    ``exit_status``: the raw wait status of the command.
    """
    calls: dict[tuple[str, int], int] = field(default_factory=dict)
    arg_values: dict[tuple[str, int, int], dict[int, int]] = field(default_factory=dict)
    exit_status: int = 0

    @property
    def returncode(self) -> int:
        """subprocess convention: exit code, or -signal if killed."""
        return os.waitstatus_to_exitcode(self.exit_status)


def arch_name(arch: int, nr: int) -> tuple[str, int]:
    """Name an (AUDIT_ARCH_*, nr) pair: x32 calls are x86_64 with bit 30 set."""
    if arch == AUDIT_ARCH_X86_64 and nr & X32_SYSCALL_BIT:
        return "x32", nr & ~X32_SYSCALL_BIT
    return ARCH_NAMES.get(arch, f"arch-{arch:#x}"), nr


def encode_program(insns: Iterable[tuple[int, int, int, int]]) -> bytes:
    """Pack (code, jt, jf, k) tuples as struct sock_filter[] bytes."""
    return insn.pack(insn.Insn(c, jt, jf, k & 0xFFFFFFFF) for c, jt, jf, k in insns)


class _Program:
    """A sock_fprog kept alive with its instruction buffer (built before
    fork so the child only makes the syscall)."""

    def __init__(self, program: bytes):
        if not program or len(program) % 8:
            raise ValueError("a classic BPF program is a non-empty multiple of 8 bytes")
        self.buf = ctypes.create_string_buffer(program, len(program))
        self.fprog = _SockFprog(len(program) // 8, ctypes.addressof(self.buf))
        self.ref = ctypes.byref(self.fprog)


def _seccomp_set_filter(prog: _Program, flags: int) -> int:
    """seccomp(SET_MODE_FILTER); returns the result or -errno (no raising:
    safe between fork and exec)."""
    r = _libc.syscall(ctypes.c_long(_SECCOMP_NR), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                      ctypes.c_long(flags), prog.ref)
    return r if r >= 0 else -ctypes.get_errno()


def install_filter(program: bytes, flags: int = 0) -> int:
    """Set no_new_privs and install *program* on the calling thread.

    Returns seccomp()'s result (a listener fd with NEW_LISTENER, else 0);
    raises OSError. Irreversible: call it in a child or a throwaway thread.
    """
    return seccomp.install_filter(program, flags)


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """Duplicate descriptor *targetfd* of the process behind *pidfd*."""
    r = _libc.syscall(ctypes.c_long(SYS_PIDFD_GETFD), ctypes.c_long(pidfd),
                      ctypes.c_long(targetfd), ctypes.c_long(0))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return r


_SECCOMP_NR = SYS_SECCOMP.get(os.uname().machine, -1)
NOTIFY_PROGRAM = encode_program([(BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF)])


@dataclass
class _Plan:
    """Everything the child needs, prepared in the parent before fork."""
    argv: list[bytes]
    env: dict[bytes, bytes]
    path: bytes
    prog: _Program


def _plan(argv: list[str], env: Mapping[str, str] | None) -> _Plan:
    if not argv:
        raise ValueError("argv must not be empty")
    env = dict(os.environ if env is None else env)
    return _Plan(argv=[os.fsencode(a) for a in argv],
                 env={os.fsencode(k): os.fsencode(v) for k, v in env.items()},
                 path=_resolve(argv[0], env.get("PATH", os.defpath)),
                 prog=_Program(NOTIFY_PROGRAM))


def _resolve(name: str, search: str) -> bytes:
    """The file to execute: *name* itself if it has a slash, else the first
    executable regular file called *name* along *search* (done here, not in
    the child, so the trace holds exactly one execve of the command)."""
    exe = os.fsencode(name)
    if b"/" in exe:
        return exe
    for directory in search.split(os.pathsep):
        path = os.path.join(os.fsencode(directory or "."), exe)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(errno.ENOENT, f"{os.strerror(errno.ENOENT)} in PATH", name)


def _child(plan: _Plan, sync_w: int, err_w: int) -> None:
    """Runs between fork and exec: install the filter, hand over, exec.

    Never returns. Failures are written to *err_w* as b"stage:errno".
    """
    stage, code = b"prctl", 0
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "")
        # pidfd_getfd needs the child dumpable; a parent that changed uid is not.
        if _libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1:
            _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        stage = b"reserve fd"
        lowest = os.dup(err_w)
        os.close(lowest)
        os.write(sync_w, lowest.to_bytes(4, "little"))
        stage = b"seccomp"
        r = _seccomp_set_filter(plan.prog, SECCOMP_FILTER_FLAG_NEW_LISTENER)
        if r < 0:
            raise OSError(-r, "")
        # From here on each syscall waits for the supervisor's answer.
        stage = b"exec"
        os.execve(plan.path, plan.argv, plan.env)
    except OSError as err:
        code = err.errno or errno.EINVAL
    except BaseException:
        code = errno.EINVAL
    try:
        os.write(err_w, stage + b":" + str(code).encode())
    finally:
        os._exit(127)


def _read_failure(err_r: int) -> tuple[str, int] | None:
    data = b""
    while chunk := os.read(err_r, 256):
        data += chunk
    if not data:
        return None
    stage, _, code = data.partition(b":")
    return stage.decode(), int(code or errno.EINVAL)


def _fetch_listener(pid: int, pidfd: int, sync_r: int, err_r: int, timeout: float) -> int:
    """Copy the child's listener into this process (see module docstring)."""
    data = os.read(sync_r, 4)
    if len(data) != 4:
        raise _ChildFailed()
    target = int.from_bytes(data, "little")
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(err_r, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    spins = 0
    while True:
        try:
            fd = pidfd_getfd(pidfd, target)
        except OSError as err:
            if err.errno == errno.ESRCH:  # it exited, having reported why
                raise _ChildFailed() from err
            if err.errno != errno.EBADF:  # EBADF: not installed yet
                raise NotifyError(
                    f"pidfd_getfd on pid {pid}: {err.strerror}"
                    + (" (ptrace access to the child refused)" if err.errno == errno.EPERM
                       else "")) from err
        else:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:seccomp notify":
                return fd
            os.close(fd)
        if poller.poll(0):
            raise _ChildFailed()
        if time.monotonic() > deadline:
            raise NotifyError(f"no seccomp listener appeared in pid {pid} within {timeout} s")
        spins += 1
        if spins < 200:
            os.sched_yield()
        else:
            time.sleep(0.0001)


class _ChildFailed(Exception):
    """The child exited or reported an error before handing over."""


class _Tally:
    """Counts notifications; raw keys in the hot loop, names at the end."""

    def __init__(self, arg_specs: Mapping[tuple[str, int], Mapping[int, int]]) -> None:
        self.calls: dict[tuple[int, int], int] = {}
        self.args: dict[tuple[int, int, int], dict[int, int]] = {}
        self.narrow: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {}
        raw_arch = {"x86_64": AUDIT_ARCH_X86_64, "x32": AUDIT_ARCH_X86_64,
                    "i386": AUDIT_ARCH_I386}
        for (name, nr), masks in arg_specs.items():
            if name not in raw_arch:
                raise ValueError(f"unknown arch {name!r} in arg_specs")
            key = (raw_arch[name], nr | X32_SYSCALL_BIT if name == "x32" else nr)
            self.narrow[key] = tuple(sorted(masks.items()))

    def result(self, status: int) -> TraceResult:
        res = TraceResult(exit_status=status)
        for (arch, nr), n in self.calls.items():
            res.calls[arch_name(arch, nr)] = n
        for (arch, nr, idx), values in self.args.items():
            name, plain = arch_name(arch, nr)
            res.arg_values[(name, plain, idx)] = values
        return res


def _supervise(listener: int, pid: int, pidfd: int, tally: _Tally,
               on_record: Callable[[SyscallRecord], None] | None) -> int:
    """Answer every notification until the last filtered task is gone.

    Returns the direct child's wait status (reaped as soon as it exits:
    the listener reports POLLHUP only once every task using the filter has
    been released, and a zombie child still holds it).
    """
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    calls, args, narrow = tally.calls, tally.args, tally.narrow
    unpack, pack = _NOTIF.unpack, _RESP.pack
    recv, send, ioctl = SECCOMP_IOCTL_NOTIF_RECV, SECCOMP_IOCTL_NOTIF_SEND, fcntl.ioctl
    status = None
    while True:
        events = poller.poll()
        hup = False
        for fd, ev in events:
            if fd == pidfd:
                status = os.waitpid(pid, 0)[1]
                poller.unregister(pidfd)
                continue
            if not ev & select.POLLIN:
                hup = True
                continue
            try:
                raw = ioctl(listener, recv, _ZERO_NOTIF)
            except InterruptedError:
                continue
            except OSError as err:
                if err.errno == errno.ENOENT:  # the task died before we looked
                    continue
                raise
            nid, tid, _flags, nr, arch, _ip, *argv = unpack(raw)
            try:
                ioctl(listener, send, pack(nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE))
            except OSError as err:
                if err.errno != errno.ENOENT:  # killed while waiting
                    raise
            key = (arch, nr)
            calls[key] = calls.get(key, 0) + 1
            masks = narrow.get(key)
            if masks:
                for i, mask in masks:
                    counts = args.setdefault((arch, nr, i), {})
                    value = argv[i] & mask
                    counts[value] = counts.get(value, 0) + 1
            if on_record is not None:
                on_record(SyscallRecord(tid, arch, nr, tuple(argv)))
        if hup:
            return status if status is not None else os.waitpid(pid, 0)[1]


def run_supervised(argv: list[str], env: Mapping[str, str] | None = None,
                   on_record: Callable[[SyscallRecord], None] | None = None,
                   *, arg_specs: Mapping[tuple[str, int], Mapping[int, int]] | None = None,
                   handoff_timeout: float = 5.0) -> TraceResult:
    """Run *argv* with every syscall (its own, its threads', its children's)
    reported to this process, and return what it called.

    *arg_specs* ({(arch, nr): {argidx: mask}}, default ARG_SPECS, the same
    shape as sandbox.monitor.ARG_SPECS) picks the argument values counted.
    Waits until the last traced task exits (like ``strace -f``). Raises
    OSError (FileNotFoundError, PermissionError...) if the command cannot
    be executed, NotifyError if the filter cannot be installed or handed
    over; in both cases nothing ran unfiltered.
    """
    if _SECCOMP_NR < 0:
        raise NotifyError(f"seccomp syscall number unknown on {os.uname().machine}")
    tally = _Tally(ARG_SPECS if arg_specs is None else arg_specs)
    plan = _plan(argv, env)
    sync_r, sync_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(plan, sync_w, err_w)
    os.close(sync_w)
    os.close(err_w)
    pidfd = listener = -1
    status = None
    try:
        pidfd = os.pidfd_open(pid)
        try:
            listener = _fetch_listener(pid, pidfd, sync_r, err_r, handoff_timeout)
            _set_sync_wakeup(listener)
        except _ChildFailed:
            status = os.waitpid(pid, 0)[1]
        else:
            status = _supervise(listener, pid, pidfd, tally, on_record)
        failure = _read_failure(err_r)
    finally:
        if status is None:
            _kill_and_reap(pid, pidfd)
        for fd in (sync_r, err_r, pidfd, listener):
            if fd >= 0:
                os.close(fd)
    if failure is not None:
        stage, code = failure
        if stage == "exec":
            raise OSError(code, os.strerror(code), argv[0])
        raise NotifyError(f"cannot trace {argv[0]!r}: {stage} failed in the child: "
                          f"{os.strerror(code)}")
    if listener < 0:
        raise NotifyError(f"child for {argv[0]!r} exited before installing the filter "
                          f"(wait status {status:#x})")
    return tally.result(status)


def _set_sync_wakeup(listener: int) -> None:
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
    except OSError as err:
        if err.errno != errno.EINVAL:  # kernels before 6.6: plain wake-ups
            raise NotifyError(f"SECCOMP_IOCTL_NOTIF_SET_FLAGS: {err.strerror}") from err


def _kill_and_reap(pid: int, pidfd: int) -> None:
    try:
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
