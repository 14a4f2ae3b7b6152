"""``sbx run``: compile (or fetch from cache) a profile's filter, then fork, confine, exec.

Heavy work happens in the parent before fork (CPython ``subprocess`` style):
the filter is compiled and laid out in C memory, the command path resolved.
The child only sets no_new_privs, installs the filter and calls execve; any
failure there comes back over a close-on-exec pipe and the command is never
run unconfined.  Kept import-light: YAML and the compiler load only on a
cache miss or when a denial has to be explained.
"""
from __future__ import annotations

import os
import _signal as signal     # the C module: signal.py's enums cost ~3 ms to import

from . import cache
from .kernel import seccomp

EXIT_USAGE = 2
EXIT_SANDBOX = 125        # sbx could not set up the sandbox; the command did not run
EXIT_NOEXEC = 126
EXIT_NOTFOUND = 127


class LaunchError(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class RunOptions:
    """What ``sbx run`` was asked to do (a plain class: dataclasses cost ms to import)."""

    def __init__(self, argv: list[str], profile: str = "default", mode: str = "enforce",
                 log: bool = False, monitor: bool = False, use_cache: bool = True,
                 env: dict | None = None, quiet: bool = False, on_denials=None, on_spawn=None):
        self.argv, self.profile, self.mode = argv, profile, mode
        self.on_spawn = on_spawn        # called with the child's pid right after fork
        self.on_denials = on_denials    # called with the list of report.Denial after exit
        self.log = log              # SECCOMP_FILTER_FLAG_LOG: audit every denial
        self.monitor = monitor      # eBPF denial monitor, summary after exit
        self.use_cache, self.env, self.quiet = use_cache, env, quiet


class Compiled:
    def __init__(self, program: bytes, name: str, path: str):
        self.program, self.name, self.path = program, name, path


def profile_path(ref: str) -> str | None:
    """Resolve a built-in name or a file path without importing the policy package."""
    if "/" in ref or ref.endswith((".yaml", ".yml")):
        return os.path.abspath(ref) if os.path.isfile(ref) else None
    from .paths import builtin_dir
    p = os.path.join(builtin_dir(), f"{ref}.yaml")
    return p if ref != "groups" and os.path.isfile(p) else None


def compile_profile(ref: str, mode: str = "enforce", use_cache: bool = True) -> Compiled:
    """The profile's filter bytes; raises PolicyError (exit 2) for a bad profile."""
    native = seccomp.native_arch()
    path = profile_path(ref)
    fp = cache.fingerprint() if use_cache else ""
    key = f"{path}\0{mode}\0{native}"
    if use_cache and path:
        hit = cache.lookup(key, fp)
        if hit:
            return Compiled(hit[0], hit[1], path)
    from .policy import build_filter, load_profile
    prof = load_profile(ref)
    flt = build_filter(prof, native=native, mode=mode)
    prog = flt.encode()
    if use_cache and path:
        cache.store(key, fp, prof.files, prog, prof.name)
    return Compiled(prog, prof.name, prof.path)


def resolve_command(cmd: str, env: dict) -> str:
    """The file execve will run, or LaunchError 127/126 with a clear message."""
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
    if found_noexec:
        raise LaunchError(f"{found_noexec}: permission denied (not executable)", EXIT_NOEXEC)
    if "/" in cmd:
        raise LaunchError(f"{cmd}: no such file", EXIT_NOTFOUND)
    raise LaunchError(f"{cmd}: command not found", EXIT_NOTFOUND)


_FORWARD = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT)


def spawn(argv: list[str], program: bytes | None, *, flags: int = 0, env: dict | None = None,
          wait_go: bool = False):
    """Fork a child that installs *program* and execs *argv*.

    Returns (pid, go_fd): with *wait_go* the child blocks until a byte is
    written to go_fd (so a monitor can start tracking it first).  Raises
    LaunchError if the child could not confine itself or exec.
    """
    env = dict(os.environ) if env is None else env
    exe = resolve_command(argv[0], env)
    # program None: no filter at all, for ``sbx trace`` (which records, not confines)
    prepared = seccomp.PreparedFilter(program, flags) if program is not None else None
    bargv = [os.fsencode(a) for a in argv]
    benv = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    bexe = os.fsencode(exe)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    go_r = go_w = -1
    if wait_go:
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:                                   # child: no Python-level work beyond this
        try:
            os.close(err_r)
            if wait_go:
                os.close(go_w)
                os.read(go_r, 1)
                os.close(go_r)
            for s in _FORWARD + (signal.SIGINT, signal.SIGQUIT):
                signal.signal(s, signal.SIG_DFL)
            if prepared is not None:
                prepared.install()
        except BaseException as e:                 # noqa: BLE001 - must never exec unconfined
            try:
                os.write(err_w, b"F" + str(e).encode(errors="replace")[:500])
            finally:
                os._exit(EXIT_SANDBOX)
        try:
            os.execve(bexe, bargv, benv)
        except OSError as e:
            try:
                os.write(err_w, b"E%d" % e.errno)
            finally:
                os._exit(EXIT_NOTFOUND if e.errno == 2 else EXIT_NOEXEC)
        os._exit(EXIT_SANDBOX)
    os.close(err_w)
    if wait_go:
        os.close(go_r)
    return pid, err_r, go_w, exe


def read_exec_status(err_r: int, pid: int, argv0: str) -> None:
    """Block until the child has exec'd (EOF) or reported a failure."""
    data = b""
    while True:
        chunk = os.read(err_r, 1024)
        if not chunk:
            break
        data += chunk
    os.close(err_r)
    if not data:
        return
    os.waitpid(pid, 0)
    if data[:1] == b"F":
        raise LaunchError(f"cannot confine {argv0}: {data[1:].decode(errors='replace')}; "
                          "the command was not run", EXIT_SANDBOX)
    errno_ = int(data[1:] or b"0")
    status = EXIT_NOTFOUND if errno_ == 2 else EXIT_NOEXEC
    raise LaunchError(f"{argv0}: cannot execute: {os.strerror(errno_)}", status)


def wait_status(pid: int) -> int:
    """Wait for *pid* while forwarding termination signals; return its raw wait status."""
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    old = {s: signal.signal(s, forward) for s in _FORWARD}
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)   # the terminal signals the child itself
    old_quit = signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                return status
            except ChildProcessError:
                return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGQUIT, old_quit)


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run(opts: RunOptions) -> int:
    """Run the command confined; returns the exit status sbx should exit with."""
    compiled = compile_profile(opts.profile, opts.mode, opts.use_cache)
    flags = seccomp.SECCOMP_FILTER_FLAG_LOG if (opts.log or opts.mode == "complain") else 0
    from .report import Reporter                      # audit/monitor channels, import-light
    reporter = Reporter(compiled, opts)
    reporter.start()
    try:
        pid, err_r, go_w, _exe = spawn(opts.argv, compiled.program, flags=flags, env=opts.env,
                                       wait_go=reporter.needs_go)
    except LaunchError:
        reporter.stop()
        raise
    if opts.on_spawn is not None:
        opts.on_spawn(pid)
    if reporter.needs_go:
        from .kernel.proc import wait_blocked
        wait_blocked(pid)              # seed the monitor while the child sits in its go-pipe read
        reporter.track(pid)
        os.write(go_w, b"g")
        os.close(go_w)
    try:
        read_exec_status(err_r, pid, opts.argv[0])
    except LaunchError:
        reporter.stop()
        raise
    status = wait_status(pid)
    reporter.finish(pid, status)
    return exit_code(status)
