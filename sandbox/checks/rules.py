"""The checks on a profile's syscall rules: dangerous allowances, defaults and ABIs, probed
calls answered wrongly, pointer conditions, shadowed rules, names, size.

Each checker takes the ``Context`` of one profile and appends findings to it.
"""
from __future__ import annotations

import errno as _errno
import re
from typing import Callable

from bpf_filters import syscalls
from bpf_filters.ir import Decision, Policy, evaluate
from bpf_filters.syscalls import fallbacks
from bpf_filters.syscalls.signatures import signature

from .. import provenance
from ..paths import display_path
from ..policy.constants import CONSTANTS
from ..policy.diagnostics import Diagnostic, Position
from ..policy.lower import resolve_arches
from ..policy.profile import Profile, RuleSpec, baseline_spec
from ..policy.show import action_text
from .registry import BY_ID, Finding, finding
from .vectors import Constraint, allowing, decisions

# --------------------------------------------------------------------------- context

class Context:
    """One profile under check: its policy, where its rules are written, the findings so far."""
    def __init__(self, profile: Profile, policy: Policy, native: str):
        self.profile, self.policy, self.native = profile, policy, native
        self.arches = [ap.arch for ap in policy.arches]
        self.specs = {(r.pos.file, r.pos.line, r.pos.col): r for r in profile.rules}
        base = baseline_spec(profile)           # the rules ``baseline:`` stands for
        if base is not None:
            self.specs[(base.pos.file, base.pos.line, base.pos.col)] = base
        self.out: list[Finding] = []
        self.via_default: dict[str, tuple] = {}     # what -> (check, syscall) the default lets in

    @property
    def first_line(self) -> Position:
        return Position(self.profile.path, 1, 1)

    def token(self, pos: Position) -> str:
        lines = self.profile.sources.get(pos.file, [])
        if not 1 <= pos.line <= len(lines):
            return ""
        return lines[pos.line - 1][pos.col - 1:pos.col - 1 + pos.length]

    def place(self, pos: Position, seen_from: Position | None = None) -> str:
        """"line N" within the file of *seen_from* (default: the profile), else file:line."""
        if pos.file == (seen_from.file if seen_from else self.profile.path):
            return f"line {pos.line}"
        return f"{display_path(pos.file)}:{pos.line}"

    def spec_of(self, dec: Decision) -> RuleSpec | None:
        o = dec.rule.origin if dec.rule is not None else None
        return self.specs.get((o.file, o.line, o.col)) if o is not None else None

    def where(self, dec: Decision, name: str) -> tuple[Position, str]:
        """Where the decision for *name* is written, and a phrase saying so."""
        spec = self.spec_of(dec)
        if spec is not None:
            pos = next((p for n, p in spec.names if n == name), spec.pos)
            via = self.token(pos)
            how = f"by `{action_text(spec.action)}` at {self.place(spec.pos, pos)}"
            if via.startswith("@"):
                how += f" (through {via})"
            if spec.conds:
                how += " when " + " and ".join(c.text for c in spec.conds)
            return pos, how
        setting = getattr(self.profile, dec.reason, None)
        pos = setting.pos if setting is not None and setting.pos else self.first_line
        return pos, f"by the profile's {dec.reason} action ({action_text(dec.action)})"

    def on(self, arches: list[str]) -> str:
        return "" if len(self.arches) == 1 or sorted(arches) == sorted(self.arches) \
            else f" on {', '.join(arches)}"


# --------------------------------------------------------------------------- dangerous allowances

def _with_flags(*flags: int) -> Callable[[set[int]], set[int]]:
    return lambda vals: {v | f for v in vals | {CONSTANTS["SIGCHLD"]} for f in flags}


def _exactly(*values: int) -> Callable[[set[int]], set[int]]:
    return lambda _vals: set(values)


_C = CONSTANTS
_NS_OTHER = ("CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWPID", "CLONE_NEWNET",
             "CLONE_NEWCGROUP")
USERFAULTFD_IOC_NEW = 0xAA00

# (check, syscalls, how the call is made dangerous (args), what to call it in messages)
DANGEROUS: tuple[tuple[str, tuple[str, ...], Constraint | None, str | None], ...] = (
    ("SBX110", ("ptrace",), None, None),
    ("SBX111", ("bpf",), None, None),
    ("SBX112", ("init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load"),
     None, None),
    ("SBX113", ("mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig",
                "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr", "mount_setattr"),
     None, None),
    ("SBX114", ("unshare", "clone"), {0: _with_flags(_C["CLONE_NEWUSER"])}, "{} with CLONE_NEWUSER"),
    ("SBX114", ("clone3",), None, "clone3 (flags unreadable, CLONE_NEWUSER included)"),
    ("SBX115", ("setns",), None, None),
    ("SBX116", ("process_vm_readv", "process_vm_writev"), None, None),
    ("SBX117", ("iopl", "ioperm"), None, None),
    # what reaches another process's objects: attach, read, send, operate, remove (not
    # the *get lookups alone, nor shmdt of one's own mapping)
    ("SBX118", ("shmat", "shmctl", "msgrcv", "msgsnd", "msgctl", "semop", "semtimedop",
                "semtimedop_time64", "semctl", "ipc"), None, None),
    ("SBX120", ("perf_event_open",), None, None),
    ("SBX121", ("keyctl", "add_key", "request_key"), None, None),
    ("SBX122", ("userfaultfd",), None, None),
    ("SBX122", ("ioctl",), {1: _exactly(USERFAULTFD_IOC_NEW)}, "ioctl(USERFAULTFD_IOC_NEW 0xaa00)"),
    ("SBX123", ("io_uring_setup", "io_uring_enter", "io_uring_register"), None, None),
    ("SBX124", ("open_by_handle_at",), None, None),
    ("SBX125", ("personality",), {0: _exactly(_C["READ_IMPLIES_EXEC"], _C["ADDR_NO_RANDOMIZE"])},
     "personality(READ_IMPLIES_EXEC or ADDR_NO_RANDOMIZE)"),
    ("SBX126", ("ioctl",), {1: _exactly(_C["TIOCSTI"])}, "ioctl(TIOCSTI 0x5412)"),
    ("SBX126", ("ioctl",), {1: _exactly(_C["TIOCLINUX"])}, "ioctl(TIOCLINUX 0x541c)"),
    ("SBX127", ("reboot", "swapon", "swapoff", "sethostname", "setdomainname", "settimeofday",
                "stime", "clock_settime", "clock_settime64", "acct", "syslog", "quotactl",
                "quotactl_fd", "vhangup", "fanotify_init"), None, None),
    ("SBX128", ("modify_ldt", "vm86", "vm86old"), None, None),
)

def _risk(check_id: str) -> str:
    """The first sentence of the check's description, as a clause."""
    text = BY_ID[check_id].full.split(". ")[0].rstrip(".")
    first = text.split()[0]
    return text if first[1:] != first[1:].lower() else text[0].lower() + text[1:]


def _hits(ctx: Context, name: str, constrain: Constraint | None) -> list[tuple]:
    """(arch, decision) for each target ABI where some call of *name* is let through."""
    out = []
    for arch in ctx.arches:
        nr = syscalls.table(arch).nr(name)
        found = allowing(ctx.policy, arch, nr, constrain) if nr is not None else None
        if found is not None:
            out.append((arch, found[1]))
    return out


def _report(ctx: Context, check_id: str, name: str, what: str, hits: list[tuple]) -> None:
    """One finding per place that allows *what*; allowances by an allowing default
    action are summed up in SBX101 instead of repeated here."""
    grouped: dict[tuple, list[str]] = {}
    for arch, dec in hits:
        if dec.reason == "default" and not ctx.policy.default.denies:
            ctx.via_default.setdefault(what, (check_id, name))
            continue
        grouped.setdefault(ctx.where(dec, name), []).append(arch)
    for (pos, how), arches in grouped.items():
        msg = f"{what} is allowed {how}{ctx.on(arches)}: {_risk(check_id)}"
        ctx.out.append(finding(check_id, pos, msg, names=[name], arches=arches))


def check_dangerous(ctx: Context) -> None:
    for check_id, names, constrain, label in DANGEROUS:
        for name in names:
            _report(ctx, check_id, name, label.format(name) if label else name,
                    _hits(ctx, name, constrain))
    flags = {"unshare": _NS_OTHER + ("CLONE_NEWTIME",), "clone": _NS_OTHER}
    for name, names in flags.items():
        open_flags = [f for f in names if _hits(ctx, name, {0: _with_flags(_C[f])})]
        if open_flags:
            hits = _hits(ctx, name, {0: _with_flags(*(_C[f] for f in open_flags))})
            _report(ctx, "SBX115", name, f"{name} with {', '.join(open_flags)}", hits)


def check_clone3(ctx: Context) -> None:
    grouped: dict[tuple, list[str]] = {}
    for arch in ctx.arches:
        nr = syscalls.table(arch).nr("clone3")
        for _args, dec in (decisions(ctx.policy, arch, nr) if nr is not None else ()):
            a = dec.action
            if a.denies and not (a.kind == "errno" and a.data == 38):
                grouped.setdefault((action_text(a),) + ctx.where(dec, "clone3"), []).append(arch)
                break
    for (act, pos, how), arches in grouped.items():
        ctx.out.append(finding(
            "SBX130", pos, f"clone3 is denied with {act} {how}{ctx.on(arches)}: glibc falls back to "
            "clone only on ENOSYS, so thread and process creation fail", names=["clone3"],
            arches=arches))


def _falls_back(probe, action) -> bool:
    """Does the library of *probe* fall back when the syscall is answered *action*?"""
    if action.kind != "errno":
        return False                   # a kill or a SIGSYS leaves nothing to fall back from
    return fallbacks.ANY_ERROR in probe.on or _errno.errorcode.get(action.data) in probe.on


def check_probed(ctx: Context) -> None:
    """SBX138: a syscall of the fallback table (bpf_filters.syscalls.fallbacks) denied, for
    every argument, with an answer some library does not fall back from; clone3 is SBX130's.

    A denial of some argument values only (``errno(EPERM): fchmodat2 when arg2 &
    S_ISUID``) refuses an operation of a syscall that plainly exists, as the kernel
    refuses operations: the caller is meant to see that error, not to fall back."""
    grouped: dict[tuple, list[str]] = {}
    for name in sorted(fallbacks.probed() - {"clone3"}):
        for arch in ctx.arches:
            nr = syscalls.table(arch).nr(name)
            probes = [f for f in fallbacks.for_syscall(name) if arch in f.arches]
            decided = list(decisions(ctx.policy, arch, nr)) if nr is not None and probes else []
            if any(not dec.action.denies or dec.action.kind == "notify" for _a, dec in decided):
                continue
            seen = set()
            for _args, dec in decided:
                if dec.action in seen:
                    continue
                seen.add(dec.action)
                broken = tuple(f for f in probes if not _falls_back(f, dec.action))
                if broken:
                    grouped.setdefault((name, dec.action, broken) + ctx.where(dec, name),
                                       []).append(arch)
    for (name, action, broken, pos, how), arches in grouped.items():
        by_errors: dict[tuple, list[str]] = {}
        for f in broken:
            by_errors.setdefault(f.on, []).append(f.library)
        why = "; ".join(f"{_and(libs)} fall{'s' if len(libs) == 1 else ''} back "
                        + ("on an error, not a kill or SIGSYS" if fallbacks.ANY_ERROR in on
                           else f"only on {_and(list(on))}") for on, libs in by_errors.items())
        ctx.out.append(finding(
            "SBX138", pos, f"{name} is denied with {action_text(action)} {how}{ctx.on(arches)}: "
            f"{why}, so the call fails instead", f"answer errno(ENOSYS): {name}",
            names=[name], arches=arches))


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


# --------------------------------------------------------------------------- profile-level actions

_FOREIGN = {"x86_64": ("i386", "x32"), "x32": ("x86_64", "i386"), "i386": (), "aarch64": ()}


def _setting_pos(ctx: Context, attr: str) -> Position:
    pos = getattr(ctx.profile, attr).pos
    return pos if pos is not None else ctx.first_line


def _find_word(ctx: Context, pos: Position, word: str) -> Position:
    """The position of *word* in the (possibly multi-line) value starting at *pos*."""
    lines = ctx.profile.sources.get(pos.file, [])
    for ln in range(pos.line, min(pos.line + 6, len(lines) + 1)):
        start = pos.col - 1 if ln == pos.line else 0
        m = re.compile(rf"\b{re.escape(word)}\b").search(lines[ln - 1], start)
        if m:
            return Position(pos.file, ln, m.start() + 1, len(word))
    return pos


def check_default_and_abis(ctx: Context) -> None:
    p = ctx.policy
    if not p.default.denies:
        risky = list(ctx.via_default)
        also = f", among them {', '.join(risky)}" if risky else ""
        names = list(dict.fromkeys(n for _, n in ctx.via_default.values()))
        ctx.out.append(finding("SBX101", _setting_pos(ctx, "default"), f"default: "
                               f"{action_text(p.default)} lets every syscall no rule names through"
                               f"{also}", names=names))
    for abi in _FOREIGN.get(ctx.native, ()):
        if abi in ctx.arches:
            continue
        dec = evaluate(p, syscalls.AUDIT_ARCH[abi], syscalls.table(abi).nr("getpid"))
        if dec.reason == "bad_arch" and not dec.action.denies:
            ctx.out.append(finding("SBX102", _setting_pos(ctx, "bad_arch"),
                                   f"bad_arch: {action_text(p.bad_arch)} lets {abi} calls through "
                                   "unfiltered (any rule can be bypassed by switching ABI)",
                                   arches=[abi]))
    for abi in ctx.arches:
        if abi != ctx.native:
            ctx.out.append(finding("SBX103", _find_word(ctx, _setting_pos(ctx, "arches"), abi),
                                   f"arches lists {abi} beside {ctx.native}: a second syscall table "
                                   "to get right, with 32-bit arguments and multiplexed calls",
                                   f"remove {abi} unless the sandboxed programs are built for it",
                                   arches=[abi]))


def check_unknown_and_kill_thread(ctx: Context) -> None:
    p = ctx.policy
    if not p.unknown.denies:
        ctx.out.append(finding("SBX104", _setting_pos(ctx, "unknown"),
                               f"unknown: {action_text(p.unknown)} lets syscalls newer than the "
                               f"Linux {syscalls.KERNEL} table through unreviewed"))
    elif not (p.unknown.kind == "errno" and p.unknown.data == 38):
        ctx.out.append(finding("SBX105", _setting_pos(ctx, "unknown"),
                               f"unknown: {action_text(p.unknown)}: programs probing newer syscalls "
                               "fall back only on ENOSYS"))
    for attr in ("default", "unknown", "bad_arch"):
        if getattr(p, attr).kind == "kill-thread":
            ctx.out.append(finding("SBX106", _setting_pos(ctx, attr),
                                   f"{attr}: kill-thread leaves the rest of the process running"))


# --------------------------------------------------------------------------- rule structure

def _is_null_test(c) -> bool:
    return c.mask is None and c.op in ("==", "!=", "in", "not in") and all(v == 0 for v in c.values)


def check_pointers(ctx: Context) -> None:
    resolved = resolve_arches(ctx.profile.arches.value, ctx.native)
    for spec in ctx.profile.rules:
        for c in spec.conds:
            if _is_null_test(c):
                continue
            hit: dict[str, list[str]] = {}
            for name in dict.fromkeys(n for n, _ in spec.names):
                for arch in resolved:
                    if name not in syscalls.table(arch):
                        continue
                    sig = signature(name, arch)
                    if sig and c.arg < len(sig) and sig[c.arg].pointer:
                        hit.setdefault(f"{name}'s {sig[c.arg].name}", []).append(arch)
            if hit:
                what = ", ".join(hit)
                arches = sorted({a for v in hit.values() for a in v})
                ctx.out.append(finding(
                    "SBX131", c.pos, f"`{c.text}` compares a pointer by value (arg{c.arg} is "
                    f"{what}): the filter sees the address, not the memory, which can change after "
                    "the check", names=[k.split("'")[0] for k in hit], arches=arches))


def _shadow_kind(first, later) -> str:
    if first.action.denies:
        return "SBX133" if first.action == later.action else "SBX134"
    return "SBX132" if later.action.denies else "SBX133"


def check_shadowing(ctx: Context) -> None:
    groups: dict[tuple, dict] = {}

    def add(kind, first_origin, later_origin, name, arch):
        g = groups.setdefault((kind, first_origin, later_origin), {"names": [], "arches": []})
        if name not in g["names"]:
            g["names"].append(name)
        if arch not in g["arches"]:
            g["arches"].append(arch)

    # a name written twice in one rule is loaded once (policy.expand); the rule keeps the repeats
    twice = {key: {n for n, _ in spec.twice} for key, spec in ctx.specs.items() if spec.twice}
    for ap in ctx.policy.arches:
        table = syscalls.table(ap.arch)
        for nr, rules in ap.rules.items():
            name = table.name(nr)
            for r in rules:
                o = r.origin
                if o is not None and name in twice.get((o.file, o.line, o.col), ()):
                    add("SBX135", o, o, name, ap.arch)
            first = next((r for r in rules if not r.conds), None)
            if first is None:
                continue
            for r in rules[rules.index(first) + 1:]:
                if r.origin != first.origin:
                    add(_shadow_kind(first, r), first.origin, r.origin, name, ap.arch)
    for (kind, f_origin, l_origin), g in groups.items():
        ctx.out.append(_shadow_finding(ctx, kind, f_origin, l_origin, g["names"], g["arches"]))


def _name_pos(ctx: Context, origin, name: str) -> tuple[Position, RuleSpec | None]:
    spec = ctx.specs.get((origin.file, origin.line, origin.col))
    if spec is None:
        return Position(origin.file, origin.line, origin.col), None
    return next((p for n, p in spec.names if n == name), spec.pos), spec


def _shadow_finding(ctx, kind, f_origin, l_origin, names, arches) -> Finding:
    names_txt = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    lpos, lspec = _name_pos(ctx, l_origin, names[0])
    fpos, fspec = _name_pos(ctx, f_origin, names[0])
    later = action_text(lspec.action) if lspec else l_origin.text
    earlier = action_text(fspec.action) if fspec else f_origin.text
    if kind == "SBX135":
        return finding(kind, lpos, f"{names_txt} named twice in this rule", names=names, arches=arches)
    msg = {
        "SBX132": f"`{later}` of {names_txt} never applies: the earlier `{earlier}` at "
                  f"{ctx.place(fpos, lpos)} allows it for every argument",
        "SBX133": f"`{later}` of {names_txt} repeats the earlier `{earlier}` at {ctx.place(fpos, lpos)}",
        "SBX134": f"`{later}` of {names_txt} is overridden by the earlier `{earlier}` at "
                  f"{ctx.place(fpos, lpos)}",
    }[kind]
    note = Diagnostic(fpos, "the earlier rule that decides first", severity="note")
    return finding(kind, lpos, msg + ctx.on(arches), notes=[note], names=names, arches=arches)


def check_names(ctx: Context) -> None:
    """Names written directly (not through a group) that match nothing on any target ABI.

    A name missing on only some of several listed ABIs is expected (chown32 for i386) and
    not reported; with ``native`` the profile may target other ABIs, so it is info only.
    """
    portable = "native" in (ctx.profile.arches.value or ["native"])
    for spec in ctx.profile.rules:
        for name, pos in spec.names:
            if ctx.token(pos).startswith("@"):
                continue
            if any(name in syscalls.table(a) for a in ctx.arches):
                continue
            where = ", ".join(ctx.arches)
            if portable:
                ctx.out.append(finding("SBX136", pos, f"{name} does not exist on {where}: the name "
                                       "matches nothing there", names=[name], arches=ctx.arches))
            else:
                ctx.out.append(finding("SBX137", pos, f"{name} exists on none of this profile's "
                                       f"ABIs ({where}): the name has no effect",
                                       names=[name], arches=ctx.arches))


def check_static_only(ctx: Context) -> None:
    """Allowed names whose provenance comment (written by sbx analyze, see sandbox.provenance)
    says they were only found statically, among the syscalls the rules above call dangerous."""
    sensitive = {n for _, names, constrain, _ in DANGEROUS if constrain is None for n in names}
    for spec in ctx.profile.rules:
        if spec.action.denies:
            continue
        for name, pos in spec.names:
            if name not in sensitive or ctx.token(pos).startswith("@"):
                continue
            line = ctx.profile.sources.get(pos.file, [""] * pos.line)[pos.line - 1]
            tag = provenance.parse(line.split(" #", 1)[1])[0] if " #" in line else None
            if tag == provenance.STATIC:
                ctx.out.append(finding("SBX144", pos, f"{name} was found only by static analysis, "
                                       "never in a trace: it may be an over-approximation",
                                       names=[name]))


# --------------------------------------------------------------------------- size

def check_size(ctx: Context) -> None:
    """Compile the policy as ``sbx run`` does: a program over the kernel's limit is refused."""
    from bpf_filters.compiler import ProgramTooLarge, compile_policy
    from ..policy import too_large
    try:
        compile_policy(ctx.policy)
    except ProgramTooLarge as err:
        d = too_large(err, ctx.profile)
        ctx.out.append(finding("SBX145", d.pos, d.message, d.hint, d.notes, arches=err.arches))


CHECKERS = (check_dangerous, check_default_and_abis, check_unknown_and_kill_thread, check_clone3,
            check_probed, check_pointers, check_shadowing, check_names, check_static_only, check_size)
