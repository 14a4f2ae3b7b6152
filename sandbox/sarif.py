"""Render ``sbx check`` reports as SARIF 2.1.0 and as sbx's own JSON.

SARIF: one run whose driver lists every check (stable ids, default levels);
a result per finding, located by a path relative to the working directory
(GitHub code scanning resolves it against the repository root). A finding in
a file shared by several checked profiles (a base they extend) is one result
naming all of them.  Severity ``info`` becomes level ``none`` with kind
``informational``, as SARIF defines for results that are not problems.

A finding located in a built-in profile (inherited through ``extends``) is
not in the user's repository: unless that file is reachable from the working
directory (a checkout of sbx itself), the result is placed at the ``extends``
entry of the checked profile that brings it in, says in which built-in
profile and line it is, and keeps that place as a related location relative
to ``SBX_BUILTIN`` (described in ``originalUriBaseIds``: sbx's built-in
profiles, shown by ``sbx profiles show NAME``). A built-in profile checked by
name has only that location.
"""
from __future__ import annotations

import os
from urllib.parse import quote

import dataclasses

from .checks import CHECKS, SEVERITIES, Finding, Report
from .paths import builtin_dir, display_path
from .policy.diagnostics import Diagnostic, Position

BUILTIN_BASE = "SBX_BUILTIN"

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
LEVEL = {"error": "error", "warning": "warning", "note": "note", "info": "none"}
# GitHub code scanning ranks results with a numeric security-severity
SECURITY_SEVERITY = {"error": "8.0", "warning": "5.0", "note": "2.0"}
JSON_FORMAT = 1


def uri(path: str) -> str:
    """A path relative to the working directory (or file:// URI outside it) as a URI reference."""
    shown = display_path(path)
    if os.path.isabs(shown):
        return "file://" + quote(shown)
    return quote(shown.replace(os.sep, "/"))


def builtin_file(path: str) -> str | None:
    """*path*'s name among the built-in profiles, if it is one the working directory
    does not reach (then it is not a file of the user's repository), else None."""
    real, base = os.path.realpath(path), os.path.realpath(builtin_dir())
    if os.path.dirname(real) != base and not real.startswith(base + os.sep):
        return None
    shown = display_path(path)
    if not os.path.isabs(shown) and os.path.realpath(shown) == real:
        return None                          # sbx's own checkout: the file is right here
    return os.path.relpath(real, base)


def _location(diag: Diagnostic, message: str | None = None) -> dict:
    region = {"startLine": diag.pos.line, "startColumn": diag.pos.col,
              "endColumn": diag.pos.col + max(1, diag.pos.length)}
    inside = builtin_file(diag.pos.file)
    where = ({"uri": quote(inside.replace(os.sep, "/")), "uriBaseId": BUILTIN_BASE} if inside
             else {"uri": uri(diag.pos.file), "uriBaseId": "%SRCROOT%"})
    loc = {"physicalLocation": {"artifactLocation": where, "region": region}}
    if message:
        loc["message"] = {"text": message}
    return loc


def _rule(check) -> dict:
    props = {"tags": ["security", "seccomp"]}
    if check.severity in SECURITY_SEVERITY:
        props["security-severity"] = SECURITY_SEVERITY[check.severity]
    return {"id": check.id, "name": check.name,
            "shortDescription": {"text": check.short},
            "fullDescription": {"text": check.full},
            "defaultConfiguration": {"level": LEVEL[check.severity]},
            "properties": props}


def _text(d: Diagnostic) -> str:
    return d.message + (f" ({d.hint})" if d.hint else "")


def _result(d: Diagnostic, index: dict[str, int], profiles: list[str]) -> dict:
    res = {"ruleId": d.rule_id, "ruleIndex": index[d.rule_id], "level": LEVEL[d.severity],
           "message": {"text": _text(d)}}
    if d.severity == "info":
        res["kind"] = "informational"
    if d.pos is not None:
        res["locations"] = [_location(d)]
    related = [_location(n, n.message) for n in d.notes if n.pos is not None]
    if related:
        for i, r in enumerate(related):
            r["id"] = i
        res["relatedLocations"] = related
    props: dict = {"profiles": profiles}
    if isinstance(d, Finding):
        if d.syscalls:
            props["syscalls"] = d.syscalls
        if d.arches:
            props["arches"] = d.arches
    res["properties"] = props
    return res


def to_sarif(reports: list[Report], load_errors: list[tuple[str, Diagnostic]],
             version: str = "0") -> dict:
    """The SARIF log of a ``sbx check`` run; *load_errors* are (profile ref, diagnostic)."""
    index = {c.id: i for i, c in enumerate(CHECKS)}
    merged: dict[tuple, tuple[Diagnostic, list[str]]] = {}
    for ref, d in load_errors:
        d = Diagnostic(d.pos, d.message, "error", d.hint, d.notes, "SBX001")
        merged.setdefault(_key(d), (d, []))[1].append(ref)
    relocate = _Relocator()
    for rep in reports:
        for f in rep.findings:
            f = relocate(f, rep.profile)
            entry = merged.setdefault(_key(f), (f, []))
            if rep.profile.name not in entry[1]:
                entry[1].append(rep.profile.name)
    results = [_result(d, index, profiles) for d, profiles in merged.values()]
    run = {
        "tool": {"driver": {"name": "sbx", "version": version,
                            "rules": [_rule(c) for c in CHECKS]}},
        "columnKind": "unicodeCodePoints",
        "results": results,
        "properties": {"profiles": [_profile_summary(r) for r in reports]},
    }
    if any(loc["physicalLocation"]["artifactLocation"].get("uriBaseId") == BUILTIN_BASE
           for r in results for loc in r.get("locations", []) + r.get("relatedLocations", [])):
        run["originalUriBaseIds"] = {BUILTIN_BASE: {"description": {
            "text": "sbx's built-in profiles, installed with sbx, not in this repository "
                    "(sbx profiles show NAME prints one)"}}}
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


class _Relocator:
    """Moves a finding located in a built-in profile to the ``extends`` entry of the
    checked profile that brings that file in (the built-in place becomes a note)."""

    def __init__(self):
        self._files: dict[tuple[str, str], list[str]] = {}

    def __call__(self, f: Diagnostic, prof) -> Diagnostic:
        inside = builtin_file(f.pos.file) if f.pos is not None else None
        if inside is None:
            return f
        via = next(((ref, pos) for ref, pos in prof.base_refs
                    if os.path.realpath(f.pos.file) in self._reaches(ref, prof.path)), None)
        if via is None:
            return f
        ref, pos = via
        name = inside[:-5] if inside.endswith(".yaml") else inside
        where = f"built-in profile {name}, line {f.pos.line}"
        note = Diagnostic(f.pos, f"inherited from here ({where})", "note")
        return dataclasses.replace(f, pos=Position(pos.file, pos.line, pos.col, pos.length),
                                   message=f"{f.message} (inherited from {where}, through "
                                           f"extends: {ref})", notes=[note] + list(f.notes))

    def _reaches(self, ref: str, referrer: str) -> list[str]:
        """The real paths of every file the base *ref* of *referrer* is built from."""
        key = (ref, referrer)
        if key not in self._files:
            from pathlib import Path
            from .policy import PolicyError, find_profile, load_profile
            try:
                found = find_profile(ref, Path(referrer).parent, Path(referrer))
                files = load_profile(found).files if found is not None else []
            except (PolicyError, OSError):
                files = []
            except Exception as err:                 # search.UnsafeProfile: not ours to judge
                from .errors import SbxError
                if not isinstance(err, SbxError):
                    raise
                files = []
            self._files[key] = [os.path.realpath(p) for p in files]
        return self._files[key]


def findings_log(findings: list[Diagnostic], profiles: list[str], version: str = "0",
                 properties: dict | None = None) -> dict:
    """A SARIF log of *findings* about *profiles* (``sbx diff --format sarif``)."""
    index = {c.id: i for i, c in enumerate(CHECKS)}
    run = {
        "tool": {"driver": {"name": "sbx", "version": version,
                            "rules": [_rule(c) for c in CHECKS]}},
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, index, profiles) for f in findings],
        "properties": properties or {},
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _key(d: Diagnostic) -> tuple:
    return (d.rule_id, d.pos.file if d.pos else "", d.pos.line if d.pos else 0,
            d.pos.col if d.pos else 0, d.message)


def _profile_summary(rep: Report) -> dict:
    out = {"name": rep.profile.name, "path": display_path(rep.profile.path), "score": rep.score,
           "counts": rep.counts()}
    if rep.comparison is not None:
        out["comparison"] = rep.comparison
    return out


# --------------------------------------------------------------------------- sbx JSON

def _diag_json(d: Diagnostic) -> dict:
    out: dict = {"rule_id": d.rule_id, "severity": d.severity, "message": d.message}
    if d.hint:
        out["hint"] = d.hint
    if d.pos is not None:
        out.update(file=display_path(d.pos.file), line=d.pos.line, col=d.pos.col)
    if isinstance(d, Finding):
        out.update(syscalls=d.syscalls, arches=d.arches)
    if d.notes:
        out["notes"] = [_diag_json(n) for n in d.notes]
    return out


def to_json(reports: list[Report], load_errors: list[tuple[str, Diagnostic]],
            fail_on: str, exit_code: int) -> dict:
    """sbx's own report format (``format`` is bumped on incompatible changes)."""
    profiles = []
    for rep in reports:
        entry = _profile_summary(rep)
        entry["native"] = rep.native
        entry["surface"] = {k: sum(1 for v in rep.surface.values() if v == k)
                            for k in ("allow", "conditional", "deny")}
        entry["findings"] = [_diag_json(f) for f in rep.findings]
        profiles.append(entry)
    errors = []
    for ref, d in load_errors:
        e = _diag_json(Diagnostic(d.pos, d.message, d.severity, d.hint, d.notes, d.rule_id or "SBX001"))
        e["profile"] = ref
        errors.append(e)
    return {"format": JSON_FORMAT, "tool": "sbx", "fail_on": fail_on, "exit_code": exit_code,
            "severities": list(SEVERITIES), "profiles": profiles, "errors": errors}
