"""sbx refine without a kernel: narrowing, naming, text editing, and the promise
that a refined profile allows exactly the seen denials and changes nothing else.

Every planned change is applied to real profile text, loaded and lowered by
the real loader, and judged with the IR evaluator and the compiled filter.
"""
from __future__ import annotations

import json
import os
import random

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from bpf_filters import syscalls
from bpf_filters.ir import evaluate
from sandbox import refine as rf
from sandbox.denials import Denial
from sandbox.policy.spell import value_text
from sandbox.cli import cli
from sandbox.policy import build_filter, builtin_names, load_profile, lower
from sandbox.policy.conditions import parse_condition
from sandbox.policy.constants import CONSTANTS
from sandbox.policy.diagnostics import Position

X86 = syscalls.table("x86_64")
TOKEN = syscalls.AUDIT_ARCH["x86_64"]
NR = {n: X86.nr(n) for n in ("socket", "ioctl", "ptrace", "getppid", "sendto", "clone", "acct",
                             "openat", "prctl", "uname", "bpf")}

# Everything falls to the default except what the rules name: a profile where
# refine has room to add, with deliberate denials to respect.
BASE = """\
# A test profile.
name: t
default: errno(EPERM)   # deny the rest
rules:
  # ---- denials
  - errno(EACCES): sendto
    when: ["arg4 != 0"]
  - errno(EAFNOSUPPORT): socket
    when: ["arg0 == AF_PACKET"]
  - kill-process: acct
  - errno(EPERM): ioctl
    when: ["arg1 == TIOCSTI"]

  # ---- allows
  - allow: ["@runtime", "@basic-io", "@file-system", "@memory", execve]
  - allow: ioctl
    when: ["arg1 in [TCGETS]"]
"""


def obs(name, *args, count=1, arch="x86_64"):
    nr = syscalls.table(arch).nr(name)
    if arch == "x32":
        nr &= ~syscalls.X32_SYSCALL_BIT
    return Denial(arch, nr, "errno", args=tuple(args) + (0,) * (6 - len(args)) if args else None,
                  count=count)


def refine_text(tmp_path, text, observations, broad=False, name="p.yaml"):
    """(plan, new profile path) after applying and checking the plan."""
    src = tmp_path / name
    src.write_text(text)
    old = lower(load_profile(str(src)))
    plan = rf.plan_changes(old, observations, broad)
    new_text = rf.apply_changes(text, plan, "d.jsonl")
    out = tmp_path / f"new-{name}"
    out.write_text(new_text)
    new_prof = load_profile(str(out))
    build_filter(new_prof)
    rf.check_refined(old, lower(new_prof), plan)
    return plan, out


def decision(path, name, *args):
    pol = lower(load_profile(str(path)))
    return evaluate(pol, TOKEN, X86.nr(name), tuple(args) + (0,) * (6 - len(args))).action


def added_rules(path):
    """The rule lines refine inserted (between the header comment and the first old line)."""
    lines = path.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if "added by sbx refine" in ln)
    out = []
    for ln in lines[start + 1:]:
        if not ln.strip():
            break
        if not ln.strip().startswith("#"):
            out.append(ln.strip())
    return out


# -- narrowing ------------------------------------------------------------------------

def test_socket_denied_only_for_netlink_is_allowed_for_netlink_only(tmp_path):
    seen = [obs("socket", CONSTANTS["AF_NETLINK"], 3, 0, count=2)]
    plan, new = refine_text(tmp_path, BASE, seen)
    assert added_rules(new) == ["- allow: socket", 'when: ["arg0 in [AF_NETLINK]"]']
    assert decision(new, "socket", CONSTANTS["AF_NETLINK"], 2, 9).kind == "allow"
    assert decision(new, "socket", CONSTANTS["AF_INET"]).kind == "errno"
    assert decision(new, "socket", CONSTANTS["AF_PACKET"]).data == 97   # still EAFNOSUPPORT
    assert plan.allowed == 2 and not plan.skipped


def test_two_ioctl_requests_become_one_in_list_with_symbolic_names(tmp_path):
    seen = [obs("ioctl", 1, CONSTANTS["TIOCGWINSZ"]), obs("ioctl", 2, CONSTANTS["FIONREAD"]),
            obs("ioctl", 1, CONSTANTS["TIOCGWINSZ"])]
    _, new = refine_text(tmp_path, BASE, seen)
    assert added_rules(new) == ["- allow: ioctl", 'when: ["arg1 in [TIOCGWINSZ, FIONREAD]"]']
    assert decision(new, "ioctl", 7, CONSTANTS["FIONREAD"]).kind == "allow"
    assert decision(new, "ioctl", 7, CONSTANTS["TIOCSTI"]).kind == "errno"
    assert decision(new, "ioctl", 7, CONSTANTS["TIOCSWINSZ"]).kind == "errno"


def test_a_syscall_no_rule_tests_and_without_selector_is_allowed_by_name(tmp_path):
    plan, new = refine_text(tmp_path, BASE, [obs("getppid", count=3), obs("getpgrp", 5)])
    assert added_rules(new) == ["- allow: [getppid, getpgrp]"]
    assert plan.allowed == 4


def test_too_many_distinct_values_allow_the_name(tmp_path):
    seen = [obs("prctl", v) for v in range(1, rf.MAX_TUPLES + 2)]
    plan, new = refine_text(tmp_path, BASE, seen)
    assert added_rules(new) == ["- allow: prctl"]
    assert plan.allowed == rf.MAX_TUPLES + 1


def test_arguments_the_rules_test_are_pinned_too(tmp_path):
    """socket's rule tests arg0 only; a rule testing arg2 makes refine pin arg2."""
    text = BASE.replace('    when: ["arg0 == AF_PACKET"]',
                        '    when: ["arg0 == AF_NETLINK", "arg2 == NETLINK_AUDIT"]')
    seen = [obs("socket", CONSTANTS["AF_NETLINK"], 3, CONSTANTS["NETLINK_ROUTE"]),
            obs("socket", CONSTANTS["AF_NETLINK"], 3, CONSTANTS["NETLINK_GENERIC"])]
    _, new = refine_text(tmp_path, text, seen)
    assert added_rules(new) == ["- allow: socket",
                                'when: ["arg0 == AF_NETLINK", "arg2 in [NETLINK_ROUTE, NETLINK_GENERIC]"]']
    assert decision(new, "socket", CONSTANTS["AF_NETLINK"], 3, 9).data == 97


def test_pointer_arguments_are_narrowed_to_null_or_not(tmp_path):
    """sendto's rule compares the address pointer with 0: refine says 'arg4 == 0', not an address."""
    seen = [obs("sendto", 3, 0x7FFD0000, 10, 0, 0, 0), obs("sendto", 4, 0x7FFD1000, 99, 0, 0, 0)]
    _, new = refine_text(tmp_path, BASE, seen)
    assert added_rules(new) == ["- allow: sendto", 'when: ["arg4 == 0"]']
    assert decision(new, "sendto", 5, 1, 1, 0, 0).kind == "allow"
    assert decision(new, "sendto", 5, 1, 1, 0, 0x1000).data == 13       # still EACCES


def test_several_combinations_group_into_exact_rules(tmp_path):
    text = BASE.replace('    when: ["arg0 == AF_PACKET"]', '    when: ["arg0 == AF_PACKET", "arg2 == 768"]')
    inet, unix = CONSTANTS["AF_INET"], CONSTANTS["AF_UNIX"]
    seen = [obs("socket", inet, 1, 6), obs("socket", unix, 1, 0), obs("socket", inet, 2, 17)]
    plan, new = refine_text(tmp_path, text, seen)
    assert sorted(tuple(c.conds) for c in plan.changes) == [
        ("arg0 == AF_INET", "arg2 in [IPPROTO_TCP, IPPROTO_UDP]"),
        ("arg0 == AF_UNIX", "arg2 in [IPPROTO_IP]")]
    for args in ((inet, 1, 6), (unix, 1, 0), (inet, 2, 17)):
        assert decision(new, "socket", *args).kind == "allow"
    for args in ((inet, 1, 0), (unix, 1, 6), (CONSTANTS["AF_INET6"], 1, 6)):
        assert decision(new, "socket", *args).kind == "errno"
    # arg1 is tested by no rule and selects nothing: a UDP datagram type changes nothing
    assert decision(new, "socket", inet, 1, 17).kind == "allow"


# -- deliberate denials --------------------------------------------------------------

def test_deliberate_denials_need_broad(tmp_path):
    seen = [obs("acct", 0, count=2), obs("ioctl", 1, CONSTANTS["TIOCSTI"]), obs("getppid")]
    plan, new = refine_text(tmp_path, BASE, seen)
    assert added_rules(new) == ["- allow: getppid"]
    skipped = {s.name: s for s in plan.skipped}
    assert skipped["acct"].needs_broad and "p.yaml:10" in skipped["acct"].reason
    assert skipped["ioctl"].needs_broad and "p.yaml:11" in skipped["ioctl"].reason
    assert decision(new, "acct").kind == "kill-process"

    plan, new = refine_text(tmp_path, BASE, seen, broad=True, name="q.yaml")
    text = new.read_text()
    assert "q.yaml:10 (kill-process: acct)" in text and "# --broad: overrides " in text
    assert decision(new, "acct").kind == "allow"
    assert decision(new, "ioctl", 1, CONSTANTS["TIOCSTI"]).kind == "allow"
    assert not plan.skipped


def test_unknown_arguments_and_a_deliberately_denied_case_need_broad(tmp_path):
    """Audit records carry no arguments: allowing every ioctl would also allow TIOCSTI."""
    plan, _ = refine_text(tmp_path, BASE, [Denial("x86_64", NR["ioctl"], "errno", count=4)])
    assert not plan.changes
    assert plan.skipped[0].needs_broad and "p.yaml:11 (errno(EPERM): ioctl)" in plan.skipped[0].reason
    plan, new = refine_text(tmp_path, BASE, [Denial("x86_64", NR["ioctl"], "errno", count=4)],
                            broad=True, name="b.yaml")
    assert added_rules(new) == ["- allow: ioctl"]


def test_allowed_unknown_and_foreign_abi_denials_are_skipped(tmp_path):
    seen = [obs("getpgrp"), Denial("x86_64", 1000, "errno", args=(0,) * 6),
            obs("getppid", arch="i386"), obs("ioctl", 1, CONSTANTS["TCGETS"])]
    plan, new = refine_text(tmp_path, BASE, seen)
    reasons = {s.name: s.reason for s in plan.skipped}
    assert "already allowed" in reasons["ioctl"]
    assert "not in the syscall table" in reasons["#1000 (x86_64)"]
    assert "i386" in reasons["getppid"] and "arches" in reasons["getppid"]
    assert added_rules(new) == ["- allow: getpgrp"]


def test_an_i386_denial_under_a_profile_that_runs_i386(tmp_path):
    text = BASE.replace("default: errno(EPERM)", "default: errno(EPERM)\narches: [native, i386]")
    plan, new = refine_text(tmp_path, text, [obs("socket", CONSTANTS["AF_NETLINK"], arch="i386")])
    assert added_rules(new) == ["- allow: socket", 'when: ["arg0 in [AF_NETLINK]"]']


# -- naming ----------------------------------------------------------------------------

NAMED = [
    ("socket", 0, CONSTANTS["AF_NETLINK"], None, "AF_NETLINK"),
    ("socket", 1, 0x80803, None, "SOCK_RAW|SOCK_NONBLOCK|SOCK_CLOEXEC"),
    ("socket", 2, 0, {0: {16}}, "NETLINK_ROUTE"),
    ("socket", 2, 6, {0: {2}}, "IPPROTO_TCP"),
    ("ioctl", 1, 0x5401, None, "TCGETS"),
    ("ioctl", 1, 0x1234, None, "0x1234"),
    ("prctl", 0, 15, None, "PR_SET_NAME"),
    ("clone", 0, 0x1200011, None, "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD"),
    ("unshare", 0, 0x10020000, None, "CLONE_NEWNS|CLONE_NEWUSER"),
    ("openat", 2, 0x241, None, "O_WRONLY|O_CREAT|O_TRUNC"),
    ("openat", 2, 0x101001, None, "O_WRONLY|O_SYNC"),
    ("mprotect", 2, 5, None, "PROT_READ|PROT_EXEC"),
    ("mprotect", 2, 0, None, "PROT_NONE"),
    ("fcntl", 1, 1030, None, "F_DUPFD_CLOEXEC"),
    ("setsockopt", 2, 2, {1: {1}}, "SO_REUSEADDR"),
    ("setsockopt", 2, 2, {1: {6}}, "2"),
    ("ptrace", 0, 16, None, "0x10"),
]


@pytest.mark.parametrize("name,arg,value,context,text", NAMED,
                         ids=[f"{n} arg{a} {t}" for n, a, _, _, t in NAMED])
def test_values_are_named_and_read_back_to_the_same_number(name, arg, value, context, text):
    assert value_text(name, arg, value, context) == text
    spec, diags = parse_condition(f"arg{arg} in [{text}]", Position("t", 1, 1))
    assert not diags and spec.values == (value,)


# -- editing the text ----------------------------------------------------------------

def test_the_original_text_survives_and_the_rules_go_first(tmp_path):
    _, new = refine_text(tmp_path, BASE, [obs("getppid")])
    new_lines = new.read_text().splitlines()
    at = new_lines.index("rules:")
    end = new_lines.index("", at)
    assert new_lines[at + 1:end] == ["  # added by sbx refine from 1 denial in d.jsonl: getppid x1",
                                     "  # getppid: 1 denial, errno(EPERM) by the profile default "
                                     f"({tmp_path / 'p.yaml'}:3)",
                                     "  - allow: getppid"]
    assert new_lines[:at + 1] + new_lines[end + 1:] == BASE.splitlines()
    assert load_profile(str(new)).rules[0].names[0][0] == "getppid"


@pytest.mark.parametrize("text", [
    "name: t\ndefault: errno(EPERM)\n",
    "name: t\ndefault: errno(EPERM)\nrules: []\n",
    "name: t\ndefault: errno(EPERM)\nrules:\n- allow: uname\n",
    "name: t\ndefault: errno(EPERM)\nrules:\n    - allow: uname\n",
], ids=["no rules key", "empty flow list", "indentless list", "deep indent"])
def test_rules_lists_of_every_shape_are_extended(tmp_path, text):
    _, new = refine_text(tmp_path, text, [obs("getppid")])
    prof = load_profile(str(new))
    assert prof.rules[0].names[0][0] == "getppid"
    assert decision(new, "getppid").kind == "allow"


def test_a_flow_style_rules_list_is_refused_clearly():
    text = "name: t\ndefault: errno(EPERM)\nrules: [{allow: uname}]\n"
    prof_plan = rf.Plan([rf.Change(["getppid"], [], 1, ["getppid: 1 denial"])], [], [])
    with pytest.raises(rf.RefineError, match="block list"):
        rf.apply_changes(text, prof_plan)


def test_check_refined_catches_a_change_to_another_syscall(tmp_path):
    src = tmp_path / "p.yaml"
    src.write_text(BASE)
    old = lower(load_profile(str(src)))
    plan = rf.plan_changes(old, [obs("getppid")])
    src.write_text(rf.apply_changes(BASE, plan).replace("- allow: getppid", "- allow: [getppid, bpf]"))
    with pytest.raises(rf.RefineError, match="changes bpf"):
        rf.check_refined(old, lower(load_profile(str(src))), plan)


# -- reading records -------------------------------------------------------------------

def test_monitor_json_lines_and_variants_are_read():
    line = json.dumps({"time": 1.5, "pid": 9, "tid": 9, "comm": "x", "arch": "x86_64", "nr": 41,
                       "syscall": "socket", "action": "errno", "errno": 13, "args": [16, 3, 0, 0, 0, 0]})
    assert rf.parse_json_line(line) == Denial("x86_64", 41, "errno", args=(16, 3, 0, 0, 0, 0), errno=13)
    assert rf.parse_json_line('{"syscall": "ioctl", "args": [1, 21505], "count": 3}') == \
        Denial("x86_64", 16, "errno", args=(1, 21505, 0, 0, 0, 0), count=3)
    assert rf.parse_json_line('{"arch": "x32", "nr": 1073741863}').nr == 39
    assert rf.parse_json_line('{"summary": true}') is None
    assert rf.parse_json_line("   ") is None
    with pytest.raises(rf.RefineError, match="not JSON"):
        rf.parse_json_line("{oops")
    with pytest.raises(rf.RefineError, match="unknown syscall"):
        rf.parse_json_line('{"syscall": "opne"}')


# -- the CLI ---------------------------------------------------------------------------

def test_cli_prints_a_diff_and_writes_a_profile_that_allows_exactly_the_denials(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text(BASE)
    records = [{"arch": "x86_64", "nr": NR["socket"], "args": [16, 3, 0, 0, 0, 0]},
               {"arch": "x86_64", "nr": NR["ioctl"], "args": [1, 0x5413, 0, 0, 0, 0]},
               {"arch": "x86_64", "nr": NR["acct"], "args": [0] * 6}]
    denials = tmp_path / "d.jsonl"
    denials.write_text("".join(json.dumps(r) + "\n" for r in records) +
                       "type=SECCOMP msg=audit(1700000000.123:45): auid=0 uid=0 gid=0 ses=1 pid=12 "
                       'comm="x" exe="/x" sig=0 arch=c000003e syscall=110 compat=0 ip=0x1 code=0x50000\n'
                       "some noise\n")
    out = tmp_path / "new.yaml"
    r = CliRunner().invoke(cli, ["refine", str(prof), "--from", str(denials), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("--- ") and "+  - allow: socket" in r.stdout
    assert "acct" in r.stderr and "--broad" in r.stderr and "ignored 1 line" in r.stderr
    old, new = build_filter(load_profile(str(prof))), build_filter(load_profile(str(out)))
    for name, args in (("socket", (16, 3)), ("ioctl", (1, 0x5413)), ("getppid", ())):
        full = tuple(args) + (0,) * (6 - len(args))
        assert old.explain(TOKEN, NR[name], full).action.kind == "errno"
        assert new.explain(TOKEN, NR[name], full).action.kind == "allow"
    changed = {NR["socket"], NR["ioctl"], NR["getppid"]}
    for nr in range(X86.max_nr + 10):
        if nr not in changed:
            assert old.explain(TOKEN, nr).action == new.explain(TOKEN, nr).action, nr


def test_cli_reports_bad_input_with_its_line(tmp_path):
    denials = tmp_path / "d.jsonl"
    denials.write_text('{"syscall": "uname"}\n{"syscall": "nope"}\n')
    r = CliRunner().invoke(cli, ["refine", "default", "--from", str(denials)])
    assert r.exit_code == 2 and f"{denials}:2:2: error: unknown syscall 'nope'" in r.stderr
    denials.write_text("nothing here\n")
    r = CliRunner().invoke(cli, ["refine", "default", "--from", str(denials)])
    assert r.exit_code == 1 and "no denials" in r.stderr


PREFIX = '{"syscall": "ioctl", "args": [1, '


def test_cli_points_at_an_argument_too_large_for_a_register_instead_of_wrapping_it(tmp_path):
    denials = tmp_path / "d.jsonl"
    denials.write_text('{"syscall": "uname"}\n'
                       '{"syscall": "ioctl", "args": [1, 18446744073709551617]}\n')
    r = CliRunner().invoke(cli, ["refine", "default", "--from", str(denials)])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == (f"{denials}:2:{len(PREFIX) + 1}: error: argument 1 is 18446744073709551617, which does "
                        "not fit 64 bits (registers hold -2^63 to 2^64-1; a larger value would "
                        "wrap)\n"
                        '  {"syscall": "ioctl", "args": [1, 18446744073709551617]}\n'
                        "  " + " " * len(PREFIX) + "^" + "~" * 19 + "\n")


def test_cli_points_at_a_number_too_long_to_convert(tmp_path):
    denials = tmp_path / "d.jsonl"
    denials.write_text('{"syscall": "ioctl", "args": [1, ' + "7" * 5000 + "]}\n")
    r = CliRunner().invoke(cli, ["refine", "default", "--from", str(denials)])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit)
    assert r.stderr.startswith(f"{denials}:1:{len(PREFIX) + 1}: error: a number of more than "
                               "4,300 digits")


def test_cli_keeps_the_crlf_line_endings_of_a_crlf_profile(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_bytes(BASE.replace("\n", "\r\n").encode())
    denials = tmp_path / "d.jsonl"
    denials.write_text(json.dumps({"arch": "x86_64", "nr": NR["socket"], "args": [16, 3, 0, 0, 0, 0]}))
    out = tmp_path / "new.yaml"
    r = CliRunner().invoke(cli, ["refine", str(prof), "--from", str(denials), "-o", str(out)])
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert b"- allow: socket" in data
    assert data.count(b"\n") == data.count(b"\r\n") > BASE.count("\n")
    assert data.replace(b"\r\n", b"\n").decode().startswith(BASE.split("rules:")[0])


# -- the promise, on every built-in profile ---------------------------------------------

INTERESTING = ["socket", "ioctl", "prctl", "clone", "ptrace", "getppid", "acct", "personality",
               "openat", "sendto", "setsockopt", "mprotect", "bpf", "unshare", "kill", "fcntl"]
VALUES = [0, 1, 2, 3, 10, 16, 40, 0x5401, 0x5412, 0x80803, 0x10000000, 0x1200011, 0xFFFFFFFF,
          0x7FFD0000]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(profile=st.sampled_from(builtin_names() + ["tests/fixtures/docker-default.yaml"]),
       seen=st.lists(st.tuples(st.sampled_from(INTERESTING),
                               st.lists(st.sampled_from(VALUES), min_size=6, max_size=6)),
                     min_size=1, max_size=12),
       broad=st.booleans(), seed=st.integers(0, 2**32))
def test_refined_profiles_allow_exactly_what_they_cover(tmp_path_factory, profile, seen, broad, seed):
    """Covered denials become allowed; every other call - the other denials,
    and random calls of the same syscalls - keeps its decision unless it
    agrees with a covered denial on every argument the new rules test."""
    tmp = tmp_path_factory.mktemp("p")
    base = load_profile(profile)
    text = open(base.path).read()
    old = lower(base)
    observations = [Denial("x86_64", X86.nr(n), "errno", args=tuple(a)) for n, a in seen]
    plan = rf.plan_changes(old, observations, broad)
    new_path = tmp / os.path.basename(base.path)
    new_path.write_text(rf.apply_changes(text, plan))
    new = lower(load_profile(str(new_path)))
    rf.check_refined(old, new, plan)
    covered = {(o.nr, o.args) for c in plan.changes for o in c.members}
    rng = random.Random(seed)
    probes = [(o.nr, o.args) for o in observations] + \
        [(X86.nr(rng.choice(INTERESTING)), tuple(rng.choice(VALUES) for _ in range(6)))
         for _ in range(40)]
    for nr, args in probes:
        before, after = evaluate(old, TOKEN, nr, args), evaluate(new, TOKEN, nr, args)
        if (nr, args) in covered:
            assert not after.action.denies
        elif before.action != after.action:
            # only a call equivalent to a covered one may change: it was denied like it
            assert after.rule is not None and after.rule.origin.file == str(new_path)
            twin = next(o for c in plan.changes for o in c.members
                        if o.nr == nr and all(cond.holds(o.args) for cond in after.rule.conds))
            assert evaluate(old, TOKEN, nr, twin.args).action == before.action or broad
            if not broad:
                assert before.reason == "default" or not before.action.denies
