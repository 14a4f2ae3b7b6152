"""Record, store and load the real syscall mix the filter-cost benchmark weights by.

The mix is recorded once with the seccomp user-notification supervisor
(``sandbox.kernel.notify.run_supervised``, unprivileged, exact counts) over a
small everyday workload: Python importing json and sqlite3, ``git status`` in
a scratch repository, ``tar czf`` of the source tree. It is stored as JSON
(bench/results/mix.json) and reused, so every run weights by the same mix.

For the syscalls a profile compares arguments of, the argument tuples are
kept (only the compared argument positions; the others are zeroed, since no
filter reads them), so arg-filtered syscalls cost what they really cost.

Usage: python3 bench/bench_mix.py [--out FILE]   (records and writes the mix)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bpf_filters.syscalls import table  # noqa: E402

DEFAULT_MIX = ROOT / "bench" / "results" / "mix.json"
WORKLOAD_TEXT = ['python3 -c "import json, sqlite3"', "git status (scratch repository)",
                 "tar czf (bpf_filters/, profiles/)"]


@dataclass
class Mix:
    """x86_64 syscall counts; ``args[nr]`` holds (args tuple, count) samples."""
    counts: dict[int, int]
    args: dict[int, list[tuple[tuple[int, ...], int]]] = field(default_factory=dict)
    arg_positions: dict[int, list[int]] = field(default_factory=dict)
    workload: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def samples(self):
        """(nr, args, weight) triples; the weights sum to 1."""
        total = self.total
        for nr, n in sorted(self.counts.items()):
            kept = self.args.get(nr)
            if not kept:
                yield nr, (0,) * 6, n / total
                continue
            seen = sum(c for _, c in kept)
            for args, c in kept:
                yield nr, args, n / total * c / seen

    def to_json(self) -> dict:
        t = table("x86_64")
        return {
            "arch": "x86_64", "total": self.total, "workload": self.workload,
            "calls": [{"nr": nr, "name": t.name(nr) if nr in t.by_nr else None, "count": n,
                       **({"arg_positions": self.arg_positions[nr],
                           "args": [[list(a), c] for a, c in self.args[nr]]}
                          if nr in self.args else {})}
                      for nr, n in sorted(self.counts.items(), key=lambda kv: -kv[1])],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Mix":
        counts, args, positions = {}, {}, {}
        for row in data["calls"]:
            counts[row["nr"]] = row["count"]
            if "args" in row:
                args[row["nr"]] = [(tuple(a), c) for a, c in row["args"]]
                positions[row["nr"]] = row["arg_positions"]
        return cls(counts, args, positions, data.get("workload", []))


def load_mix(path: Path) -> Mix | None:
    try:
        return Mix.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def _scratch_repo(work: Path) -> Path:
    """A small committed git repository with one modified and one new file."""
    repo = work / "repo"
    shutil.copytree(ROOT / "bpf_filters", repo / "bpf_filters",
                    ignore=shutil.ignore_patterns("__pycache__", "*.o"))
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost",
           "-c", "init.defaultBranch=main"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(git + cmd, check=True, stdout=subprocess.DEVNULL)
    with open(repo / "bpf_filters" / "ir.py", "a") as fh:
        fh.write("\n# changed\n")
    (repo / "untracked.txt").write_text("new\n")
    return repo


def arg_positions_of_profiles(refs: list[str]) -> dict[int, set[int]]:
    """x86_64 nr -> the argument positions any of the profiles compares."""
    from sandbox.policy import load_profile, lower
    out: dict[int, set[int]] = {}
    for ref in refs:
        ap = lower(load_profile(ref)).arch("x86_64")
        for nr, rules in ap.rules.items():
            for r in rules:
                for c in r.conds:
                    out.setdefault(nr, set()).add(c.arg)
    return out


def record_mix(refs: list[str]) -> Mix:
    """Run the workload under the notify supervisor and count its syscalls."""
    from sandbox.kernel.notify import AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, run_supervised
    positions = arg_positions_of_profiles(refs)
    counts: Counter = Counter()
    samples: dict[int, Counter] = {}

    def on_record(rec) -> None:
        if rec.arch != AUDIT_ARCH_X86_64 or rec.nr & X32_SYSCALL_BIT:
            return
        counts[rec.nr] += 1
        pos = positions.get(rec.nr)
        if pos:
            kept = tuple(a if i in pos else 0 for i, a in enumerate(rec.args))
            samples.setdefault(rec.nr, Counter())[kept] += 1

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    with tempfile.TemporaryDirectory(prefix="sbx-mix-") as tmp:
        work = Path(tmp)
        repo = _scratch_repo(work)
        commands = [["python3", "-c", "import json, sqlite3"],
                    ["git", "-C", str(repo), "status"],
                    ["tar", "czf", str(work / "out.tgz"), "-C", str(ROOT), "bpf_filters", "profiles"]]
        for argv in commands:
            res = _quietly(run_supervised, argv, env=env, on_record=on_record)
            if res.returncode != 0:
                raise RuntimeError(f"mix workload {' '.join(argv)!r} exited {res.returncode}")
    args = {nr: sorted(c.items(), key=lambda kv: -kv[1]) for nr, c in samples.items()}
    return Mix(dict(counts), args, {nr: sorted(positions[nr]) for nr in args}, WORKLOAD_TEXT)


def _quietly(fn, *args, **kwargs):
    """Call *fn* with file descriptor 1 on /dev/null (the workload's output is noise)."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        return fn(*args, **kwargs)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def save_mix(mix: Mix, path: Path) -> None:
    """One call per line, so the file reads as a table."""
    data = mix.to_json()
    rows = ",\n  ".join(json.dumps(row) for row in data.pop("calls"))
    head = json.dumps(data, indent=1)[:-2]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{head},\n "calls": [\n  {rows}\n ]\n}}\n')


def main() -> None:
    from bench_filters import profile_refs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MIX)
    args = parser.parse_args()
    mix = record_mix([ref for _, ref, _ in profile_refs()])
    save_mix(mix, args.out)
    print(f"{mix.total} syscalls, {len(mix.counts)} distinct -> {args.out}")


if __name__ == "__main__":
    main()
