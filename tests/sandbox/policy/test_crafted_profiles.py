"""Crafted profiles stay bounded: extends and groups expand in time linear in their result.

Written as trees, nested groups and repeated bases are exponential (622 bytes
of groups once took 125 s and 6.2 GB), and deep nesting overflowed Python's
stack.  Each crafted input here is run through the commands CI runs on
untrusted profiles (``sbx check``, ``sbx compile``, ``sbx import``) in a
child with 1 GiB of address space and a time-out, so a regression fails
instead of eating the machine; the work itself is counted in-process.
"""
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.interop import analysis
from sandbox.policy import PolicyError, build_filter, load_profile
from sandbox.policy import expand
from sandbox.policy.profile import _Reader
from tests.conftest import REPO

ROOT = REPO
LIMIT_BYTES = 1 << 30


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def sbx(*args, timeout=60):
    """sbx in a child limited to 1 GiB; a hang or a blow-up fails the test."""
    return subprocess.run([sys.executable, "-m", "sandbox", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_limit)


def nested_groups(levels: int, fanout: int = 10) -> str:
    """The 622-byte profile of issue 16 (levels=7): a group of ten groups of ten groups ..."""
    lines = ["name: nest", "default: errno(EPERM)", "groups:"]
    for i in range(levels):
        lines.append(f"  g{i}: [" + ", ".join([f'"@g{i + 1}"'] * fanout) + "]")
    lines += [f"  g{levels}: [read, write]", "rules:", '  - allow: "@g0"']
    return "\n".join(lines) + "\n"


def count_reads(monkeypatch) -> list[str]:
    """The files the loader composes (reads and parses), in order."""
    seen: list[str] = []
    original = _Reader.compose

    def compose(self, path):
        seen.append(str(path))
        return original(self, path)

    monkeypatch.setattr(_Reader, "compose", compose)
    return seen


def naive_rule_order(path: Path) -> list[tuple[str, int]]:
    """The tree expansion of extends (every base again, each time), duplicates dropped
    afterwards: the meaning the linear resolver must keep."""
    import yaml

    def expand_file(p: Path) -> list[tuple[str, int]]:
        doc = yaml.compose(p.read_text())
        top = {k.value: v for k, v in doc.value}
        own = [(str(p), item.start_mark.line + 1) for item in top["rules"].value] if "rules" in top else []
        bases = top["extends"].value if "extends" in top else []
        return own + [r for b in bases for r in expand_file(p.parent / b.value)]

    return list(dict.fromkeys(expand_file(path)))


# ------------------------------------------------------------------ groups

def test_the_622_byte_nested_groups_profile_is_checked_and_compiled_at_once(tmp_path):
    p = tmp_path / "nest.yaml"
    p.write_text(nested_groups(7))
    assert len(p.read_bytes()) < 700
    r = sbx("check", p)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "nest: score" in r.stdout
    r = sbx("compile", p)
    assert r.returncode == 0 and "ret ALLOW" in r.stdout, r.stderr[-2000:]


def test_a_group_reached_many_times_is_expanded_once_and_its_names_once(tmp_path, monkeypatch):
    p = tmp_path / "nest.yaml"
    p.write_text(nested_groups(7))
    prof = load_profile(str(p))
    (rule,) = prof.rules
    assert [n for n, _ in rule.names] == ["read", "write"]
    # every name carries the position of the reference in the rule
    assert {(pos.line, pos.col) for _, pos in rule.names} == {(13, 13)}
    assert rule.twice == []


def test_a_syscall_named_twice_in_a_rule_is_one_name_and_reported_once(tmp_path):
    p = tmp_path / "twice.yaml"
    members = ", ".join(["read", "write", "close"] * 5000)
    p.write_text(f"name: t\ndefault: errno(EPERM)\ngroups:\n  g: [{members}]\n"
                 "rules:\n  - allow: [read, '@g', '@g', read]\n")
    prof = load_profile(str(p))
    (rule,) = prof.rules
    assert [n for n, _ in rule.names] == ["read", "write", "close"]
    assert [(n, pos.col) for n, pos in rule.names] == [("read", 13), ("write", 20), ("close", 20)]
    assert sorted(n for n, _ in rule.twice) == ["close", "read", "read", "read", "write"]
    from sandbox.checks import check_profile
    rep = check_profile(prof)
    (dup,) = [f for f in rep.findings if f.rule_id == "SBX135"]
    assert sorted(dup.syscalls) == ["close", "read", "write"] and dup.pos.col == 13


def test_groups_nested_too_deep_are_a_positioned_error_not_a_recursion_error(tmp_path):
    levels = 1000
    lines = ["name: deep", "default: errno(EPERM)", "groups:"]
    lines += [f"  g{i}: ['@g{i + 1}']" for i in range(levels)] + [f"  g{levels}: [read]"]
    p = tmp_path / "deep.yaml"
    p.write_text("\n".join(lines + ["rules:", "  - allow: '@g0'"]) + "\n")
    for cmd in ("check", "compile"):
        r = sbx(cmd, p)
        assert r.returncode == 2, (cmd, r.stderr[-2000:])
        assert "Traceback" not in r.stderr
        limit = expand.MAX_GROUP_DEPTH
        # g15 is the 16th group; its member @g16 would be the 17th level
        assert f"{p}:{3 + limit}:{len(f'  g{limit - 1}: [') + 2}: error: groups nest more than {limit} deep" \
            in r.stderr, r.stderr


def test_a_group_including_itself_through_others_is_reported_once(tmp_path):
    p = tmp_path / "loop.yaml"
    p.write_text("name: l\ndefault: errno(EPERM)\ngroups:\n  a: ['@b', read]\n  b: ['@a']\n"
                 "rules:\n  - allow: ['@a', '@b']\n")
    with pytest.raises(PolicyError) as err:
        load_profile(str(p))
    assert [d.message for d in err.value.diagnostics] == ["group '@a' includes itself"]


# ------------------------------------------------------------------ extends

def write_chain(d: Path, levels: int, bases) -> Path:
    """l0 sets the default; l{i} extends ``bases(i)`` (a list of file names)."""
    (d / "l0.yaml").write_text("name: l0\ndefault: errno(EPERM)\nrules:\n  - allow: read\n")
    for i in range(1, levels + 1):
        refs = ", ".join(bases(i))
        (d / f"l{i}.yaml").write_text(f"name: l{i}\nextends: [{refs}]\nrules:\n"
                                      f"  - errno({i}): getpid\n")
    return d / f"l{levels}.yaml"


def test_extending_the_same_base_twice_per_level_reads_each_file_once(tmp_path, monkeypatch):
    top = write_chain(tmp_path, 15, lambda i: [f"l{i - 1}.yaml", f"l{i - 1}.yaml"])
    reads = count_reads(monkeypatch)
    prof = load_profile(str(top))
    profiles = [f for f in reads if not f.endswith("groups.yaml")]
    assert len(profiles) == len(set(profiles)) == 16
    assert len(prof.rules) == 16
    # first match: the top file's getpid rule, as in the tree expansion
    assert build_filter(prof).run(0xC000003E, 39).value == 0x50000 | 15


def test_the_exponential_extends_chain_is_bounded_in_the_commands(tmp_path):
    # written as a tree: 3^15 (14 million) files to read
    top = write_chain(tmp_path, 15, lambda i: [f"l{i - 1}.yaml"] * 3)
    r = sbx("check", top)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sbx("compile", top).returncode == 0


@pytest.mark.parametrize("shape", ["twice", "diamond"])
def test_rule_order_is_the_first_occurrence_in_depth_first_order(tmp_path, shape):
    if shape == "twice":
        top = write_chain(tmp_path, 4, lambda i: [f"l{i - 1}.yaml", f"l{i - 1}.yaml"])
    else:                                   # l_i extends l_{i-1} and l_{i-2}: shared bases
        top = write_chain(tmp_path, 6, lambda i: [f"l{i - 1}.yaml"] + ([f"l{i - 2}.yaml"] if i > 1 else []))
    prof = load_profile(str(top))
    assert [(r.pos.file, r.pos.line) for r in prof.rules] == naive_rule_order(top)


def test_a_diamond_shares_its_base_groups_files_and_ports(tmp_path):
    (tmp_path / "d.yaml").write_text(
        "name: d\ndefault: errno(EPERM)\ngroups:\n  dg: [read]\nfilesystem:\n  read: [/usr]\n"
        "network:\n  bind: [80]\nrules:\n  - allow: '@dg'\n")
    (tmp_path / "b.yaml").write_text("name: b\nextends: [d.yaml]\nrules:\n  - errno(EACCES): getpid\n")
    (tmp_path / "c.yaml").write_text("name: c\nextends: [d.yaml]\nnetwork:\n  bind: [81]\n"
                                     "rules:\n  - allow: '@dg'\n")
    (tmp_path / "a.yaml").write_text("name: a\nextends: [b.yaml, c.yaml]\nrules:\n  - allow: write\n")
    prof = load_profile(str(tmp_path / "a.yaml"))
    assert [Path(r.pos.file).stem for r in prof.rules] == ["a", "b", "d", "c"]
    assert [(w, t) for w, t, _ in prof.fs] == [("read", "/usr")]
    assert [t for t, _ in prof.net["bind"]] == ["80", "81"]


def test_a_thousand_levels_of_extends_is_an_error_at_the_entry_over_the_limit(tmp_path):
    top = write_chain(tmp_path, 1000, lambda i: [f"l{i - 1}.yaml"])
    limit = expand.MAX_EXTENDS_DEPTH
    over = tmp_path / f"l{1000 - limit + 1}.yaml"          # the file at depth `limit`
    for cmd in ("check", "compile"):
        r = sbx(cmd, top)
        assert r.returncode == 2, (cmd, r.stderr[-2000:])
        assert "Traceback" not in r.stderr
        assert f"{over}:2:11: error: extends nests more than {limit} profiles deep" in r.stderr
        # the cut chain has no default: that follows from the error and is not repeated
        assert "has no 'default'" not in r.stderr


def test_deep_yaml_nesting_is_a_positioned_error(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("name: x\ndefault: errno(EPERM)\nrules: " + "[" * 50000 + "]" * 50000 + "\n")
    r = sbx("check", p)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    # the top-level mapping is the first level: the 64th bracket opens the 65th
    assert f"{p}:3:{8 + 63}: error: the YAML nests more than 64 levels deep" in r.stderr
    assert len(r.stderr) < 2000, "the 100,000-character line is quoted around the column only"


@pytest.mark.parametrize("command", [("check",), ("run", "--profile")])
def test_thousands_of_errors_print_twenty_and_a_count(tmp_path, command):
    p = tmp_path / "many.yaml"
    p.write_text("name: x\ndefault: errno(EPERM)\nrules: [" + "read, " * 3000 + "read]\n")
    r = sbx(*command, p, *(["--", "true"] if command[0] == "run" else []))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("error: a rule is a mapping") == 20
    assert "... and 2981 more (fix these first)" in r.stderr
    for line in r.stderr.splitlines():
        if line.startswith("  "):                     # the quoted source and its caret
            assert len(line) <= 110, line[:120]
    # the caret still points at the token: the quoted window is cut around it
    lines = r.stderr.splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith(f"{p}:3:123:"))
    quote, caret = lines[i + 1], lines[i + 2]
    assert quote[caret.index("^"):caret.index("^") + 4] == "read"


# ------------------------------------------------------------------ import

def test_import_of_deeply_nested_json_is_a_positioned_error(tmp_path):
    p = tmp_path / "deep.json"
    head = '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": '
    p.write_text(head + "[" * 100000 + "]" * 100000 + "}")
    r = sbx("import", p)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"{p}:1:{len(head) + 64}: error: the JSON nests more than 64 levels deep" in r.stderr


def test_import_compares_each_entry_with_earlier_ones_in_linear_work(tmp_path, monkeypatch):
    """Entries of one syscall are checked for overlaps through the union of the earlier
    ones (one BDD step each), not one by one: 400 entries once took 80,000 steps."""
    from sandbox.interop import ImportOptions, import_oci
    n = 400
    entries = [{"names": ["socket"], "action": "SCMP_ACT_ALLOW" if i % 2 else "SCMP_ACT_LOG",
                "args": [{"index": 0, "value": i, "op": "SCMP_CMP_EQ"}]} for i in range(n)]
    entries.append({"names": ["socket"], "action": "SCMP_ACT_KILL_PROCESS",
                    "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]})
    text = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": entries}, indent=1)
    calls = [0]
    original = analysis.Bdd.both

    def both(self, a, b):
        calls[0] += 1
        return original(self, a, b)

    monkeypatch.setattr(analysis.Bdd, "both", both)
    yaml_text, diags = import_oci(text, str(tmp_path / "many.json"), ImportOptions())
    assert calls[0] < 20 * n, calls[0]
    # the one real overlap is still found, with the line of the earlier entry
    overlaps = [d for d in diags if "get different actions" in d.message]
    assert len(overlaps) == 1 and "line " in overlaps[0].message
    assert yaml_text.count("- allow: socket") == n // 2


# ------------------------------------------------------------------ check

def test_check_of_ten_thousand_rules_on_one_syscall_is_bounded(tmp_path, monkeypatch):
    """The checks try argument vectors against the rules; with 10,000 rules on ioctl that
    was 5.7 minutes. Fewer vectors for such a syscall: a bounded number of condition tests."""
    from bpf_filters.ir import Cond
    from sandbox.checks import check_profile
    rules = "".join(f'  - allow: ioctl\n    when: ["arg1 == {3 * i}", "arg0 == {i % 7}"]\n'
                    for i in range(10000))
    p = tmp_path / "ioctl.yaml"
    p.write_text("name: ioctl\ndefault: errno(EPERM)\nrules:\n  - allow: [execve, exit_group]\n" + rules)
    prof = load_profile(str(p))
    tests = [0]
    original = Cond.holds

    def holds(self, args):
        tests[0] += 1
        if tests[0] > 20_000_000:
            raise AssertionError("more than 20 million condition tests")
        return original(self, args)

    monkeypatch.setattr(Cond, "holds", holds)
    rep = check_profile(prof)
    ids = {f.rule_id for f in rep.findings}
    assert "SBX126" in ids, "ioctl TIOCSTI (0x5412 = 3 * 7174) is still found allowed"
    assert "SBX145" in ids
    assert tests[0] < 20_000_000
