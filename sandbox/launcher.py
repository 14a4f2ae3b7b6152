"""``sbx run``: compile (or fetch from cache) a profile's filter, then start the command confined.

The profile becomes a filter (from the cache, or compiled), the filter and
the other confinement steps are handed to ``kernel.spawn``, the one routine
that forks, confines and execs; the reporter explains denials afterwards.
Kept import-light: YAML and the compiler load only on a cache miss or when a
denial has to be explained.
"""
from __future__ import annotations

import os
import sys

from . import cache
from .errors import LaunchError, wait_status_code
from .kernel import landlock, seccomp, spawn


class RunOptions:
    """What ``sbx run`` was asked to do (a plain class: dataclasses cost ms to import)."""

    def __init__(self, argv: list[str], profile: str = "default", mode: str = "enforce",
                 log: bool = False, monitor: bool = False, use_cache: bool = True,
                 env: dict | None = None, quiet: bool = False, on_denials=None, on_spawn=None,
                 allow_ports: tuple[int, ...] = (), json: bool = False, output: str | None = None,
                 keep_leftovers: bool = False):
        self.argv, self.profile, self.mode = argv, profile, mode
        self.on_spawn = on_spawn        # called with the child's pid right after fork
        self.on_denials = on_denials    # called with the list of report.Denial after exit
        self.log = log              # SECCOMP_FILTER_FLAG_LOG: audit every denial
        self.monitor = monitor      # eBPF denial monitor, summary after exit
        self.use_cache, self.env, self.quiet = use_cache, env, quiet
        self.allow_ports = tuple(allow_ports)   # --allow-port: TCP ports for bind and connect
        self.json, self.output = json, output   # summary as JSON; denials as JSON lines to a file
        # what the command leaves running is killed when it exits, unless the caller
        # follows it (sbx verify, which is the subreaper itself and stops it later)
        self.keep_leftovers = keep_leftovers


class Compiled:
    """A profile ready to run: its filter and its ``confine.Spec``, and the syscalls the
    filter answers errno(ENOSYS) whatever their arguments ({arch: numbers}: ``cache.Entry``)."""

    def __init__(self, program: bytes, name: str, path: str, spec,
                 fallbacks: dict[str, frozenset[int]] | None = None):
        self.program, self.name, self.path, self.spec = program, name, path, spec
        self.fallbacks = fallbacks or {}


def profile_path(ref: str) -> str | None:
    """Resolve a profile name (the search path: user, system, built-in) or a file path
    without importing the policy package; UnsafeProfile (exit 2) for a profile others
    could have written."""
    from .search import find, is_name
    if not is_name(ref):
        return os.path.abspath(ref) if os.path.isfile(ref) else None
    found = find(ref)
    return found.path if found is not None else None


def compile_profile(ref: str, mode: str = "enforce", use_cache: bool = True) -> Compiled:
    """The profile's filter and spec; raises PolicyError (exit 2) for a bad profile.

    The cache is used only where Landlock keeps it out of the command's reach
    (see ``sandbox.cache``).
    """
    from .confine import Spec
    native = seccomp.native_arch()
    path = profile_path(ref)
    use_cache = use_cache and path is not None and landlock.abi() > 0
    fp = cache.fingerprint() if use_cache else ""
    key = f"{path}\0{mode}\0{native}"
    if use_cache:
        hit = cache.lookup(key, fp)
        if hit is not None:
            try:
                return Compiled(hit.program, hit.name, path, Spec.from_lines(hit.spec),
                                hit.fallbacks)
            except ValueError:
                pass                      # a damaged entry: compile and replace it
    from .policy import build_filter, load_profile
    from .policy.launch import require_launchable
    from .policy.profile import confinement
    prof = load_profile(ref)
    flt = build_filter(prof, native=native, mode=mode)
    _require_meaning(flt, prof.name)
    require_launchable(flt, prof, native)       # before caching: a cached filter passed
    prog = flt.encode()
    spec = confinement(prof)
    fallbacks = _fallbacks(flt.policy)
    if use_cache:
        # the bytes of every file read decide the entry, not the names that led to them;
        # a profile looked for first by name must still be missing (see cache.ABSENT)
        deps = {os.path.abspath(f): digest for f, digest in prof.digests.items()}
        deps.update((p, cache.ABSENT) for p in prof.absent if p not in deps)
        cache.store(key, fp, deps, cache.Entry(prog, prof.name, spec.lines(), fallbacks))
    return Compiled(prog, prof.name, prof.path, spec, fallbacks)


def _require_meaning(flt, name: str) -> None:
    """LaunchError (125) when the compiled program decides anything otherwise than
    the profile says (``Filter.disagreements``): a compiler bug must never become
    a filter a command runs under, nor a cache entry."""
    bad = flt.disagreements()
    if bad:
        from bpf_filters.syscalls import AUDIT_ARCH
        token, nr, args = bad[0]
        arch = next((a for a, t in AUDIT_ARCH.items() if t == token), hex(token))
        raise LaunchError(f"cannot confine the command: the filter compiled from profile {name} "
                          f"decides syscall {nr} on {arch} with args "
                          f"({', '.join(hex(a) for a in args)}) otherwise than the profile says "
                          "(a bug in sbx's compiler: please report it with the profile); the "
                          "command was not run")


def _fallbacks(policy) -> dict[str, frozenset[int]]:
    """The syscalls *policy* answers errno(ENOSYS) whatever their arguments, per ABI."""
    import errno
    from bpf_filters.ir import Action, fixed_action
    enosys = Action("errno", errno.ENOSYS)
    return {ap.arch: frozenset(nr for nr in set(ap.rules) | ap.known
                               if fixed_action(policy, ap, nr) == enosys)
            for ap in policy.arches}


def say(text: str) -> None:
    """stderr, best effort: once the command has run, a closed or full stderr
    must not change the status sbx returns."""
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError):
        pass


def main(opts: dict) -> int:
    """``sbx run`` with parsed options (``run_options``): every sbx error becomes
    its message and exit status."""
    from .errors import SbxError
    try:
        return run(RunOptions(**opts))
    except SbxError as e:                        # LaunchError, PolicyError (file:line:col)
        say(e.render())
        return e.status
    except KeyboardInterrupt:                    # Ctrl-C before the command started
        say("sbx: interrupted; the command was not run")
        return 130


def _start_and_wait(opts: RunOptions, compiled: Compiled, confinement, reporter, env: dict):
    """Start the command confined and wait for it: (raw wait status, child)."""
    try:
        reporter.start()
        # As root, the kernel is asked to log every denial (audit type 1326), so
        # that sbx can say what was denied even in a plain run; the monitor sees
        # denials without it.
        log = opts.log or opts.mode == "complain" or (reporter.audit_fd >= 0 and not opts.monitor)
        flags = seccomp.SECCOMP_FILTER_FLAG_LOG if log else 0
        plan = spawn.prepare(opts.argv, env, steps=confinement.steps,
                             seccomp_filter=seccomp.PreparedFilter(compiled.program, flags),
                             wait_go=reporter.needs_go)
        child = spawn.start(plan)
    except BaseException:
        reporter.stop()
        raise
    finally:
        confinement.close()
    try:
        if opts.on_spawn is not None:
            opts.on_spawn(child.pid)
        if reporter.needs_go:
            from .kernel.proc import wait_blocked
            wait_blocked(child.pid)    # seed the monitor while the child sits in its go-pipe read
            reporter.track(child.pid)
            child.go()
        # Wait for the exec before any other work: the kernel queues a new child on its
        # parent's CPU and runs it once the parent blocks, so work done here first
        # delays the command by as much (measured: 1.3 ms on a 2-core machine).
        child.wait_exec()
    except BaseException:
        reporter.stop()
        child.abandon()
        raise
    # what sbx status shows: only where Landlock keeps the record out of the command's
    # reach; written while the command runs (its start time is the fork's, so the
    # record is the same as one written before the exec)
    from . import running
    where = running.record(child.pid, compiled.name, compiled.path, opts.mode) \
        if landlock.abi() > 0 else None
    try:
        status = spawn.wait(child.pid)
    finally:
        running.forget(where)
    return status, child


def run(opts: RunOptions) -> int:
    """Run the command confined; returns the exit status sbx should exit with."""
    try:
        spawn.harden_self()
    except OSError as err:
        raise LaunchError(f"cannot confine {opts.argv[0]}: sbx cannot protect itself from it: "
                          f"{err.strerror}; the command was not run") from err
    compiled = compile_profile(opts.profile, opts.mode, opts.use_cache)
    from . import confine
    from .report import Reporter                      # audit/monitor channels, import-light
    env = dict(os.environ) if opts.env is None else opts.env
    exe = spawn.resolve_command(opts.argv[0], env) if opts.argv else None
    from .paths import kept_from_writes
    protected = kept_from_writes(env, compiled.spec.caps)
    from .plan_cache import plan
    confinement = confine.prepare(compiled.spec, opts.argv[0], cache.location(), env,
                                  opts.allow_ports, exe, protected=protected, planner=plan,
                                  watched=(compiled.path,) if compiled.path else ())
    if not opts.quiet:
        if confinement.unenforced:
            say(f"sbx: profile {compiled.name} says landlock: best-effort; not enforced on this "
                  "kernel: " + "; ".join(confinement.unenforced))
        for note in confinement.notes:
            say(f"sbx: profile {compiled.name}: {note}")
        if opts.mode == "complain":
            # RET_LOG replaces only the seccomp filter's default denial: the Landlock
            # domain (files, ports, scopes) and the dropped capabilities are the same
            # as in enforce mode, so their refusals still fail the command
            say(f"sbx: complain mode: profile {compiled.name}'s default seccomp denial is logged, "
                "not enforced; files, ports, scopes and capabilities stay enforced")
    reporter = Reporter(compiled, opts.argv[0], mode=opts.mode,
                        summary=opts.log or opts.mode == "complain", monitor=opts.monitor,
                        quiet=opts.quiet, as_json=opts.json, output=opts.output,
                        on_denials=opts.on_denials,
                        context={"env": env, "exe": exe, "cache_dir": cache.location(),
                                 "protected": protected})
    from .aftermath import Snapshot
    try:
        project = Snapshot(os.getcwd())
    except OSError:                                   # the working directory is gone
        project = None
    before, was = None, None
    if not opts.keep_leftovers:
        before = spawn.children()
        was = spawn.adopt_orphans(1)
    try:
        status, child = _start_and_wait(opts, compiled, confinement, reporter, env)
    finally:
        if was is not None:
            # what the command left running dies here, on every path (a failed start
            # included): a leftover keeps the terminal once the shell has it back
            try:
                left = spawn.stop_leftovers(before)
            except OSError as err:
                left = []
                say(f"sbx: {err.strerror}")
            spawn.adopt_orphans(was)
            if left and not opts.quiet:
                say(f"sbx: {opts.argv[0]} left {len(left)} process{'es' if len(left) > 1 else ''} "
                    "running; killed (nothing of a sandbox outlives sbx run: it would keep the "
                    "terminal)")
    reporter.finish(child.pid, status)
    if project is not None and not opts.quiet:
        for change in project.changes():
            say(f"sbx: {change}")
    return wait_status_code(status)
