"""Large profiles: consecutive values become ranges, compile work grows near-linearly, and a
program over the kernel's 4,096 instructions is a positioned error (never a traceback) that
`sbx check` fails with SBX145."""
import subprocess
import sys
from pathlib import Path

import pytest

from bpf_filters.compiler import compile_policy
from bpf_filters.syscalls import AUDIT_ARCH, table
from sandbox.checks import check_profile
from sandbox.policy import PolicyError, build_filter, load_profile, lower
from tests.conftest import REPO

ROOT = REPO
sys.path.insert(0, str(ROOT / "bench"))
from bench_scale import profile_text  # noqa: E402

X86 = AUDIT_ARCH["x86_64"]
IOCTL = table("x86_64").nr("ioctl")
ALLOW, EPERM = 0x7FFF0000, 0x50001


def sbx(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "sandbox", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def write(tmp_path: Path, rules: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(f"name: big\ndefault: errno(EPERM)\nrules:\n{rules}")
    return p


@pytest.mark.parametrize("op, inside", [("in", ALLOW), ("not in", EPERM)], ids=["in", "not in"])
def test_two_thousand_consecutive_values_compile_to_a_range_check(tmp_path, op, inside):
    values = ", ".join(str(v) for v in range(1000, 3000))
    p = write(tmp_path, f'  - allow: ioctl\n    when: ["arg1 {op} [{values}]"]\n')
    flt = build_filter(load_profile(str(p)))
    assert len(flt.insns) < 30, len(flt.insns)           # was 5,967: refused by the kernel
    outside = EPERM if inside == ALLOW else ALLOW
    for v, want in ((999, outside), (1000, inside), (2017, inside), (2999, inside), (3000, outside),
                    (1 << 32 | 1000, inside)):            # arg1 is an int: the low word counts
        assert flt.run(X86, IOCTL, (0, v)).value == want, hex(v)


def test_one_rule_per_value_merges_into_one_set(tmp_path):
    rules = "".join(f'  - allow: ioctl\n    when: ["arg1 == {v}"]\n' for v in range(3000))
    rules += '  - errno(EACCES): ioctl\n    when: ["arg1 == 5000"]\n'
    flt = build_filter(load_profile(str(write(tmp_path, rules))))
    assert len(flt.insns) < 30, len(flt.insns)
    assert flt.run(X86, IOCTL, (0, 2999)).value == ALLOW
    assert flt.run(X86, IOCTL, (0, 3000)).value == EPERM
    assert flt.run(X86, IOCTL, (0, 5000)).value == 0x50000 | 13


def _lines_executed(fn) -> int:
    """Python lines executed by fn(): a measure of work that does not depend on the machine."""
    count = [0]

    def tracer(frame, event, arg):
        if event == "line":
            count[0] += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    except PolicyError:
        pass
    finally:
        sys.settrace(previous)
    return count[0]


def test_compile_work_grows_near_linearly_with_the_rules(tmp_path):
    """4x the rules, about 4x the work (the layout and the optimizer were quadratic:
    250 -> 1,000 rules took 50x the lines)."""
    work = {}
    for n in (250, 1000):
        p = tmp_path / f"scale-{n}.yaml"
        p.write_text(profile_text(n))
        policy = lower(load_profile(str(p)))
        work[n] = _lines_executed(lambda: compile_policy(policy))
    assert work[1000] < 6 * work[250], work


def test_too_large_is_an_error_at_the_largest_rule_with_what_to_change(tmp_path):
    big = ", ".join(str(v * 2) for v in range(6000))          # even numbers: no run to merge
    p = write(tmp_path, '  - allow: [read, write]\n'
                        f'  - allow: ioctl\n    when: ["arg1 in [{big}]"]\n'
                        '  - allow: fcntl\n    when: ["arg1 in [1, 3, 5, 7, 9]"]\n')
    with pytest.raises(PolicyError) as err:
        build_filter(load_profile(str(p)))
    (d,) = err.value.diagnostics
    assert (d.pos.line, d.pos.col) == (5, 5)                   # `allow: ioctl`
    assert "too large for the kernel" in d.message and "at most 4,096" in d.message
    assert "`in` list" in d.hint and "mask" in d.hint
    assert [(n.pos.line, n.severity) for n in d.notes] == [(7, "note")]
    for cmd in (("compile", p), ("explain", p, "ioctl")):
        r = sbx(*cmd)
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        assert f"{p}:5:5: error: the filter is too large for the kernel" in r.stderr


def test_run_refuses_a_too_large_profile_before_starting_anything(tmp_path):
    p = tmp_path / "scale.yaml"
    p.write_text(profile_text(4000))
    r = sbx("run", "--profile", p, "--", "/bin/echo", "ran")
    assert r.returncode == 2 and "ran" not in r.stdout
    assert "error: the filter is too large for the kernel" in r.stderr and "Traceback" not in r.stderr


def test_check_fails_a_too_large_profile_with_sbx140(tmp_path):
    p = tmp_path / "scale.yaml"
    p.write_text(profile_text(4000))
    prof = load_profile(str(p))
    rep = check_profile(prof)
    (f,) = [f for f in rep.findings if f.rule_id == "SBX145"]
    assert f.severity == "error" and f.pos.file == str(p) and f.pos.line > 3
    r = sbx("check", p)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "[SBX145]" in r.stdout and "Traceback" not in r.stderr
    # a profile of the same shape that fits is not reported
    small = tmp_path / "small.yaml"
    small.write_text(profile_text(250))
    assert "SBX145" not in {f.rule_id for f in check_profile(load_profile(str(small))).findings}
