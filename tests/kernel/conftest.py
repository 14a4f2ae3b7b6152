"""Fixtures of the kernel tests: the C probe of ``bpf_probe``, built once per session."""
from __future__ import annotations

import platform
import shutil

import pytest

from bpf_filters import insn as I
from tests.conftest import need
from tests.kernel.bpf_probe import Point, Probe, build_probe


@pytest.fixture(scope="session", name="probe")
def probe_fixture(tmp_path_factory) -> Probe:
    """The probe, built once per session; skips off x86_64 or without gcc."""
    need(platform.machine() == "x86_64", "the probe's inline assembly is x86_64 only")
    need(shutil.which("gcc") is not None, "gcc is needed to build tests/kernel/probe.c")
    pr = build_probe(tmp_path_factory.getbasetemp() / "seccomp-probe")
    need(pr.check([[I.ret(I.RET_ERRNO | 1)]]) == ["ok"], "the kernel refuses seccomp filters")
    return pr


@pytest.fixture(scope="session", name="int80")
def int80_fixture(probe) -> Probe:
    """The probe, where ``int $0x80`` reaches the kernel (IA32 emulation on)."""
    got = probe.run([I.ret(I.RET_ERRNO | 4000)], [Point(32, 20)], jobs=1)
    need(got == ["ret -4000"], f"int $0x80 is not available (IA32 emulation off?): {got}")
    return probe
