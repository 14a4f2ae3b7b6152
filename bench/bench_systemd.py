"""Section 10: exported systemd units under a real service manager, timed (root).

The manager is the tests' (tests/systemd_manager.py: ``systemd --user`` as
root in a private mount namespace). Timed: the manager from exec to ready,
and ``systemctl --user start`` of a oneshot unit running /bin/true, which
returns when the unit has run, with no drop-in and with the drop-ins of
``default`` and ``web`` (seccomp filters, mount namespace, capabilities).
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_markdown import Section

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def _dropin(ref: str, work: Path) -> str:
    res = subprocess.run([sys.executable, "-m", "sandbox", "export", ref, "--format", "systemd",
                          "--var", f"CWD={work}", "--var", "EXEC_ROOT=/usr"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return res.stdout


def systemd_units(args, settings, state) -> Section:
    from bench_report import TITLES
    sys.path.insert(0, str(ROOT))
    from tests.systemd_manager import SystemdManager, available
    sec = Section(10, TITLES[10])
    why = available()
    if why:
        sec.text(f"skipped: {why}")
        sec.data = {"skipped": why}
        return sec
    managers, runs = (2, 3) if settings.quick else (5, 20)
    ready, units = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        work = base / "work"
        work.mkdir()
        for i in range(managers):
            with SystemdManager(base / f"m{i}") as m:
                ready.append(m.ready_seconds)
                if i:
                    continue
                for label, dropin in (("no drop-in", None), ("default", _dropin("default", work)),
                                      ("web", _dropin("web", work))):
                    name = f"bench-{label.replace(' ', '-')}.service"
                    m.install(name, f"[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\n"
                              f"WorkingDirectory={work}\nExecStart=/bin/true\n", dropin)
                    times = []
                    for _ in range(runs):
                        t0 = time.perf_counter()
                        res = m.start_unit(name)
                        times.append(time.perf_counter() - t0)
                        if res.returncode:
                            raise RuntimeError(f"{name} failed: {res.stderr.strip()}\n{m.unit_log(name)}")
                    units[label] = times
    rows = [["manager: exec to ready", managers, _median_ms(ready), round(max(ready) * 1000, 1)]]
    rows += [[f"unit start, /bin/true, {label}", runs, _median_ms(t), round(max(t) * 1000, 1)]
             for label, t in units.items()]
    sec.text("`systemctl --user start` of a oneshot unit returns when the unit has run; its time includes "
             "starting systemctl (a few ms). ms, median and max.")
    sec.table(["what", "runs", "median ms", "max ms"], rows)
    sec.data = {"ready_ms": [round(r * 1000, 1) for r in ready],
                "units_ms": {k: [round(x * 1000, 1) for x in v] for k, v in units.items()}}
    return sec
