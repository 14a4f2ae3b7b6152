"""Mount the kernel filesystems sbx needs when the host has not (cgroup v2 here).

tracefs and bpffs are not needed: the eBPF programs attach to raw/BTF
tracepoints through bpf(2) and nothing is pinned.
"""
from __future__ import annotations

import os

from . import libc
from .libbpf import BpfError, cgroup2_root


class MountError(OSError):
    pass


def ensure_cgroup2(candidates: tuple[str, ...]) -> tuple[str, bool]:
    """The cgroup v2 mount point, mounting it at the first usable candidate if none is
    mounted. Returns (path, mounted_now); raises MountError with every reason."""
    try:
        return cgroup2_root(), False
    except BpfError:
        pass
    errors = []
    for where in candidates:
        try:
            os.makedirs(where, exist_ok=True)
            if os.listdir(where):
                errors.append(f"{where} is not empty")
                continue
        except OSError as err:
            errors.append(f"{where}: {err.strerror}")
            continue
        fstype, target = libc.cstring("cgroup2"), libc.cstring(where)
        if libc.call("mount", fstype.addr, target.addr, fstype.addr, 0, 0) == 0:
            return where, True
        e = libc.errno()
        errors.append(f"mount cgroup2 on {where}: {os.strerror(e)}")
    raise MountError(0, "; ".join(errors))
