"""The benchmark harness produces its report: sections 1-3 (pure, no kernel, no timing checks)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIX = ROOT / "bench" / "results" / "mix.json"
PROFILES = {"docker-default", "docker-default x86_64-only", "build", "default", "minimal", "python",
            "strict-net", "web"}


def test_quick_run_writes_a_table_and_json_for_sections_1_to_3(tmp_path):
    assert MIX.exists(), "bench/results/mix.json (the recorded syscall mix) belongs in the repository"
    mix = tmp_path / "mix.json"
    shutil.copy(MIX, mix)           # the harness must not need to record (or touch) the shipped mix
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--sections",
                           "1,2,3", "--out", str(tmp_path), "--mix", str(mix)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = (tmp_path / "latest.md").read_text()
    assert "## 3. Compile time" in proc.stdout        # the report is printed too
    for needle in ("# sbx benchmarks", "kernel:", "CPU:", "Python 3.", "## 1. Filter cost",
                   "## 2. Allowed syscalls", "## 3. Compile time", "Target on docker-default"):
        assert needle in text, needle
    assert "PASS" in text or "FAIL" in text
    assert "**error**" not in text
    data = json.loads((tmp_path / "latest.json").read_text())
    assert set(data["sections"]) == {"1", "2", "3"}
    for key in ("date", "kernel", "cpu", "python"):
        assert data["header"][key]
    rows = {r["label"]: r for r in data["sections"]["1"]["profiles"]}
    assert set(rows) == PROFILES
    for label, row in rows.items():
        # every compiled program agrees with the shared policy on every number measured
        assert row["disagreements"] == 0, label
        for prog in ("written", "sbx", "lin", "tree"):
            stats = row["programs"][prog]
            assert stats["insns"] > 0 and stats["mean"] > 0 and stats["weighted"] > 0, (label, prog)
    times = data["sections"]["3"]["ms"]
    assert set(times) == PROFILES
    generated = data["sections"]["3"]["generated"]
    for shape in ("mixed", "values"):
        assert sorted(map(int, generated[shape])) == [1000, 4000, 10000]
        for row in generated[shape].values():
            assert row["compile_ms"] > 0 and (row["insns"] or "too large" in row["error"])
    assert all(row["insns"] for row in generated["values"].values()), "one-value rules merge and fit"
    assert "| mixed  |  1000 |" in text
    assert mix.read_bytes() == MIX.read_bytes()


def test_shared_policy_is_exact_for_the_syscalls_it_rewrites():
    """'allow when not C' means what the profile means, for every value a condition names
    (and its neighbours); only the syscalls listed as dropped may differ."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_filters import X86_64, load_policy, profile_refs, shared_policy
    from bpf_filters.ir import evaluate
    from bpf_filters.syscalls import table
    checked = 0
    for label, ref, only in profile_refs():
        pol = load_policy(ref, only)
        shared, notes = shared_policy(pol)
        t = table("x86_64")
        for name in notes["complemented"]:
            nr = t.nr(name)
            values = {0, 1, 0xFFFFFFFF, 1 << 32, 2**64 - 1}
            for rule in pol.arch("x86_64").rules[nr]:
                for c in rule.conds:
                    for v in c.values:
                        values |= {v, v - 1, v + 1, v | c.mask & 0xFFFF_FFFF, v & ~c.mask}
            for v in values:
                args = tuple(v & (2**64 - 1) if i in (0, 1, 2) else 0 for i in range(6))
                want = evaluate(pol, X86_64, nr, args).action
                assert evaluate(shared, X86_64, nr, args).action == want, (label, name, hex(v))
                checked += 1
    assert checked > 100


def test_the_readme_table_has_one_row_per_section_naming_the_script_run_py_uses():
    """bench/README.md's section table: one row per section of run.py, and where run.py's
    docstring names the script a section runs, that section's row names the same script."""
    import re
    sys.path.insert(0, str(ROOT / "bench"))
    import run
    rows = {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| (.*)$",
                                                  (ROOT / "bench" / "README.md").read_text(), re.M)}
    assert sorted(rows) == list(run.ALL_SECTIONS)
    scripts = dict(re.findall(r"\b(\d+) [^(),]*\(bench/(bench_\w+\.py)\)", " ".join(run.__doc__.split())))
    assert len(scripts) >= 5, scripts
    for number, script in scripts.items():
        assert f"bench/{script}" in rows[int(number)], (number, script)
