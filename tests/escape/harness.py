"""Runs escape attempts under sbx (or unconfined, as a control) and judges what they report.

The attempts are subcommands of two programs compiled once per session:
``attack`` (attack.c: the seccomp filter) and ``escape`` (escape*.c: the
launcher, capabilities, Landlock, the filter cache). An attempt prints
``ESCAPED ...`` or ``BLOCKED errno=N NAME`` and exits 0, or is killed by SIGSYS
(sbx then exits 128+31). ``judge`` turns that into a verdict: an attempt is
contained when it was killed, or failed with an errno that is not the one the
kernel itself gives these (deliberately harmless) arguments, so a call the
filter let through is caught even when it did nothing; where an attack says
which errnos containment means (``expect``), any other failure is a broken
attempt, not a contained one.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
KILLED_BY_SIGSYS = 128 + signal.SIGSYS
RUN_TIMEOUT = 20
# the `escape` program: its main file and one file per family of attempts
ESCAPE_SOURCES = ("escape.c", "escape_reach.c", "escape_root.c", "escape_cache.c", "escape_profiles.c",
                  "escape_files.c")
_LINE = re.compile(r"^(ESCAPED|BLOCKED|OK)\b(?: errno=(\d+) (\S+))?.*$", re.M)
_START = re.compile(r"^START (\S+)\n", re.M)


@dataclass(frozen=True)
class Attack:
    """One escape attempt and what counts as containing it."""
    name: str                        # attack.c subcommand, and the test id
    doc: str                         # the attack in one line
    must: str = "deny"               # deny | kill | enosys | fail (see judge)
    kernel: tuple[str, ...] = ()     # errnos the kernel itself answers: the filter let it through
    absent: str = ""                 # errno of a kernel built without it (unconfined only)
    only: tuple[str, ...] | None = None   # profiles the attack applies to (None: all)
    needs: str = ""                  # "" | "tty" (stdin is a pty) | "victim" (sibling pid, addr)
    program: str = "attack"          # attack | i386-elf | escape
    expect: tuple[str, ...] = ()     # the errnos (NONE: no errno) a contained attempt fails with;
                                     # any other failure means it went wrong before the layer under test
    unprivileged: str = ""           # why it cannot work for an unprivileged user even unconfined


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.status == KILLED_BY_SIGSYS

    def result(self) -> tuple[str, str]:
        """("ESCAPED"|"BLOCKED"|"OK"|"NONE", errno name or "")."""
        found = _LINE.findall(self.stdout)
        if not found:
            return "NONE", ""
        kind, _num, name = found[-1]
        return kind, name

    def describe(self) -> str:
        return f"exit {self.status}, stdout {self.stdout.strip()!r}, stderr {self.stderr.strip()[-400:]!r}"


def judge(attack: Attack, out: Outcome) -> str | None:
    """None if *attack* was contained, else why not.

    kill:   must die of SIGSYS (bad_arch kill-process).
    enosys: must fail with ENOSYS (so that callers fall back).
    deny:   killed, or an errno other than the kernel's own answer (``kernel``).
    fail:   killed or any errno: nothing ran (numbers no kernel entry handles).
    """
    if out.killed:
        return None if attack.must != "enosys" else f"killed, expected ENOSYS ({out.describe()})"
    kind, err = out.result()
    if out.status != 0 or kind not in ("ESCAPED", "BLOCKED"):
        return f"attack did not report an outcome: {out.describe()}"
    if kind == "ESCAPED":
        return f"ESCAPED: {out.stdout.strip()}"
    if attack.expect and err not in attack.expect:
        return (f"failed with {err or 'no errno'}, not with {'/'.join(attack.expect)}: the attempt went "
                f"wrong before reaching what it tests: {out.stdout.strip()}")
    if attack.must == "kill":
        return f"expected SIGSYS (bad_arch kill-process), got {err}: {out.describe()}"
    if attack.must == "enosys" and err != "ENOSYS":
        return f"expected ENOSYS, got {err}"
    if attack.must == "deny" and err in attack.kernel:
        return f"reached the kernel (it answered {err}, as it does unconfined): {out.stdout.strip()}"
    return None


def judge_unconfined(attack: Attack, out: Outcome) -> str | None:
    """None if the unconfined attempt reached the kernel code it targets (control)."""
    kind, err = out.result()
    if out.status != 0 or kind not in ("ESCAPED", "BLOCKED"):
        return f"unconfined run did not report an outcome: {out.describe()}"
    if kind == "ESCAPED" or err in attack.kernel or (attack.absent and err == attack.absent):
        return None
    return f"unconfined answer {err} is not the expected kernel answer {attack.kernel}: {out.stdout.strip()}"


def i386_elf() -> bytes:
    """A static i386 ELF: write(1, "ESCAPED i386 ELF ran\\n") then exit(0), via int 0x80."""
    base, code_off = 0x08048000, 52 + 32
    msg = b"ESCAPED i386 ELF ran\n"
    msg_addr = base + code_off + 31
    code = (b"\xb8" + struct.pack("<I", 4) + b"\xbb" + struct.pack("<I", 1)      # eax=write, ebx=1
            + b"\xb9" + struct.pack("<I", msg_addr) + b"\xba" + struct.pack("<I", len(msg))
            + b"\xcd\x80"                                                      # int 0x80
            + b"\xb8" + struct.pack("<I", 1) + b"\x31\xdb" + b"\xcd\x80")      # exit(0)
    assert len(code) == 31
    size = code_off + len(code) + len(msg)
    ident = b"\x7fELF\x01\x01\x01" + b"\0" * 9
    ehdr = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, base + code_off, 52, 0, 0,
                               52, 32, 1, 40, 0, 0)
    phdr = struct.pack("<IIIIIIII", 1, 0, base, base, size, size, 5, 0x1000)
    return ehdr + phdr + code + msg


class Workspace:
    """The compiled attack programs in a directory every user may read and run."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="sbx-escape-"))
        os.chmod(self.dir, 0o755)
        self.attack = self.dir / "attack"
        self.i386 = self.dir / "i386-elf"
        self.escape = self.dir / "escape"
        self.cache = self.dir / "cache"

    def build(self) -> None:
        cc = ["gcc", "-O1", "-Wall", "-Werror", "-static"]
        cmds = [cc + ["-o", str(self.attack), str(HERE / "attack.c")],
                cc + ["-pthread", "-o", str(self.escape)] + [str(HERE / f) for f in ESCAPE_SOURCES]]
        builds = [(cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
                  for cmd in cmds]
        for cmd, proc in builds:
            output, _ = proc.communicate()
            if proc.returncode:
                raise RuntimeError(f"gcc failed: {' '.join(cmd)}\n{output}")
        self.i386.write_bytes(i386_elf())
        os.chmod(self.i386, 0o755)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def argv(self, attack: Attack, victim: tuple[int, int] | None) -> list[str]:
        if attack.program == "i386-elf":
            return [str(self.i386)]
        if attack.program == "escape":
            return [str(self.escape), attack.name]
        extra = [str(victim[0]), hex(victim[1])] if attack.needs == "victim" and victim else []
        return [str(self.attack), attack.name, *extra]


def sbx_argv(profile: str, command: list[str], python: str = sys.executable) -> list[str]:
    return [python, "-m", "sandbox", "run", "--profile", profile, "--", *command]


def run(argv: list[str], *, stdin=subprocess.DEVNULL, env: dict | None = None,
        cwd: Path = REPO, pass_fds=()) -> Outcome:
    res = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, env=env,
                         cwd=cwd, timeout=RUN_TIMEOUT, pass_fds=pass_fds)
    return Outcome(res.returncode, res.stdout, res.stderr)


def split_chain(stdout: str) -> list[tuple[str, str]]:
    """[(attempt name, what it printed)] from an ``attack chain`` run's stdout."""
    parts = _START.split(stdout)
    return list(zip(parts[1::2], parts[2::2]))


def run_chain(command: list[str], names: list[str], **kw) -> dict[str, Outcome]:
    """Outcome of each attempt in *names*, run as ``command + names`` chains.

    *command* ends with ``attack chain PID ADDR`` or ``escape chain``. A chain that is killed, or
    stops after an escape, is restarted with the attempts it did not reach,
    so every attempt gets its own verdict from as few sbx runs as possible.
    """
    results: dict[str, Outcome] = {}
    pending = list(names)
    while pending:
        out = run(command + pending, **kw)
        segments = split_chain(out.stdout)
        if not segments or [n for n, _ in segments] != pending[:len(segments)]:
            for name in pending:
                results[name] = Outcome(out.status, out.stdout, out.stderr)
            break
        for i, (name, text) in enumerate(segments):
            last = i == len(segments) - 1
            finished = bool(_LINE.search(text))
            status = 0 if (finished or not last) else out.status
            results[name] = Outcome(status, text, out.stderr if last else "")
        pending = pending[len(segments):]
    return results


def run_many(jobs: dict, fn, workers: int | None = None) -> dict:
    """{key: fn(*args)} for {key: args}, run concurrently (each job is a subprocess)."""
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(fn, *args) for key, args in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in (REPO / "profiles").glob("*.yaml") if p.stem != "groups")


class Victim:
    """A sibling process for the cross-process attacks to aim at: ``attack victim`` by
    default, or *argv* (``escape victim``, run as another user) with *env*. It prints
    ``VICTIM PID ADDR`` (ADDR: its marker buffer), then one line per ``ask``."""

    def __init__(self, workspace: Workspace, argv: list[str] | None = None, env: dict | None = None,
                 cwd: str | None = None):
        self.proc = subprocess.Popen(argv or [str(workspace.attack), "victim"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
        words = self.proc.stdout.readline().split()
        if len(words) != 3 or words[0] != "VICTIM":
            self.stop()
            raise RuntimeError(f"victim did not start: {words}")
        self.pid, self.addr = int(words[1]), int(words[2], 16)

    def ask(self) -> str:
        """The victim's report on itself (its buffer; the escape victim also its signals)."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def buffer(self) -> str:
        """The victim's marker buffer, which a successful process_vm_writev overwrites."""
        return self.ask().removeprefix("BUFFER ")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                f.close()
