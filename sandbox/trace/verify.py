"""What a written profile allows, and a run under it that collects every denial.

``count_allowed`` is the number sbx trace, sbx analyze and sbx profile build
print beside the default profile's; ``verify_profile`` is the replay of
``--verify`` (audit records for seccomp and Landlock, and the eBPF monitor
where it runs).
"""
from __future__ import annotations

import os

from bpf_filters import syscalls
from bpf_filters.ir import Policy, evaluate

from ..errors import TraceError
from .write import ZERO_ARGS


def allowed_syscalls(policy: Policy, arch: str) -> set[str]:
    """Names of *arch*'s table that *policy* allows (or logs) for some arguments:
    with every argument zero, or through any allow rule of the syscall."""
    ap = policy.arch(arch)
    out = set()
    for nr, name in syscalls.table(arch).by_nr.items():
        decision = evaluate(policy, syscalls.AUDIT_ARCH[arch], nr, ZERO_ARGS)
        rules = ap.rules.get(nr, ()) if ap is not None else ()
        if decision.action.kind in ("allow", "log") or \
                any(r.action.kind in ("allow", "log") for r in rules):
            out.add(name)
    return out


def count_allowed(ref: str, native: str) -> int:
    from ..policy import load_profile, lower
    return len(allowed_syscalls(lower(load_profile(ref), native), native))


def verify_profile(argv: list[str], profile_path: str, env: dict | None = None
                   ) -> tuple[int, list]:
    """Run *argv* under the profile with every denial audited (and counted by the
    eBPF monitor too where it runs, which also sees short-lived children);
    returns (exit code, denials).  Needs root."""
    if os.geteuid() != 0:
        raise TraceError("--verify needs root: seccomp denials are read from audit records", 2)
    from .. import launcher
    from ..errors import LaunchError
    from ..ebpf import available
    denials: list = []
    opts = launcher.RunOptions(argv, profile=profile_path, log=True, quiet=True, use_cache=False,
                               env=env, monitor=available()[0], on_denials=denials.extend)
    try:
        code = launcher.run(opts)
    except LaunchError as err:
        raise TraceError(str(err), err.status) from err
    return code, denials
