"""``sbx diff``: the semantic diff is exactly where two filters decide differently.

Checked against the BPF interpreter running both compiled filters, over every
number of every table (and edge numbers, the x32 half, a foreign arch token)
and boundary arguments around every compared value: a point is in a reported
change iff the two filters disagree there, with the actions each gives; and
every change contains a point (a witness) where they really do disagree.
"""
import json
import os
import textwrap

import jsonschema
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from bpf_filters.interp import SeccompData, run
from bpf_filters.ir import Action, evaluate
from bpf_filters.syscalls import AUDIT_ARCH, X32_SYSCALL_BIT, table
from sandbox.cli import cli
from sandbox.diff import OTHER, UNKNOWN, contains, diff_policies, diff_profiles, witness
from sandbox.paths import display_path
from sandbox.policy import build_filter, load_profile
from tests.policies import arg_vectors, numbers, policies
from tests.conftest import REPO

ROOT = str(REPO)
SCHEMA = os.path.join(ROOT, "tests", "fixtures", "sarif-schema-2.1.0.json")
FOREIGN = 0x40000028            # AUDIT_ARCH_ARM: no table here
TOKENS = {"x86_64": AUDIT_ARCH["x86_64"], "i386": AUDIT_ARCH["i386"],
          "aarch64": AUDIT_ARCH["aarch64"], "other": FOREIGN}


def where(token_name: str, nr: int) -> tuple[str, int | None]:
    """The (ABI, number) a diff reports a call under: x32 is the x86_64 token's upper half,
    but for -1 (x86_64's "no syscall", an unknown x86_64 number)."""
    x32 = token_name == "x86_64" and nr >= X32_SYSCALL_BIT and nr != 0xFFFFFFFF
    arch = "x32" if x32 else token_name
    if arch == "other":
        return arch, None
    return arch, nr if nr in table(arch).by_nr else None


def points(old, new):
    """(token name, token, nr, args) over every number and boundary arguments of both."""
    for name, token in TOKENS.items():
        nrs = numbers("x32") if name == "x86_64" else numbers("aarch64" if name == "other" else name)
        for nr in nrs:
            arch = where(name, nr)[0]
            arch = "x86_64" if arch == "other" else arch
            vecs = dict.fromkeys(arg_vectors(old, nr, arch) + arg_vectors(new, nr, arch))
            for args in vecs:
                yield name, token, nr, args


def check_exact(old, new, changes, bdd, decide_old, decide_new) -> int:
    """Every point: in a change iff the two disagree; every change: a witness disagrees."""
    index: dict[tuple, list] = {}
    for c in changes:
        index.setdefault((c.arch, c.nr), []).append(c)
    checked = 0
    for name, token, nr, args in points(old, new):
        a, b = decide_old(token, nr, args), decide_new(token, nr, args)
        hits = [c for c in index.get(where(name, nr), ()) if contains(bdd, c.region, args)]
        if a == b:
            assert not hits, f"{name} nr={nr:#x} args={[hex(x) for x in args]}: reported, but both {a}"
        else:
            assert len(hits) == 1, f"{name} nr={nr:#x} args={[hex(x) for x in args]}: {a} vs {b}, {hits}"
            assert (hits[0].old, hits[0].new) == (a, b)
        checked += 1
    for c in changes:
        token = AUDIT_ARCH[c.arch] if c.arch != "other" else FOREIGN
        if c.nr is not None:
            nr = c.nr
        elif c.arch == "other":
            nr = 0
        else:                                   # a number the table does not name
            known = table(c.arch).by_nr
            nr = next(n for n in range(X32_SYSCALL_BIT if c.arch == "x32" else 0, 1 << 32)
                      if n not in known)
        args = witness(bdd, c.region)
        assert contains(bdd, c.region, args)
        assert (decide_old(token, nr, args), decide_new(token, nr, args)) == (c.old, c.new), c
    return checked


def interpreter(flt):
    return lambda token, nr, args: Action.from_ret(
        run(flt.insns, SeccompData(nr, token, tuple(args)), trace=False).value)


def test_default_against_web_lists_exactly_where_their_filters_disagree(capsys):
    old, new = load_profile("default"), load_profile("web")
    d = diff_profiles(old, new, "x86_64")
    fa, fb = build_filter(old, "x86_64"), build_filter(new, "x86_64")
    n = check_exact(fa.policy, fb.policy, d.changes, d.bdd, interpreter(fa), interpreter(fb))
    names = sorted({c.name for c in d.changes})
    assert names == ["execveat", "listmount", "memfd_create", "mknod", "mknodat", "socket",
                     "socketpair", "statmount"]
    assert {c.kind for c in d.changes} == {"narrowing"} and {c.arch for c in d.changes} == {"x86_64"}
    with capsys.disabled():
        print(f"\n  default vs web: {len(d.changes)} changes over {len(names)} syscalls, "
              f"{n} points checked with the interpreter")


def test_a_change_of_text_that_keeps_every_decision_is_no_change(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(textwrap.dedent("""\
        name: a
        default: errno(EPERM)
        rules:
          - allow: ["@basic-io", getpid]
          - allow: socket
            when: ["arg0 in [AF_UNIX, AF_INET]"]
          - errno(EACCES): openat
    """))
    b.write_text(textwrap.dedent("""\
        name: b
        default: errno(EPERM)
        rules:
          - errno(EACCES): openat
          - allow: socket
            when: ["arg0 == AF_INET"]
          - allow: socket
            when: ["arg0 == AF_UNIX"]
          - allow: getpid
          - allow: ["@basic-io"]
    """))
    d = diff_profiles(load_profile(str(a)), load_profile(str(b)))
    assert d.changes == [] and d.confinement == []
    result = CliRunner().invoke(cli, ["diff", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "decide every syscall, number and argument alike" in result.output


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), policies())
def test_random_policies_diff_exactly_where_the_evaluator_disagrees(old, new):
    changes, bdd = diff_policies(old, new)

    def decide(policy):
        return lambda token, nr, args: evaluate(policy, token, nr, args).action
    check_exact(old, new, changes, bdd, decide(old), decide(new))


def test_unknown_numbers_and_foreign_arches_are_compared_as_classes(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("name: a\ndefault: errno(EPERM)\nunknown: errno(ENOSYS)\nrules: []\n")
    b = tmp_path / "b.yaml"
    b.write_text("name: b\ndefault: errno(EPERM)\nunknown: allow\nbad_arch: allow\n"
                 "arches: [x86_64]\nrules: []\n")
    d = diff_profiles(load_profile(str(a)), load_profile(str(b)))
    classes = {(c.name, c.arch, c.kind) for c in d.changes}
    assert (UNKNOWN, "x86_64", "widening") in classes
    assert (OTHER, "other", "widening") in classes
    # i386 and x32 calls now pass as bad_arch allow: every one of their syscalls widens
    assert {c.arch for c in d.changes if c.name == "read"} == {"i386", "x32", "aarch64"}


# --------------------------------------------------------------------------- the command

def write(tmp_path, name, rules, head="default: errno(EPERM)\n"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: svc\n{head}rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "))
    return str(path)


OLD = """\
- errno(ENOSYS): [clone3, faccessat2, fchmodat2, getrandom, preadv2, pwritev2, statx]
- allow: [read, write, close, exit_group, brk, mmap, munmap]
- allow: socket
  when: ["arg0 in [AF_UNIX, AF_INET]"]
"""


def test_text_output_groups_by_syscall_widenings_first_with_both_sides_rules(tmp_path):
    old = write(tmp_path, "old", OLD)
    new = write(tmp_path, "new", OLD.replace(", munmap]", ", getpid]").replace(
        "AF_UNIX, AF_INET]", "AF_UNIX, AF_INET, AF_INET6]"))
    result = CliRunner().invoke(cli, ["diff", old, new, "--arch", "x86_64"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[1] == "syscalls widened: 2, narrowed: 1, answered differently: 0"
    heads = [l for l in lines if l and not l.startswith((" ", "sbx diff", "syscalls "))]
    assert heads == ["getpid", "socket", "munmap"]
    i = lines.index("socket")
    assert lines[i + 1] == "  widening  x86_64 41: arg0 (low 32 bits) == 0xa"
    assert "errno(EPERM)" in lines[i + 2] and "default action" in lines[i + 2]
    assert lines[i + 3].split()[1] == "allow" and f"{display_path(new)}:6: - allow: socket" in lines[i + 3]


def test_json_and_sarif_outputs(tmp_path):
    old = write(tmp_path, "old", OLD)
    new = write(tmp_path, "new", OLD.replace("AF_UNIX, AF_INET]", "AF_UNIX, AF_INET, AF_INET6]"))
    out = json.loads(CliRunner().invoke(cli, ["diff", old, new, "--format", "json"]).output)
    assert out["summary"] == {"widening": 1, "narrowing": 0, "change": 0}
    [change] = out["changes"]
    assert change["syscall"] == "socket" and change["region"] == ["arg0 (low 32 bits) == 0xa"]
    assert change["old"]["by"][0]["reason"] == "default" and change["new"]["by"][0]["line"] == 6
    log = json.loads(CliRunner().invoke(cli, ["diff", old, new, "--format", "sarif"]).output)
    with open(SCHEMA) as fh:
        jsonschema.validate(log, json.load(fh))
    [res] = log["runs"][0]["results"]
    assert res["ruleId"] == "SBX140" and res["level"] == "error"
    assert res["locations"][0]["physicalLocation"]["region"]["startLine"] == 6


def test_other_layers_are_listed_and_judged(tmp_path):
    old = write(tmp_path, "old", OLD)
    new = write(tmp_path, "new", OLD, head="default: errno(EPERM)\ncapabilities: [NET_BIND_SERVICE]\n"
                "network:\n  bind: [8080]\n")
    d = diff_profiles(load_profile(old), load_profile(new))
    assert d.changes == []
    # no network: section was any port; bind: [8080] leaves connect at any
    assert [(kind, line) for _s, kind, line, _i in d.confinement] == [
        ("widening", "capabilities: +NET_BIND_SERVICE"), ("narrowing", "network bind: any -> [8080]")]
    result = CliRunner().invoke(cli, ["diff", old, new])
    assert result.exit_code == 1 and "other layers:\n  widening  capabilities: +NET_BIND_SERVICE\n" \
        in result.output
    out = json.loads(CliRunner().invoke(cli, ["diff", old, new, "--format", "json"]).output)
    assert out["format"] == 2 and out["confinement"][1] == {
        "section": "network", "kind": "narrowing", "text": "network bind: any -> [8080]"}


def test_a_profile_that_does_not_load_is_exit_2_with_its_position(tmp_path):
    old = write(tmp_path, "old", OLD)
    bad = write(tmp_path, "bad", "- allow: [opne]\n")
    result = CliRunner().invoke(cli, ["diff", old, bad])
    assert result.exit_code == 2
    assert f"{bad}:4:13: error: unknown syscall 'opne'" in result.output
