"""Every escape attempt in ``attacks.ATTACKS`` against every built-in profile must be contained.

Positive controls keep "contained" honest: a trivial program runs under each
profile, and each attack, run unconfined, really reaches the kernel code it
aims at (so its confined failure is the filter's doing).
"""
import subprocess

import pytest

from tests.escape.attacks import ATTACKS, applies
from tests.escape.harness import Victim, builtin_profiles, judge, judge_unconfined, run, sbx_argv

PROFILES = builtin_profiles()
CELLS = [pytest.param(p, a, id=f"{p}:{a.name}") for p in PROFILES for a in ATTACKS if applies(a, p)]


def test_builtin_profiles_are_all_attacked():
    """The suite covers (at least) the six shipped profiles."""
    assert {"default", "web", "minimal", "build", "python", "strict-net"} <= set(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_noop_runs_under_profile(matrix, profile):
    """Positive control: `attack noop` exits 0 and prints OK, so "blocked" is not "everything fails"."""
    out = matrix.noop_outcome(profile)
    assert out.status == 0 and out.result()[0] == "OK", out.describe()


@pytest.mark.parametrize("profile", PROFILES)
def test_no_new_privs_and_filter_in_force(workspace, sbx_env, profile):
    """/proc/self/status inside the sandbox shows NoNewPrivs: 1 and Seccomp: 2 (filter mode)."""
    out = run(sbx_argv(profile, [str(workspace.attack), "nnp"]), env=sbx_env)
    assert out.status == 0, out.describe()
    assert out.stdout.split() == ["NNP", "1", "SECCOMP", "2"], out.describe()


@pytest.mark.parametrize("profile, attack", CELLS)
def test_attack_is_contained(matrix, profile, attack):
    """The attack (its one-line statement is attack.doc) fails under the profile."""
    verdict = judge(attack, matrix.outcome(profile, attack))
    assert verdict is None, f"{profile}: {attack.doc}: {verdict}"


@pytest.mark.parametrize("attack", [pytest.param(a, id=a.name) for a in ATTACKS])
def test_unconfined_attack_reaches_the_kernel(workspace, tty, attack):
    """Control: without sbx the attack succeeds or gets the kernel's own answer to its harmless arguments."""
    victim = Victim(workspace) if attack.needs == "victim" else None
    try:
        argv = workspace.argv(attack, (victim.pid, victim.addr) if victim else None)
        out = run(argv, stdin=tty if attack.needs == "tty" else subprocess.DEVNULL)
        if attack.name == "process-vm-writev":
            assert victim.buffer() == "PWNED", "unconfined process_vm_writev did not reach the victim"
    finally:
        if victim:
            victim.stop()
    verdict = judge_unconfined(attack, out)
    assert verdict is None, f"{attack.doc}: {verdict}"


def test_sibling_memory_untouched(matrix, victim):
    """After every profile's process_vm_writev attempt, the sibling's buffer is unchanged."""
    for profile in PROFILES:
        matrix.outcome(profile, next(a for a in ATTACKS if a.name == "process-vm-writev"))
    assert victim.buffer() == "victim-untouched"
