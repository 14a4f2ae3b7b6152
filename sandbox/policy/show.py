"""Print a resolved profile (extends merged, groups expanded) in the profile language."""
from __future__ import annotations

import errno as _errno
import json

from bpf_filters.ir import Action

from .lower import resolve_arches
from ..confine import SCOPE_NAMES
from .profile import Profile, confinement


def action_text(a: Action) -> str:
    if a.kind == "errno":
        return f"errno({_errno.errorcode.get(a.data, a.data)})"
    if a.kind == "trap" and a.data:
        return f"trap({a.data})"
    return a.kind


def resolved_yaml(prof: Profile, native: str) -> str:
    from ..paths import display_path
    out = [f"# {prof.name}, resolved from {display_path(prof.path)}" +
           (f" (extends {', '.join(prof.extends)})" if prof.extends else ""),
           f"name: {prof.name}",
           f"description: {json.dumps(prof.description)}",
           f"default: {action_text(prof.default.value)}",
           f"unknown: {action_text(prof.unknown.value)}",
           f"arches: [{', '.join(resolve_arches(prof.arches.value, native))}]",
           f"bad_arch: {action_text(prof.bad_arch.value)}"]
    if prof.baseline.value is not None:
        out.append(f'baseline: "{prof.baseline.value}"')
    spec = confinement(prof)
    out.append(f"capabilities: [{', '.join(spec.caps)}]")
    out.append("scope: {" + ", ".join(f"{s}: {'sandbox' if s in spec.scoped else 'any'}"
                                      for s in SCOPE_NAMES) + "}")
    out.append(f"landlock: {spec.mode}")
    if spec.fs is not None:
        out.append("filesystem:")
        words = list(dict.fromkeys(word for word, _p, _o in spec.fs))
        for word in words:
            paths = list(dict.fromkeys(p for w, p, _o in spec.fs if w == word))
            out.append(f"  {word}: [{', '.join(json.dumps(p) for p in paths)}]")
        if not words:
            out.append("  read: []")
    if spec.net is not None:
        out.append("network:")
        for key, val in spec.net.items():
            out.append(f"  {key}: " + (val if isinstance(val, str) else
                                       "[" + ", ".join(json.dumps(p) for p in val) + "]"))
    out.append("rules:")
    for r in prof.rules:
        names = list(dict.fromkeys(n for n, _ in r.names))
        out.append(f"  - {action_text(r.action)}: [{', '.join(names)}]   "
                   f"# {display_path(r.pos.file)}:{r.pos.line}")
        if r.conds:
            out.append(f"    when: [{', '.join(json.dumps(c.text) for c in r.conds)}]")
    return "\n".join(out) + "\n"
