"""``sbx status``: which processes are confined by seccomp, with how many filters and which profile.

The profile comes from the record ``sbx run`` keeps where the command cannot
write (``sandbox.running``); a process no record covers (confined by another
tool, or a daemon reparented away from its sbx run) shows ``-``.
"""
from __future__ import annotations

import psutil

from .kernel.seccomp import proc_status

MODES = {"0": "disabled", "1": "strict", "2": "filter"}


def status_rows(pids: list[int], show_all: bool = False) -> tuple[list[dict], bool]:
    """A row per process to show, and whether every named pid is confined by a filter.
    A row: {pid, mode, filters, no_new_privs, profile, profile_path, command} or, for a
    named pid that cannot be read, {pid, error}."""
    from . import running
    explicit = bool(pids)
    if not explicit:
        pids = psutil.pids()
    rows: list[dict] = []
    ok = True
    for pid in pids:
        try:
            st = proc_status(pid)
        except (FileNotFoundError, ProcessLookupError):
            if explicit:
                rows.append({"pid": pid, "error": "no such process"})
                ok = False
            continue
        except PermissionError:
            rows.append({"pid": pid, "error": "permission denied"})
            ok = False
            continue
        mode = MODES.get(st.get("Seccomp", "0"), st.get("Seccomp", "?"))
        confined = mode == "filter"
        if explicit and not confined:
            ok = False
        if not (confined or explicit or show_all):
            continue
        try:
            cmd = " ".join(psutil.Process(pid).cmdline()) or st.get("Name", "?")
        except psutil.Error:
            cmd = st.get("Name", "?")
        rec = running.profile_of(pid) if confined else None
        rows.append({"pid": pid, "mode": mode, "filters": int(st.get("Seccomp_filters", "0") or 0),
                     "no_new_privs": st.get("NoNewPrivs") == "1",
                     "profile": rec["profile"] if rec else None,
                     "profile_path": rec["path"] if rec and rec["path"] != "-" else None,
                     "profile_mode": rec["mode"] if rec else None,
                     "launched_pid": rec["pid"] if rec else None,
                     "command": cmd})
    return rows, ok


def status_lines(rows: list[dict]) -> list[str]:
    """The rows as the text table."""
    lines = [f"{'PID':>7}  {'MODE':8} {'FILTERS':>7}  NNP  {'PROFILE':14} COMMAND"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['pid']:>7}  {r['error']}")
            continue
        prof = r["profile"] or "-"
        if r["profile_mode"] == "complain":
            prof += " (complain)"
        lines.append(f"{r['pid']:>7}  {r['mode']:8} {r['filters']:>7}  {int(r['no_new_privs']):>3}  "
                     f"{prof:14} {r['command'][:80]}")
    return lines
