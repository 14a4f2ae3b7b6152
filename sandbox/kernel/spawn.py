"""Start a confined command: prepare -> fork -> confine -> exec -> report (the one spawn routine).

``sbx run``, ``sbx trace`` (both tracers) and ``sbx verify`` start their
command here, so they share one protocol and one map of exit statuses.

The parent does the heavy work before fork (CPython ``subprocess``'s
discipline): it resolves the command, and lays out every confinement step in
C memory. The child then only
  1. restores the signal dispositions and mask sbx inherited (Python ignores
     SIGPIPE and SIGXFSZ and handles SIGINT; a command must not inherit that),
  2. applies the steps in order (no_new_privs, capabilities, Landlock ...),
  3. waits for the parent's go byte if asked (so a monitor can track it first;
     anything but the byte, such as the parent dying, means: never exec),
  4. installs the seccomp filter, handing a notification listener over first
     if the filter makes one, and
  5. calls execve.
A failure in 1-4 comes back over a close-on-exec pipe as ``F`` and is
``LaunchError`` 125 (the command did not run); an execve failure comes back as
``E`` and is 127 (no such file) or 126. The command never runs with less
confinement than it was prepared with.
"""
from __future__ import annotations

import _signal as signal     # the C module: signal.py's enums cost ~3 ms to import
import os

from ..errors import EXIT_NOEXEC, EXIT_NOTFOUND, EXIT_SANDBOX, LaunchError, exec_status
from . import libc
from .libc import KernelError

_GO = b"g"
PR_SET_DUMPABLE = 4
PR_SET_PDEATHSIG = 1


def resolve_command(cmd: str, env: dict) -> str:
    """The file execve will run, or LaunchError 127/126 with a clear message.

    Resolved here, before fork, so that a trace holds exactly one execve of
    the command and the child never searches PATH.
    """
    if "/" in cmd:
        candidates = [cmd]
    else:
        path = env.get("PATH", os.defpath)
        candidates = [os.path.join(d or ".", cmd) for d in path.split(os.pathsep)]
    found_noexec = None
    for c in candidates:
        if os.path.isfile(c):
            if os.access(c, os.X_OK):
                return c
            found_noexec = found_noexec or c
        elif "/" in cmd and os.path.isdir(c):
            raise LaunchError(f"{cmd}: is a directory", EXIT_NOEXEC)
        elif "/" in cmd and os.path.exists(c):
            raise LaunchError(f"{cmd}: not a regular file", EXIT_NOEXEC)
    if found_noexec:
        raise LaunchError(f"{found_noexec}: permission denied (not executable)", EXIT_NOEXEC)
    if "/" in cmd:
        raise LaunchError(f"{cmd}: no such file", EXIT_NOTFOUND)
    raise LaunchError(f"{cmd}: command not found", EXIT_NOTFOUND)


class Plan:
    """Everything the child needs, prepared in the parent before fork."""

    __slots__ = ("argv", "exe", "bexe", "bargv", "benv", "steps", "filter", "wait_go", "sigmask",
                 "resets", "parent")

    def __init__(self, argv, exe, env, steps, seccomp_filter, wait_go, sigmask):
        self.argv, self.exe, self.steps, self.filter = argv, exe, steps, seccomp_filter
        self.wait_go, self.sigmask = wait_go, sigmask
        self.resets = _signals_to_reset()
        self.parent = os.getpid()
        self.bexe = os.fsencode(exe)
        self.bargv = [os.fsencode(a) for a in argv]
        self.benv = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}


def prepare(argv: list[str], env: dict | None = None, *, steps: tuple = (),
            seccomp_filter=None, wait_go: bool = False) -> Plan:
    """Resolve the command and assemble the child's work.

    *steps* are objects with a ``stage`` name and an ``apply()`` method run in
    the child in order, before the go byte; *seccomp_filter* is a
    ``seccomp.PreparedFilter`` installed after it (None: no filter, for the
    eBPF tracer, which observes rather than confines).
    """
    if not argv:
        raise LaunchError("missing command to run", 2)
    env = dict(os.environ) if env is None else dict(env)
    exe = resolve_command(argv[0], env)
    sigmask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    return Plan(list(argv), exe, env, tuple(steps), seccomp_filter, wait_go, sigmask)


class Child:
    """A forked child that is confining itself; the parent's handle on it."""

    def __init__(self, pid: int, plan: Plan, err_r: int, go_w: int, sync_r: int):
        self.pid, self.plan = pid, plan
        self._err_r, self._go_w, self._sync_r = err_r, go_w, sync_r

    @property
    def exe(self) -> str:
        return self.plan.exe

    @property
    def err_fd(self) -> int:
        """Readable once the child reported a failure or exec'd (EOF)."""
        return self._err_r

    def go(self) -> None:
        """Let a child prepared with ``wait_go`` continue to its filter and execve."""
        os.write(self._go_w, _GO)
        os.close(self._go_w)
        self._go_w = -1

    def listener_number(self) -> int | None:
        """The descriptor number the child's notification listener will get, or
        None if the child failed before installing its filter."""
        data = os.read(self._sync_r, 4)
        os.close(self._sync_r)
        self._sync_r = -1
        return int.from_bytes(data, "little") if len(data) == 4 else None

    def failure(self) -> LaunchError | None:
        """Block until the child has exec'd (EOF) or reported a failure; return
        that failure (the child is then reaped) or None."""
        data = b""
        while True:
            chunk = os.read(self._err_r, 1024)
            if not chunk:
                break
            data += chunk
        os.close(self._err_r)
        self._err_r = -1
        if not data:
            return None
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:       # already reaped by the caller
            pass
        return _decode_failure(data, self.plan.argv[0])

    def wait_exec(self) -> None:
        """``failure()``, raised."""
        err = self.failure()
        if err is not None:
            raise err

    def abandon(self) -> None:
        """Kill a child that must not run (it still waits for its go byte) and reap it."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.close()

    def close(self) -> None:
        for name in ("_err_r", "_go_w", "_sync_r"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


def start(plan: Plan) -> Child:
    """Fork; the child confines itself and execs (see the module docstring)."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    go_r = go_w = sync_r = sync_w = -1
    if plan.wait_go:
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
    if plan.filter is not None and plan.filter.listener:
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as err:
        for fd in (err_r, err_w, go_r, go_w, sync_r, sync_w):
            if fd >= 0:
                os.close(fd)
        raise LaunchError(f"cannot start {plan.argv[0]}: fork: {err.strerror}{_fork_hint(err)}; "
                          "the command was not run", EXIT_SANDBOX) from err
    if pid == 0:
        _child(plan, err_w, go_r, sync_w)          # never returns
    for fd in (err_w, go_r, sync_w):
        if fd >= 0:
            os.close(fd)
    return Child(pid, plan, err_r, go_w, sync_r)


def _fork_hint(err: OSError) -> str:
    """Why fork said EAGAIN, when it is the user's process limit (RLIMIT_NPROC,
    which counts every process of the real uid; root is exempt)."""
    import errno
    import resource
    if err.errno != errno.EAGAIN or os.getuid() == 0:
        return ""
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft == resource.RLIM_INFINITY:
        return " (the system is out of processes or memory)"
    return (f" (uid {os.getuid()} has reached its limit of {soft} process"
            f"{'es' if soft != 1 else ''} at once: RLIMIT_NPROC, ulimit -u)")


def _signals_to_reset() -> tuple[int, ...]:
    """The signals whose disposition the child sets back to default, as a freshly
    started program expects them: those Python handles, and SIGPIPE and SIGXFSZ,
    which Python ignores. Dispositions sbx inherited as ignored stay ignored.
    Found in the parent: the child's every step between fork and exec delays
    the command (each page Python touches there is copied first)."""
    out = []
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        handler = signal.getsignal(sig)
        if callable(handler) or (sig in (signal.SIGPIPE, signal.SIGXFSZ)
                                 and handler == signal.SIG_IGN):
            out.append(sig)
    return tuple(out)


def _restore_signals(resets: tuple[int, ...], mask) -> None:
    """The dispositions of ``_signals_to_reset`` to default; the signal mask sbx inherited."""
    for sig in resets:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _child(plan: Plan, err_w: int, go_r: int, sync_w: int) -> None:
    """Runs between fork and exec. Never returns."""
    stage = "signals"
    try:
        # Dumpable until execve decides afresh: a parent that changed uid, or
        # that made itself non-dumpable, is not, and then even its own user
        # could not copy the notification listener out (pidfd_getfd).
        libc.prctl(PR_SET_DUMPABLE, 1)
        # The command dies with sbx: SIGKILL when sbx exits for any reason
        # (a supervisor's SIGKILL included). Checked after setting, in case sbx
        # was already gone.
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise libc.fail("prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != plan.parent:
            raise OSError(0, "sbx exited before the command could start")
        _restore_signals(plan.resets, plan.sigmask)
        for step in plan.steps:
            stage = step.stage
            step.apply()
        if go_r >= 0:
            stage = "waiting for the monitor"
            if os.read(go_r, 1) != _GO:
                raise OSError(0, "sbx stopped before the command could be started")
        if plan.filter is not None:
            stage = "seccomp"
            if sync_w >= 0:
                # The listener gets the lowest free descriptor number: tell the
                # parent which (it copies it with pidfd_getfd), then install. No
                # syscall may follow the install until execve: each would wait
                # for an answer from a listener only this process holds.
                lowest = os.dup(err_w)
                os.close(lowest)
                os.write(sync_w, lowest.to_bytes(4, "little"))
            plan.filter.install()
    except BaseException as e:                     # noqa: BLE001 - must never exec unconfined
        err = e.errno if isinstance(e, OSError) and e.errno else 0
        if isinstance(e, KernelError):             # its message names the call that failed
            msg = e.strerror
        else:
            detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            msg = f"{stage}: {detail or type(e).__name__}"
        try:
            os.write(err_w, b"F%d\0%s" % (err, msg.encode(errors="replace")[:500]))
        finally:
            os._exit(EXIT_SANDBOX)
    try:
        os.execve(plan.bexe, plan.bargv, plan.benv)
    except OSError as e:
        try:
            os.write(err_w, b"E%d" % (e.errno or 0))
        finally:
            os._exit(exec_status(e.errno or 0))
    os._exit(EXIT_SANDBOX)


def _decode_failure(data: bytes, argv0: str) -> LaunchError:
    if data[:1] == b"F":
        _err, _, msg = data[1:].partition(b"\0")
        return LaunchError(f"cannot confine {argv0}: {msg.decode(errors='replace')}; "
                           "the command was not run", EXIT_SANDBOX)
    try:
        errno_ = int(data[1:] or b"0")
    except ValueError:
        errno_ = 0
    return LaunchError(f"{argv0}: cannot execute: {os.strerror(errno_)}", exec_status(errno_))


__all__ = ["Child", "Plan", "adopt_orphans", "children", "prepare", "resolve_command", "start",
           "stop_leftovers"]


# Signals sbx passes on to the command when another process sends them to sbx
# (a supervisor's SIGTERM, kill -INT, kill -HUP ...). The same signals coming
# from the terminal (Ctrl-C, Ctrl-\\, a window resize, a hangup) reach the
# whole foreground process group, the command included, so sbx does not
# repeat them; the kernel marks those with si_code SI_KERNEL (> 0).
FORWARD = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGCONT, signal.SIGWINCH)


def wait(pid: int, every=None, interval: float = 0.02) -> int:
    """Wait for *pid*, forwarding the signals in FORWARD that other processes
    send to sbx; return its raw wait status. The signals are blocked and taken
    with sigwaitinfo, so sbx never dies of them while the command runs.
    *every*, if given, is called at least every *interval* seconds meanwhile
    (the eBPF tracer drains its ring buffer so)."""
    watch = set(FORWARD) | {signal.SIGCHLD}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, watch)
    try:
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return 0
            if done:
                return status
            if every is None:
                info = signal.sigwaitinfo(watch)
            else:
                every()
                info = signal.sigtimedwait(watch, interval)
                if info is None:
                    continue
            if info.si_signo == signal.SIGCHLD or info.si_code > 0 or info.si_pid == pid:
                continue
            try:
                os.kill(pid, info.si_signo)
            except ProcessLookupError:
                pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def adopt_orphans(on: int = 1) -> int:
    """Set this process's child-subreaper flag to *on*; returns what it was, to
    be given back. As subreaper, what the command leaves running when it exits
    (a background job, a daemon that forked twice) is reparented to sbx, not to
    init, so that ``stop_leftovers`` finds it."""
    buf = libc.Buffer(size=4)
    was = int.from_bytes(buf.read(4), "little") \
        if libc.prctl(PR_GET_CHILD_SUBREAPER, buf.addr) == 0 else 0
    if libc.prctl(PR_SET_CHILD_SUBREAPER, on) != 0:
        raise libc.fail("prctl(PR_SET_CHILD_SUBREAPER)")
    return was


def children() -> set[int]:
    """This process's children, zombies included: each thread lists its own in
    /proc/self/task/TID/children; where the kernel lacks that file
    (CONFIG_PROC_CHILDREN), from the parent field of every /proc/PID/stat."""
    out: set[int] = set()
    tasks = os.listdir("/proc/self/task")
    if os.path.exists(f"/proc/self/task/{tasks[0]}/children"):
        for task in tasks:
            try:
                with open(f"/proc/self/task/{task}/children") as fh:
                    out.update(int(p) for p in fh.read().split())
            except OSError:
                continue
        return out
    from .proc import stat_fields
    me = str(os.getpid()).encode()
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(name)
            if fields is not None and fields[1] == me:      # proc(5) field 4: the parent
                out.add(int(name))
    return out


def stop_leftovers(before: set[int]) -> list[int]:
    """SIGKILL and reap what the command left running, now that it has exited
    (sbx is its subreaper: ``adopt_orphans``); returns their pids. A process
    that outlived ``sbx run`` would keep the terminal it inherited and read what
    is typed there once the shell has it back, or take the foreground. *before*:
    children sbx had before the command (not the command's). A pid cannot be
    reused before sbx reaps it, so no unrelated process is signalled. Killing
    one reparents its own children to sbx: repeated until none is left."""
    import time
    stopped: list[int] = []
    deadline = time.monotonic() + 10.0       # a process in uninterruptible sleep may never die
    while time.monotonic() < deadline:
        left = sorted(children() - before)
        if not left:
            return stopped
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in left:
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.001)
        stopped += [p for p in left if p not in stopped]
    survivors = sorted(children() - before)
    if survivors:
        raise OSError(0, f"{len(survivors)} process{'es' if len(survivors) > 1 else ''} the "
                         f"command left (pid {', '.join(map(str, survivors[:5]))}) did not die "
                         "within 10 s of SIGKILL")
    return stopped


def harden_self() -> None:
    """Keep the calling process (the launcher, which outlives the confined
    command unconfined) out of the command's reach: not dumpable, so that no
    ptrace-mode access check (/proc/PID/mem, ptrace, process_vm_*,
    pidfd_getfd) can pass for a process of the same user without
    CAP_SYS_PTRACE. The Landlock domain of every run is the first line; this
    is the second, and it holds where Landlock is missing. The child makes
    itself dumpable again until execve decides (see ``_child``)."""
    if libc.prctl(PR_SET_DUMPABLE, 0) != 0:
        raise libc.fail("prctl(PR_SET_DUMPABLE, 0)")
