"""What a systemd 252 unit's seccomp settings enforce, written as an sbx profile.

systemd is not PID 1 here, so a unit cannot be started; instead its settings
are read back from the drop-in and rebuilt as the filters systemd 252 would
install (src/shared/seccomp-util.c, src/core/execute.c), then the workload
runs under that profile with ``sbx run``:

- ``SystemCallFilter=`` (allow-list): the names plus systemd's ``@default``
  set allowed, everything else ``SystemCallErrorNumber=`` (kill without it);
- ``RestrictAddressFamilies=``: socket() with another family -> EAFNOSUPPORT;
- ``RestrictNamespaces=~types``: clone/unshare with those CLONE_NEW* flags and
  setns to them -> EPERM; clone3 -> ENOSYS when it passes the allow-list
  (of two ERRNO filters the kernel keeps the newest one's errno, and the
  allow-list is installed last);
- ``LockPersonality=yes``: personality() other than PER_LINUX and the query -> EPERM;
- ``MemoryDenyWriteExecute=yes``: mmap W|X, mprotect/pkey_mprotect X -> EPERM.

Denials come first in the profile: of several filters the kernel applies
the most restrictive verdict, which first-match order reproduces here. The
unit's capabilities (every one, unless the drop-in bounds them) are kept: a
unit's service does not lose them the way an sbx run does.
"""
from __future__ import annotations

from sandbox.interop import NAMESPACES, SYSTEMD_DEFAULT


def settings(dropin: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in dropin.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def simulated_profile(dropin: str, name: str = "systemd-sim") -> str:
    s = settings(dropin)
    filters = s.get("SystemCallFilter", [])
    assert filters and not filters[0].startswith("~"), "only allow-lists are simulated"
    listed = {w for line in filters for w in line.split()}
    errno = s.get("SystemCallErrorNumber", [None])[-1]
    default = f"errno({errno})" if errno else "kill-process"
    rules = []
    fams = s.get("RestrictAddressFamilies", [None])[-1]
    if fams is not None:
        deny = fams.startswith("~")
        names = [n for n in fams.lstrip("~").split() if n != "none"]
        cond = f"arg0 {'in' if deny else 'not in'} [{', '.join(names) or '0xffffffffffff'}]"
        rules.append(f"  - errno(EAFNOSUPPORT): socket\n    when: [\"{cond}\"]")
    spaces = s.get("RestrictNamespaces", [None])[-1]
    if spaces is not None:
        assert spaces.startswith("~")
        kinds = spaces[1:].split()
        flags = [f for f, k in NAMESPACES.items() if k in kinds]
        mask = "|".join(flags)
        clone_mask = "|".join(f for f in flags if f != "CLONE_NEWTIME")
        if clone_mask:
            rules.append(f"  - errno(EPERM): clone\n    when: [\"arg0 & ({clone_mask}) != 0\"]")
        rules.append(f"  - errno(EPERM): unshare\n    when: [\"arg0 & ({mask}) != 0\"]")
        rules.append(f"  - errno(EPERM): setns\n    when: [\"arg1 & ({mask}) != 0\"]")
        if len(kinds) == len(NAMESPACES):
            rules.append("  - errno(EPERM): setns")
        if "clone3" in listed:
            rules.append("  - errno(ENOSYS): clone3")
    if s.get("LockPersonality", ["no"])[-1] == "yes":
        rules.append("  - errno(EPERM): personality\n    when: [\"arg0 not in [PER_LINUX, 0xffffffff]\"]")
    if s.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        rules.append("  - errno(EPERM): mmap\n    when: [\"arg2 & (PROT_WRITE|PROT_EXEC) == PROT_WRITE|PROT_EXEC\"]")
        rules.append("  - errno(EPERM): [mprotect, pkey_mprotect]\n    when: [\"arg2 & PROT_EXEC != 0\"]")
    from bpf_filters import syscalls
    known = syscalls.all_names()
    allowed = sorted(n for n in listed | SYSTEMD_DEFAULT if n in known)
    rules.append(f"  - allow: [{', '.join(allowed)}]")
    # a unit without CapabilityBoundingSet= keeps every capability of its user (root's: all)
    from sandbox.kernel.caps import NAMES
    caps = s.get("CapabilityBoundingSet", [" ".join(NAMES)])[-1].replace("CAP_", "").split()
    return (f"name: {name}\ndescription: what systemd 252 enforces for this drop-in\n"
            f"default: {default}\nunknown: {default}\narches: [native]\nbad_arch: kill-process\n"
            f"capabilities: [{', '.join(caps)}]\n"
            "rules:\n" + "\n".join(rules) + "\n")
