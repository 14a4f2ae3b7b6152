"""Export: profiles as OCI/Docker JSON, Kubernetes and systemd (see the package docstring)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from bpf_filters.ir import Action

from ..paths import display_path
from ..policy import Profile
from ..policy.constants import CONSTANTS
from ..policy.diagnostics import Diagnostic, PolicyError
from ..policy.show import action_text

from .analysis import (Analysis, MAX_ENTRIES_PER_SYSCALL, OCI_ACTION, OCI_ARCH, PERMISSIVE, SYSTEMD_ARCH, SyscallPlan, render_region)

# ---------------------------------------------------------------- OCI / Docker / Kubernetes

def _oci_action(a: Action) -> dict:
    out = {"action": OCI_ACTION[a.kind]}
    if a.kind == "errno":
        out["errnoRet"] = a.data
    return out


def _spec_index(profile: Profile) -> dict:
    return {spec.origin: (i, spec) for i, spec in enumerate(profile.rules)}


def _check_actions(an: Analysis, diags: list[Diagnostic]) -> None:
    prof = an.profile
    if an.default.kind == "notify":
        diags.append(Diagnostic(prof.default.pos, "OCI runtimes refuse SCMP_ACT_NOTIFY as the default "
                                "action"))
    specs = _spec_index(prof)
    for plan in an.plans:
        for rule, region, _ in plan.pieces:
            if not region or rule.action == an.default:
                continue
            spec = specs[rule.origin][1]
            if rule.action.kind == "notify":
                diags.append(Diagnostic(spec.pos, f"'{plan.name}' uses notify: SCMP_ACT_NOTIFY needs a "
                                        "listenerPath to a seccomp agent, which sbx does not provide",
                                        hint="use errno(...) or trap, or run it under `sbx run`"))
            elif rule.action.kind == "trap" and rule.action.data:
                diags.append(Diagnostic(spec.pos, f"trap({rule.action.data}): OCI has no field for the "
                                        "trap's si_errno data; SCMP_ACT_TRAP sends 0", severity="warning"))
    if prof.bad_arch.value != Action("kill-thread"):
        diags.append(Diagnostic(prof.bad_arch.pos, f"OCI has no wrong-architecture action (here "
                                f"{action_text(prof.bad_arch.value)}): runc keeps libseccomp's kill-thread",
                                severity="warning"))
    unknown = prof.unknown.value
    if unknown != an.default:
        diags.append(Diagnostic(prof.unknown.pos, f"OCI has no action for syscall numbers the tables do not "
                                f"name (here {action_text(unknown)}): runc answers ENOSYS above the highest "
                                "syscall it knows and defaultAction for gaps below it", severity="warning"))


def _widening_notes(an: Analysis, diags: list[Diagnostic]) -> None:
    specs = _spec_index(an.profile)
    for plan in an.plans:
        if not plan.narrow:
            continue
        rule = next(r for r, _, _ in plan.pieces if any(c.arg in plan.narrow for c in r.conds))
        args = " and ".join(f"arg{a}" for a in plan.narrow) + (" are" if len(plan.narrow) > 1 else " is")
        if plan.exact:
            msg = (f"{plan.name}: {args} 32-bit; a 64-bit comparison would let a value with garbage in "
                   "the upper half (which the kernel ignores) through, so the entries compare the low "
                   "word with masks")
        else:
            msg = (f"{plan.name}: {args} 32-bit but OCI compares all 64 bits: a call with garbage in "
                   "the upper half (which the kernel ignores) is denied there and decided by the low "
                   "word here")
        diags.append(Diagnostic(specs[rule.origin][1].pos, msg, severity="warning"))


def oci_entries(an: Analysis, comments: bool = True) -> list[dict]:
    """The syscalls[] entries: one per (rule, action, argument list), names merged and sorted."""
    specs = _spec_index(an.profile)
    groups: dict[tuple, list[str]] = {}
    for plan in an.plans:
        for rule, region, shadowed in plan.pieces:
            if not region or rule.action == an.default:
                continue
            try:
                arg_lists = render_region(an.bdd, region)
            except ValueError:
                arg_lists = None
            if arg_lists is None or len(arg_lists) > MAX_ENTRIES_PER_SYSCALL:
                spec = specs[rule.origin][1]
                raise PolicyError([Diagnostic(spec.pos, f"'{plan.name}': the argument region this rule "
                                              "decides needs too many libseccomp entries",
                                              hint="simplify the conditions of this and earlier rules")],
                                  an.profile.sources)
            idx = specs[rule.origin][0]
            for args in arg_lists:
                groups.setdefault((idx, rule.action, args, shadowed, plan.exact), []).append(plan.name)
    out = []
    for key in sorted(groups, key=lambda k: k[0]):
        idx, action, args, shadowed, exact = key
        entry = {"names": sorted(set(groups[key])), **_oci_action(action)}
        if args:
            entry["args"] = [{"index": i, "value": v, "valueTwo": v2, "op": op} if op == "SCMP_CMP_MASKED_EQ"
                             else {"index": i, "value": v, "op": op} for i, (op, v, v2) in args]
        if comments:
            spec = an.profile.rules[idx]
            text = spec.comment or f"{action_text(spec.action)} rule"
            note = " (where no earlier rule decides)" if shadowed else ""
            note += " (32-bit argument: low word)" if exact and args else ""
            entry["comment"] = f"{text}{note} [{display_path(spec.pos.file)}:{spec.pos.line}]"
        out.append(entry)
    return out


def export_oci(an: Analysis, comments: bool = True, known=None) -> tuple[dict, list[Diagnostic]]:
    """The OCI ``linux.seccomp`` object (Docker's --security-opt seccomp= file) and warnings.

    *known(name)* tells whether the target's libseccomp can name a syscall;
    runc silently drops rules for names it cannot.
    """
    diags: list[Diagnostic] = []
    _check_actions(an, diags)
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        raise PolicyError(diags, an.profile.sources)
    _widening_notes(an, diags)
    out: dict = {"defaultAction": OCI_ACTION[an.default.kind]}
    if an.default.kind == "errno":
        out["defaultErrnoRet"] = an.default.data
    out["architectures"] = [OCI_ARCH[a] for a in an.arches]
    out["syscalls"] = oci_entries(an, comments)
    if known is not None:
        lost = sorted({n for e in out["syscalls"] for n in e["names"] if not known(n)})
        if lost:
            diags.append(Diagnostic(None, f"libseccomp on this machine cannot name {', '.join(lost)}: "
                                    "runc built against it ignores their rules (they get "
                                    "defaultAction, or ENOSYS above its highest known syscall)",
                                    severity="warning"))
    return out, diags


def k8s_name(name: str) -> str:
    """A Kubernetes object name (DNS subdomain) from a profile name."""
    out = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in name.lower()).strip("-.")
    return out[:253] or "sbx-profile"


K8S_GROUP = "security-profiles-operator.x-k8s.io"
K8S_VERSIONS = ("v1", "v1beta1")     # v1: security-profiles-operator 1.0+ (storage); v1beta1: 0.x, still served
INT64_MAX = (1 << 63) - 1


def export_k8s(an: Analysis, api_version: str = "v1") -> tuple[str, str, list[Diagnostic]]:
    """(SeccompProfile manifest, the localhost profile JSON, warnings).

    The manifest is one YAML document ``kubectl apply -f`` takes; the CRD's
    spec has no ``defaultErrnoRet`` (the API server prunes unknown fields) and
    int64 argument values, which the warnings name.
    """
    spec, diags = export_oci(an, comments=False)
    local, _ = export_oci(an, comments=True)
    name = k8s_name(an.profile.name)
    errno = spec.pop("defaultErrnoRet", None)
    if errno is not None:
        effect = ("the same as runc's default for SCMP_ACT_ERRNO (EPERM), so nothing changes" if errno == 1
                  else f"runc then answers EPERM where this profile answers {action_text(an.default)}: "
                       "use the localhost JSON profile, which keeps it")
        diags.append(Diagnostic(an.profile.default.pos, f"the SeccompProfile CRD has no defaultErrnoRet "
                                f"(the API server drops it): {effect}",
                                severity="note" if errno == 1 else "warning"))
    big = sorted({n for e in spec["syscalls"] for a in e.get("args", ()) for n in e["names"]
                  if max(a["value"], a.get("valueTwo", 0)) > INT64_MAX})
    if big:
        diags.append(Diagnostic(None, f"entries for {', '.join(big)} compare values >= 2^63, which the "
                                "SeccompProfile CRD (int64) cannot hold: the API server rejects the manifest; "
                                "use the localhost JSON profile for this one", severity="warning"))
    manifest = {"apiVersion": f"{K8S_GROUP}/{api_version}", "kind": "SeccompProfile",
                "metadata": {"name": name}, "spec": spec}
    # cluster-scoped since operator 0.9: the node file is operator/NAME.json
    head = (f"# seccomp profile '{an.profile.name}' from {display_path(an.profile.path)} "
            "(sbx export --format k8s)\n"
            "# Install with the security-profiles-operator: kubectl apply -f this file; a Pod then uses\n"
            "#   securityContext:\n#     seccompProfile:\n#       type: Localhost\n"
            f"#       localhostProfile: operator/{name}.json\n"
            f"# Without the operator, copy the localhost profile ({name}.json, sbx export --format k8s\n"
            f"# -o DIR/) to /var/lib/kubelet/seccomp/profiles/{name}.json on every node; then\n"
            f"# localhostProfile: profiles/{name}.json\n")
    text = head + yaml.safe_dump(manifest, sort_keys=False, default_flow_style=None, width=100)
    return text, json.dumps(local, indent=2) + "\n", diags


# ---------------------------------------------------------------- systemd

def _families(an: Analysis, plan: SyscallPlan) -> tuple[str, list[str]] | None:
    """socket() decided by arg0 alone: ("allow"|"deny", AF_ names) for RestrictAddressFamilies=."""
    bdd = an.bdd
    permitted = plan.permitted(bdd, an.default)
    if any(v >= 64 for v in bdd.support(permitted)):
        return None
    names = {v: k for k, v in reversed(list(CONSTANTS.items())) if k.startswith("AF_")}
    top = max(names) + 1           # families are ints: look at low-word values only
    above = bdd.both(bdd.compare(0, ">=", top), bdd.compare(0, "<", 1 << 32))
    rest = bdd.both(permitted, above)
    if rest not in (0, above):
        return None
    ok = {v for v in range(top) if bdd.both(permitted, bdd.compare(0, "==", v)) != 0}
    if rest == 0:
        return "allow", [names[v] for v in sorted(ok) if v in names and v != 0]
    denied = [v for v in range(top) if v not in ok]
    if any(v not in names for v in denied):
        return None
    return "deny", [names[v] for v in denied]


NAMESPACES = {"CLONE_NEWCGROUP": "cgroup", "CLONE_NEWIPC": "ipc", "CLONE_NEWNET": "net", "CLONE_NEWNS": "mnt",
              "CLONE_NEWPID": "pid", "CLONE_NEWUSER": "user", "CLONE_NEWUTS": "uts", "CLONE_NEWTIME": "time"}


def _namespaces(an: Analysis, plan: SyscallPlan) -> list[str] | None:
    """clone() allowed exactly when some CLONE_NEW* flags are clear: those namespace types."""
    bdd = an.bdd
    permitted = plan.permitted(bdd, an.default)
    bits = {CONSTANTS[k]: v for k, v in NAMESPACES.items()}
    denied = [b for b in bits if not bdd.both(permitted, bdd.compare(0, "&==", b, 64, b))]
    mask = sum(denied)
    if not denied or permitted != bdd.compare(0, "&==", 0, 64, mask):
        return None
    return sorted(bits[b] for b in denied)


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


def _systemd_action(a: Action) -> str:
    return action_text(a)[6:-1] if a.kind == "errno" else "kill"


@dataclass
class _Dropin:
    listed: list[str]
    logged: list[str]
    notes: list[str]
    extra: list[str]
    other: dict[str, list[str]]        # deny actions systemd replaces by its default: names


def _allow_listed(an: Analysis, plan: SyscallPlan, d: _Dropin) -> None:
    """Allow-list mode: list what is allowed for all arguments; the rest stays denied."""
    bdd = an.bdd
    permitted = plan.permitted(bdd, an.default)
    denials = list(dict.fromkeys(r.action for r, g, _ in plan.pieces
                                 if g and r.action.kind not in PERMISSIVE))
    partial = permitted not in (0, 1)
    fam = _families(an, plan) if plan.name == "socket" and partial else None
    spaces = _namespaces(an, plan) if plan.name == "clone" and partial else None
    if permitted == 1 or fam or spaces:
        d.listed.append(plan.name)
        d.logged += [plan.name] * any(r.action.kind == "log" and g for r, g, _ in plan.pieces)
    if spaces:
        d.extra.append(f"RestrictNamespaces=~{' '.join(spaces)}")
        d.notes.append("clone: new namespaces refused by RestrictNamespaces= (which also covers unshare() "
                       "and setns())")
    elif fam:
        kind, names = fam
        d.extra.append(f"RestrictAddressFamilies={'~' if kind == 'deny' else ''}{' '.join(names) or 'none'}")
        d.notes.append("socket: address families checked by RestrictAddressFamilies= (EAFNOSUPPORT; "
                       "socket() only: socketpair() and i386 socketcall() are not checked)")
        denials = [a for a in denials if a != Action("errno", 97)]
    elif partial:
        d.notes.append(f"{plan.name}: allowed here only for some arguments; systemd cannot check arguments, "
                       "so it is left denied")
    for a in denials:
        if a != an.default:
            d.other.setdefault(action_text(a), []).append(plan.name)


def _deny_listed(an: Analysis, plan: SyscallPlan, d: _Dropin) -> None:
    """Deny-list mode (the default allows): list what is denied for any argument."""
    permitted = plan.permitted(an.bdd, an.default)
    if permitted == 1:
        return
    denials = [r.action for r, g, _ in plan.pieces if g and r.action.kind not in PERMISSIVE]
    a = denials[0] if denials else an.default
    if a.kind not in ("errno", "kill-process", "kill-thread"):
        d.notes.append(f"{plan.name}: {action_text(a)} has no systemd equivalent: killed instead")
    if permitted:
        d.notes.append(f"{plan.name}: denied here only for some arguments; systemd cannot check arguments, "
                       "so it is denied for all")
    d.listed.append(f"{plan.name}:{_systemd_action(a)}")


def export_systemd(an: Analysis) -> str:
    """A ``[Service]`` drop-in: SystemCallFilter= and friends, the inexpressible parts as comments."""
    prof, default = an.profile, an.default
    allow_list = default.kind not in PERMISSIVE
    d = _Dropin([], [], [], [], {})
    for plan in an.plans:
        (_allow_listed if allow_list else _deny_listed)(an, plan, d)
    notes = d.notes + [f"{text} here, the default action under systemd: {', '.join(sorted(names))}"
                       for text, names in d.other.items()]
    if prof.unknown.value != default:
        notes.append(f"numbers the tables do not name: {action_text(prof.unknown.value)} here, the default "
                     "action under systemd")
    if prof.bad_arch.value.kind != "kill-process":
        notes.append(f"other architectures: {action_text(prof.bad_arch.value)} here; systemd denies them")
    out = [f"# systemd drop-in for profile '{prof.name}' ({display_path(prof.path)}), from "
           "`sbx export --format systemd`",
           "# Install as /etc/systemd/system/UNIT.service.d/sbx-seccomp.conf, then "
           "`systemctl daemon-reload`."]
    if notes:
        out += ["# What systemd cannot express (the safe side was chosen):"] + [f"#   {n}" for n in notes]
    out += ["[Service]", "SystemCallArchitectures=" + " ".join(
        "native" if a == "native" else SYSTEMD_ARCH[a] for a in dict.fromkeys(prof.arches.value))]
    out += _wrap("SystemCallFilter", "" if allow_list else "~", sorted(d.listed))
    if allow_list and default.kind == "errno":
        out.append(f"SystemCallErrorNumber={_systemd_action(default)}")
    elif allow_list:
        out.append(f"# default {action_text(default)}: systemd kills the process (SIGSYS) for the rest")
    out += d.extra + (_wrap("SystemCallLog", "", sorted(d.logged)) if d.logged else [])
    return "\n".join(out) + "\n"
