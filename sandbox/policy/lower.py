"""Lower a loaded Profile into the per-architecture policy IR.

Syscall names become numbers of each target ABI (a name the ABI lacks is
skipped there, with a warning); conditions get the width of the argument
they test, the bits the kernel really reads (``signatures.arg_width``: a
32-bit argument compares its low word only, a 16-bit one the low word under
a 0xffff mask; every i386 argument is 32-bit).

A profile's ``baseline:`` ("5.10") adds, per ABI, ``errno(ENOSYS)`` for each
syscall the tables date after that release and no rule names
(``_baseline_rules``), after all the profile's rules: a C library that probes
such a syscall gets the answer an older kernel gives, and falls back.

Two kinds of rules are added here, because a profile cannot be safe without
them:
- on i386, the multiplexers ``socketcall`` and ``ipc`` reach socket and
  System V IPC calls with their arguments in memory, so each of their calls is
  made at most as permissive as the direct syscall (``_guard_multiplexer``);
- a profile that uses ``notify`` denies ``seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)``:
  the newest filter's listener answers, so a command that installed its own
  could answer its own calls with "continue".
"""
from __future__ import annotations

from bpf_filters import syscalls
from bpf_filters.ir import M32, M64, Action, ArchPolicy, Cond, Origin, Policy, Rule
from bpf_filters.syscalls.signatures import arg_width, fits

from .diagnostics import Diagnostic, PolicyError
from .profile import Profile, baseline_spec


def _fit(value: int, width: int) -> int | None:
    """Two's complement of *value* in *width* bits, or None if it does not fit."""
    if fits(value, width):
        return value & ((1 << width) - 1)
    return None


def resolve_arches(arches: list[str], native: str) -> list[str]:
    out = []
    for a in arches:
        a = native if a == "native" else a
        if a not in out:
            out.append(a)
    return out


# i386 multiplexers: call number -> the direct syscall whose rules it must not bypass
# (net/socket.c SYSCALL_DEFINE2(socketcall); ipc/syscall.c ksys_ipc, which keeps
# only the low 16 bits of the call). SYS_SEND and SYS_RECV are sendto and
# recvfrom without an address.
SOCKETCALL = {1: "socket", 2: "bind", 3: "connect", 4: "listen", 5: "accept", 6: "getsockname",
              7: "getpeername", 8: "socketpair", 9: "sendto", 10: "recvfrom", 11: "sendto",
              12: "recvfrom", 13: "shutdown", 14: "setsockopt", 15: "getsockopt", 16: "sendmsg",
              17: "recvmsg", 18: "accept4", 19: "recvmmsg", 20: "sendmmsg"}
IPC = {1: "semop", 2: "semget", 3: "semctl", 4: "semtimedop", 11: "msgsnd", 12: "msgrcv",
       13: "msgget", 14: "msgctl", 21: "shmat", 22: "shmdt", 23: "shmget", 24: "shmctl"}
NEW_LISTENER = 8          # SECCOMP_FILTER_FLAG_NEW_LISTENER
EPERM = Action("errno", 1)


def _cond(c, name: str, arch: str) -> tuple[Cond | None, str | None]:
    """One condition in the IR at the argument's real width, or (None, why not)."""
    width = arg_width(arch, name, c.arg)
    vals = [_fit(v, width) for v in c.values]
    mask = _fit(c.mask, width) if c.mask is not None else None
    if any(v is None for v in vals) or (c.mask is not None and mask is None):
        return None, f"value does not fit the {width}-bit argument arg{c.arg} of {name} on {arch}"
    value = tuple(vals) if c.op in ("in", "not in") else vals[0]
    if width == 16:
        # The kernel reads 16 bits (umode_t, ipc's call): compare the low word
        # under a 0xffff mask, so that bits 16-31 cannot make a value look different.
        low = 0xFFFF if mask is None else mask
        if c.op in ("==", "!="):
            return Cond(c.arg, "&" + c.op, value, low, 32), None
        if c.op in ("&==", "&!="):
            return Cond(c.arg, c.op, value, low, 32), None
        return None, (f"arg{c.arg} of {name} is a 16-bit value the kernel reads from the low bits "
                      f"only: compare it with == or != (masked to 0xffff), not '{c.op}'")
    top = M32 if width == 32 else M64
    return Cond(c.arg, c.op, value, mask if mask is not None else top, width), None


def _decision(profile: Profile, name: str) -> tuple[Action, bool]:
    """What the profile decides for *name* before looking at arguments:
    (action, conditional). Conditional: some rule before the first
    unconditional one looks at arguments; the action is then that rule's."""
    for spec in profile.rules:
        if any(n == name for n, _ in spec.names):
            return spec.action, bool(spec.conds)
    return profile.default.value, False


def _guard_multiplexer(profile: Profile, rules: dict, table, mux: str, calls: dict[int, str],
                       mask: int, origin: Origin) -> list[str]:
    """Make each call of an i386 multiplexer (socketcall, ipc) at most as
    permissive as the direct syscall it reaches; returns the calls guarded.

    The multiplexer's arguments sit in memory seccomp cannot read, so where
    the direct syscall's rules look at arguments the call is denied outright,
    with the first denying action those rules use (EPERM if none)."""
    nr = table.nr(mux)
    if nr is None:
        return []
    mine = rules.get(nr, [])
    guards, guarded = [], []
    for call, direct in calls.items():
        action, conditional = _decision(profile, direct)
        if conditional:
            action = next((s.action for s in profile.rules if s.action.denies
                           and any(n == direct for n, _ in s.names)), None) or (
                profile.default.value if profile.default.value.denies else EPERM)
        if not action.denies:
            continue
        args = (call, 0, 0, 0, 0, 0)
        current = next((r.action for r in mine if r.matches(args)), profile.default.value)
        if current.denies:
            continue            # the profile already refuses this call of the multiplexer
        guards.append(Rule(action, (Cond(0, "&==", call, mask, 32),), origin))
        guarded.append(f"{mux}({direct})")
    if guards:
        rules[nr] = guards + mine
    return guarded


def _notify_guard(profile: Profile) -> bool:
    """Does the profile use notify anywhere (then the command must not be able
    to install a listener of its own: the newest filter's listener answers)."""
    actions = [s.action for s in profile.rules] + [profile.default.value, profile.unknown.value]
    return any(a is not None and a.kind == "notify" for a in actions)


def _baseline_rules(profile: Profile, rules: dict, table) -> None:
    """Append errno(ENOSYS) for the syscalls of *table* newer than the profile's
    baseline that no rule of the profile names (a named one keeps its rules, so
    a profile can still allow or deny a new syscall on purpose). The rules carry
    no conditions: they deny, so allows stay cacheable by the kernel."""
    spec = baseline_spec(profile)
    if spec is None:
        return
    named = {n for s in profile.rules for n, _ in s.names}
    rule = Rule(spec.action, (), spec.origin)
    for name in sorted(syscalls.newer_than(table.arch, profile.baseline.value) - named):
        rules.setdefault(table.nr(name), []).append(rule)


def lower(profile: Profile, native: str = "x86_64") -> Policy:
    """Build the IR; raises PolicyError for values that do not fit their argument."""
    diags: list[Diagnostic] = []
    arch_policies = []
    listener_guard = _notify_guard(profile)
    for arch in resolve_arches(profile.arches.value, native):
        table = syscalls.table(arch)
        rules: dict[int, list[Rule]] = {}
        for spec in profile.rules:
            for name, _pos in spec.names:
                nr = table.nr(name)
                if nr is None:
                    continue
                conds = []
                for c in spec.conds:
                    cond, why = _cond(c, name, arch)
                    if cond is None:
                        diags.append(Diagnostic(c.pos, why))
                        continue
                    conds.append(cond)
                rules.setdefault(nr, []).append(Rule(spec.action, tuple(conds), spec.origin))
        _baseline_rules(profile, rules, table)
        if arch == "i386":
            where = profile.arches.pos
            origin = Origin(where.file if where else "built-in", where.line if where else 0, 1,
                            "built-in: a multiplexed call is at most as permissive as the direct one")
            guarded = (_guard_multiplexer(profile, rules, table, "socketcall", SOCKETCALL, M32, origin)
                       + _guard_multiplexer(profile, rules, table, "ipc", IPC, 0xFFFF, origin))
            if guarded:
                profile.warnings.append(Diagnostic(
                    where, f"on i386 {', '.join(guarded)} cannot be checked for the direct "
                    "syscall's argument conditions (the arguments are in memory): denied",
                    severity="note"))
        if listener_guard and table.nr("seccomp") is not None:
            nr = table.nr("seccomp")
            origin = Origin("built-in", 0, 1, "built-in: only sbx may listen for a notify profile")
            guard = Rule(EPERM, (Cond(1, "&!=", 0, NEW_LISTENER, 32),), origin)
            rules[nr] = [guard] + rules.get(nr, [])
        known = frozenset(table.by_nr)
        arch_policies.append(ArchPolicy(arch, {k: tuple(v) for k, v in rules.items()}, known))
    if [d for d in diags if d.severity == "error"]:
        raise PolicyError(diags, profile.sources)

    def origin(setting):
        if setting.pos is None:
            return None
        return Origin(setting.pos.file, setting.pos.line, setting.pos.col,
                      profile.sources.get(setting.pos.file, [""] * setting.pos.line)[setting.pos.line - 1].strip())

    return Policy(arch_policies, profile.default.value, profile.unknown.value,
                  profile.bad_arch.value, profile.name,
                  {"default": origin(profile.default), "unknown": origin(profile.unknown),
                   "bad_arch": origin(profile.bad_arch)})
