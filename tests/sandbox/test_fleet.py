"""``sbx profile build``: one profile from recordings of many runs and hosts, and convergence."""
import re

import pytest
from click.testing import CliRunner

from bpf_filters import syscalls
from bpf_filters.ir import evaluate
from sandbox import fleet
from sandbox.cli import cli
from sandbox.policy import load_profile, lower
from sandbox.policy.constants import CONSTANTS as C
from sandbox.recording import Provenance, read_recording, write_recording

NR = syscalls.table("x86_64").nr
X86 = syscalls.AUDIT_ARCH["x86_64"]


def rec(tmp_path, name, host, kernel, started, seconds, calls, values=None, files=None, net=None):
    prov = Provenance(host, kernel, "glibc 2.36", "x86_64", ["/srv/app", name], started, seconds,
                      "ebpf", 0, 0)
    path = str(tmp_path / f"{name}.jsonl")
    write_recording(path, prov, {("x86_64", NR(n)): c for n, c in calls.items()},
                    {("x86_64", NR(n), i): v for (n, i), v in (values or {}).items()}, files, net)
    return path


BASIC = {"read": 10, "write": 5, "close": 3, "exit_group": 1, "mmap": 4, "brk": 2}


def three(tmp_path):
    a = rec(tmp_path, "serve", "web-1", "6.1.0-18-amd64", "2026-01-01T10:00:00Z", 200,
            {**BASIC, "accept4": 7, "socket": 2}, {("socket", 0): {C["AF_INET"]: 2},
                                                   ("socket", 1): {C["SOCK_STREAM"]: 2}})
    b = rec(tmp_path, "backup", "web-2", "5.10.0-30-amd64", "2026-01-01T11:00:00Z", 300,
            {**BASIC, "renameat2": 4, "fsync": 2})
    c = rec(tmp_path, "resolve", "web-1", "6.1.0-18-amd64", "2026-01-01T12:00:00Z", 60,
            {**BASIC, "socket": 1, "sendto": 1}, {("socket", 0): {C["AF_INET6"]: 1},
                                                   ("socket", 1): {C["SOCK_DGRAM"]: 1}})
    return [a, b, c]


def allowed(policy, name, *args):
    full = tuple(args) + (0,) * (6 - len(args))
    return not evaluate(policy, X86, NR(name), full).action.denies


def test_the_profile_allows_what_any_recording_did_and_says_who_needed_it(tmp_path):
    files = [read_recording(p) for p in three(tmp_path)]
    text = fleet.build_profile(files, "app")
    out = tmp_path / "app.yaml"
    out.write_text(text)
    policy = lower(load_profile(str(out)))
    for name in ("read", "accept4", "renameat2", "fsync", "sendto"):
        assert allowed(policy, name), name
    assert allowed(policy, "socket", C["AF_INET"], C["SOCK_STREAM"])
    assert allowed(policy, "socket", C["AF_INET6"], C["SOCK_DGRAM"])
    assert not allowed(policy, "socket", C["AF_NETLINK"], C["SOCK_RAW"])
    assert not allowed(policy, "unlink")
    comment = {m.group(1): m.group(2) for m in re.finditer(r"- (\w+)\s+# (.*)$", text, re.M)}
    assert comment["read"] == "30; 3 recordings, 2 hosts"
    assert comment["accept4"] == "7; 1 recording, 1 host"
    assert comment["renameat2"] == "4; 1 recording, 1 host"
    assert re.search(r"- allow: socket\s+# 3; 2 recordings, 1 host", text)
    assert 'baseline: "5.10"' in text                   # the oldest kernel recorded
    assert "#   web-2, Linux 5.10.0-30-amd64, glibc 2.36, 2026-01-01T11:00:00Z, 300 s:" in text
    assert text.startswith("# sbx profile build: the syscalls of 3 recordings from 2 hosts")


def _files(reads=(), writes=(), denies=()):
    from sandbox.trace.files import Files
    out = Files(denies=set(denies))
    for p in reads:
        out.add("read", p)
    for p in writes:
        out.add("write", p)
    return out


def test_the_files_and_ports_of_every_recording_are_carried_into_the_profile(tmp_path):
    """Recorded files and ports are unioned into filesystem: and network: sections;
    a recording without them (an older format, a trace that recorded none) leaves
    them unrestricted, and the profile says so."""
    from sandbox.confine import expand_ports
    from sandbox.policy.profile import confinement
    from sandbox.trace.files import Net
    a = rec(tmp_path, "serve", "web-1", "6.1.0-18-amd64", "2026-01-01T10:00:00Z", 200, BASIC,
            files=_files(["/usr", "$CWD/app.conf"], ["$TMPDIR"], ["/etc/shadow"]),
            net=Net(bind={"8000"}, connect=set()))
    b = rec(tmp_path, "backup", "web-2", "5.10.0-30-amd64", "2026-01-01T11:00:00Z", 300, BASIC,
            files=_files(["/usr", "/etc"], ["$CWD/backup"]), net=Net(bind=set(), connect={"443"}))
    text = fleet.build_profile([read_recording(a), read_recording(b)], "app")
    assert text.startswith("# sbx profile build: the syscalls, files and ports of 2 recordings")
    out = tmp_path / "app.yaml"
    out.write_text(text)
    spec = confinement(load_profile(str(out)))
    words = {(w, p) for w, p, _o in spec.fs}
    assert {("read", "/usr"), ("read", "$CWD/app.conf"), ("read", "/etc"), ("write", "$TMPDIR"),
            ("write", "$CWD/backup"), ("deny", "/etc/shadow")} <= words
    assert expand_ports(spec.net["bind"], {}, []) == [8000]
    assert expand_ports(spec.net["connect"], {}, []) == [443]
    c = rec(tmp_path, "old", "web-3", "6.1.0-18-amd64", "2026-01-01T12:00:00Z", 60, BASIC)
    text = fleet.build_profile([read_recording(p) for p in (a, b, c)], "app")
    assert "\nfilesystem:" not in text and "\nnetwork:" not in text
    assert "no filesystem section: a merged part had none, and the union is unrestricted" in text


def test_the_written_profile_can_be_widened_with_sbx_trace_merge(tmp_path):
    from sandbox import trace as tr
    files = [read_recording(p) for p in three(tmp_path)]
    out = tmp_path / "app.yaml"
    out.write_text(fleet.build_profile(files, "app"))
    back = tr.observed_from_profile(load_profile(str(out)))
    assert back.calls["read"] == 30 and back.calls["accept4"] == 7
    assert back.commands == ["/srv/app serve", "/srv/app backup", "/srv/app resolve"]


def test_learning_has_not_converged_while_the_later_half_still_adds_syscalls(tmp_path):
    files = [read_recording(p) for p in three(tmp_path)]
    conv = fleet.convergence(files, "x86_64")
    assert [s.rf.provenance.host for s in conv.steps] == ["web-1", "web-2", "web-1"]
    assert [len(s.new_syscalls) for s in conv.steps] == [8, 2, 1]
    # 560 s in all; the latest recordings making up >= 280 s are backup and resolve
    assert [s.rf.provenance.command[1] for s in conv.window] == ["backup", "resolve"]
    assert not conv.converged and conv.rate == pytest.approx(3 / (360 / 3600))


def test_learning_converges_when_the_later_half_of_the_runtime_adds_nothing(tmp_path):
    paths = three(tmp_path)
    # a long run of the whole service afterwards, doing nothing the others did not
    again = rec(tmp_path, "load", "web-2", "6.1.0-18-amd64", "2026-01-02T10:00:00Z", 3600,
                {**BASIC, "accept4": 900, "renameat2": 4, "socket": 7},
                {("socket", 0): {C["AF_INET"]: 7}, ("socket", 1): {C["SOCK_STREAM"]: 7}})
    files = [read_recording(p) for p in [again] + paths]      # order given does not matter
    conv = fleet.convergence(files, "x86_64")
    assert conv.steps[-1].rf.provenance.command[1] == "load"
    assert conv.converged and conv.rate == 0
    lines = fleet.summary_lines(conv)
    assert lines[0] == "learning: 4 recordings from 2 hosts, 4160.0 s of runtime"
    assert lines[-1].startswith("  converged: the latest 1 recording (3600.0 s")


def test_a_new_argument_value_is_learning_too(tmp_path):
    paths = three(tmp_path)
    late = rec(tmp_path, "load", "web-1", "6.1.0-18-amd64", "2026-01-02T10:00:00Z", 3600,
               {**BASIC, "socket": 1}, {("socket", 0): {C["AF_UNIX"]: 1},
                                        ("socket", 1): {C["SOCK_STREAM"]: 1}})
    conv = fleet.convergence([read_recording(p) for p in paths + [late]], "x86_64")
    assert conv.steps[-1].new_syscalls == [] and conv.steps[-1].new_values == 1
    assert not conv.converged


def test_one_recording_never_converged(tmp_path):
    conv = fleet.convergence([read_recording(three(tmp_path)[0])], "x86_64")
    assert not conv.converged
    assert "one recording cannot show it" in fleet.summary_lines(conv)[-1]


def test_require_converged_writes_nothing_until_learning_has_converged(tmp_path):
    paths = three(tmp_path)
    out = tmp_path / "app.yaml"
    result = CliRunner().invoke(cli, ["profile", "build", *paths, "-o", str(out), "--arch",
                                      "x86_64", "--require-converged"])
    assert result.exit_code == 1 and not out.exists()
    assert "not converged" in result.output
    result = CliRunner().invoke(cli, ["profile", "build", *paths, "-o", str(out), "--arch",
                                      "x86_64", "--baseline", "5.4", "--name", "app"])
    assert result.exit_code == 0, result.output
    prof = load_profile(str(out))
    assert prof.name == "app" and prof.baseline.value == "5.4"
    assert "syscalls allowed (default allows" in result.output


def test_profile_build_is_discoverable_from_sbx_profiles():
    out = CliRunner().invoke(cli, ["profiles", "--help"]).output
    assert "sbx profile build" in " ".join(out.split())
    out = CliRunner().invoke(cli, ["profile", "--help"]).output
    assert "build" in out
