"""The drift gate: a profile's semantic diff against an earlier version of it, as findings.

``sbx check --baseline OLD.yaml NEW.yaml`` and ``sbx diff --format sarif``
turn each ``sandbox.diff.Change`` into a ``checks.Finding``: SBX140 (error)
for a widening, SBX141 (info) for a narrowing, SBX142 (note) for another
change of answer. The other layers (``sandbox.layerdiff``): SBX143 (error)
for a capability, scope, Landlock, filesystem or network widening, SBX141
for a narrowing there. Changes that are the same on several ABIs
(same syscall name, region, actions and rules) become one finding naming the
ABIs. A finding points at the rule of the new profile that decides the region
(its ``default:`` line when no rule does) and carries the old profile's rule
as a note, so SARIF shows both places.
"""
from __future__ import annotations

from .checks import Finding, finding
from .diff import Change, Diff, Where, region_text
from .policy.diagnostics import Diagnostic, Position
from .policy.profile import Profile
from .policy.show import action_text

KIND_ID = {"widening": "SBX140", "narrowing": "SBX141", "change": "SBX142"}
VERB = {"widening": "widened", "narrowing": "narrowed", "change": "answers differently"}


def _pos(prof: Profile, by: list[Where], name: str) -> Position:
    """Where *by* is written in *prof*: the syscall's name in the deciding rule, the
    setting that decides, else the profile's first line (a built-in guard)."""
    for w in by:
        o = w.origin
        if o is None or o.file == "built-in" or o.line <= 0:
            continue
        spec = next((r for r in prof.rules if (r.pos.file, r.pos.line, r.pos.col) ==
                     (o.file, o.line, o.col)), None)
        named = next((p for n, p in spec.names if n == name), None) if spec else None
        return named or Position(o.file, o.line, o.col)
    return Position(prof.path, 1, 1)


def _grouped(d: Diff) -> dict[tuple, list[Change]]:
    groups: dict[tuple, list[Change]] = {}
    for c in d.changes:
        # a class of numbers (unknown, other arches) is one per ABI; a syscall merges ABIs
        key = (c.kind, c.name if c.nr is not None else (c.name, c.arch), region_text(d.bdd, c.region),
               c.old, c.new, tuple(c.old_by), tuple(c.new_by))
        groups.setdefault(key, []).append(c)
    return groups


def findings(d: Diff, old_label: str = "the baseline") -> list[Finding]:
    """The findings of *d* (new profile against *old_label*), widenings first."""
    out: list[Finding] = []
    for (kind, _name, region, old, new, old_by, new_by), changes in _grouped(d).items():
        arches = list(dict.fromkeys(c.arch for c in changes))
        pos = _pos(d.new, list(new_by), changes[0].name)
        was = _pos(d.old, list(old_by), changes[0].name)
        where = "" if region == "any arguments" else f" where {region}"
        msg = (f"{changes[0].name} {VERB[kind]} on {', '.join(arches)}{where}: {action_text(new)} "
               f"({'; '.join(w.text() for w in new_by)}), was {action_text(old)} in "
               f"{old_label} ({'; '.join(w.text() for w in old_by)})")
        note = Diagnostic(was, f"{old_label} decided it here: {action_text(old)}", severity="note")
        names = [c.name for c in changes if c.nr is not None][:1]
        out.append(finding(KIND_ID[kind], pos, msg, notes=[note], names=names, arches=arches))
    for section, kind, text, item in d.confinement:
        out.append(finding("SBX143" if kind == "widening" else "SBX141",
                           _layer_pos(d.new, section, item),
                           f"{text} (compared with {old_label})"))
    order = {"SBX140": 0, "SBX143": 1, "SBX142": 2, "SBX141": 3}
    return sorted(out, key=lambda f: order[f.rule_id])


def _layer_pos(prof: Profile, section: str, item: str | None = None) -> Position:
    """Where *prof* writes *section*: the entry for *item* (a path, ``bind 8080``, a
    capability) when it has one, else the section's first entry, else line 1."""
    pos = None
    if section == "capabilities":
        pos = prof.capabilities.pos
    elif section == "landlock":
        pos = prof.landlock.pos
    elif section == "scope":
        pos = next((s.pos for s in prof.scope.values() if s.pos is not None), None)
    elif section == "filesystem" and prof.fs:
        pos = next((p for w, text, p in prof.fs if w != "deny" and item is not None
                    and (text.rstrip("/") or "/") == item), prof.fs[0][2])
    elif section == "network" and prof.net:
        key, _, port = (item or "").partition(" ")
        ports = prof.net.get(key)
        mine = [] if isinstance(ports, str) or ports is None else ports
        pos = next((p for t, p in mine if t == port), None) or next(
            (ports[0][1] for ports in prof.net.values() if not isinstance(ports, str) and ports),
            None)
    return pos if pos is not None else Position(prof.path, 1, 1)
