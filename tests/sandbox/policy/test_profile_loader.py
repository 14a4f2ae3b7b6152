"""The profile language: positions, all problems at once, hints, extends, groups."""
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bpf_filters.ir import Action
from bpf_filters.syscalls import AUDIT_ARCH, table
from sandbox.policy import PolicyError, build_filter, builtin_names, load_profile, lower

BAD = "tests/fixtures/bad"
X86 = AUDIT_ARCH["x86_64"]


def errors_of(path):
    with pytest.raises(PolicyError) as exc:
        load_profile(path)
    return exc.value, exc.value.render()


def test_every_problem_of_a_file_is_reported_with_position_and_hint():
    err, text = errors_of(f"{BAD}/typos.yaml")
    expected = [
        ("2:10", "unknown errno 'EPRM'", "did you mean 'EPERM'?"),
        ("4:13", "unknown syscall 'opne'", "did you mean 'open'?"),
        ("5:5", "unknown action 'alow'", "did you mean 'allow'?"),
        ("7:22", "unknown constant 'AF_UNX'", "did you mean 'AF_UNIX'?"),
        ("7:42", "expected arg0..arg5, found 'arg7'", None),
        ("9:13", "does not fit the 32-bit argument arg0 of socket", None),
        ("10:13", "unknown group '@no-such-group'", None),
    ]
    for where, msg, hint in expected:
        line = next((l for l in text.splitlines() if l.startswith(f"{BAD}/typos.yaml:{where}: error:")), None)
        assert line is not None, f"no error at {where}:\n{text}"
        assert msg in line and (hint is None or hint in line)
    # the source line and a caret under the bad token follow each error
    assert "      when: [\"arg0 in [AF_UNX, AF_INET]\"" in text
    assert re.search(r"\n\s+\^~~~~~\n", text)
    assert text.rstrip().endswith("errors in profile")


def test_duplicate_key_points_at_both_places():
    _, text = errors_of(f"{BAD}/dupkey.yaml")
    assert f"{BAD}/dupkey.yaml:3:1: error: duplicate key 'default'" in text
    assert f"{BAD}/dupkey.yaml:2:1: note: first defined here" in text


def test_extends_cycle_is_an_error_not_a_hang():
    _, text = errors_of(f"{BAD}/cycle-a.yaml")
    assert "extends itself" in text


def test_yaml_syntax_error_has_a_position():
    _, text = errors_of(f"{BAD}/syntax.yaml")
    assert re.search(rf"{BAD}/syntax.yaml:\d+:\d+: error: invalid YAML", text)


def test_unknown_profile_name_suggests_a_builtin():
    _, text = errors_of("defualt")
    assert "no profile 'defualt'" in text and "did you mean 'default'?" in text


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_profile_compiles_and_denies_by_default(name):
    prof = load_profile(name)
    assert prof.default.value.denies
    assert prof.bad_arch.value == Action("kill-process")
    flt = build_filter(prof)
    assert flt.run(AUDIT_ARCH["i386"], 20).value == 0x80000000, "int 0x80 is another arch: killed"
    assert flt.run(X86, 0x40000000 | 39).value == 0x80000000, "x32 numbers are killed"
    assert flt.run(X86, 1000).value == 0x50000 | 38, "numbers above the table: ENOSYS"


def test_extending_profile_rules_come_first_and_settings_are_inherited(tmp_path):
    p = tmp_path / "child.yaml"
    p.write_text("name: child\nextends: default\nrules:\n  - errno(EACCES): getppid\n")
    prof = load_profile(str(p))
    assert prof.default.value == load_profile("default").default.value
    pol = lower(prof)
    nr = table("x86_64").nr("getppid")
    flt = build_filter(prof)
    assert flt.run(X86, nr).value == 0x50000 | 13
    ex = flt.explain(X86, nr)
    assert ex.decision.rule.origin.file == str(p) and ex.decision.rule.origin.line == 4
    assert ex.consistent and pol.arch("x86_64") is not None


def test_local_groups_and_nested_groups(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("name: g\ndefault: kill-process\ngroups:\n  mine: ['@basic-io', getpid]\n"
                 "rules:\n  - allow: '@mine'\n")
    flt = build_filter(load_profile(str(p)))
    t = table("x86_64")
    assert flt.run(X86, t.nr("getpid")).value == 0x7FFF0000
    assert flt.run(X86, t.nr("read")).value == 0x7FFF0000
    assert flt.run(X86, t.nr("ptrace")).value == 0x80000000


def test_masked_and_symbolic_conditions(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: c\ndefault: errno(EPERM)\nrules:\n"
                 "  - allow: clone\n    when: ['arg0 & (CLONE_NEWUSER|CLONE_NEWNS) == 0']\n"
                 "  - allow: openat\n    when: ['arg2 & O_ACCMODE == O_RDONLY']\n")
    flt = build_filter(load_profile(str(p)))
    t = table("x86_64")
    assert flt.run(X86, t.nr("clone"), (0x11,)).value == 0x7FFF0000
    assert flt.run(X86, t.nr("clone"), (0x10000000 | 0x11,)).value == 0x50001
    assert flt.run(X86, t.nr("openat"), (0, 0, 0x80000)).value == 0x7FFF0000
    assert flt.run(X86, t.nr("openat"), (0, 0, 0x41)).value == 0x50001


yaml_text = st.lists(st.sampled_from(list("abcdefgxyz_:-[]{}\"'@#|&=!<>() ,\n\t0123456789") +
                                     ["allow", "rules", "when", "arg0", "default", "name",
                                      "errno(", "kill-process", "AF_INET", "extends", "  - ",
                                      "name: x\n", "default: errno(EPERM)\n", "rules:\n",
                                      "  - allow: ", "    when: ", "read", "socket"]),
                     max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_text)
def test_malformed_input_never_gives_a_traceback_or_a_filter(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_text(text)
    try:
        prof = load_profile(str(path))
    except PolicyError as e:
        for d in e.diagnostics:
            assert d.pos is not None and d.pos.line >= 1 and d.pos.col >= 1, d.message
        return
    build_filter(prof)       # whatever loads must compile


conditions = st.lists(st.sampled_from(list("arg0123456789 &|=!<>[],~x()") +
                                      ["in", "not in", "AF_INET", "0x", "CLONE_NEWUSER", "-",
                                       "arg0 ", "arg1 ", "== ", "& ", "in [", "]"]),
                      max_size=20).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conditions)
def test_random_conditions_compile_or_fail_with_a_position(tmp_path_factory, cond):
    path = tmp_path_factory.mktemp("cond") / "p.yaml"
    path.write_text("name: p\ndefault: errno(EPERM)\nrules:\n  - allow: socket\n"
                    f"    when: [{cond!r}]\n".replace("'", '"') if '"' not in cond else
                    "name: p\ndefault: errno(EPERM)\nrules: []\n")
    try:
        prof = load_profile(str(path))
    except PolicyError as e:
        assert all(d.pos is not None and d.pos.line == 5 for d in e.diagnostics), e.render()
        return
    build_filter(prof)


# A condition must never vanish: every text yields a condition or a positioned diagnostic.
condition_texts = st.one_of(
    conditions,
    st.lists(st.sampled_from(["arg0", "arg1", " == ", " & ", " in [", "]", ", ", " != ", "0", "00",
                              "0644", "08", "09", "0o7", "0o8", "0x", "0xff", "-0", "-010", "1" * 50,
                              "9" * 5000, "O_CREAT", "|", "~", "(", ")", " not in [", "\t"]),
             max_size=12).map("".join),
    st.text(max_size=40),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(condition_texts)
@example("arg0 == 0644")
@example("arg0 == 08")
@example("arg1 in [1, 0099]")
@example("arg0 == " + "9" * 5000)
def test_a_condition_string_yields_a_condition_or_a_positioned_diagnostic(text):
    from sandbox.policy.conditions import parse_condition
    from sandbox.policy.diagnostics import Position

    spec, diags = parse_condition(text, Position("p.yaml", 5, 12))
    assert (spec is None) != (not diags), (text, spec, diags)
    for d in diags:
        assert d.pos is not None and d.pos.file == "p.yaml" and d.pos.line == 5 and d.pos.col >= 12


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(condition_texts.filter(lambda t: '"' not in t and "\\" not in t and t.isprintable()))
@example("arg0 == 0644")
@example("arg0 == 08")
def test_a_loaded_rule_keeps_every_condition_it_was_written_with(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("keep") / "p.yaml"
    path.write_text("name: p\ndefault: errno(EPERM)\nrules:\n  - allow: ptrace\n"
                    f'    when: ["{text}"]\n')
    try:
        prof = load_profile(str(path))
    except PolicyError as e:
        assert e.diagnostics and all(d.pos is not None for d in e.diagnostics), e.render()
        return
    (rule,) = [r for r in prof.rules if r.pos.file == str(path)]
    assert len(rule.conds) == 1, text


@pytest.mark.parametrize("text, value", [
    ("arg0 == 0644", 0o644), ("arg0 == 00", 0), ("arg0 == 0", 0), ("arg0 == -010", -8),
    ("arg0 == 0o755", 0o755), ("arg0 == 0x1F", 31), ("arg0 == 10", 10)])
def test_a_leading_zero_means_octal_as_in_c(text, value):
    from sandbox.policy.conditions import parse_condition
    from sandbox.policy.diagnostics import Position

    spec, diags = parse_condition(text, Position("p.yaml", 1, 1))
    assert not diags and spec.values == (value,)


@pytest.mark.parametrize("number, message", [
    ("08", "'08' is not an octal number"), ("0o9", "'0o9' is not an octal number"),
    ("9" * 5000, "too large for any argument"), ("0x" + "f" * 70, "too large for any argument")])
def test_bad_numbers_are_positioned_errors_and_the_rule_is_not_kept(tmp_path, number, message):
    p = tmp_path / "p.yaml"
    p.write_text(f"name: p\ndefault: errno(EPERM)\nrules:\n  - allow: ptrace\n    when: ['arg0 == {number}']\n")
    with pytest.raises(PolicyError) as exc:
        load_profile(str(p))
    (d,) = [d for d in exc.value.diagnostics if d.severity == "error"]
    assert message in d.message and d.pos.line == 5 and d.pos.col == 21


def test_redefining_a_builtin_group_the_extended_profile_uses_is_an_error_at_the_redefinition(
        tmp_path):
    """default denies "@debug" (ptrace, ...) with EPERM; a profile extending it that
    redefined @debug as [getpid] would quietly turn that rule into one about getpid.
    The loader refuses it where the group is written again, with a note at the
    built-in definition, and sbx exits 2 for it."""
    import subprocess
    import sys
    from pathlib import Path
    from sandbox.paths import builtin_dir
    assert '"@debug"' in (Path(builtin_dir()) / "default.yaml").read_text()
    groups = Path(builtin_dir()) / "groups.yaml"
    first = next(i for i, line in enumerate(groups.read_text().splitlines(), 1)
                 if line.strip() == "debug:")
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\nextends: [default]\ngroups:\n  other: [getppid]\n  debug: [getpid]\n"
                 "rules:\n  - allow: '@debug'\n")
    err, text = errors_of(str(p))
    assert f"{p}:5:3: error: group '@debug' is already defined" in text, text
    assert "(give the group a new name)" in text or "hint: give the group a new name" in text
    assert re.search(rf"{re.escape(str(groups))}:{first}:\d+: note: first defined here", text), text
    assert not [d for d in err.diagnostics if "'@other'" in d.message]     # a new name is fine
    for argv in (["check", str(p)], ["compile", str(p)]):
        proc = subprocess.run([sys.executable, "-m", "sandbox", *argv], capture_output=True,
                              text=True, cwd=Path(__file__).resolve().parents[3])
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "mine.yaml:5:3: error: group '@debug' is already defined" in proc.stderr, proc.stderr
        assert "groups.yaml" in proc.stderr and "note: first defined here" in proc.stderr
