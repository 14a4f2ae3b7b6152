"""sbx check: the lint engine on real profiles, its exit codes, and golden JSON/SARIF output.

Whether a call is allowed is decided by evaluating the lowered policy, so the
cases below vary what only evaluation can see: rule order, extends, groups,
argument conditions and the log action.  Golden files live in tests/golden/
(regenerate with SBX_UPDATE_GOLDEN=1 after an intended change); SARIF is
validated against the OASIS SARIF 2.1.0 schema vendored in tests/fixtures/.
"""
import json
import os
import re
import textwrap

import jsonschema
import pytest
from click.testing import CliRunner

from sandbox import checks
from sandbox.checks import BY_ID, CHECKS, check_profile, compare, score
from sandbox.cli import cli
from sandbox.kernel.seccomp import native_arch
from sandbox.policy import builtin_names, load_profile
from tests.conftest import REPO

ROOT = str(REPO)
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "check")
GOLDEN = os.path.join(ROOT, "tests", "golden")
SCHEMA = os.path.join(ROOT, "tests", "fixtures", "sarif-schema-2.1.0.json")
FIXTURE_NAMES = ["hardened", "leaky", "risky", "explicit-arch"]
x86_64_only = pytest.mark.skipif(native_arch() != "x86_64",
                                 reason="golden outputs and positions are for an x86_64 host")

HEAD = """\
name: t
description: test profile
default: errno(EPERM)
unknown: errno(ENOSYS)
arches: [native]
bad_arch: kill-process
"""


def lint(tmp_path, rules: str, head: str = HEAD, name: str = "p.yaml", extra: dict | None = None,
         clone3: bool = True, probes: bool = False, layers: bool = False):
    """Check a profile made of *head* and *rules* (rules start on line 8), with clone3
    answered ENOSYS after them unless *clone3* is False (default errno(EPERM) would be SBX130).
    SBX138 (statx, getrandom... denied by the default errno(EPERM)) is left out unless
    *probes*: tests/sandbox/policy/test_baseline.py checks it.  The findings on files, ports, scopes and
    capabilities (SBX150-SBX163: these profiles have no filesystem: section) are left out
    unless *layers*: test_layer_checks below is about them."""
    for fname, text in (extra or {}).items():
        (tmp_path / fname).write_text(textwrap.dedent(text))
    path = tmp_path / name
    tail = "- errno(ENOSYS): clone3\n" if clone3 else ""
    path.write_text(head + "rules:\n" + textwrap.indent(textwrap.dedent(rules) + tail, "  "))
    rep = check_profile(load_profile(str(path)), "x86_64")
    if not probes:
        rep.findings = [f for f in rep.findings if f.rule_id != "SBX138"]
    if not layers:
        rep.findings = [f for f in rep.findings if f.rule_id not in LAYER_IDS]
    return rep


LAYER_IDS = {f"SBX{n}" for n in range(150, 164)}


def ids(report, severity=None):
    return sorted({f.rule_id for f in report.findings if severity in (None, f.severity)})


def only(report, rule_id):
    found = [f for f in report.findings if f.rule_id == rule_id]
    assert found, f"{rule_id} not reported: {[(f.rule_id, f.message) for f in report.findings]}"
    return found


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ------------------------------------------------------------------ built-in profiles

@pytest.mark.parametrize("name", builtin_names())
def test_builtin_profile_has_no_error_and_no_warning(name):
    rep = check_profile(load_profile(name), "x86_64")
    bad = [f.format() for f in rep.findings if f.severity in ("error", "warning")]
    assert bad == []
    assert 80 <= rep.score <= 100


def test_docker_default_is_reported_for_ptrace_and_tiocsti():
    rep = check_profile(load_profile(os.path.join(ROOT, "tests/fixtures/docker-default.yaml")), "x86_64")
    assert {"SBX110", "SBX116", "SBX126"} <= set(ids(rep, "error"))
    assert "SBX103" in ids(rep, "warning")         # i386 and x32 listed


# ------------------------------------------------------------------ evaluation, not names

def test_clone_filtered_for_namespaces_is_not_reported(tmp_path):
    rep = lint(tmp_path, """\
        - errno(EPERM): clone
          when: ["arg0 & CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWNET|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWCGROUP != 0"]
        - allow: [clone, read]
        """)
    assert ids(rep) == []


def test_clone_allowed_for_threads_still_admits_clone_newuser(tmp_path):
    rep = lint(tmp_path, """\
        - allow: clone
          when: ["arg0 & CLONE_THREAD != 0"]
        """)
    (f,) = only(rep, "SBX114")
    assert f.message.startswith("clone with CLONE_NEWUSER is allowed by `allow` at line 8 when")
    assert (f.pos.line, f.pos.col) == (8, 12)


def test_deny_in_child_above_base_allow_wins(tmp_path):
    base = HEAD.replace("name: t", "name: base") + "rules:\n  - allow: [ptrace, read]\n"
    rep = lint(tmp_path, "- errno(EPERM): ptrace\n", head="name: child\nextends: [base.yaml]\n",
               extra={"base.yaml": base})
    assert "SBX110" not in ids(rep)
    assert ids(rep) == ["SBX134"]                 # the base's allow is overridden, on purpose


def test_allow_inherited_from_base_points_into_the_base_file(tmp_path):
    base = HEAD.replace("name: t", "name: base") + "rules:\n  - allow: [read, ptrace]\n"
    rep = lint(tmp_path, "- allow: write\n", head="name: child\nextends: [base.yaml]\n",
               extra={"base.yaml": base})
    (f,) = only(rep, "SBX110")
    assert (os.path.basename(f.pos.file), f.pos.line, f.pos.col) == ("base.yaml", 8, 19)
    assert "by `allow` at line 8" in f.message


def test_group_allowance_points_at_the_group_reference(tmp_path):
    rep = lint(tmp_path, '- allow: ["@debug"]\n')
    (f,) = [x for x in only(rep, "SBX110")]
    assert (f.pos.line, f.pos.col, f.pos.length) == (8, 14, 6)
    assert "(through @debug)" in f.message
    assert {"SBX116", "SBX120"} <= set(ids(rep))


def test_log_action_counts_as_allowing(tmp_path):
    rep = lint(tmp_path, "- log: bpf\n")
    assert "SBX111" in ids(rep, "error")


@pytest.mark.parametrize("when, expected", [
    ([], {"SBX126", "SBX122"}),
    (["arg1 == TIOCSTI"], {"SBX126", "SBX122"}),              # TIOCLINUX still passes
    (["arg1 in [TIOCSTI, TIOCLINUX]"], {"SBX122"}),           # USERFAULTFD_IOC_NEW passes
    (["arg1 in [TIOCSTI, TIOCLINUX, 0xaa00]"], set()),
], ids=["ioctl unfiltered", "only TIOCSTI excluded", "terminal commands excluded", "all excluded"])
def test_ioctl_commands_are_probed(tmp_path, when, expected):
    deny = f"- errno(EPERM): ioctl\n  when: {json.dumps(when)}\n" if when else ""
    rep = lint(tmp_path, deny + "- allow: ioctl\n")
    assert set(ids(rep)) == expected
    if when == ["arg1 == TIOCSTI"]:
        assert [f.syscalls for f in only(rep, "SBX126")] == [["ioctl"]]
        assert "TIOCLINUX" in only(rep, "SBX126")[0].message


def test_personality_with_a_value_filter_is_not_reported(tmp_path):
    assert "SBX125" in ids(lint(tmp_path, "- allow: personality\n"))
    rep = lint(tmp_path, """\
        - allow: personality
          when: ["arg0 in [PER_LINUX, 0xffffffff]"]
        """)
    assert ids(rep) == []


def test_default_allow_is_one_error_naming_the_dangerous_calls(tmp_path):
    rep = lint(tmp_path, "- errno(EPERM): ptrace\n", head=HEAD.replace("default: errno(EPERM)", "default: allow"))
    (f,) = only(rep, "SBX101")
    assert (f.pos.line, f.pos.col) == (3, 10)
    assert "bpf" in f.syscalls and "ptrace" not in f.syscalls
    assert not {"SBX110", "SBX111"} & set(ids(rep))      # folded into SBX101, counted in the score
    assert rep.score == 0


def test_bad_arch_allow_and_extra_abis(tmp_path):
    head = HEAD.replace("bad_arch: kill-process", "bad_arch: allow")
    rep = lint(tmp_path, "- allow: read\n", head=head)
    assert sorted(a for f in only(rep, "SBX102") for a in f.arches) == ["i386", "x32"]
    rep = lint(tmp_path, "- allow: read\n", head=head.replace("[native]", "[native, x32]"))
    assert [f.arches for f in only(rep, "SBX102")] == [["i386"]]
    (extra,) = only(rep, "SBX103")
    assert (extra.pos.line, extra.pos.col, extra.arches) == (5, 18, ["x32"])


@pytest.mark.parametrize("unknown, expected", [
    ("allow", "SBX104"), ("log", "SBX104"), ("errno(EPERM)", "SBX105"), ("kill-thread", "SBX105"),
])
def test_unknown_action(tmp_path, unknown, expected):
    rep = lint(tmp_path, "- allow: read\n", head=HEAD.replace("errno(ENOSYS)", unknown))
    assert expected in ids(rep)
    assert only(rep, expected)[0].pos.line == 4


@pytest.mark.parametrize("rule, expected", [
    ("- errno(EPERM): clone3\n", "SBX130"),
    ("- kill-process: clone3\n", "SBX130"),
    ("- allow: clone3\n", "SBX114"),
    ("- errno(ENOSYS): clone3\n", None),
])
def test_clone3_must_be_enosys(tmp_path, rule, expected):
    rep = lint(tmp_path, rule, clone3=False)
    assert ids(rep) == ([expected] if expected else [])


def test_pointer_compared_by_value_but_null_test_is_fine(tmp_path):
    rep = lint(tmp_path, """\
        - allow: sendto
          when: ["arg4 == 0"]
        - allow: openat
          when: ["arg1 == 0x7fff0000"]
        """)
    (f,) = only(rep, "SBX131")
    assert (f.pos.line, f.pos.col) == (11, 13)
    assert "openat's filename" in f.message


@pytest.mark.parametrize("rules, expected", [
    ("- allow: read\n- errno(EPERM): read\n", "SBX132"),
    ("- allow: read\n- errno(EPERM): read\n  when: [\"arg0 == 0\"]\n", "SBX132"),
    ("- allow: read\n- allow: read\n", "SBX133"),
    ("- errno(EPERM): read\n- allow: read\n", "SBX134"),
    ("- allow: [read, read]\n", "SBX135"),
    ('- allow: [read, "@basic-io"]\n', "SBX135"),
], ids=["deny after allow", "conditional deny after allow", "same action twice",
        "allow after deny", "named twice", "named directly and through a group"])
def test_shadowed_rules(tmp_path, rules, expected):
    rep = lint(tmp_path, rules)
    assert ids(rep) == [expected]
    f = only(rep, expected)[0]
    if expected != "SBX135":
        assert f.notes and f.notes[0].pos.line == 8 and f.pos.line > 8


def test_names_missing_on_the_target_abi(tmp_path):
    rep = lint(tmp_path, "- allow: [read, fcntl64]\n")
    assert [f.syscalls for f in only(rep, "SBX136")] == [["fcntl64"]]
    rep = lint(tmp_path, "- allow: [read, fcntl64]\n", head=HEAD.replace("[native]", "[x86_64]"))
    assert ids(rep) == ["SBX137"]
    # through a group, names of other ABIs are expected (chown32 in @chown)
    assert ids(lint(tmp_path, '- allow: ["@chown"]\n')) == []


def test_i386_abi_is_evaluated_with_its_own_numbers(tmp_path):
    head = HEAD.replace("[native]", "[native, i386]")
    rep = lint(tmp_path, "- allow: ptrace\n", head=head)
    assert sorted(only(rep, "SBX110")[0].arches) == ["i386", "x86_64"]
    rep = lint(tmp_path, "- errno(EPERM): ptrace\n- allow: [read]\n", head=head)
    assert "SBX110" not in ids(rep)


# ------------------------------------------------------------------ score and comparison

def test_score_formula():
    mk = lambda rid, sev: checks.Finding(None, "m", sev, rule_id=rid)
    nothing = {"read": "deny"}
    assert score([], nothing) == 100
    assert score([mk("SBX110", "error"), mk("SBX110", "error")], nothing) == 70   # per rule id
    assert score([mk("SBX121", "warning"), mk("SBX133", "note"), mk("SBX134", "info")], nothing) == 88
    assert score([], {"a": "allow", "b": "conditional", "c": "deny", "d": "deny"}) == 93  # 92.5 up
    assert score([mk(f"SBX11{i}", "error") for i in range(5)], nothing) == 0


def test_compare_with_default():
    mine = check_profile(load_profile(os.path.join(ROOT, "tests/fixtures/docker-default.yaml")), "x86_64")
    cmp = compare(mine, check_profile(load_profile("default"), "x86_64"))
    assert "ptrace" in cmp["allowed_here_denied_there"]
    assert "ioctl" in cmp["unconditional_here_conditional_there"]
    assert "SBX110" in cmp["findings_only_here"]
    assert cmp["against"] == "default" and cmp["against_path"] == "profiles/default.yaml"


def test_catalog_ids_are_unique_and_documented():
    assert len({c.id for c in CHECKS}) == len(CHECKS)
    assert all(re.fullmatch(r"SBX\d{3}", c.id) and c.severity in checks.SEVERITIES for c in CHECKS)
    doc = open(os.path.join(ROOT, "docs", "checks.md")).read()
    for c in CHECKS:
        row = re.search(rf"^\| {c.id} \| `{c.name}` \| {c.severity} \|", doc, re.M)
        assert row, f"{c.id} ({c.name}, {c.severity}) missing from docs/checks.md"


# ------------------------------------------------------------------ CLI

@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_cli_builtin_profiles_pass(in_root):
    r = invoke("check", *[f"profiles/{n}.yaml" for n in builtin_names()], "profiles/groups.yaml")
    assert r.exit_code == 0, r.output
    for n in builtin_names():
        assert re.search(rf"^{n}: score \d+/100 \(0 errors, 0 warnings", r.output, re.M)


@pytest.mark.parametrize("fail_on, code", [("error", 1), ("warning", 1), ("note", 1), ("never", 0)])
def test_cli_fail_on(in_root, fail_on, code):
    r = invoke("check", "tests/fixtures/check/risky.yaml", "--fail-on", fail_on)
    assert r.exit_code == code


def test_cli_fail_on_levels_for_info_only_profile(in_root):
    assert invoke("check", "minimal", "--fail-on", "note").exit_code == 0       # info never fails
    assert invoke("check", "tests/fixtures/check/explicit-arch.yaml", "--fail-on", "error").exit_code == 1


def test_cli_bad_profile_exits_2_with_positions(in_root):
    r = invoke("check", "tests/fixtures/check/broken.yaml", "hardened.yaml")
    assert r.exit_code == 2
    assert "tests/fixtures/check/broken.yaml:4:19: error: unknown syscall 'opne'" in r.output
    assert "Traceback" not in r.output
    assert "no profile 'hardened.yaml'" in r.output


def test_cli_bad_profile_in_sarif_is_a_result(in_root):
    r = invoke("check", "--format", "sarif", "tests/fixtures/check/broken.yaml", "hardened")
    assert r.exit_code == 2
    doc = json.loads(r.output[:r.output.rindex("}") + 1])
    results = [x for x in doc["runs"][0]["results"] if x["ruleId"] == "SBX001"]
    assert len(results) == 2                     # the typo, and the unknown profile name
    (res,) = [x for x in results if "locations" in x]
    assert res["locations"][0]["physicalLocation"]["region"] == {"startLine": 4, "startColumn": 19,
                                                                 "endColumn": 23}


def test_cli_output_file_and_against(in_root, tmp_path):
    out = tmp_path / "r.txt"
    r = invoke("check", "tests/fixtures/docker-default.yaml", "--against", "default", "-o", str(out),
               "--fail-on", "never")
    assert r.exit_code == 0 and r.output == ""
    text = out.read_text()
    assert "compared with default (profiles/default.yaml)" in text
    assert re.search(r"allows what default denies \(\d+\): .*ptrace", text)


def test_cli_help_documents_exit_codes():
    text = invoke("check", "--help").output
    assert "0 no finding at or above --fail-on" in text and "2 bad input" in text


# ------------------------------------------------------------------ golden JSON and SARIF

def _golden(name: str, doc: dict) -> None:
    path = os.path.join(GOLDEN, name)
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if os.environ.get("SBX_UPDATE_GOLDEN") == "1":
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert json.load(fh) == json.loads(text), f"{name} differs (SBX_UPDATE_GOLDEN=1 rewrites it)"


def _validate_sarif(doc: dict) -> None:
    with open(SCHEMA) as fh:
        schema = json.load(fh)
    jsonschema.Draft4Validator(schema).validate(doc)
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-schema-2.1.0.json")
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    for res in run["results"]:
        assert rule_ids[res["ruleIndex"]] == res["ruleId"]
        for loc in res.get("locations", []) + res.get("relatedLocations", []):
            phys = loc["physicalLocation"]
            assert not phys["artifactLocation"]["uri"].startswith(("/", "file:"))
            assert phys["region"]["startLine"] >= 1 and phys["region"]["startColumn"] >= 1


@x86_64_only
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_golden_json(in_root, name):
    r = invoke("check", "--format", "json", "--fail-on", "warning", f"tests/fixtures/check/{name}.yaml")
    doc = json.loads(r.output)
    assert r.exit_code == doc["exit_code"] == (0 if name == "hardened" else 1)
    _golden(f"check-{name}.json", doc)


@x86_64_only
def test_golden_sarif(in_root):
    r = invoke("check", "--format", "sarif", *[f"tests/fixtures/check/{n}.yaml" for n in FIXTURE_NAMES])
    doc = json.loads(r.output)
    _validate_sarif(doc)
    doc["runs"][0]["tool"]["driver"]["version"] = "VERSION"
    _golden("check-fixtures.sarif", doc)
    levels = {res["ruleId"]: res["level"] for res in doc["runs"][0]["results"]}
    assert levels["SBX101"] == "error" and levels["SBX134"] == "none" and levels["SBX133"] == "note"


def test_sarif_of_builtin_profiles_is_valid_and_merges_shared_findings(in_root):
    r = invoke("check", "--format", "sarif", *builtin_names())
    assert r.exit_code == 0
    doc = json.loads(r.output)
    _validate_sarif(doc)
    results = doc["runs"][0]["results"]
    clone3 = [x for x in results if x["ruleId"] == "SBX134" and "clone3" in x["properties"]["syscalls"]]
    assert len(clone3) == 1                       # default.yaml's finding, once for all profiles
    assert set(clone3[0]["properties"]["profiles"]) == {"build", "default", "python", "strict-net", "web"}
    assert clone3[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "profiles/default.yaml"
    assert BY_ID["SBX134"].severity == "info" and clone3[0]["kind"] == "informational"


# --------------------------------------------------------------------------- other layers

FS_HEAD = HEAD + "capabilities: []\n"


@pytest.mark.parametrize("tail, expected", [
    ("", {"SBX150"}),
    ("network:\n  connect: [443]\n", {"SBX150"}),     # no socket allowed: no way out
    ("filesystem:\n  read: [/usr, $CWD]\n  write: [$CWD]\n", set()),
    ("filesystem:\n  read: [/usr]\n  write: [/etc/app]\n", {"SBX152"}),
    ("filesystem:\n  write: [/]\n", {"SBX152"}),
    ("filesystem:\n  modify: [/dev/null, $TTY]\n", set()),
    ("filesystem:\n  modify: [/dev/null, /dev/tty]\n", {"SBX163"}),
    ("filesystem:\n  read: [/dev/pts/3]\n", {"SBX163"}),
    ("filesystem:\n  modify: [/dev/sda]\n", {"SBX152"}),
    ("filesystem:\n  create: [$HOME]\n", {"SBX153"}),
    ("filesystem:\n  write: [$HOME/project]\n", set()),
    ("filesystem:\n  write: [$CWD]\n  exec: [/usr, $CWD]\n", {"SBX154"}),
    ("filesystem:\n  write: [$CWD]\n  exec: [/]\n  deny: [$CWD]\n", set()),
    ("filesystem:\n  modify: [$CWD/log]\n  exec: [/]\n", set()),   # no new file: nothing to run
    ("filesystem:\n  read: [$HOME]\n", {"SBX155"}),
    ("filesystem:\n  read: [/]\n  deny: [$HOME/.ssh, $HOME/.gnupg, $HOME/.aws]\n", {"SBX162"}),
    ("filesystem:\n  read: [/, /dev/null]\n  deny: [/dev, $HOME/.ssh, $HOME/.gnupg, $HOME/.aws]\n",
     set()),
    ("filesystem:\n  read: [/usr, /dev]\n", {"SBX162"}),
    ("filesystem:\n  read: [/usr, $TTY]\n  modify: [$TTY]\n", set()),
    ("filesystem:\n  read: [/usr, /dev/pts]\n", {"SBX163"}),
    ("filesystem:\n  modify: [/dev/pts/]\n", {"SBX163"}),
    ("filesystem:\n  read: [/usr, /dev/pts]\n  deny: [/dev/pts]\n", set()),
    ("filesystem:\n  read: [/home]\n  deny: [$HOME/.ssh]\n", {"SBX155"}),
    ("filesystem:\n  read: [/usr]\ncapabilities: [NET_BIND_SERVICE]\n", set()),
    ("filesystem:\n  read: [/usr]\ncapabilities: [CAP_SYS_ADMIN]\n", {"SBX156"}),
    ("filesystem:\n  read: [/usr]\nscope: {abstract-unix: any}\n", {"SBX157"}),
    ("filesystem:\n  read: [/usr]\nlandlock: best-effort\n", {"SBX158"}),
], ids=lambda v: v if isinstance(v, str) else None)
def test_layer_checks(tmp_path, tail, expected):
    head = FS_HEAD.replace("capabilities: []\n", "") if "capabilities:" in tail else FS_HEAD
    path = tmp_path / "p.yaml"
    path.write_text(head + tail + "rules:\n  - errno(ENOSYS): clone3\n  - allow: [read, write]\n")
    rep = check_profile(load_profile(str(path)), "x86_64")
    got = {f.rule_id for f in rep.findings} & LAYER_IDS
    assert got == expected, [(f.rule_id, f.message) for f in rep.findings]
    for f in rep.findings:
        if f.rule_id in LAYER_IDS - {"SBX150", "SBX151"}:
            # the position is the entry that grants: its text is on that line at that column
            line = path.read_text().splitlines()[f.pos.line - 1]
            assert line[f.pos.col - 1:].strip(), (f.rule_id, f.pos)


def test_no_filesystem_with_network_is_a_warning(tmp_path):
    rep = lint(tmp_path, "- allow: [read, write, socket, connect]\n", layers=True)
    assert ids(rep) == ["SBX151"]
    assert only(rep, "SBX151")[0].pos.line == 1
    rep = lint(tmp_path, "- allow: socket\n  when: ['arg0 == AF_UNIX']\n", layers=True)
    assert ids(rep) == ["SBX150"]


def test_notify_and_errno_zero(tmp_path):
    rep = lint(tmp_path, "- notify: [mkdir]\n- errno(0): [fsync]\n- allow: read\n", layers=True)
    assert ids(rep) == ["SBX150", "SBX159", "SBX160"]
    assert [f.pos.line for f in only(rep, "SBX159")] == [8]
    assert [f.pos.line for f in only(rep, "SBX160")] == [9]
    rep = lint(tmp_path, "- allow: read\n", head=HEAD.replace("errno(EPERM)", "errno(0)"), layers=True)
    assert only(rep, "SBX160")[0].pos.line == 3


def test_builtin_layer_findings():
    """What docs/checks.md's table says of the built-ins' other layers."""
    expect = {"default": {"SBX154"}, "build": {"SBX154"}, "python": {"SBX154"},
              "strict-net": {"SBX154"}, "web": {"SBX161"}, "minimal": set()}
    for name in builtin_names():
        rep = check_profile(load_profile(name), "x86_64")
        assert {f.rule_id for f in rep.findings} & LAYER_IDS == expect[name], name


def test_sarif_outside_sbx_s_tree_points_only_at_files_that_exist_or_says_built_in(tmp_path,
                                                                                   monkeypatch):
    """In a user's repository, a finding of a built-in base is placed at the extends entry that
    brings it in; the built-in place stays as a related location relative to SBX_BUILTIN."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.yaml").write_text("name: app\nextends: [web]\nrules:\n  - allow: [ptrace]\n")
    doc = json.loads(invoke("check", "--format", "sarif", "app.yaml", "web").output)
    _validate_sarif(doc)
    run = doc["runs"][0]
    assert "SBX_BUILTIN" in run["originalUriBaseIds"]
    inherited = []
    for res in run["results"]:
        for loc in res.get("locations", []) + res.get("relatedLocations", []):
            art = loc["physicalLocation"]["artifactLocation"]
            if art["uriBaseId"] == "%SRCROOT%":
                assert (tmp_path / art["uri"]).is_file(), art
            else:
                assert art["uriBaseId"] == "SBX_BUILTIN" and art["uri"] in ("default.yaml", "web.yaml")
        primary = res["locations"][0]["physicalLocation"]
        if "app" in res["properties"]["profiles"] and "inherited from built-in" in res["message"]["text"]:
            inherited.append(res)
            assert primary["artifactLocation"]["uri"] == "app.yaml"
            assert primary["region"]["startLine"] == 2                    # extends: [web]
    assert inherited, "app inherits web's and default's info findings"
    own = [r for r in run["results"] if r["properties"]["profiles"] == ["web"]]
    assert own and all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"]
                       == "SBX_BUILTIN" for r in own)
