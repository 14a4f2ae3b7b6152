"""What ``sbx run`` needs a filter to allow: the calls that start and end the command.

Checked on the compiled program (the interpreter runs it for each call with
zero arguments on the native ABI), so the answer is the filter's, whatever
rules, groups, bases or complain mode produced it.  ``sbx run`` checks when it
compiles, before forking; a cached filter was stored only after passing.
(Interpreting on every run would cost the hot path ~50 ms of imports.)

Required:
- ``execve``: after installing the filter the child makes exactly one call,
  execve (kernel/spawn.py).  Denied with an errno, sbx can only report
  "cannot execute"; killed, the child dies of SIGSYS before the command ran;
  and if write and exit_group are denied as well, the child cannot even
  report, and dies of SIGSEGV (status 139) in glibc's _exit.
- ``exit_group``: how every program ends (glibc's exit and _exit, musl, Go,
  Rust).  Denied with an errno, glibc falls back to ``exit``, which ends only
  the calling thread (a program with threads never ends) and then to ``hlt``
  (SIGSEGV, status 139); Go crashes; killed, every exit is status 159.

Not required: ``write`` (programs that print nothing exist, and a denial
shows in ``sbx run --log``), ``exit`` (ends one thread; single-threaded
programs never call it).
"""
from __future__ import annotations

from bpf_filters import syscalls
from bpf_filters.compiler import Filter

from .diagnostics import Diagnostic, PolicyError, Position
from .profile import Profile
from .show import action_text

REQUIRED = {
    "execve": "the command is started with execve once the filter is installed",
    "exit_group": "programs end with exit_group (glibc, musl, Go, Rust); without it a program "
                  "with threads never ends and others die of a signal",
}


def launch_problems(flt: Filter, profile: Profile, native: str) -> list[tuple[str, Diagnostic]]:
    """(syscall, error) for each required call the filter denies, the error at the
    name in the rule (or at the action) that denies it, saying what to add where."""
    table = syscalls.table(native)
    token = syscalls.AUDIT_ARCH[native]
    denied = [(name, ex) for name in REQUIRED
              if (ex := flt.explain(token, table.nr(name))).action.denies]
    missing = ", ".join(name for name, _ in denied)
    specs = {(s.pos.file, s.pos.line, s.pos.col): s for s in profile.rules}
    out = []
    for name, ex in denied:
        o = ex.decision.rule.origin if ex.decision.rule is not None else None
        spec = specs.get((o.file, o.line, o.col)) if o is not None else None
        if spec is not None:
            pos = next((p for n, p in spec.names if n == name), spec.pos)
            msg = f"sbx run needs {name}, and this rule denies it ({action_text(spec.action)})"
            hint = (f"put `- allow: [{missing}]` above this rule" if spec.pos.file == profile.path
                    else f"add `- allow: [{missing}]` to the rules of {profile.path}: a profile's "
                         "own rules come before those of the profiles it extends")
        else:
            setting = getattr(profile, ex.decision.reason, None)      # default, bad_arch
            pos = getattr(setting, "pos", None) or Position(profile.path, 1, 1)
            msg = (f"sbx run needs {name}, and this profile leaves it to {ex.decision.reason}: "
                   f"{action_text(ex.action)}")
            hint = f"add `- allow: [{missing}]` to rules"
        out.append((name, Diagnostic(pos, f"{msg}: {REQUIRED[name]}", hint=hint)))
    return out


def require_launchable(flt: Filter, profile: Profile, native: str) -> None:
    """PolicyError (exit 2) if the command could not start or end under *flt*."""
    problems = launch_problems(flt, profile, native)
    if problems:
        raise PolicyError([d for _, d in problems], profile.sources)
