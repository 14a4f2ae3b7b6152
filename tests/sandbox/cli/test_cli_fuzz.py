"""Every subcommand, with random and hostile arguments: never a traceback.

The subcommands come from the click command tree (``sandbox.cli.cli``, groups
walked), their options and arguments from each command's parameters, so a
new subcommand or option is fuzzed without touching this file. Values are
drawn from hostile ones (empty, ``-1``, ``0x``, 5000-digit and 2^64-sized
numbers, nan, an argument that is not UTF-8, /dev/zero, a FIFO, a missing
directory, files that are not UTF-8, hold a NUL or nest 100,000 levels) and
from random text. Each command line runs as a user would run it, in a
subprocess in a scratch directory (random output paths land there); a
command still running after a few seconds gets SIGINT, as from Ctrl-C.

Asserted: no Python traceback on stderr or stdout, and an exit status from
the documented set (sandbox/errors.py, plus 0 and 1; a command that runs
COMMAND may also end with that command's status). Commands sbx runs are
from a short list of quick ones: the fuzzer never starts a long program.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sandbox import errors
from sandbox.cli import cli

ROOT = Path(__file__).resolve().parents[3]
SBX = [sys.executable, "-m", "sandbox"]
EXAMPLES = int(os.environ.get("SBX_FUZZ_EXAMPLES", "200"))
TIMEOUT_S = 6.0            # then SIGINT, as Ctrl-C
AFTER_SIGINT_S = 10.0

DOCUMENTED = {0, 1, errors.EXIT_USAGE, errors.EXIT_TIMEOUT, errors.EXIT_SANDBOX,
              errors.EXIT_NOEXEC, errors.EXIT_NOTFOUND, errors.EXIT_INTERRUPTED}
# What sbx may run: each ends at once; their own statuses, and SIGSYS if a profile kills them.
COMMANDS = [["true"], ["false"], ["/bin/true"], ["sh", "-c", "exit 3"], ["/dev/null"],
            ["/dev/zero"], ["/nonexistent/dir/cmd"], [""], ["."], ["dir"], ["-1"],
            ["./sbx-fuzz-missing"]]
COMMAND_STATUSES = {0, 1, 3, 128 + signal.SIGSYS}


def walk(group: click.Group, path: list[str], ctx: click.Context):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from walk(cmd, path + [name], click.Context(cmd, parent=ctx, info_name=name))
        else:
            yield path + [name], cmd


SUBCOMMANDS = list(walk(cli, [], click.Context(cli, info_name="sbx")))


def test_the_tree_has_every_subcommand():
    """The walk finds the nested ones too (a walk that found none would fuzz nothing)."""
    names = {" ".join(p) for p, _ in SUBCOMMANDS}
    assert {"run", "compile", "monitor", "refine", "import", "profiles show", "profile build"} <= names
    assert len(names) == len(SUBCOMMANDS) > 15


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A scratch directory with hostile files, where every command runs."""
    d = tmp_path_factory.mktemp("fuzz")
    (d / "home").mkdir()
    (d / "dir").mkdir()
    os.mkfifo(d / "fifo")
    files = {
        "good.yaml": b"name: good\nextends: [default]\nrules:\n  - allow: [read]\n",
        "crlf.yaml": b"name: crlf\r\nextends: [minimal]\r\nrules:\r\n  - allow: [read]\r\n",
        "bad-utf8.yaml": b"name: x\nrules:\n  - allow: [re\xffad]\n",
        "utf16.yaml": "name: x\n".encode("utf-16"),
        "nul.yaml": b"name: x\0\n",
        "deep.yaml": b"a: " + b"[" * 100_000 + b"\n",
        "deep.json": b"[" * 100_000,
        "bad-utf8.json": b'{"defaultAction": "SCMP_ACT_ERRNO", "x": "\xc3\x28"}',
        "huge.json": b'{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": ' + b"9" * 5000 + b"}",
        "docker.json": (ROOT / "tests" / "fixtures" / "docker-default.json").read_bytes(),
        "denials.jsonl": b'{"arch": "x86_64", "syscall": "socket", "args": [16, 3, 0, 0, 0, 0]}\n'
                         b'{"syscall": "acct", "args": [0]}\n',
        "big-arg.jsonl": b'{"syscall": "ioctl", "args": [1, 18446744073709551617]}\n',
        "huge.jsonl": b'{"syscall": "ioctl", "args": [1, ' + b"7" * 5000 + b"]}\n",
        "empty": b"",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    subprocess.run(SBX + ["trace", "--record", str(d / "rec.jsonl"), "--", "true"], cwd=d,
                   capture_output=True, timeout=60)          # a real recording, where tracing works
    return d


PATHS = ["good.yaml", "crlf.yaml", "bad-utf8.yaml", "utf16.yaml", "nul.yaml", "deep.yaml",
         "deep.json", "bad-utf8.json", "huge.json", "docker.json", "denials.jsonl", "huge.jsonl",
         "big-arg.jsonl", "rec.jsonl",
         "empty", "dir", "dir/", "fifo", "/dev/zero", "/dev/null", "/nonexistent/dir/file",
         "missing/out.yaml", "missing.yaml"]
HOSTILE = ["", "-1", "0", "-0", "0x", "0x1g", "1e999", "nan", "inf", "-inf", "0644", "08",
           "-9223372036854775809", "18446744073709551616", "9" * 5000, "-" + "9" * 5000,
           "default", "web", "minimal", "groups", "x86_64", "native", "@network-io", "AF_INET",
           "O_CREAT|O_WRONLY", "arg0 == 1", "-", "--", "caf\udce9", "\u202e", "a" * 5000,
           "1.2", "5.10", "CWD=/srv", "=", "1:2"] + PATHS


def _safe_text(text: str) -> str:
    """Random text as an argument: relative (outputs stay in the scratch directory)."""
    text = text.replace("..", "._")
    return "./" + text if text.startswith("/") else text


random_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                      max_size=12).map(_safe_text)
numbers = st.one_of(st.integers(-2 ** 70, 2 ** 70).map(str),
                    st.integers(0, 2 ** 66).map(hex))
values = st.one_of(st.sampled_from(HOSTILE), st.sampled_from(HOSTILE), random_text, numbers)


PROFILES = ["default", "web", "minimal", "build", "good.yaml", "crlf.yaml"]
# Plausible values by parameter name, so that most command lines get past parsing and
# into the command; the rest of the time a value is hostile.
PLAUSIBLE = {
    "profile": PROFILES, "profiles": PROFILES, "old": PROFILES, "new": PROFILES,
    "name": PROFILES + ["mine"], "extends": PROFILES, "base": PROFILES, "against": PROFILES,
    "baseline": ["5.10", "4.19", "6.18", "good.yaml", "default"],
    "syscall": ["read", "socket", "ioctl", "clone3", "41", "0x29", "personality"],
    "args": ["0", "1", "0x28", "AF_INET", "O_CREAT|O_WRONLY", "0xffffffff", "-1"],
    "source": ["denials.jsonl", "-", "big-arg.jsonl"],
    "file": ["docker.json", "huge.json", "bad-utf8.json"],
    "recordings": ["rec.jsonl", "rec.jsonl", "denials.jsonl", "empty"],
    "merges": ["good.yaml", "crlf.yaml"],
    "binary": ["/bin/true", "/usr/bin/env", "good.yaml"], "execs": ["/bin/sh"],
    "pids": ["1", str(os.getpid()), "0"], "cgroups": ["/", "/sbx-fuzz-missing"],
    "kernel": ["5.10", "6.1"], "caps": ["docker", "CAP_SYS_ADMIN", ""], "variables": ["CWD=/srv"],
    "arch": ["x86_64", "native", "i386"], "explain_name": ["read", "socket"],
    "duration": ["0", "0.2", "0.5"], "timeout": ["1", "0.5", "0"], "allow_ports": ["80", "0"],
    "output": ["out.yaml", "out.bpf", "-", "/dev/null", "dir/new.yaml"],
    "record_to": ["rec.jsonl", "/dev/null"],
}


def _value(data, param) -> str:
    if data.draw(st.integers(0, 9), label="hostile?") < 3:
        return data.draw(values)
    choices = getattr(param.type, "choices", None)
    plausible = list(choices) if choices else PLAUSIBLE.get(param.name)
    if not plausible:
        return data.draw(values)
    return data.draw(st.sampled_from(plausible))


def draw_command_line(data) -> tuple[list[str], bool]:
    """(argv after 'sbx', whether it runs a COMMAND)"""
    path, cmd = data.draw(st.sampled_from(SUBCOMMANDS), label="subcommand")
    argv, runs = list(path), False
    for param in cmd.params:
        if not isinstance(param, click.Option):
            continue
        if not param.required and data.draw(st.integers(0, 3)) > 0:
            continue
        flag = data.draw(st.sampled_from(param.opts))
        for _ in range(data.draw(st.integers(1, 2)) if param.multiple else 1):
            argv += [flag] if param.is_flag else [flag, _value(data, param)]
    if path == ["monitor"] and "--duration" not in argv:
        argv += ["--duration", "0.2"]       # else it watches until Ctrl-C: the timeout's job
    for param in cmd.params:
        if not isinstance(param, click.Argument):
            continue
        if param.name == "command":
            runs = True
            argv += ["--"] + data.draw(st.sampled_from(COMMANDS), label="command")
            continue
        if data.draw(st.integers(0, 5)) == 0:
            argv.append("--")
        count = data.draw(st.integers(0, 3)) if param.nargs == -1 else param.nargs
        argv += [_value(data, param) for _ in range(count)]
    return argv, runs


def run_like_a_user(argv: list[str], work: Path) -> tuple[int, str, str, bool]:
    """(status, stdout, stderr, interrupted): SIGINT after TIMEOUT_S, as Ctrl-C."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(work / "home"), "TMPDIR": str(work), "LANG": "C.UTF-8",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(SBX + argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
        interrupted = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=AFTER_SIGINT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"sbx {argv!r} ran {TIMEOUT_S} s and did not stop on SIGINT")
        interrupted = True
    return (proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
            interrupted)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_command_line_ends_in_a_traceback(work, data):
    argv, runs = draw_command_line(data)
    status, out, err, interrupted = run_like_a_user(argv, work)
    if os.environ.get("SBX_FUZZ_LOG"):          # what was run and how it ended, to see the spread
        with open(os.environ["SBX_FUZZ_LOG"], "a") as log:
            log.write(f"{status}\t{'INT ' if interrupted else ''}{argv!r:.300}\t"
                      f"{(err.strip().splitlines() or [''])[-1][:200]!r}\n")
    shown = f"sbx {' '.join(map(repr, argv))[:400]}\nstatus {status}\nstderr: {err[-1500:]}"
    assert "Traceback (most recent call last)" not in err + out, shown
    allowed = DOCUMENTED | (COMMAND_STATUSES if runs else set())
    assert status in allowed, shown
    if interrupted:
        assert status in (0, errors.EXIT_INTERRUPTED), shown


# The hostile cases named in the issue, each run once whatever the fuzzer draws.
KNOWN = [
    ["verify", "--timeout", "-1", "-p", "default", "--", "true"],
    ["explain", "default", "0x"],
    ["explain", "default", "read", "9" * 5000],
    ["import", "bad-utf8.json"], ["import", "huge.json"], ["import", "deep.json"],
    ["import", "/dev/zero"],
    ["check", "bad-utf8.yaml"], ["check", "utf16.yaml"], ["check", "nul.yaml"],
    ["check", "deep.yaml"], ["check", "/dev/zero"], ["check", "fifo"],
    ["compile", "good.yaml", "-o", "missing/out.bpf"], ["compile", "good.yaml", "-o", "dir"],
    ["refine", "crlf.yaml", "--from", "big-arg.jsonl"], ["refine", "default", "--from", "huge.jsonl"],
    ["refine", "default", "--from", "/dev/zero"], ["run", "--profile", "fifo", "--", "true"],
    ["run", "--profile", "/dev/zero", "--", "true"],
    ["run", "--", "/dev/null"], ["run", "--allow-port", "99999", "--", "true"],
    # more digits than int() reads (found by the fuzzer), and a digit int() refuses
    ["run", "--allow-port", "9" * 5000, "--", "true"], ["run", "--allow-port", "\u00b2", "--", "true"],
    ["export", "web", "--format", "systemd", "--var", "PORT=" + "9" * 5000],
    ["status", "-1"], ["status", "9" * 30], ["monitor", "--pid", "-1", "--duration", "0.1"],
    ["monitor", "--pid", "9" * 30, "--duration", "0.1"], ["monitor", "--duration", "nan"],
    ["profiles", "show", "caf\udce9"], ["diff", "default", "bad-utf8.yaml"],
    ["profile", "build", "deep.json"], ["analyze", "/dev/zero"], ["analyze", "fifo"],
]
# A FIFO given as input waits for a writer, as with any reader (`sbx import <(...)` relies on
# it); Ctrl-C then ends it with one line.
WAITING = [["import", "fifo"], ["refine", "default", "--from", "fifo"]]


@pytest.mark.parametrize("argv", KNOWN, ids=[" ".join(a)[:60] for a in KNOWN])
def test_known_hostile_command_lines_end_with_a_message(work, argv):
    status, out, err, interrupted = run_like_a_user(argv, work)
    runs = "--" in argv and argv[0] in ("run", "verify", "trace")
    shown = f"status {status}\nstderr: {err[-1500:]}"
    assert "Traceback (most recent call last)" not in err + out, shown
    assert status in DOCUMENTED | (COMMAND_STATUSES if runs else set()), shown
    assert not interrupted, f"still running after {TIMEOUT_S} s: {shown}"
    assert (err + out).strip(), "no message at all"


@pytest.mark.parametrize("argv", WAITING, ids=[" ".join(a) for a in WAITING])
def test_a_fifo_input_waits_and_ctrl_c_ends_it_in_one_line(work, argv):
    status, out, err, interrupted = run_like_a_user(argv, work)
    assert interrupted and (status, out) == (errors.EXIT_INTERRUPTED, "")
    assert err == f"sbx {' '.join(argv[:1])}: interrupted\n"
