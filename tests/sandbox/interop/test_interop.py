"""Export to OCI/Docker/systemd/Kubernetes and import from OCI/Docker JSON, checked by decisions.

The exported JSON is fed to libseccomp the way runc feeds it (rules with the
default action skipped, names libseccomp cannot resolve skipped, comparisons
repeated on one argument added as separate rules); the resulting filter must
decide like our compiled filter for every syscall number and boundary
arguments, except for the differences each test names and asserts.
"""
import json
import os
import tempfile

import pyseccomp as sc
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from bpf_filters.insn import unpack
from bpf_filters.interp import SeccompData, run
from bpf_filters.ir import M32, M64, Action, Cond, evaluate
from bpf_filters.syscalls import AUDIT_ARCH, X32_SYSCALL_BIT, table
from sandbox import interop
from sandbox.cli import cli
from sandbox.policy import PolicyError, build_filter, builtin_names, load_profile, lower
from tests.policies import BOUNDARY64, conds
from tests.conftest import REPO

ROOT = str(REPO)
FIXTURE_JSON = os.path.join(ROOT, "tests", "fixtures", "docker-default.json")
FIXTURE_YAML = os.path.join(ROOT, "tests", "fixtures", "docker-default.yaml")
SC_ARCH = {"SCMP_ARCH_X86_64": sc.Arch.X86_64, "SCMP_ARCH_X86": sc.Arch.X86, "SCMP_ARCH_X32": sc.Arch.X32,
           "SCMP_ARCH_AARCH64": sc.Arch.AARCH64}
SC_OPS = {"SCMP_CMP_EQ": sc.EQ, "SCMP_CMP_NE": sc.NE, "SCMP_CMP_LT": sc.LT, "SCMP_CMP_LE": sc.LE,
          "SCMP_CMP_GE": sc.GE, "SCMP_CMP_GT": sc.GT, "SCMP_CMP_MASKED_EQ": sc.MASKED_EQ}
ARCH_OF = {"x86_64": sc.Arch.X86_64, "i386": sc.Arch.X86, "x32": sc.Arch.X32}


def sc_action(name, errno=None):
    return {"SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_LOG": sc.LOG, "SCMP_ACT_TRAP": sc.TRAP,
            "SCMP_ACT_KILL": sc.KILL_THREAD, "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS,
            "SCMP_ACT_ERRNO": sc.ERRNO(1 if errno is None else errno)}[name]


def libseccomp_from_oci(spec):
    """The filter runc 1.1 builds with libseccomp from an OCI linux.seccomp object."""
    default = sc_action(spec["defaultAction"], spec.get("defaultErrnoRet"))
    f = sc.SyscallFilter(default)
    f.set_attr(sc.Attr.CTL_NNP, 0)
    for a in spec.get("architectures", []):
        if not f.exist_arch(SC_ARCH[a]):
            f.add_arch(SC_ARCH[a])
    if len(spec["syscalls"]) > 32:
        f.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    for e in spec["syscalls"]:
        action = sc_action(e["action"], e.get("errnoRet"))
        if action == default:
            continue
        args = [sc.Arg(a["index"], SC_OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
                for a in e.get("args", [])]
        for name in e["names"]:
            if sc.resolve_syscall(sc.system_arch(), name) == -1:
                continue
            if len({a["index"] for a in e.get("args", [])}) < len(args):
                for a in args:
                    f.add_rule(action, name, a)
            else:
                f.add_rule(action, name, *args)
    with tempfile.TemporaryFile() as fh:
        f.export_bpf(fh)
        fh.seek(0)
        return unpack(fh.read())


def candidates(rules, narrow_only32):
    vals = {0, 1, M32, M32 + 1, 1 << 32, 1 << 63, M64}
    for r in rules:
        for c in r.conds:
            for v in c.values:
                vals |= {v, v - 1, v + 1, v | 1 << 32, v | 1 << 63, v ^ M32}
            if c.mask not in (M32, M64):
                vals |= {c.mask, ~c.mask, c.values[0] | ~c.mask}
                vals |= {c.values[0] ^ (1 << b) for b in range(64) if c.mask >> b & 1}
    vals = {v & M64 for v in vals}
    return sorted({v & M32 for v in vals}) if narrow_only32 else sorted(vals)


def vectors(rules, only32):
    for v in (0, 1, M32, 1 << 32, M64):           # every syscall: boundary values in every argument
        if not (only32 and v > M32):
            yield (v,) * 6
    args = sorted({c.arg for r in rules for c in r.conds})
    for a in args:
        for v in candidates(rules, only32):
            vec = [0] * 6
            vec[a] = v
            yield tuple(vec)
    if len(args) > 1:         # pairs of interesting values on two arguments
        small = candidates(rules, True)[:24]
        for v in small:
            for w in small:
                vec = [0] * 6
                vec[args[0]], vec[args[1]] = v, w
                yield tuple(vec)


def permissive(ret):
    return ret in (0x7FFF0000, 0x7FFC0000)


def compare_export(prof, spec):
    """Every number 0..1023 of every ABI: our filter vs libseccomp's; the differences, classified."""
    an = interop.analyze(prof)
    plans = {p.name: p for p in an.plans}
    policy = lower(prof)
    ours = build_filter(prof).insns
    theirs = libseccomp_from_oci(spec)
    default = policy.default.ret
    counts = {"compared": 0, "unknown": 0, "libseccomp-unknown": 0, "high-word": 0}
    lost = set()
    for ap in policy.arches:
        t = table(ap.arch)
        base = X32_SYSCALL_BIT if ap.arch == "x32" else 0
        for low in range(1024):
            nr = base | low
            rules = ap.rules.get(nr, ())
            name = t.name(nr)
            for args in vectors(rules, ap.arch == "i386"):
                a = run(ours, SeccompData(nr, ap.audit_arch, args), trace=False).value
                b = run(theirs, SeccompData(nr, ap.audit_arch, args), trace=False).value
                counts["compared"] += 1
                if a == b:
                    continue
                where = (f"{ap.arch} {name or '?'} ({nr:#x}) args {[hex(x) for x in args]}: "
                         f"sbx {a:#x} libseccomp {b:#x}")
                if nr not in ap.known:
                    assert a == policy.unknown.ret and b == default, where
                    counts["unknown"] += 1
                elif sc.resolve_syscall(ARCH_OF[ap.arch], name) < 0 or \
                        sc.resolve_syscall(sc.system_arch(), name) == -1:
                    # libseccomp's table lacks it (or has it as a pseudo number on this ABI)
                    assert b == default, where          # runc skipped the rule: the default decides
                    counts["libseccomp-unknown"] += 1
                    lost.add(name)
                elif ap.arch == "i386" and name in ("socketcall", "ipc") and not permissive(a):
                    # libseccomp turns every rule on a direct socket or IPC call into an
                    # argument-free rule on the multiplexer's call number, so its filter
                    # lets socketcall(SYS_SOCKET) through where sbx's guard denies it
                    counts["libseccomp-multiplexer"] = counts.get("libseccomp-multiplexer", 0) + 1
                else:
                    plan = plans[name]
                    assert not plan.exact and any(args[i] >> 32 for i in plan.narrow), where
                    assert not permissive(b) or permissive(a), where    # never looser than sbx
                    counts["high-word"] += 1
    return counts, lost


# ---------------------------------------------------------------- the decision diagrams

def holds(bdd, n, args):
    while n > 1:
        v = bdd.var[n]
        n = bdd.hi[n] if args[v // 64] >> (63 - v % 64) & 1 else bdd.lo[n]
    return n == 1


@settings(max_examples=300, deadline=None)
@given(c=st.one_of(conds(64), conds(32)), wide=st.booleans())
def test_condition_regions_hold_exactly_where_the_condition_does(c, wide):
    bdd = interop.Bdd()
    n = interop.cond_region(bdd, c, wide)
    wc = Cond(c.arg, c.op, c.value, M64 if c.mask == M32 and c.op not in ("&==", "&!=") else c.mask, 64) \
        if wide else c
    near = {x + d & M64 for x in c.values for d in (-1, 0, 1)}
    for v in set(BOUNDARY64) | near:
        args = [0] * 6
        args[c.arg] = v & M64
        assert holds(bdd, n, args) == wc.holds(args), (str(c), hex(v))


@settings(max_examples=200, deadline=None)
@given(cs=st.lists(conds(64), min_size=1, max_size=3))
def test_rendered_comparisons_cover_exactly_the_region(cs):
    """Rebuilding a region from the emitted comparisons gives the same canonical diagram."""
    bdd = interop.Bdd()
    region = 1
    for c in cs:
        region = bdd.either(region, interop.cond_region(bdd, c, True)) if region != 1 else \
            interop.cond_region(bdd, c, True)
    try:
        entries = interop.render_region(bdd, region)
    except ValueError:
        return
    back = 0
    for entry in entries:
        box = 1
        for arg, (op, v, v2) in entry:
            atom = bdd.compare(arg, "&==", v2, 64, v) if op == "SCMP_CMP_MASKED_EQ" else \
                bdd.compare(arg, {"SCMP_CMP_EQ": "==", "SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<",
                                  "SCMP_CMP_LE": "<=", "SCMP_CMP_GT": ">", "SCMP_CMP_GE": ">="}[op], v)
            box = bdd.both(box, atom)
        back = bdd.either(back, box)
        assert len({arg for arg, _ in entry}) == len(entry), "one comparison per argument"
    assert back == region


@pytest.mark.parametrize("region, expected", [
    ("arg0 < 12", [[("SCMP_CMP_LT", 12, 0)]]),
    ("arg0 != 7", [[("SCMP_CMP_NE", 7, 0)]]),
    ("arg0 >= 0x8000000000000000", [[("SCMP_CMP_GE", 1 << 63, 0)]]),
    ("arg0 & 0x7e020000 == 0", [[("SCMP_CMP_MASKED_EQ", 0x7E020000, 0)]]),
], ids=["a range from zero stays one LT", "a single hole stays one NE", "a top range stays one GE",
        "a mask stays one MASKED_EQ"])
def test_simple_conditions_keep_their_shape(region, expected):
    from sandbox.policy.conditions import parse_condition
    from sandbox.policy.diagnostics import Position
    spec, _ = parse_condition(region, Position("t", 1, 1))
    c = Cond(spec.arg, spec.op, spec.values[0], spec.mask if spec.mask is not None else M64)
    bdd = interop.Bdd()
    got = interop.render_region(bdd, interop.cond_region(bdd, c, True))
    assert [[atom for _, atom in e] for e in got] == expected


# ---------------------------------------------------------------- export

@pytest.mark.parametrize("ref", builtin_names() + [FIXTURE_YAML])
def test_exported_profile_decides_like_ours_under_libseccomp(ref):
    prof = load_profile(ref)
    spec, _ = interop.export_oci(interop.analyze(prof))
    for e in spec["syscalls"]:
        assert e["action"] != spec["defaultAction"] or e.get("errnoRet") != spec.get("defaultErrnoRet")
        idx = [a["index"] for a in e.get("args", [])]
        assert len(idx) == len(set(idx)), "runc would OR repeated comparisons"
    counts, lost = compare_export(prof, spec)
    assert counts["compared"] > 1024
    assert lost <= {"map_shadow_stack", "mseal", "listmount", "statmount", "uretprobe", "uprobe",
                    "setxattrat", "getxattrat", "listxattrat", "removexattrat", "file_getattr",
                    "file_setattr", "open_tree_attr", "lsm_get_self_attr", "lsm_set_self_attr",
                    "lsm_list_modules"}


def test_default_profile_denials_on_32_bit_arguments_are_not_bypassable_with_high_bits():
    """socket(AF_VSOCK | 1<<32): the kernel sees AF_VSOCK; a 64-bit compare would allow it."""
    prof = load_profile("default")
    an = interop.analyze(prof)
    plan = {p.name: p for p in an.plans}["socket"]
    assert plan.exact
    theirs = libseccomp_from_oci(interop.export_oci(an)[0])
    nr = table("x86_64").nr("socket")
    x86 = AUDIT_ARCH["x86_64"]
    assert run(theirs, SeccompData(nr, x86, (40 | 1 << 32, 1, 0, 0, 0, 0))).value == 0x50000 | 97
    assert run(theirs, SeccompData(nr, x86, (2 | 1 << 32, 1, 0, 0, 0, 0))).value == 0x7FFF0000


def test_first_match_order_is_kept_where_a_rule_shadows_another():
    text = """name: t
default: errno(EPERM)
rules:
  - errno(ENOSYS): mprotect
    when: ["arg2 == 8"]
  - kill-process: mprotect
    when: ["arg2 < 16"]
  - allow: mprotect
"""
    prof = _profile(text)
    spec, _ = interop.export_oci(interop.analyze(prof))
    ps = [(e["action"], [(a["op"], a["value"], a.get("valueTwo")) for a in e["args"]])
          for e in spec["syscalls"] if e["names"] == ["mprotect"]]
    assert ps == [("SCMP_ACT_ERRNO", [("SCMP_CMP_EQ", 8, None)]),
                  ("SCMP_ACT_KILL_PROCESS", [("SCMP_CMP_LT", 8, None)]),       # 0..7
                  ("SCMP_ACT_KILL_PROCESS", [("SCMP_CMP_EQ", 9, None)]),       # 9..15 in aligned blocks
                  ("SCMP_ACT_KILL_PROCESS", [("SCMP_CMP_MASKED_EQ", M64 - 1, 10)]),
                  ("SCMP_ACT_KILL_PROCESS", [("SCMP_CMP_MASKED_EQ", M64 - 3, 12)]),
                  ("SCMP_ACT_ALLOW", [("SCMP_CMP_GE", 16, None)])]
    kill = [e for e in spec["syscalls"] if e["action"] == "SCMP_ACT_KILL_PROCESS"]
    assert "where no earlier rule decides" in kill[0]["comment"]
    counts, _ = compare_export(prof, spec)
    assert counts["compared"] > 1024


def test_not_in_becomes_ranges_on_one_argument():
    prof = _profile("""name: t
default: errno(EPERM)
rules:
  - allow: mprotect
    when: ["arg2 not in [1, 3, 7]"]
""")
    spec, _ = interop.export_oci(interop.analyze(prof))
    ops = [(a["op"], a["value"]) for e in spec["syscalls"] for a in e["args"]]
    assert ops[0] == ("SCMP_CMP_EQ", 0) or ops[0] == ("SCMP_CMP_LT", 1)
    assert ops[-1] == ("SCMP_CMP_GT", 7) or ops[-1] == ("SCMP_CMP_GE", 8)
    compare_export(prof, spec)


def test_notify_is_refused_with_the_rule_position():
    prof = _profile("name: t\ndefault: errno(EPERM)\nrules:\n  - notify: mkdir\n")
    with pytest.raises(PolicyError) as err:
        interop.export_oci(interop.analyze(prof))
    assert ":4:5: error: 'mkdir' uses notify" in err.value.render()


def _profile(text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(text)
    try:
        return load_profile(fh.name)
    finally:
        os.unlink(fh.name)


def test_export_cli_writes_docker_json_and_reports_on_stderr(tmp_path):
    out = tmp_path / "d.json"
    res = CliRunner().invoke(cli, ["export", "default", "-o", str(out)])
    assert res.exit_code == 0, res.output + res.stderr
    spec = json.loads(out.read_text())
    assert spec["defaultAction"] == "SCMP_ACT_ERRNO" and spec["defaultErrnoRet"] == 1
    assert "socket: arg0 is 32-bit" in res.stderr
    oci = CliRunner().invoke(cli, ["export", "default", "--format", "oci"])
    assert "comment" not in oci.stdout and json.loads(oci.stdout)["syscalls"]


CRD = os.path.join(ROOT, "tests", "fixtures", "spo-seccompprofile-crd-v1.0.0.json")


def crd_schema(version):
    """The CRD's schema as the API server applies it: unknown fields are errors (kubectl's
    strict field validation; pruned otherwise), int32/int64 bounds, list-type sets unique."""
    with open(CRD) as fh:
        crd = json.load(fh)

    def strict(node, top=False):
        if isinstance(node, list):
            return [strict(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: strict(v) for k, v in node.items()}
        if "properties" in node and not top:
            out["additionalProperties"] = False
        if node.get("format") == "int64":
            out["maximum"] = (1 << 63) - 1
        if node.get("format") == "int32":
            out["maximum"] = (1 << 31) - 1
        if node.get("x-kubernetes-list-type") == "set":
            out["uniqueItems"] = True
        return out
    return crd, strict(crd["versions"][version]["openAPIV3Schema"], top=True)


def k8s_docs(text):
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for d in docs:                # what kubectl apply needs of every document
        assert {"apiVersion", "kind", "metadata"} <= set(d) and d["metadata"]["name"]
    return docs


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
@pytest.mark.parametrize("ref", builtin_names())
def test_k8s_export_is_one_manifest_the_crd_schema_accepts(ref, version):
    import jsonschema
    res = CliRunner().invoke(cli, ["export", ref, "--format", "k8s", "--api-version", version])
    assert res.exit_code == 0, res.stderr
    [manifest] = k8s_docs(res.stdout)
    crd, schema = crd_schema(version)
    assert manifest["apiVersion"] == f"{crd['group']}/{version}" and manifest["kind"] == crd["kind"]
    jsonschema.validate(manifest, schema)
    assert "defaultErrnoRet" not in manifest["spec"]
    assert "note: the SeccompProfile CRD has no defaultErrnoRet" in res.stderr       # EPERM: nothing lost
    assert "added the OCI runtime preset" in res.stderr
    assert "localhost JSON profile (" in res.stderr and "-o DIR/" in res.stderr
    assert f"localhostProfile: operator/{manifest['metadata']['name']}.json" in res.stdout


@pytest.mark.parametrize("ref", builtin_names())
def test_k8s_entries_compare_32_bit_arguments_on_the_low_word_and_decide_like_ours(ref):
    """Low-word masks (inside 0xffffffff, so int64 holds them) give libseccomp sbx's decisions."""
    prof = load_profile(ref)
    spec, _ = interop.export_oci(interop.analyze(prof, low_word=True), comments=False, int64=True)
    assert all(max(a["value"], a.get("valueTwo", 0)) < 1 << 63 for e in spec["syscalls"] for a in e.get("args", ()))
    counts, _ = compare_export(prof, spec)
    assert counts["compared"] > 1024 and counts["high-word"] == 0


def test_the_crd_check_can_fail():
    import jsonschema
    _, schema = crd_schema("v1")
    bad = {"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
           "metadata": {"name": "x"}, "spec": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}}
    with pytest.raises(jsonschema.ValidationError, match="defaultErrnoRet"):
        jsonschema.validate(bad, schema)
    bad["spec"] = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 1 << 63, "op": "SCMP_CMP_EQ"}]}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_k8s_export_warns_when_the_default_errno_is_lost(tmp_path):
    prof = tmp_path / "enosys.yaml"
    prof.write_text("name: enosys\ndefault: errno(ENOSYS)\nrules:\n  - allow: [read, write, exit_group]\n")
    res = CliRunner().invoke(cli, ["export", str(prof), "--format", "k8s"])
    assert res.exit_code == 0, res.stderr
    assert f"{prof}:2:10: warning: the SeccompProfile CRD has no defaultErrnoRet" in res.stderr
    assert "runc then answers EPERM where this profile answers errno(ENOSYS)" in res.stderr


def test_k8s_export_to_a_directory_writes_the_localhost_profile(tmp_path):
    res = CliRunner().invoke(cli, ["export", "web", "--format", "k8s", "-o", str(tmp_path) + "/"])
    assert res.exit_code == 0, res.stderr
    local = json.loads((tmp_path / "web.json").read_text())
    [manifest] = k8s_docs((tmp_path / "web.yaml").read_text())
    assert local["defaultErrnoRet"] == 1
    assert [{k: v for k, v in e.items() if k != "comment"} for e in local["syscalls"]] == \
        manifest["spec"]["syscalls"]
    res = CliRunner().invoke(cli, ["export", "web", "--format", "k8s", "-o", str(tmp_path / "w.yaml")])
    assert res.exit_code == 0 and (tmp_path / "w.json").is_file(), res.stderr


def test_systemd_export_allows_argument_checked_calls_and_says_so():
    text, diags = interop.export_systemd(interop.analyze(load_profile("default")))
    lines = text.splitlines()
    assert "[Service]" in lines and "SystemCallArchitectures=native" in lines
    assert "SystemCallErrorNumber=EPERM" in lines
    allowed = {w for line in lines if line.startswith("SystemCallFilter=")
               for w in line.split("=", 1)[1].split()}
    assert {"read", "write", "openat", "socket", "clone", "ioctl", "personality", "clone3"} <= allowed
    assert not allowed & {"mount", "ptrace", "kexec_load"}
    assert "RestrictAddressFamilies=~AF_VSOCK" in lines                  # socket: arg0 != AF_VSOCK
    assert "RestrictNamespaces=~cgroup ipc mnt net pid time user uts" in lines  # no CLONE_NEW* flag
    said = [d.message for d in diags]
    assert "systemd allows ioctl: for every argument (systemd cannot check arguments)" in said
    assert not any("clone:" in m for m in said)           # exactly expressed
    assert any(m.startswith("kill-process of this profile becomes") and "kexec_load" in m for m in said)


def test_systemd_export_deny_list_for_a_default_allow_profile():
    prof = _profile("""name: t
default: allow
rules:
  - errno(ENOSYS): clone3
  - kill-process: ptrace
  - errno(EPERM): socket
    when: ["arg0 == AF_VSOCK"]
""")
    text, diags = interop.export_systemd(interop.analyze(prof))
    lines = text.splitlines()
    assert "SystemCallFilter=~clone3:ENOSYS ptrace:kill" in lines        # socket is not denied for all
    assert "RestrictAddressFamilies=~AF_VSOCK" in lines
    assert any("errno(EPERM) (EAFNOSUPPORT from RestrictAddressFamilies= instead)" in d.message for d in diags)


# ---------------------------------------------------------------- import

def import_text(text, **kw):
    return interop.import_oci(text, "p.json", interop.ImportOptions(**kw))


def decisions_equal(p1, p2):
    """Both profiles' lowered policies decide alike for every number and boundary arguments."""
    a, b = lower(p1), lower(p2)
    assert [x.arch for x in a.arches] == [x.arch for x in b.arches]
    assert (a.default, a.unknown, a.bad_arch) == (b.default, b.unknown, b.bad_arch)
    n = 0
    for pa, pb in zip(a.arches, b.arches):
        base = X32_SYSCALL_BIT if pa.arch == "x32" else 0
        for nr in [base | i for i in range(1024)]:
            rules = pa.rules.get(nr, ()) + pb.rules.get(nr, ())
            for args in vectors(rules, pa.arch == "i386"):
                da = evaluate(a, pa.audit_arch, nr, args).action
                db = evaluate(b, pa.audit_arch, nr, args).action
                assert da == db, f"{pa.arch} {nr} {args}: {da} vs {db}"
                n += 1
    return n


def test_fixture_json_imports_to_the_same_decisions_as_the_fixture_yaml():
    text = open(FIXTURE_JSON).read()
    yaml_text, warnings = interop.import_oci(text, FIXTURE_JSON, interop.ImportOptions())
    assert {w.message.split("'")[1] for w in warnings if "unknown syscall" in w.message} == \
        {"recv", "send", "riscv_hwprobe"}
    n = decisions_equal(_profile(yaml_text), load_profile(FIXTURE_YAML))
    assert n > 3000


def test_round_trip_docker_default_import_export_libseccomp():
    """Import the fixture, export it, load it into libseccomp: same decisions but the documented ones."""
    yaml_text, _ = interop.import_oci(open(FIXTURE_JSON).read(), FIXTURE_JSON, interop.ImportOptions())
    prof = _profile(yaml_text)
    spec, _ = interop.export_oci(interop.analyze(prof))
    counts, lost = compare_export(prof, spec)
    # documented differences, asserted: numbers our tables do not name, syscalls libseccomp
    # 2.5.4 cannot name (runc drops their rules), socket/personality values with high bits
    assert counts["compared"] > 3000
    assert counts["unknown"] > 0 and counts["high-word"] > 0
    assert {"mseal", "listmount", "statmount", "uretprobe"} <= lost
    print(f"\nround trip: {counts}, names libseccomp cannot resolve: {sorted(lost)}")


def test_caps_arch_and_kernel_select_entries():
    text = open(FIXTURE_JSON).read()
    admin = _profile(import_text(text, caps=frozenset({"CAP_SYS_ADMIN"}))[0])
    pol = lower(admin)
    x86 = AUDIT_ARCH["x86_64"]
    t = table("x86_64")
    assert evaluate(pol, x86, t.nr("clone"), (0x10000000,) + (0,) * 5).action == Action("allow")
    assert evaluate(pol, x86, t.nr("clone3")).action == Action("allow")
    assert evaluate(pol, x86, t.nr("mount")).action == Action("allow")
    old = _profile(import_text(text, kernel=(4, 4))[0])
    assert evaluate(lower(old), x86, t.nr("ptrace")).action == Action("errno", 1)
    arm = import_text(text, arch="aarch64")[0]
    assert "arches: [aarch64]" in arm and "- allow: arch_prctl" not in arm


def test_runc_reading_of_the_json():
    text = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
         "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
        {"names": ["socket", "read"], "action": "SCMP_ACT_ALLOW"}]}, indent=1)
    out, warnings = import_text(text)
    msgs = " | ".join(w.message for w in warnings)
    assert "runc ignores this entry" in msgs                    # same action as the default
    assert "each comparison as a rule of its own" in msgs       # repeated index: OR
    assert "libseccomp lets the unconditional rule" in msgs     # socket: the allow decides
    pol = lower(_profile(out))
    x86, t = AUDIT_ARCH["x86_64"], table("x86_64")
    assert evaluate(pol, x86, t.nr("personality"), (8, 0, 0, 0, 0, 0)).action == Action("allow")
    assert evaluate(pol, x86, t.nr("socket"), (40, 0, 0, 0, 0, 0)).action == Action("allow")


def test_symbolic_constants_in_imported_conditions():
    text = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x10020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x20008, "op": "SCMP_CMP_EQ"}]},
        {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 1, "value": 0x5412, "op": "SCMP_CMP_EQ"}]}]})
    out, _ = import_text(text)
    assert 'when: ["arg0 == AF_INET6"]' in out
    assert 'when: ["arg0 & CLONE_NEWNS|CLONE_NEWUSER == 0"]' in out
    assert 'when: ["arg0 == PER_LINUX32|UNAME26"]' in out
    assert "- errno(EACCES): ioctl" in out and '"arg1 == TIOCSTI"' in out


@pytest.mark.parametrize("text, where, message", [
    ('{"defaultAction": "SCMP_ACT_ERRNO",\n "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALOW"}]}',
     "2:45", "unknown action 'SCMP_ACT_ALOW' (did you mean 'SCMP_ACT_ALLOW'?)"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [\n  {"names": ["read"], "action": "SCMP_ACT_ALLOW",\n'
     '   "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQUAL"}]}]}', "3:44", "invalid op 'SCMP_CMP_EQUAL'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO",\n  "syscalls": [\n    {"names": ["read"],}]}', "3:24",
     "invalid JSON"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
     ' "errnoRet": 5}]}', "1:110", "errnoRet is only valid with SCMP_ACT_ERRNO"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW",'
     ' "args": [{"index": 0, "value": 4294967336, "op": "SCMP_CMP_EQ"}]}]}', "1:131",
     "value 0x100000028 does not fit the 32-bit argument arg0 of socket"),
    ('{"syscalls": []}', "1:1", "the profile has no 'defaultAction'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
     ' "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}', "1:117", "index must be an integer 0..5"),
    ('{"defaultAction": "SCMP_ACT_ERRNO",\n "defaultErrnoRet": ' + "9" * 5000 + "}", "2:21",
     "a number of 5000 digits: no seccomp value has more than 20"),
], ids=["unknown action with a suggestion", "invalid op", "a JSON syntax error", "errnoRet on allow",
        "a value wider than a 32-bit argument", "no default action", "argument index out of range",
        "a 5000-digit number"])
def test_import_errors_point_into_the_json(tmp_path, text, where, message):
    f = tmp_path / "p.json"
    f.write_text(text)
    res = CliRunner().invoke(cli, ["import", str(f)])
    assert res.exit_code == 2, res.stderr
    assert f"{f}:{where}: error: {message}" in res.stderr
    assert "Traceback" not in res.stderr and res.exception is None or isinstance(res.exception, SystemExit)


@pytest.mark.parametrize("raw, where, byte", [
    (b'{"defaultAction": "SCMP_ACT_ERRNO",\n "syscalls": [{"names": ["re\xffad"]}]}', "2:29", "0xff at offset 64"),
    (b'\xef\xbb\xbf{"a": 1}\n{"b": "\xc3\x28"}', "2:8", "0xc3 at offset 19"),
    (b'\xff\xfe{\x00}\x00', "1:1", "0xff at offset 0"),                            # UTF-16
], ids=["a stray byte", "a truncated sequence on line 2", "UTF-16"])
def test_import_of_a_file_that_is_not_utf8_points_at_the_byte(tmp_path, raw, where, byte):
    f = tmp_path / "p.json"
    f.write_bytes(raw)
    res = CliRunner().invoke(cli, ["import", str(f)])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert res.stderr.startswith(f"{f}:{where}: error: the JSON file is not valid UTF-8 (byte {byte}) "
                                 "(save the file as UTF-8)\n"), res.stderr


def test_import_cli_writes_a_loadable_profile(tmp_path):
    out = tmp_path / "d.yaml"
    res = CliRunner().invoke(cli, ["import", FIXTURE_JSON, "--caps", "docker", "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    prof = load_profile(str(out))
    assert "chroot" in {n for r in prof.rules for n, _ in r.names}        # CAP_SYS_CHROOT is Docker's
    assert "warning: unknown syscall 'recv'" in res.stderr


KEYS = ["defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "names", "name",
        "action", "errnoRet", "args", "index", "value", "valueTwo", "op", "comment", "includes", "excludes",
        "caps", "arches", "minKernel", "architecture", "subArchitectures", "flags"]
WORDS = ["SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW", "SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ", "SCMP_ARCH_X86_64",
         "read", "socket", "clone", "CAP_SYS_ADMIN", "amd64", "4.8", "x", ""]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 2**65), st.sampled_from(WORDS), st.floats(0, 10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6), indent=st.sampled_from([None, 1, "\t"]))
def test_import_of_any_json_gives_a_profile_or_positioned_errors(doc, indent):
    text = json.dumps(doc, indent=indent)
    try:
        out, _ = import_text(text)
    except PolicyError as err:
        assert all(d.pos is not None for d in err.diagnostics), err.render()
        return
    _profile(out)


def test_null_values_are_absent_as_runc_reads_them():
    """containers-common's seccomp.json has "args": null; Go's decoder reads it as no args."""
    text = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": None, "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": None, "comment": None,
         "includes": None, "excludes": {}}]})
    out, _ = import_text(text)
    pol = lower(_profile(out))
    assert evaluate(pol, AUDIT_ARCH["x86_64"], table("x86_64").nr("socket"), (40, 0, 0, 0, 0, 0)).action \
        == Action("allow")
    assert pol.default == Action("errno", 1)


@pytest.mark.parametrize("name, hint", [("syscall", None), ("recv", None), ("opne", "open"),
                                        ("open_tree_atr", "open_tree_attr")],
                         ids=["a real libc name is no typo of afs_syscall", "recv is no typo of recvmsg",
                              "a swap is a typo", "one letter missing is a typo"])
def test_unknown_names_get_suggestions_only_for_typos(name, hint):
    text = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": [name, "read"], "action": "SCMP_ACT_ALLOW"}]})
    _, warnings = import_text(text)
    [w] = [w for w in warnings if "unknown syscall" in w.message]
    assert w.hint == (f"did you mean '{hint}'?" if hint else None)


@pytest.mark.parametrize("profile", builtin_names())
def test_an_i386_export_carries_the_rules_sbx_adds_itself(profile):
    """On i386, lowering adds the multiplexer guards (socketcall/ipc calls at most as
    permissive as the direct syscall), which no line of the profile wrote: the export
    once ended in a KeyError looking for their rule (found by test_cli_fuzz)."""
    res = CliRunner().invoke(cli, ["export", "--arch", "i386", "--no-runtime-preset", "--", profile],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout if hasattr(res, "stdout") else res.output)
    policy = lower(load_profile(profile), "i386")
    mux = {r.origin for a in policy.arches for nr, rules in a.rules.items()
           if table("i386").name(nr) in ("socketcall", "ipc") for r in rules
           if r.origin.text.startswith("built-in")}
    guards = [e for e in doc["syscalls"] if e.get("comment", "").startswith("built-in: a multiplexed")]
    assert bool(guards) == bool(mux), (profile, guards, mux)
