"""The ``sbx trace`` profile writer, merge and extends, on fixed observations (no kernel).

The generated profile is checked three ways: byte for byte against a golden
file, by loading and compiling it and running the filter in the interpreter
on the observed calls (allowed) and on their near misses (denied), and by
reading it back (``--merge``) to the same observations.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from bpf_filters import syscalls
from bpf_filters.ir import evaluate
from sandbox import trace as tr
from sandbox.trace import allowed_syscalls, count_allowed
from sandbox.policy import build_filter, load_profile, lower
from sandbox.policy.constants import CONSTANTS as C
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "fixtures" / "trace" / "golden.yaml"
BASELINE = "5.10"           # what sbx trace reads from uname -r, fixed here for the golden file
X86 = syscalls.AUDIT_ARCH["x86_64"]
NR = syscalls.table("x86_64").nr
THREAD = sum(C[f] for f in ("CLONE_VM", "CLONE_FS", "CLONE_FILES", "CLONE_SIGHAND", "CLONE_THREAD",
                            "CLONE_SYSVSEM", "CLONE_SETTLS", "CLONE_PARENT_SETTID",
                            "CLONE_CHILD_CLEARTID"))
FORK = C["CLONE_CHILD_SETTID"] | C["CLONE_CHILD_CLEARTID"] | C["SIGCHLD"]


def sample() -> tr.Observed:
    """A small server-like program: files, a TCP and a Unix socket, a thread, a fork."""
    calls = {"read": 120, "write": 30, "close": 41, "openat": 25, "newfstatat": 60, "mmap": 44,
             "mprotect": 9, "munmap": 3, "brk": 7, "execve": 1, "exit_group": 1,
             "getrlimit": 1, "getrusage": 2, "prlimit64": 1, "setrlimit": 1,
             "socket": 4, "ioctl": 6, "fcntl": 5, "clone": 3, "prctl": 2, "personality": 1,
             "setsockopt": 2, "bind": 1, "listen": 1, "accept4": 1, "wait4": 1}
    values = {("socket", 0): {C["AF_INET"]: 3, C["AF_UNIX"]: 1},
              ("socket", 1): {C["SOCK_STREAM"]: 3, C["SOCK_DGRAM"]: 1},
              ("ioctl", 1): {C["TCGETS"]: 5, C["FIONREAD"]: 1},
              ("fcntl", 1): {C["F_GETFL"]: 2, C["F_SETFL"]: 2, C["F_DUPFD_CLOEXEC"]: 1},
              ("clone", 0): {THREAD: 2, FORK: 1},
              ("prctl", 0): {C["PR_SET_NAME"]: 1, C["PR_GET_DUMPABLE"]: 1},
              ("personality", 0): {0xFFFFFFFF: 1},
              ("setsockopt", 1): {C["SOL_SOCKET"]: 2},
              ("mmap", 2): {1: 30, 3: 14}, ("mprotect", 2): {0: 2, 1: 7}}
    return tr.Observed(calls=calls, values=values,
                       commands=["/usr/bin/server --port 8080 'a b'"], backends=["notify"])


def write(obs: tr.Observed, tmp_path: Path, name: str = "trace-server", base=None,
          base_ref=None) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(tr.write_profile(obs, name, "x86_64", base, base_ref, BASELINE))
    return path


def decide(path: Path, name: str, *args: int) -> str:
    policy = lower(load_profile(str(path)), "x86_64")
    return str(evaluate(policy, X86, NR(name), tuple(args) + (0,) * (6 - len(args))).action)


def test_the_profile_matches_the_golden_file_byte_for_byte(tmp_path):
    assert write(sample(), tmp_path).read_text() == GOLDEN.read_text()


def test_the_same_observations_in_any_order_give_the_same_bytes(tmp_path):
    obs = sample()
    rng = random.Random(7)
    items = list(obs.calls.items())
    rng.shuffle(items)
    shuffled = tr.Observed(calls=dict(items),
                           values={k: dict(reversed(list(v.items())))
                                   for k, v in reversed(list(obs.values.items()))},
                           commands=obs.commands, backends=obs.backends)
    assert tr.write_profile(shuffled, "trace-server", baseline=BASELINE) == GOLDEN.read_text()


def test_the_profile_loads_compiles_and_is_far_smaller_than_default(tmp_path):
    path = write(sample(), tmp_path)
    flt = build_filter(load_profile(str(path)), native="x86_64")
    assert len(flt.insns) < 200
    mine = allowed_syscalls(lower(load_profile(str(path)), "x86_64"), "x86_64")
    expected = set(sample().calls) | set(tr.LAUNCHER_NEEDS)
    assert mine == expected
    assert count_allowed(str(path), "x86_64") == len(expected) < count_allowed("default", "x86_64")


@pytest.mark.parametrize("call, args, action", [
    ("read", (), "allow"),
    ("rt_sigreturn", (), "allow"),                    # kept although never seen
    ("getpid", (), "errno(1)"),                       # never seen: EPERM
    ("clone3", (), "errno(38)"),                      # glibc falls back to clone
    ("socket", (C["AF_INET"], C["SOCK_STREAM"] | C["SOCK_CLOEXEC"]), "allow"),
    ("socket", (C["AF_UNIX"], C["SOCK_DGRAM"] | C["SOCK_NONBLOCK"]), "allow"),
    ("socket", (C["AF_NETLINK"], C["SOCK_DGRAM"]), "errno(1)"),
    ("socket", (C["AF_INET"], C["SOCK_RAW"]), "errno(1)"),
    ("ioctl", (0, C["TCGETS"]), "allow"),
    ("ioctl", (0, C["TIOCSTI"]), "errno(1)"),
    ("fcntl", (3, C["F_DUPFD_CLOEXEC"]), "allow"),
    ("fcntl", (3, C["F_SETLK"]), "errno(1)"),
    ("clone", (THREAD,), "allow"),
    ("clone", (FORK,), "allow"),
    ("clone", (FORK | C["CLONE_NEWUSER"],), "errno(1)"),
    ("clone", (C["CLONE_VFORK"] | C["SIGCHLD"],), "errno(1)"),   # a flag never seen
    ("prctl", (C["PR_SET_NAME"],), "allow"),
    ("prctl", (C["PR_SET_SECCOMP"],), "errno(1)"),
    ("personality", (0xFFFFFFFF,), "allow"),
    ("personality", (C["READ_IMPLIES_EXEC"],), "errno(1)"),
    ("setsockopt", (3, C["SOL_SOCKET"]), "allow"),
    ("setsockopt", (3, C["SOL_IP"]), "errno(1)"),
    ("mmap", (0, 4096, C["PROT_READ"] | C["PROT_WRITE"]), "allow"),
    ("mmap", (0, 4096, C["PROT_WRITE"] | C["PROT_EXEC"]), "errno(13)"),   # W^X: EACCES
    ("mprotect", (0, 4096, 7), "errno(13)"),
])
def test_the_filter_allows_what_was_seen_and_refuses_its_near_misses(tmp_path, call, args, action):
    assert decide(write(sample(), tmp_path), call, *args) == action


def test_a_group_is_used_only_when_every_member_was_seen(tmp_path):
    text = write(sample(), tmp_path).read_text()
    assert '- allow: "@resources"' in text            # getrlimit, getrusage, prlimit64, setrlimit
    obs = sample()
    del obs.calls["setrlimit"]
    text = tr.write_profile(obs, "x")
    assert "@resources" not in text and "      - getrlimit" in text


def test_clone3_seen_keeps_clone_allowed_but_namespaces_refused(tmp_path):
    obs = tr.Observed(calls={"clone3": 4, "read": 1})
    path = write(obs, tmp_path)
    assert decide(path, "clone3") == "errno(38)"
    assert decide(path, "clone", THREAD) == "allow"
    assert decide(path, "clone", C["CLONE_VM"] | C["CLONE_VFORK"] | C["SIGCHLD"]) == "allow"
    assert decide(path, "clone", C["CLONE_NEWNET"]) == "errno(1)"


def test_writable_executable_memory_seen_means_no_wx_rule(tmp_path):
    obs = sample()
    obs.values[("mmap", 2)][7] = 1
    path = write(obs, tmp_path)
    assert decide(path, "mmap", 0, 4096, 7) == "allow"
    assert decide(path, "mprotect", 0, 4096, 7) == "errno(13)"   # mprotect never asked for it


def test_a_narrowing_syscall_without_recorded_values_is_allowed_whole(tmp_path):
    obs = tr.Observed(calls={"ioctl": 3}, open_args={"ioctl"})
    assert decide(write(obs, tmp_path), "ioctl", 0, C["TIOCSTI"]) == "allow"


def test_reading_a_generated_profile_back_gives_the_same_observations(tmp_path):
    path = write(sample(), tmp_path)
    back = tr.observed_from_profile(load_profile(str(path)))
    assert tr.write_profile(back, "trace-server", baseline=BASELINE) == GOLDEN.read_text()
    assert back.calls["socket"] == 4 and back.values[("ioctl", 1)] == {C["TCGETS"]: 5,
                                                                       C["FIONREAD"]: 1}
    assert back.commands == sample().commands and back.backends == ["notify"]


def test_merging_adds_names_ors_value_sets_and_sums_counts(tmp_path):
    first = tr.observed_from_profile(load_profile(str(write(sample(), tmp_path))))
    second = tr.Observed(calls={"read": 1, "ioctl": 1, "getpid": 2, "clone3": 1, "mmap": 1},
                         values={("ioctl", 1): {C["TIOCGWINSZ"]: 1}, ("mmap", 2): {7: 1}},
                         commands=["other"], backends=["ebpf"])
    merged = tr.merge([first, second])
    path = write(merged, tmp_path, "merged")
    assert merged.calls["read"] == 121 and merged.calls["getpid"] == 2
    assert merged.values[("ioctl", 1)] == {C["TCGETS"]: 5, C["FIONREAD"]: 1, C["TIOCGWINSZ"]: 1}
    assert decide(path, "ioctl", 0, C["TIOCGWINSZ"]) == "allow"
    assert decide(path, "ioctl", 0, C["TCGETS"]) == "allow"
    assert decide(path, "mmap", 0, 1, 7) == "allow"              # W|X now seen
    assert decide(path, "clone", C["CLONE_VFORK"]) == "allow"    # clone3 seen: flags unknown
    text = path.read_text()
    assert "#   $ /usr/bin/server --port 8080 'a b'\n#   $ other\n" in text
    assert "# recorded with: seccomp user notification, eBPF (tracepoints)\n" in text


def test_extends_writes_only_what_the_base_does_not_allow(tmp_path):
    obs = tr.Observed(calls={"read": 9, "unshare": 1, "socket": 2, "ioctl": 1, "clone3": 1},
                      values={("socket", 0): {C["AF_INET"]: 1, C["AF_VSOCK"]: 1},
                              ("socket", 1): {C["SOCK_STREAM"]: 2},
                              ("ioctl", 1): {C["TCGETS"]: 1}})
    path = write(obs, tmp_path, base=load_profile("default"), base_ref="default")
    text = path.read_text()
    assert "extends: [default]" in text and "default: " not in text
    assert "unshare" in text and "read" not in text and "TCGETS" not in text
    assert "arg0 == AF_VSOCK" in text and "AF_INET" not in text
    assert "clone3" not in text                        # default already answers ENOSYS
    assert decide(path, "unshare") == "allow"
    assert decide(path, "socket", C["AF_VSOCK"], C["SOCK_STREAM"]) == "allow"
    assert decide(path, "socket", C["AF_INET"], C["SOCK_STREAM"]) == "allow"       # from default
    assert decide(path, "ptrace") == decide(Path(load_profile("default").path), "ptrace")


@pytest.mark.parametrize("name, idx, value, text", [
    ("socket", 0, 1, "AF_UNIX"),
    ("socket", 0, 16, "AF_NETLINK"),
    ("socket", 1, 5, "SOCK_SEQPACKET"),
    ("ioctl", 1, 0x541B, "FIONREAD"),
    ("ioctl", 1, 0xC0306201, "0xc0306201"),
    ("prctl", 0, 15, "PR_SET_NAME"),
    ("fcntl", 1, 1030, "F_DUPFD_CLOEXEC"),
    ("personality", 0, 0xFFFFFFFF, "PER_QUERY"),
    ("personality", 0, 8 | 0x20000, "PER_LINUX32|UNAME26"),
    ("personality", 0, 0x40000, "ADDR_NO_RANDOMIZE"),
    ("setsockopt", 1, 6, "SOL_TCP"),
])
def test_values_are_spelled_with_the_argument_s_own_constants(name, idx, value, text):
    assert tr.spell(name, idx, value) == text


def test_observe_names_native_calls_and_notes_other_abis():
    rec = tr.Recording(["prog"], "ebpf", {("x86_64", 0): 5, ("i386", 20): 2, ("x86_64", 9999): 1},
                       {("x86_64", 16, 1): {0x5401: 2}}, 0)
    obs = tr.observe(rec)
    assert obs.calls == {"read": 5}
    assert obs.values == {("ioctl", 1): {0x5401: 2}}
    assert obs.notes == ["2 calls of i386 were seen; this profile does not allow them",
                         "1 calls of x86_64 #9999 were seen; this profile does not allow them"]


def test_cli_merge_without_a_command_rewrites_a_profile_unchanged(tmp_path):
    from click.testing import CliRunner
    from sandbox.cli import cli
    out = tmp_path / "again.yaml"
    result = CliRunner().invoke(cli, ["trace", "-o", str(out), "--merge", str(GOLDEN)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == GOLDEN.read_text()
    assert f"syscalls allowed (default allows {count_allowed('default', 'x86_64')})" in result.output


def test_cli_needs_a_command_or_profiles_to_merge(tmp_path):
    from click.testing import CliRunner
    from sandbox.cli import cli
    result = CliRunner().invoke(cli, ["trace", "-o", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "give a COMMAND to trace" in result.output


# -- merging keeps conditions: a union, or a warning naming the rule ------------------------------

def merged_with(tmp_path: Path, rules: str, *others: tr.Observed) -> tuple[tr.Observed, Path]:
    """A trace profile with hand-written *rules* added, read back and merged with *others*."""
    text = write(sample(), tmp_path, "hand").read_text().replace("  # allows\n", "  # allows\n" + rules, 1)
    (tmp_path / "hand.yaml").write_text(text)
    merged = tr.merge([tr.observed_from_profile(load_profile(str(tmp_path / "hand.yaml"))), *others])
    return merged, write(merged, tmp_path, "merged")


def traced(calls: dict, values: dict | None = None) -> tr.Observed:
    return tr.Observed(calls=calls, values=values or {}, commands=["/usr/sbin/daemon -f"],
                       backends=["ebpf"])


def test_a_narrowed_kill_and_a_traced_signal_merge_into_the_union(tmp_path):
    rules = '  - allow: kill\n    when: ["arg1 in [SIGUSR1]"]\n'
    merged, path = merged_with(tmp_path, rules, traced({"kill": 1}, {("kill", 1): {C["SIGTERM"]: 1}}))
    assert '"arg1 in [SIGUSR1, SIGTERM]"' in path.read_text()
    assert decide(path, "kill", 1, C["SIGUSR1"]) == "allow"
    assert decide(path, "kill", 1, C["SIGTERM"]) == "allow"
    assert decide(path, "kill", 1, C["SIGKILL"]) != "allow"
    assert merged.warnings == []
    # read back and merged again: the same bytes (the union is kept, not widened)
    again = tr.merge([tr.observed_from_profile(load_profile(str(path)))])
    assert tr.write_profile(again, "merged", "x86_64", baseline=BASELINE) == path.read_text()


def test_a_fresh_trace_does_not_narrow_signals(tmp_path):
    path = write(traced({"kill": 2}, {("kill", 1): {C["SIGTERM"]: 2}}), tmp_path)
    assert decide(path, "kill", 1, C["SIGHUP"]) == "allow"     # a reload signal never seen


def test_a_condition_that_cannot_be_united_is_widened_with_a_warning_naming_it(tmp_path):
    rules = '  - allow: memfd_create\n    when: ["arg1 == MFD_CLOEXEC"]\n'
    kept, path = merged_with(tmp_path, rules)
    assert '- allow: memfd_create' in path.read_text() and kept.warnings == []
    assert decide(path, "memfd_create", 0, C["MFD_CLOEXEC"]) == "allow"
    assert decide(path, "memfd_create", 0, 0) != "allow"
    merged, path = merged_with(tmp_path, rules, traced({"memfd_create": 3}))
    assert decide(path, "memfd_create", 0, 0) == "allow"
    line = next(i for i, t in enumerate((tmp_path / "hand.yaml").read_text().splitlines(), 1)
                if "allow: memfd_create" in t)
    assert merged.warnings == [
        f"{tmp_path / 'hand.yaml'}:{line}: `allow: memfd_create when arg1 == MFD_CLOEXEC` widened "
        "to any arguments: the traced daemon called memfd_create, whose arguments sbx trace does "
        "not record (the union cannot be written)"]


def test_cli_merge_says_on_stderr_which_rule_was_widened(tmp_path):
    from click.testing import CliRunner
    from sandbox.cli import cli
    rules = '  - allow: kill\n    when: ["arg1 != SIGKILL"]\n'
    merged_with(tmp_path, rules)
    plain = tmp_path / "plain.yaml"
    plain.write_text(write(traced({"kill": 1}), tmp_path, "plain").read_text())
    result = CliRunner().invoke(cli, ["trace", "-o", str(tmp_path / "out.yaml"),
                                                      "--merge", str(tmp_path / "hand.yaml"),
                                                      "--merge", str(plain)])
    assert result.exit_code == 0, result.stderr
    assert "sbx: warning: " in result.stderr and "`allow: kill when arg1 != SIGKILL` widened to " \
        f"any arguments: {plain} allows kill for any arguments" in result.stderr
