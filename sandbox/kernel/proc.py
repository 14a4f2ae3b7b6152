"""Small /proc readers the launcher needs (kept here: only sandbox/kernel reads the kernel's state)."""
from __future__ import annotations

import time


def wait_blocked(pid: int, timeout: float = 1.0, proc: str = "/proc") -> bool:
    """Wait until *pid* sleeps inside a syscall (e.g. the launcher's go-pipe read).

    The eBPF monitor ignores a seeded task's first unmatched syscall exit, which
    is exact only if the task is inside a syscall when it is seeded.  Returns
    False on timeout or when /proc/PID/syscall cannot be read (then the caller
    seeds anyway: at worst one early call is not attributed).
    """
    deadline = time.monotonic() + timeout
    path = f"{proc}/{pid}/syscall"
    while True:
        try:
            with open(path) as fh:
                first = fh.read().split(" ", 1)[0].strip()
        except OSError:
            return False
        if first not in ("running", "-1", "") and _sleeping(pid, proc):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0002)


def _sleeping(pid: int, proc: str) -> bool:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] in (b"S", b"D")


__all__ = ["wait_blocked"]
