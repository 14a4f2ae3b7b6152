"""Export: profiles as OCI/Docker JSON and Kubernetes manifests (see the package docstring).

The objects carry the seccomp filter only; the profile's other layers come back as
warnings naming the runtime's own setting for each (``layers.runtime_losses``).
"""
from __future__ import annotations

import json

import yaml

from bpf_filters.ir import Action

from ..paths import display_path
from ..policy import Profile
from ..policy.diagnostics import Diagnostic, PolicyError, Position
from ..policy.profile import baseline_spec
from ..policy.show import action_text

from .analysis import Analysis, MAX_ENTRIES_PER_SYSCALL, OCI_ACTION, OCI_ARCH, render_region
from .layers import runtime_losses

# ---------------------------------------------------------------- OCI / Docker / Kubernetes

def _oci_action(a: Action) -> dict:
    out = {"action": OCI_ACTION[a.kind]}
    if a.kind == "errno":
        out["errnoRet"] = a.data
    return out


class _Written:
    """Where a rule of the policy comes from, for ordering, positions and comments:
    a rule the profile wrote, its ``baseline:``, or one sbx adds itself (the i386
    multiplexer guards, the notify listener guard), placed after them."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.index = {spec.origin: (i, spec) for i, spec in enumerate(profile.rules)}
        baseline = baseline_spec(profile)          # its rules come after every written one
        if baseline is not None:
            self.index[baseline.origin] = (len(profile.rules), baseline)
        self.builtin: dict = {}

    def order(self, origin) -> int:
        if origin in self.index:
            return self.index[origin][0]
        return len(self.profile.rules) + 1 + self.builtin.setdefault(origin, len(self.builtin))

    def pos(self, origin) -> Position | None:
        if origin in self.index:
            return self.index[origin][1].pos
        if origin.file and origin.file != "built-in" and origin.line > 0:
            return Position(origin.file, origin.line, origin.col)
        return self.profile.default.pos

    def comment(self, origin) -> tuple[str, Position | None]:
        """The entry comment's text and where it points."""
        if origin in self.index:
            spec = self.index[origin][1]
            return spec.comment or f"{action_text(spec.action)} rule", spec.pos
        return origin.text or "built-in rule", self.pos(origin)


def _check_actions(an: Analysis, diags: list[Diagnostic]) -> None:
    prof = an.profile
    if an.default.kind == "notify":
        diags.append(Diagnostic(prof.default.pos, "OCI runtimes refuse SCMP_ACT_NOTIFY as the default "
                                "action"))
    specs = _Written(prof)
    for plan in an.plans:
        for rule, region, _ in plan.pieces:
            if not region or rule.action == an.default:
                continue
            pos = specs.pos(rule.origin)
            if rule.action.kind == "notify":
                diags.append(Diagnostic(pos, f"'{plan.name}' uses notify: SCMP_ACT_NOTIFY needs a "
                                        "listenerPath to a seccomp agent, which sbx does not provide",
                                        hint="use errno(...) or trap, or run it under `sbx run`"))
            elif rule.action.kind == "trap" and rule.action.data:
                diags.append(Diagnostic(pos, f"trap({rule.action.data}): OCI has no field for the "
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
    specs = _Written(an.profile)
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
        diags.append(Diagnostic(specs.pos(rule.origin), msg, severity="warning"))


def oci_entries(an: Analysis, comments: bool = True, int64: bool = False) -> list[dict]:
    """The syscalls[] entries: one per (rule, action, argument list), names merged and sorted."""
    specs = _Written(an.profile)
    groups: dict[tuple, list[str]] = {}
    origins: dict[int, object] = {}
    for plan in an.plans:
        for rule, region, shadowed in plan.pieces:
            if not region or rule.action == an.default:
                continue
            try:
                arg_lists = render_region(an.bdd, region, int64)
            except ValueError:
                arg_lists = None
            if arg_lists is None or len(arg_lists) > MAX_ENTRIES_PER_SYSCALL:
                raise PolicyError([Diagnostic(specs.pos(rule.origin), f"'{plan.name}': the argument region this rule "
                                              "decides needs too many libseccomp entries",
                                              hint="simplify the conditions of this and earlier rules")],
                                  an.profile.sources)
            idx = specs.order(rule.origin)
            origins[idx] = rule.origin
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
            text, pos = specs.comment(origins[idx])
            note = " (where no earlier rule decides)" if shadowed else ""
            note += " (32-bit argument: low word)" if exact and args else ""
            where = f" [{display_path(pos.file)}:{pos.line}]" if pos is not None else ""
            entry["comment"] = f"{text}{note}{where}"
        out.append(entry)
    return out


def export_oci(an: Analysis, comments: bool = True, known=None, int64: bool = False,
               bound: dict[str, str] | None = None, losses: str | None = None) -> tuple[dict, list[Diagnostic]]:
    """The OCI ``linux.seccomp`` object (Docker's --security-opt seccomp= file) and warnings.

    *known(name)* tells whether the target's libseccomp can name a syscall;
    runc silently drops rules for names it cannot. *losses* ("oci", "docker",
    "k8s") adds a warning for each of the profile's other layers, which the
    object does not carry, naming that runtime's own setting for it (*bound*:
    --var bindings, to show the paths and ports as they would be).
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
    out["syscalls"] = oci_entries(an, comments, int64)
    if known is not None:
        lost = sorted({n for e in out["syscalls"] for n in e["names"] if not known(n)})
        if lost:
            diags.append(Diagnostic(None, f"libseccomp on this machine cannot name {', '.join(lost)}: "
                                    "runc built against it ignores their rules (they get "
                                    "defaultAction, or ENOSYS above its highest known syscall)",
                                    severity="warning"))
    if losses:
        diags += runtime_losses(an.profile, losses, bound or {})
    return out, diags


def k8s_name(name: str) -> str:
    """A Kubernetes object name (DNS subdomain) from a profile name."""
    out = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in name.lower()).strip("-.")
    return out[:253] or "sbx-profile"


K8S_GROUP = "security-profiles-operator.x-k8s.io"
K8S_VERSIONS = ("v1", "v1beta1")     # v1: security-profiles-operator 1.0+ (storage); v1beta1: 0.x, still served
INT64_MAX = (1 << 63) - 1


def export_k8s(an: Analysis, api_version: str = "v1", known=None,
               bound: dict[str, str] | None = None) -> tuple[str, str, list[Diagnostic]]:
    """(SeccompProfile manifest, the localhost profile JSON, warnings).

    The manifest is one YAML document ``kubectl apply -f`` takes; the CRD's
    spec has no ``defaultErrnoRet`` (the API server prunes unknown fields) and
    int64 argument values, which the warnings name.
    """
    spec, diags = export_oci(an, comments=False, known=known, int64=True, bound=bound, losses="k8s")
    local, _ = export_oci(an, comments=True, int64=True)
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
