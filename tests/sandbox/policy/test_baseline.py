"""``baseline:``: syscalls newer than the profile's oldest kernel answer ENOSYS unless named.

The rule is checked on the compiled filter through the interpreter, for every
number of every table, against the ages (``newer_than``) and the names the
profile's rules use; and ``sbx check`` SBX138 (a probed syscall denied with
something its callers do not fall back from) is checked on the cases the
fallback table distinguishes.
"""
import textwrap

import pytest
from click.testing import CliRunner

from bpf_filters import syscalls
from bpf_filters.ir import Action
from sandbox.checks import check_profile
from sandbox.cli import cli
from sandbox.policy import PolicyError, build_filter, load_profile, lower

ENOSYS = Action("errno", 38)
EPERM = Action("errno", 1)


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def profile(tmp_path, baseline, rules="  - allow: [read, write, exit_group, openat2]\n",
            extra="arches: [x86_64, i386, x32, aarch64]\n"):
    line = f"baseline: {baseline}\n" if baseline is not None else ""
    return write(tmp_path, f"name: p\ndefault: errno(EPERM)\n{line}{extra}rules:\n{rules}")


@pytest.mark.parametrize("arch", syscalls.ARCHES)
def test_every_unnamed_syscall_newer_than_the_baseline_gets_enosys_on_every_abi(tmp_path, arch):
    flt = build_filter(load_profile(profile(tmp_path, '"5.4"')))
    plain = build_filter(load_profile(profile(tmp_path, None)))
    table = syscalls.table(arch)
    newer = syscalls.newer_than(arch, "5.4") - {"openat2"}
    assert newer and "faccessat2" in newer or arch not in ("x86_64", "aarch64")
    for name, nr in table.by_name.items():
        got = flt.explain(table.audit_arch, nr)
        assert got.consistent
        if name in newer:
            assert got.result.value == ENOSYS.ret, name
            assert got.decision.rule.origin.line == 3
        else:
            assert got.result.value == plain.run(table.audit_arch, nr).value, name


def test_a_named_syscall_keeps_its_rule_even_when_newer_than_the_baseline(tmp_path):
    rules = "  - allow: [read, openat2]\n  - errno(EPERM): faccessat2\n"
    pol = lower(load_profile(profile(tmp_path, "5.4", rules, "")))
    x86 = pol.arch("x86_64")
    table = syscalls.table("x86_64")
    assert [r.action for r in x86.rules[table.nr("openat2")]] == [Action("allow")]
    assert [r.action for r in x86.rules[table.nr("faccessat2")]] == [EPERM]
    assert [r.action for r in x86.rules[table.nr("fchmodat2")]] == [ENOSYS]
    assert table.nr("statx") not in x86.rules          # 4.11: older than the baseline


def test_the_baseline_rule_follows_conditional_rules_of_other_syscalls_only(tmp_path):
    # a conditional rule names the syscall: the baseline does not add a fallback behind it
    rules = '  - allow: faccessat2\n    when: ["arg3 == 0"]\n'
    pol = lower(load_profile(profile(tmp_path, "5.4", rules, "")))
    rs = pol.arch("x86_64").rules[syscalls.table("x86_64").nr("faccessat2")]
    assert [r.action for r in rs] == [Action("allow")]


def test_an_unquoted_release_means_what_it_says(tmp_path):
    # YAML reads 5.10 as the float 5.1; the profile keeps the text as written
    prof = load_profile(profile(tmp_path, "5.10", extra=""))
    assert prof.baseline.value == "5.10"
    newer = {r.origin.line for rs in lower(prof).arch("x86_64").rules.values() for r in rs
             if r.action == ENOSYS}
    assert newer == {3}
    rules, table = lower(prof).arch("x86_64").rules, syscalls.table("x86_64")
    assert table.nr("epoll_pwait2") in rules                # 5.11
    assert table.nr("process_madvise") not in rules         # 5.10: the baseline itself has it
    assert table.nr("close_range") not in rules             # 5.9


def test_a_base_s_baseline_is_inherited_and_a_child_s_wins(tmp_path):
    base = write(tmp_path, 'name: base\ndefault: errno(EPERM)\nbaseline: "5.4"\nrules: []\n', "base.yaml")
    child = write(tmp_path, "name: child\nextends: [base.yaml]\nrules: []\n", "child.yaml")
    other = write(tmp_path, 'name: other\nextends: [base.yaml]\nbaseline: "6.1"\nrules: []\n',
                  "other.yaml")
    inherited = load_profile(child)
    assert inherited.baseline.value == "5.4" and inherited.baseline.pos.file == base
    assert load_profile(other).baseline.value == "6.1"


@pytest.mark.parametrize("value, message", [
    ('"5"', "bad kernel release '5': expected MAJOR.MINOR"),
    ('"5.x"', "bad kernel release '5.x'"),
    ('"6.19"', "baseline 6.19 is newer than the syscall tables (Linux 6.18)"),
    ('"3.2"', "x86_64 syscall ages start at 3.3"),
    ("[5.4]", "baseline must be a single value"),
], ids=["no minor", "not a number", "newer than the tables", "older than the history",
        "a list"])
def test_a_bad_baseline_is_an_error_at_its_position(tmp_path, value, message):
    path = profile(tmp_path, value)
    with pytest.raises(PolicyError) as err:
        load_profile(path)
    text = err.value.render()
    col = 12 if value.startswith('"') else 11        # inside the quotes
    assert f"{path}:3:{col}: error: " in text and message in text
    result = CliRunner().invoke(cli, ["explain", path, "read"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_explain_names_the_baseline_line_and_the_syscall_s_age(tmp_path):
    path = profile(tmp_path, '"5.4"', extra="")
    out = CliRunner().invoke(cli, ["explain", path, "faccessat2", "--arch", "x86_64"]).output
    assert "decision: errno(ENOSYS)" in out
    assert f'{path}:3: baseline: "5.4"' in out
    assert "faccessat2 is in Linux 5.8 on x86_64, newer than the baseline 5.4" in out
    out = CliRunner().invoke(cli, ["explain", path, "statx", "--arch", "x86_64"]).output
    assert "default action" in out and "baseline" not in out


def test_the_resolved_profile_shows_the_baseline(tmp_path):
    from sandbox.policy.show import resolved_yaml
    assert 'baseline: "5.4"' in resolved_yaml(load_profile(profile(tmp_path, "5.4")), "x86_64")


def test_the_oci_export_carries_the_baseline_rules(tmp_path):
    from sandbox import interop
    spec, _ = interop.export_oci(interop.analyze(load_profile(profile(tmp_path, "5.4", extra=""))))
    enosys = [e for e in spec["syscalls"] if e.get("errnoRet") == 38]
    assert len(enosys) == 1 and "faccessat2" in enosys[0]["names"]
    assert "openat2" not in enosys[0]["names"]
    assert "baseline" in enosys[0]["comment"] and ":3]" in enosys[0]["comment"]


# --------------------------------------------------------------------------- SBX138

def probe_findings(path):
    return {(tuple(f.syscalls), f.pos.line) for f in check_profile(load_profile(path)).findings
            if f.rule_id == "SBX138"}


@pytest.mark.parametrize("rule, flagged", [
    ("  - errno(EPERM): faccessat2\n", True),
    ("  - errno(ENOSYS): faccessat2\n", False),
    ("  - kill-process: rseq\n", True),            # glibc falls back on any error, not a kill
    ("  - errno(EPERM): rseq\n", False),
    ("  - errno(EPERM): copy_file_range\n", False),  # Go falls back on EPERM too
    ("  - errno(EACCES): copy_file_range\n", True),
    ("  - trap: getrandom\n", True),
], ids=["faccessat2 EPERM", "faccessat2 ENOSYS", "rseq killed", "rseq EPERM",
        "copy_file_range EPERM", "copy_file_range EACCES", "getrandom trapped"])
def test_sbx138_flags_a_probed_syscall_denied_with_an_answer_some_library_does_not_fall_back_from(
        tmp_path, rule, flagged):
    allow = ("  - allow: [faccessat2, rseq, copy_file_range, getrandom, statx, preadv2, pwritev2, "
             "fchmodat2, close_range, pidfd_open, pidfd_send_signal]\n")
    path = profile(tmp_path, None, rule + allow, "")
    name = rule.split(": ")[1].strip()
    assert (((name,), 4) in probe_findings(path)) is flagged


def test_sbx138_leaves_a_denial_of_some_arguments_alone(tmp_path):
    # refusing setuid bits is an operation the caller must see refused, not a missing syscall
    rule = ('  - errno(EPERM): fchmodat2\n    when: ["arg2 & S_ISUID|S_ISGID != 0"]\n'
            "  - allow: [fchmodat2, statx, getrandom, preadv2, pwritev2, faccessat2]\n")
    assert probe_findings(profile(tmp_path, None, rule, "")) == set()


def test_sbx138_points_at_the_default_when_the_default_denies_and_a_baseline_clears_it(tmp_path):
    old = probe_findings(profile(tmp_path, None, extra=""))
    assert (("faccessat2",), 2) in old and (("statx",), 2) in old
    new = probe_findings(profile(tmp_path, '"5.4"', extra=""))
    assert not any(names == ("faccessat2",) or names == ("fchmodat2",) for names, _ in new)
    assert (("statx",), 2) in new                   # 4.11 is older than the baseline: still EPERM


def test_sbx138_is_quiet_on_the_built_in_profiles():
    for name in ("default", "web", "minimal", "build", "python", "strict-net"):
        assert not probe_findings(name), name
