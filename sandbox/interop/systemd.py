"""Export to systemd: a ``[Service]`` drop-in that runs the workload, and says what it loosens.

systemd's ``SystemCallFilter=`` names syscalls and nothing else.  Where a
profile decides a syscall by its arguments, the drop-in allows the call (a
unit that kills its own service helps no one) and expresses with systemd's
own settings what it can:

- ``socket`` by address family: ``RestrictAddressFamilies=`` (the families
  for which some call is allowed);
- ``clone``/``unshare``/``setns`` namespace flags: ``RestrictNamespaces=``
  (the namespace types no call may create or join); systemd then also answers
  ``clone3`` with ENOSYS, as profiles do so that glibc falls back to clone;
- ``personality`` limited to PER_LINUX and the query: ``LockPersonality=``;
- W^X on ``mmap``/``mprotect``: ``MemoryDenyWriteExecute=`` when the profile
  is at least that strict (that setting also refuses ``mprotect(PROT_EXEC)``).

Every loosening comes back as a warning (on stderr) and a comment in the
drop-in, and so do per-call errno values and kill actions systemd replaces
by ``SystemCallErrorNumber=``, the names systemd always allows (its
``@default`` set), and names this machine's libseccomp, which systemd uses to
resolve them, does not know.

The profile's other layers (files, ports, capabilities, scopes) follow the
seccomp settings, from ``layers.systemd_layers``, with what systemd cannot
say about them in the same header and on stderr.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from bpf_filters.ir import Action

from ..paths import display_path
from ..policy.constants import CONSTANTS
from ..policy.diagnostics import Diagnostic
from ..policy.show import action_text
from .analysis import PERMISSIVE, SYSTEMD_ARCH, Analysis, SyscallPlan
from .layers import systemd_layers

# `systemd-analyze syscall-filter @default` of systemd 252 (Debian 12, 252.39): an allow-list always
# includes these (tests/kernel/test_systemd_export.py compares this with the installed systemd)
SYSTEMD_DEFAULT = frozenset("""
arch_prctl brk cacheflush clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 execve exit exit_group futex futex_time64 futex_waitv get_robust_list get_thread_area
getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getpgid getpgrp getpid getppid
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit getsid gettid gettimeofday getuid getuid32
membarrier mmap mmap2 mprotect munmap nanosleep pause prlimit64 restart_syscall riscv_flush_icache
riscv_hwprobe rseq rt_sigreturn sched_getaffinity sched_yield set_robust_list set_thread_area set_tid_address
set_tls sigreturn time ugetrlimit uretprobe
""".split())
NAMESPACES = {"CLONE_NEWCGROUP": "cgroup", "CLONE_NEWIPC": "ipc", "CLONE_NEWNET": "net", "CLONE_NEWNS": "mnt",
              "CLONE_NEWPID": "pid", "CLONE_NEWUSER": "user", "CLONE_NEWUTS": "uts", "CLONE_NEWTIME": "time"}
PER_LINUX, PER_QUERY = 0, 0xFFFFFFFF
ENOSYS, EAFNOSUPPORT = 38, 97


@dataclass
class _Dropin:
    listed: list[str] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)       # setting -> value
    loosened: list[tuple[object, str]] = field(default_factory=list)   # (position, what is let through)
    other: dict[str, list[str]] = field(default_factory=dict)  # deny actions replaced by the default: names
    notes: list[str] = field(default_factory=list)


def _low(bdd, n: int) -> int:
    """Set *n* read on arg0's low word, the other arguments existentially dropped."""
    n = bdd.project(n, 64)
    return bdd.both(n, bdd.compare(0, "<", 1 << 32))


def _families(an: Analysis, permitted: int) -> str:
    """RestrictAddressFamilies= for socket(): the families some call is allowed with.

    The shorter of the allow form and the deny form (~), the deny form only
    where every family number above the named ones is allowed too.
    """
    bdd = an.bdd
    fam = _low(bdd, permitted)
    names = {v: k for k, v in reversed(list(CONSTANTS.items())) if k.startswith("AF_")}
    top = max(names) + 1
    ok = [v for v in sorted(names) if v and bdd.both(fam, bdd.compare(0, "==", v))]
    above = bdd.both(bdd.compare(0, ">=", top), bdd.compare(0, "<", 1 << 32))
    denied = [v for v in sorted(names) if v and v not in ok]
    if bdd.both(above, bdd.neg(fam)) == 0 and len(denied) < len(ok):
        return "~" + " ".join(names[v] for v in denied)
    return " ".join(names[v] for v in ok) or "none"


def _never_created(an: Analysis, plans: dict[str, SyscallPlan]) -> list[str]:
    """Namespace types that no allowed clone, unshare or setns call can create or join."""
    bdd, out = an.bdd, []
    where = {"clone": 0, "unshare": 0, "setns": 1}
    for flag, kind in NAMESPACES.items():
        bit = CONSTANTS[flag]
        reachable = False
        for name, arg in where.items():
            if name == "clone" and flag == "CLONE_NEWTIME":
                continue                   # clone's 0x80 is part of the exit signal; only unshare/setns
            plan = plans.get(name)
            if plan is None:
                reachable |= an.default.kind in PERMISSIVE
                continue
            permitted = plan.permitted(bdd, an.default)
            reachable |= bdd.both(permitted, bdd.compare(arg, "&==", bit, 64, bit)) != 0
            if name == "setns":           # setns(fd, 0) joins whatever namespace fd is
                reachable |= bdd.both(permitted, bdd.compare(1, "==", 0)) != 0
        if not reachable:
            out.append(kind)
    return sorted(out)


def _partial(an: Analysis, plan: SyscallPlan, plans: dict, d: _Dropin, pos, allow_list: bool = True) -> None:
    """A syscall allowed for some arguments only: allowed (listed in an allow-list, left out of a
    deny-list), with what systemd can check of it."""
    bdd, name = an.bdd, plan.name
    permitted = plan.permitted(bdd, an.default)
    if allow_list:
        d.listed.append(name)
    if name == "socket":
        fams = d.extra["RestrictAddressFamilies"] = _families(an, permitted)
        if bdd.project(permitted, 64) != permitted:     # the type or protocol decides too
            d.loosened.append((pos, f"socket: families {fams} with every type and protocol "
                                    "(RestrictAddressFamilies= checks the family only)"))
        return
    if name in ("clone", "unshare", "setns"):
        spaces = _never_created(an, plans)
        if spaces:
            d.extra["RestrictNamespaces"] = "~" + " ".join(spaces)
        mask = sum(CONSTANTS[f] for f, kind in NAMESPACES.items() if kind in spaces and f != "CLONE_NEWTIME")
        if name == "clone" and mask and permitted == bdd.compare(0, "&==", 0, 64, mask):
            return                     # exactly "no new namespaces": RestrictNamespaces= says it
        d.loosened.append((pos, f"{name}: every flag but new namespaces"
                           + (f" ({' '.join(spaces)}: RestrictNamespaces=)" if spaces else "")))
        return
    if name == "personality":
        allowed = _low(bdd, permitted)
        known = bdd.either(bdd.compare(0, "==", PER_LINUX), bdd.compare(0, "==", PER_QUERY))
        if bdd.both(allowed, bdd.neg(known)) == 0:
            d.extra["LockPersonality"] = "yes"
            return
    if name in ("mmap", "mprotect"):
        if _wx_safe(an, plans):
            d.extra["MemoryDenyWriteExecute"] = "yes"
            return
        d.loosened.append((pos, f"{name}: any protection (the profile's W^X rule has no systemd equivalent: "
                                "MemoryDenyWriteExecute= would also refuse mprotect(PROT_EXEC), which "
                                "this profile allows)"))
        return
    d.loosened.append((pos, f"{name}: for every argument (systemd cannot check arguments)"))


def _wx_safe(an: Analysis, plans: dict) -> bool:
    """MemoryDenyWriteExecute= refuses no call the profile allows: no W|X mmap, no executable mprotect."""
    bdd = an.bdd
    w, x = CONSTANTS["PROT_WRITE"], CONSTANTS["PROT_EXEC"]
    for name, mask in (("mmap", w | x), ("mprotect", x)):
        plan = plans.get(name)
        permitted = plan.permitted(bdd, an.default) if plan else (1 if an.default.kind in PERMISSIVE else 0)
        if bdd.both(permitted, bdd.compare(2, "&==", mask, 64, mask)):
            return False
    return True


def _allow_listed(an: Analysis, plan: SyscallPlan, plans: dict, d: _Dropin, pos) -> None:
    bdd = an.bdd
    permitted = plan.permitted(bdd, an.default)
    denials = [r.action for r, g, _ in plan.pieces if g and r.action.kind not in PERMISSIVE]
    if permitted == 1:
        d.listed.append(plan.name)
    elif permitted:
        _partial(an, plan, plans, d, pos)
    if any(r.action.kind == "log" and g for r, g, _ in plan.pieces) and permitted:
        d.logged.append(plan.name)
    for a in dict.fromkeys(denials if not permitted else ()):     # partly allowed: allowed, said above
        if a == an.default or (plan.name == "socket" and a == Action("errno", EAFNOSUPPORT)):
            continue
        if plan.name == "clone3" and a == Action("errno", ENOSYS) and permitted == 0:
            continue                                 # handled with RestrictNamespaces= below
        d.other.setdefault(action_text(a), []).append(plan.name)


def _clone3(an: Analysis, plans: dict, d: _Dropin) -> None:
    """clone3 -> ENOSYS: systemd's RestrictNamespaces= filter answers that, if clone3 passes the allow-list.

    Of two filters answering ERRNO the kernel keeps the newest one's errno, and
    SystemCallFilter= is installed last: listed, clone3 gets the namespace
    filter's ENOSYS; left out, it would get SystemCallErrorNumber=.
    """
    plan = plans.get("clone3")
    if plan is None or plan.permitted(an.bdd, an.default) or \
            not any(r.action == Action("errno", ENOSYS) for r, g, _ in plan.pieces if g):
        return
    if "RestrictNamespaces" not in d.extra:
        d.extra["RestrictNamespaces"] = "~time"   # any restriction installs the clone3 rule
        d.notes.append("RestrictNamespaces=~time only so that systemd answers clone3 with ENOSYS")
    d.listed.append("clone3")


def _deny_listed(an: Analysis, plan: SyscallPlan, plans: dict, d: _Dropin, pos) -> None:
    """Deny-list mode (the default allows): list what is denied for every argument."""
    permitted = plan.permitted(an.bdd, an.default)
    if permitted == 1:
        return
    denials = [r.action for r, g, _ in plan.pieces if g and r.action.kind not in PERMISSIVE]
    if permitted:
        _partial(an, plan, plans, d, pos, allow_list=False)
        lost = [a for a in dict.fromkeys(denials) if not (plan.name == "socket" and a == Action("errno", EAFNOSUPPORT))]
        if plan.name == "socket" and lost:
            d.other.setdefault(f"{', '.join(action_text(a) for a in lost)} (EAFNOSUPPORT from "
                               "RestrictAddressFamilies= instead)", []).append(plan.name)
        return
    a = denials[0] if denials else an.default
    if a.kind not in ("errno", "kill-process", "kill-thread"):
        d.other.setdefault(f"{action_text(a)} (killed instead)", []).append(plan.name)
    d.listed.append(f"{plan.name}:{_systemd_action(a)}")


def _systemd_action(a: Action) -> str:
    return action_text(a)[6:-1] if a.kind == "errno" else "kill"


def _wrap(key: str, prefix: str, words: list[str], width: int = 100) -> list[str]:
    lines, cur = [], []
    for w in words:
        if cur and len(key) + len(prefix) + len(" ".join(cur + [w])) > width:
            lines.append(f"{key}={prefix}{' '.join(cur)}")
            cur = []
        cur.append(w)
    if cur:
        lines.append(f"{key}={prefix}{' '.join(cur)}")
    return lines


def _rule_pos(an: Analysis, plan: SyscallPlan):
    specs = {spec.origin: spec for spec in an.profile.rules}
    for rule, region, _ in plan.pieces:
        if region and rule.origin in specs:
            return specs[rule.origin].pos
    return an.profile.default.pos


def export_systemd(an: Analysis, known=None, bound: dict[str, str] | None = None,
                   features: set[str] | None = None) -> tuple[str, list[Diagnostic]]:
    """(the drop-in, warnings): every loosening and lost action named, in both.

    *bound*: --var bindings for the profile's path and port variables; *features*: the words of this
    machine's `systemctl --version`, or None (see ``layers.systemd_layers``).
    """
    prof, default = an.profile, an.default
    allow_list = default.kind not in PERMISSIVE
    d = _Dropin()
    plans = {p.name: p for p in an.plans}
    for plan in an.plans:
        if allow_list:
            _allow_listed(an, plan, plans, d, _rule_pos(an, plan))
        else:
            _deny_listed(an, plan, plans, d, _rule_pos(an, plan))
    if allow_list:
        _clone3(an, plans, d)
    diags = [Diagnostic(pos, f"systemd allows {what}", severity="warning") for pos, what in d.loosened]
    lost = []
    if known is not None:
        lost = sorted({n.split(":")[0] for n in d.listed if not known(n.split(":")[0])})
        d.listed = [n for n in d.listed if n.split(":")[0] not in lost]
        if lost:
            diags.append(Diagnostic(None, f"systemd resolves names with libseccomp, which on this machine "
                                    f"cannot name {', '.join(lost)}: left out of SystemCallFilter= (they get "
                                    f"{'SystemCallErrorNumber=' if allow_list else 'allowed'})",
                                    severity="warning"))
    if allow_list:
        permitted = {p.name for p in an.plans if p.permitted(an.bdd, default)}
        native = _native_names(an)
        forced = sorted(n for n in SYSTEMD_DEFAULT - permitted if n in native and (known is None or known(n)))
        if forced:
            diags.append(Diagnostic(None, f"systemd always allows its @default set in an allow-list, here also "
                                    f"{', '.join(forced)}", severity="warning"))
            d.notes.append(f"systemd's @default set also allows: {', '.join(forced)}")
    for text, names in d.other.items():
        diags.append(Diagnostic(None, f"{text} of this profile becomes systemd's "
                                f"{'SystemCallErrorNumber=' if allow_list else 'kill'} for "
                                f"{', '.join(sorted(names))}", severity="warning"))
    if prof.unknown.value != default:
        d.notes.append(f"numbers the tables do not name: {action_text(prof.unknown.value)} here, the default "
                       "action under systemd")
    if prof.bad_arch.value.kind != "kill-process":
        d.notes.append(f"other architectures: {action_text(prof.bad_arch.value)} here; systemd denies them")
    settings, notes, more = systemd_layers(prof, bound or {}, features)
    d.notes += notes
    diags += more
    return _render(an, allow_list, d, diags, lost, settings), diags


def _native_names(an: Analysis) -> set[str]:
    from bpf_filters import syscalls
    return set(syscalls.table(an.native).by_name)


def _render(an: Analysis, allow_list: bool, d: _Dropin, diags: list[Diagnostic], lost: list[str],
            layers: list[tuple[str, str]]) -> str:
    prof, default = an.profile, an.default
    out = [f"# systemd drop-in for profile '{prof.name}' ({display_path(prof.path)}), from "
           "`sbx export --format systemd`",
           "# Install as /etc/systemd/system/UNIT.service.d/sbx.conf, then `systemctl daemon-reload`.",
           "# A unit's own settings add to the path lists below (ReadWritePaths=, ...)."]
    said = [f"systemd allows {what}" for _, what in d.loosened] + \
        [f"{t}: {', '.join(sorted(n))} get the default action" for t, n in d.other.items()] + d.notes
    if lost:
        said.append(f"unknown to libseccomp here, left out: {', '.join(lost)}")
    if said:
        out += ["# What systemd cannot express:"]
        for n in said:
            out += textwrap.wrap(n, 100, initial_indent="#   ", subsequent_indent="#     ",
                                 break_long_words=False, break_on_hyphens=False)
    out += ["[Service]", "SystemCallArchitectures=" + " ".join(
        "native" if a == "native" else SYSTEMD_ARCH[a] for a in dict.fromkeys(prof.arches.value))]
    out += _wrap("SystemCallFilter", "" if allow_list else "~", sorted(set(d.listed)))
    if allow_list and default.kind == "errno":
        out.append(f"SystemCallErrorNumber={_systemd_action(default)}")
    elif allow_list:
        out.append(f"# default {action_text(default)}: systemd kills the process (SIGSYS) for the rest")
    out += [f"{k}={v}" for k, v in d.extra.items()]
    out += _wrap("SystemCallLog", "", sorted(set(d.logged))) if d.logged else []
    out += [f"{k}={v}" for k, v in layers]
    return "\n".join(out) + "\n"
