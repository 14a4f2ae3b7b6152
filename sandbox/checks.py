"""Lint a loaded profile for hardening problems: stable rule ids, severities, positions, a score.

Pure: works on a ``Profile`` and the ``Policy`` it lowers to.  Whether a
syscall is allowed is decided by evaluating the policy (``bpf_filters.ir.evaluate``)
over argument values drawn from the rules' own conditions, never by matching
names in the YAML, so ``extends``, groups, rule order and conditions all count:
``clone`` is reported only if some call carrying CLONE_NEWUSER reaches an
allowing rule.  Every finding is a ``Diagnostic`` whose position is the name
(or ``@group``) in the rule that allows the thing, the ``default:``/``unknown:``
value that does, or the profile's first line when something is missing.
The rule table and the score formula are documented in docs/checks.md.
"""
from __future__ import annotations

import errno as _errno
import itertools
import math
import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

from bpf_filters import syscalls
from bpf_filters.ir import M32, M64, Decision, Policy, evaluate
from bpf_filters.syscalls import fallbacks
from bpf_filters.syscalls.signatures import signature

from . import checks_layers, provenance
from .paths import display_path
from .policy.constants import CONSTANTS
from .policy.diagnostics import Diagnostic, Position
from .policy.lower import lower, resolve_arches
from .policy.profile import Profile, RuleSpec, baseline_spec
from .policy.show import action_text

SEVERITIES = ("error", "warning", "note", "info")          # most severe first
RANK = {"error": 3, "warning": 2, "note": 1, "info": 0}
PENALTY = {"error": 30, "warning": 10, "note": 2, "info": 0}
EXPOSURE_WEIGHT = 20
MAX_VECTORS = 20000                                          # argument vectors tried per syscall
# ... and at most this many condition tests per syscall and question: a syscall with
# thousands of rules gets fewer vectors, so a crafted profile cannot make a check take
# hours (10,000 two-condition rules on ioctl took 5.7 min).  Real profiles need at
# most ~8,000 (build's socket: 588 vectors x 14); never fewer than 16 vectors.
MAX_TESTS = 200_000


@dataclass(frozen=True)
class Check:
    id: str
    name: str
    severity: str
    short: str                   # what is wrong, one line
    full: str                    # why it matters; its first sentence is quoted in messages
    hint: str | None = None      # how to fix it


CHECKS: tuple[Check, ...] = tuple(Check(*row) for row in (
    ("SBX001", "profile-error", "error", "The profile does not load",
     "The profile has a syntax, name or condition error; nothing else can be checked."),
    ("SBX101", "default-allows", "error", "The default action allows",
     "With default allow (or log) every syscall no rule names passes, including ones added to the "
     "kernel later: the profile only blocks what its author thought of.",
     "use default: errno(EPERM) and allow what the program needs"),
    ("SBX102", "bad-arch-allows", "error", "Calls from other ABIs are allowed unfiltered",
     "bad_arch decides every call made through an ABI the profile does not list (i386 int 0x80 and "
     "x32 calls on x86_64); if it allows, any rule is bypassed by switching ABI.",
     "use bad_arch: kill-process"),
    ("SBX103", "extra-abi", "warning", "A second ABI is listed",
     "Listing i386 or x32 beside the native ABI admits a second syscall table with other numbers, "
     "32-bit arguments and multiplexers (socketcall, ipc) whose arguments seccomp cannot see."),
    ("SBX104", "unknown-allows", "warning", "Unknown syscall numbers are allowed",
     "unknown decides numbers the syscall table does not name, the syscalls of newer kernels; "
     "allowing them lets new kernel interfaces in unreviewed.", "use unknown: errno(ENOSYS)"),
    ("SBX105", "unknown-not-enosys", "note", "Unknown syscalls do not fail with ENOSYS",
     "Programs probe new syscalls and fall back when the kernel answers ENOSYS; any other answer "
     "makes them fail instead.", "use unknown: errno(ENOSYS)"),
    ("SBX106", "kill-thread", "note", "kill-thread as a profile action",
     "kill-thread ends one thread and leaves the process running in an inconsistent state.",
     "use kill-process"),
    ("SBX110", "ptrace-allowed", "error", "ptrace is allowed",
     "A process can attach to every other process of the same user, including ones outside the "
     "sandbox, and run code there."),
    ("SBX111", "bpf-allowed", "error", "bpf is allowed",
     "eBPF programs run in the kernel, and its verifier has been a steady source of privilege "
     "escalations."),
    ("SBX112", "kernel-code-allowed", "error", "Kernel module or kexec loading is allowed",
     "Module and kexec loading replace or extend the running kernel: a host takeover for a "
     "privileged process."),
    ("SBX113", "mount-allowed", "error", "Mounting or changing root is allowed",
     "Mounts, the new mount API, pivot_root and chroot rewrite the file system view and, with "
     "CAP_SYS_ADMIN in any user namespace, undo file system confinement."),
    ("SBX114", "user-namespace", "error", "User namespaces can be created",
     "A new user namespace gives the process every capability inside it and exposes kernel code "
     "written for root. clone3 counts: its flags are in memory seccomp cannot read.",
     "deny unshare, deny clone when arg0 & CLONE_NEWUSER != 0, and errno(ENOSYS) for clone3"),
    ("SBX115", "namespaces", "warning", "Namespaces can be created or joined",
     "With privileges, new or joined namespaces change what the process sees of mounts, network, "
     "PIDs and IPC."),
    ("SBX116", "process-vm", "error", "Cross-process memory access is allowed",
     "process_vm_readv and process_vm_writev read and write the memory of other processes of the "
     "same user, inside or outside the sandbox."),
    ("SBX117", "raw-io", "error", "I/O port access is allowed",
     "iopl and ioperm give direct hardware access to a process with CAP_SYS_RAWIO."),
    ("SBX120", "perf-events", "warning", "perf_event_open is allowed",
     "Performance counters observe other processes and are a large, often exploited kernel surface."),
    ("SBX121", "keyring", "warning", "Kernel keyrings are reachable",
     "Keyrings are shared by all processes of a user and not namespaced, so secrets cross the "
     "sandbox boundary."),
    ("SBX122", "userfaultfd", "warning", "userfaultfd is reachable",
     "userfaultfd (the syscall, or ioctl USERFAULTFD_IOC_NEW on /dev/userfaultfd) stalls the kernel "
     "mid-copy, the classic primitive of race exploits.",
     "deny userfaultfd and ioctl when arg1 == 0xaa00"),
    ("SBX123", "io-uring", "warning", "io_uring is allowed",
     "io_uring performs I/O that seccomp never sees and has a long exploit record."),
    ("SBX124", "open-by-handle", "warning", "open_by_handle_at is allowed",
     "With CAP_DAC_READ_SEARCH it opens any file by handle, bypassing the path walk (the "
     "'shocker' container escape)."),
    ("SBX125", "personality", "warning", "personality is allowed without an argument filter",
     "Personalities such as READ_IMPLIES_EXEC and ADDR_NO_RANDOMIZE weaken memory protections of "
     "the process and its children.",
     "deny personality when arg0 not in [PER_LINUX, PER_LINUX32, UNAME26, 0xffffffff]"),
    ("SBX126", "terminal-injection", "error", "ioctl allows TIOCSTI or TIOCLINUX",
     "TIOCSTI pushes input into the controlling terminal for the shell outside the sandbox to run, "
     "and TIOCLINUX reads and pastes the console.",
     "put `errno(EPERM): ioctl when arg1 in [TIOCSTI, TIOCLINUX]` above the ioctl allow"),
    ("SBX127", "host-admin", "warning", "Host administration calls are allowed",
     "Reboot, swap, clocks, host name, accounting, quotas, the kernel log and fanotify act on the "
     "whole host for a process with the capability."),
    ("SBX128", "legacy-cpu", "note", "Legacy CPU emulation calls are allowed",
     "modify_ldt and vm86 reach old kernel paths with a history of privilege escalations."),
    ("SBX130", "clone3-not-enosys", "warning", "clone3 is denied with something else than ENOSYS",
     "glibc falls back from clone3 to clone only when clone3 fails with ENOSYS; any other denial "
     "makes thread and process creation fail.", "use errno(ENOSYS) for clone3"),
    ("SBX131", "pointer-compared", "warning", "A pointer argument is compared by value",
     "seccomp sees the address, not the memory it points to, which another thread can change after "
     "the check (time of check to time of use); only a NULL test is meaningful.",
     "seccomp cannot read memory; only a NULL test (== 0) is meaningful"),
    ("SBX132", "unreachable-denial", "warning", "A denial never applies",
     "An earlier rule allows the syscall for every argument, so the later denial is dead.",
     "move the denial above the allow"),
    ("SBX133", "redundant-rule", "note", "A rule repeats an earlier decision",
     "An earlier rule already lets the syscall through for every argument."),
    ("SBX134", "overridden-rule", "info", "A rule is overridden by an earlier denial",
     "An earlier unconditional rule denies the syscall, so a later rule (a broad group allow, or an "
     "inherited rule) never decides it: the usual deny-before-allow layout."),
    ("SBX135", "duplicate-name", "note", "A syscall is named twice in one rule",
     "The rule names the syscall twice, directly or through groups."),
    ("SBX136", "missing-on-arch", "info", "A syscall does not exist on the target ABI",
     "The name matches nothing on the ABI the profile is built for (fcntl64 on x86_64); harmless "
     "in a profile meant for several native ABIs."),
    ("SBX137", "matches-nothing", "warning", "A syscall exists on none of the profile's ABIs",
     "The rule names a syscall that none of the listed architectures has: it has no effect."),
    ("SBX138", "probe-not-enosys", "warning", "A syscall libraries probe is denied without ENOSYS",
     "C libraries and language runtimes call some newer syscalls first and fall back to an older "
     "way when the kernel does not have them, most only when it answers ENOSYS; another denial, "
     "or a kill, makes the call fail instead (the table of probes is docs/syscall-ages.md).",
     "answer errno(ENOSYS) for it, or give the profile a baseline older than the syscall"),
    ("SBX140", "widened", "error", "The profile lets through what its baseline denied",
     "Compared with the earlier profile given to sbx check --baseline, some syscall and argument "
     "region that was denied is now allowed, logged or handed to a notify listener: the sandbox "
     "got wider.", "if the program needs it, say so in review and update the baseline; else "
     "restore the denial"),
    ("SBX141", "narrowed", "info", "The profile denies what its baseline let through",
     "Compared with the earlier profile, some syscall and argument region that passed is now "
     "denied: the sandbox got narrower, and a program that relied on it fails (try it under sbx "
     "verify)."),
    ("SBX142", "denial-changed", "note", "The profile denies differently from its baseline",
     "Compared with the earlier profile, a denial now answers differently (kill-process became "
     "errno(EPERM), EPERM became ENOSYS) or an allow became log: what the caller sees changes, "
     "nothing new gets through."),
    ("SBX143", "layer-changed", "warning", "Another confinement layer differs from its baseline",
     "Capabilities, scope, Landlock, filesystem or network rules differ from the earlier "
     "profile; these are compared as written, not by what they let through, so review them."),
    ("SBX144", "static-only-sensitive", "note", "A security-sensitive syscall was only found statically",
     "sbx analyze found the syscall reachable in the program's code, but no trace ever saw it: "
     "static analysis over-approximates, so the program may never need it.",
     "merge a trace of the program's real work (sbx trace --merge); drop the name if it never "
     "appears"),
    ("SBX145", "too-large", "error", "The filter is too large for the kernel",
     "The compiled program has more instructions than the kernel accepts (4,096): sbx run, "
     "compile and explain refuse the profile."),
    ("SBX150", "no-filesystem", "note", "The profile says nothing about files",
     "Without a filesystem: section the command reads and writes every file its user can: SSH "
     "keys, shell start-up files, the profile itself; the syscall filter cannot tell one path from "
     "another.", "add a filesystem: section; sbx trace writes one from a real run"),
    ("SBX151", "no-filesystem-network", "warning", "The profile allows the network but says nothing about files",
     "A command that can read every file of its user and reach the network can send them anywhere.",
     "add a filesystem: section; sbx trace writes one from a real run"),
    ("SBX152", "writes-system", "error", "Write access reaches system files",
     "Writes under /etc, /usr, /boot, /proc, /sys, /dev and the like change the host and outlive "
     "the sandbox.", "grant write only to the directories the program works in"),
    ("SBX153", "writes-home", "warning", "Write access over the whole home",
     "A command that may write the home directory may change shell start-up files, editor and git "
     "hooks: code its user runs later, outside the sandbox.",
     "grant write to the project or data directory only"),
    ("SBX154", "exec-writable", "note", "A directory is both writable and executable",
     "The command may write a program there and run it, so the exec grant does not limit what "
     "runs; the syscall filter still applies to it.",
     "drop exec from the writable directory, or add it to deny: if nothing runs from there"),
    ("SBX155", "secrets-readable", "warning", "Read access reaches SSH, GnuPG or cloud keys",
     "~/.ssh, ~/.gnupg and ~/.aws hold keys that open other machines.", "add them to deny:"),
    ("SBX156", "capability-escapes", "warning", "A kept capability reaches past the sandbox",
     "Some capabilities act on the whole host or read around Landlock's path rules; kept, they "
     "make the other layers advisory.", "keep only what the program needs, often none"),
    ("SBX157", "scope-open", "warning", "Signals or abstract Unix sockets reach outside the sandbox",
     "scope: any lets the command signal, or connect to abstract Unix sockets of, processes of its "
     "user outside the sandbox (a desktop session's X11 and D-Bus listen there).",
     "leave scope at sandbox"),
    ("SBX158", "landlock-best-effort", "warning", "The profile runs without Landlock where it is missing",
     "landlock: best-effort runs the command on an older kernel without its file, port and scope "
     "rules: the profile promises less than it says.", "leave landlock at enforce"),
    ("SBX159", "notify-unsupervised", "note", "notify under sbx run",
     "notify hands the call to a supervisor; sbx run installs none, so the call fails with ENOSYS "
     "there (sbx trace supervises).", "use errno(...) or allow"),
    ("SBX160", "errno-zero", "warning", "errno(0) denies a call but reports success",
     "The call does not run yet returns 0: the program goes on as if it had happened, writing to "
     "files that were never opened or trusting a lock it never took.",
     "use an errno the program handles, such as EPERM"),
))
BY_ID = {c.id: c for c in CHECKS}


@dataclass
class Finding(Diagnostic):
    """A Diagnostic with what it is about, for JSON and SARIF output."""
    syscalls: list[str] = field(default_factory=list)
    arches: list[str] = field(default_factory=list)


def finding(check_id: str, pos: Position | None, message: str, hint: str | None = "",
            notes: list[Diagnostic] | None = None, names=(), arches=()) -> Finding:
    """A finding of *check_id*; *hint* "" means the check's own hint."""
    check = BY_ID[check_id]
    return Finding(pos, message, check.severity, check.hint if hint == "" else hint,
                   list(notes or []), check_id, list(names), list(arches))


# --------------------------------------------------------------------------- probing

def _candidates(rules) -> dict[int, set[int]]:
    """Per argument index, values on both sides of every condition on it."""
    per_arg: dict[int, set[int]] = {}
    for rule in rules:
        for c in rule.conds:
            top = M32 if c.width == 32 else M64
            vals = per_arg.setdefault(c.arg, {0})
            vals.add(top)
            for v in c.values:
                vals.update({v & top, (v + 1) & top, (v - 1) & top})
            if c.mask != top:
                bits = [1 << b for b in range(c.width) if c.mask >> b & 1]
                vals.update({c.mask & top, ~c.mask & top})
                for v in c.values:
                    vals.update({(v | ~c.mask) & top, v ^ bits[0] if bits else v})
                if len(bits) <= 12:
                    vals.update(bits)
    return per_arg


Constraint = dict[int, Callable[[set[int]], set[int]]]


def _vectors(per_arg: dict[int, set[int]], constrain: Constraint | None,
             limit: int = MAX_VECTORS) -> Iterator[tuple[int, ...]]:
    cands = {i: set(v) for i, v in per_arg.items()}
    for i, f in (constrain or {}).items():
        cands[i] = f(cands.get(i, {0}))
    idx = sorted(cands)
    lists = [sorted(cands[i]) for i in idx]
    total = math.prod(len(x) for x in lists)

    def vec(combo):
        args = [0] * 6
        for i, v in zip(idx, combo):
            args[i] = v
        return tuple(args)

    if total <= limit:
        for combo in itertools.product(*lists):
            yield vec(combo)
        return
    rng = random.Random(0)          # deterministic sample when the product is too large
    for _ in range(limit):
        yield vec([rng.choice(x) for x in lists])


def decisions(policy: Policy, arch: str, nr: int, constrain: Constraint | None = None
              ) -> Iterator[tuple[tuple[int, ...], Decision]]:
    """Every decision the policy makes for (arch, nr) over the relevant argument values."""
    ap = policy.arch(arch)
    rules = ap.rules.get(nr, ()) if ap else ()
    token = syscalls.AUDIT_ARCH[arch]
    tests = sum(len(r.conds) or 1 for r in rules)
    limit = max(16, min(MAX_VECTORS, MAX_TESTS // max(1, tests)))
    for args in _vectors(_candidates(rules), constrain, limit):
        yield args, evaluate(policy, token, nr, args)


def allowing(policy: Policy, arch: str, nr: int, constrain: Constraint | None = None
             ) -> tuple[tuple[int, ...], Decision] | None:
    """The first (args, decision) that lets the call through (allow or log), or None."""
    for args, dec in decisions(policy, arch, nr, constrain):
        if not dec.action.denies:
            return args, dec
    return None


def surface(policy: Policy, arch: str) -> dict[str, str]:
    """Each syscall of *arch*: "allow" (for every argument), "conditional" or "deny"."""
    out = {}
    for name, nr in sorted(syscalls.table(arch).by_name.items()):
        outcomes = {not dec.action.denies for _, dec in decisions(policy, arch, nr)}
        out[name] = "allow" if outcomes == {True} else "deny" if outcomes == {False} else "conditional"
    return out


# --------------------------------------------------------------------------- context

class _Ctx:
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


def _hits(ctx: _Ctx, name: str, constrain: Constraint | None) -> list[tuple]:
    """(arch, decision) for each target ABI where some call of *name* is let through."""
    out = []
    for arch in ctx.arches:
        nr = syscalls.table(arch).nr(name)
        found = allowing(ctx.policy, arch, nr, constrain) if nr is not None else None
        if found is not None:
            out.append((arch, found[1]))
    return out


def _report(ctx: _Ctx, check_id: str, name: str, what: str, hits: list[tuple]) -> None:
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


def check_dangerous(ctx: _Ctx) -> None:
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


def check_clone3(ctx: _Ctx) -> None:
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


def check_probed(ctx: _Ctx) -> None:
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


def _setting_pos(ctx: _Ctx, attr: str) -> Position:
    pos = getattr(ctx.profile, attr).pos
    return pos if pos is not None else ctx.first_line


def _find_word(ctx: _Ctx, pos: Position, word: str) -> Position:
    """The position of *word* in the (possibly multi-line) value starting at *pos*."""
    lines = ctx.profile.sources.get(pos.file, [])
    for ln in range(pos.line, min(pos.line + 6, len(lines) + 1)):
        start = pos.col - 1 if ln == pos.line else 0
        m = re.compile(rf"\b{re.escape(word)}\b").search(lines[ln - 1], start)
        if m:
            return Position(pos.file, ln, m.start() + 1, len(word))
    return pos


def check_default_and_abis(ctx: _Ctx) -> None:
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


def check_unknown_and_kill_thread(ctx: _Ctx) -> None:
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


def check_pointers(ctx: _Ctx) -> None:
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


def check_shadowing(ctx: _Ctx) -> None:
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


def _name_pos(ctx: _Ctx, origin, name: str) -> tuple[Position, RuleSpec | None]:
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


def check_names(ctx: _Ctx) -> None:
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


def check_static_only(ctx: _Ctx) -> None:
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

def check_size(ctx: _Ctx) -> None:
    """Compile the policy as ``sbx run`` does: a program over the kernel's limit is refused."""
    from bpf_filters.compiler import ProgramTooLarge, compile_policy
    from .policy import too_large
    try:
        compile_policy(ctx.policy)
    except ProgramTooLarge as err:
        d = too_large(err, ctx.profile)
        ctx.out.append(finding("SBX145", d.pos, d.message, d.hint, d.notes, arches=err.arches))


# --------------------------------------------------------------------------- driver

CHECKERS = (check_dangerous, check_default_and_abis, check_unknown_and_kill_thread, check_clone3,
            check_probed, check_pointers, check_shadowing, check_names, check_static_only, check_size,
            *checks_layers.CHECKERS)


@dataclass
class Report:
    profile: Profile
    policy: Policy
    native: str
    findings: list[Finding]
    surface: dict[str, str]
    score: int
    comparison: dict | None = None

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}


def exposure(surf: dict[str, str]) -> float:
    """Share of the native table a process can reach: allowed 1, conditional 1/2."""
    if not surf:
        return 0.0
    reach = sum(1.0 if v == "allow" else 0.5 if v == "conditional" else 0.0 for v in surf.values())
    return reach / len(surf)


def score(findings: list[Finding], surf: dict[str, str], folded: tuple[str, ...] = ()) -> int:
    """100 - the penalty of each distinct rule id at its worst severity - 20 x exposure,
    rounded half up and floored at 0.  *folded* are rule ids reported inside SBX101
    (dangerous calls an allowing default lets in): they count as if reported."""
    worst: dict[str, str] = {c: BY_ID[c].severity for c in folded}
    for f in findings:
        if f.rule_id not in worst or RANK[f.severity] > RANK[worst[f.rule_id]]:
            worst[f.rule_id] = f.severity
    penalty = sum(PENALTY[s] for s in worst.values())
    return max(0, math.floor(100 - penalty - EXPOSURE_WEIGHT * exposure(surf) + 0.5))


def _sort_key(ctx: _Ctx):
    order = {f: i for i, f in enumerate(ctx.profile.files)}
    return lambda f: (-RANK[f.severity], (order.get(f.pos.file, 99), f.pos.line, f.pos.col)
                      if f.pos else (-1, 0, 0), f.rule_id or "", f.message)


def check_profile(profile: Profile, native: str = "x86_64", policy: Policy | None = None) -> Report:
    """Run every check on *profile*; raises PolicyError if it does not lower."""
    policy = policy if policy is not None else lower(profile, native)
    ctx = _Ctx(profile, policy, native)
    for checker in CHECKERS:
        checker(ctx)
    findings = sorted(ctx.out, key=_sort_key(ctx))
    surf = surface(policy, native if policy.arch(native) else ctx.arches[0])
    folded = tuple(sorted({c for c, _ in ctx.via_default.values()}))
    return Report(profile, policy, native, findings, surf, score(findings, surf, folded))


def compare(mine: Report, other: Report) -> dict:
    """What *mine* allows that *other* denies and the reverse, on the native ABI, and
    which rule ids fire only on one side."""
    a, b = mine.surface, other.surface
    common = sorted(set(a) & set(b))
    ids_a = {f.rule_id for f in mine.findings}
    ids_b = {f.rule_id for f in other.findings}
    return {
        "against": other.profile.name,
        "against_path": display_path(other.profile.path),
        "score": mine.score, "against_score": other.score,
        "allowed_here_denied_there": [n for n in common if a[n] != "deny" and b[n] == "deny"],
        "denied_here_allowed_there": [n for n in common if a[n] == "deny" and b[n] != "deny"],
        "unconditional_here_conditional_there": [n for n in common if a[n] == "allow" and b[n] == "conditional"],
        "conditional_here_unconditional_there": [n for n in common if a[n] == "conditional" and b[n] == "allow"],
        "findings_only_here": sorted(ids_a - ids_b),
        "findings_only_there": sorted(ids_b - ids_a),
    }


def at_or_above(findings, threshold: str) -> list[Finding]:
    """Findings whose severity is *threshold* or worse ("never": none)."""
    if threshold == "never":
        return []
    return [f for f in findings if RANK[f.severity] >= RANK[threshold]]
