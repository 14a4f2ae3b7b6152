"""Mount the kernel filesystems sbx needs when the host has not (cgroup v2 here).

tracefs and bpffs are not needed: the eBPF programs attach to raw/BTF
tracepoints through bpf(2) and nothing is pinned.
"""
from __future__ import annotations

import ctypes
import os

from .libbpf import BpfError, cgroup2_root

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]


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
        if _libc.mount(b"cgroup2", os.fsencode(where), b"cgroup2", 0, None) == 0:
            return where, True
        e = ctypes.get_errno()
        errors.append(f"mount cgroup2 on {where}: {os.strerror(e)}")
    raise MountError(0, "; ".join(errors))
