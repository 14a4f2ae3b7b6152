"""``sbx status``: which processes are confined by seccomp, with how many filters."""
from __future__ import annotations

import psutil

from .kernel.seccomp import proc_status

MODES = {"0": "disabled", "1": "strict", "2": "filter"}


def status_lines(pids: list[int], show_all: bool = False) -> tuple[list[str], bool]:
    """Lines to print, and whether every named pid is confined by a filter."""
    explicit = bool(pids)
    if not explicit:
        pids = psutil.pids()
    lines = [f"{'PID':>7}  {'MODE':8} {'FILTERS':>7}  NNP  COMMAND"]
    ok = True
    for pid in pids:
        try:
            st = proc_status(pid)
        except (FileNotFoundError, ProcessLookupError):
            if explicit:
                lines.append(f"{pid:>7}  no such process")
                ok = False
            continue
        except PermissionError:
            lines.append(f"{pid:>7}  permission denied")
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
        lines.append(f"{pid:>7}  {mode:8} {st.get('Seccomp_filters', '0'):>7}  "
                     f"{st.get('NoNewPrivs', '?'):>3}  {cmd[:80]}")
    return lines, ok
