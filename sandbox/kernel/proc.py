"""Small /proc readers the launcher needs (kept here: only sandbox/kernel reads the kernel's state)."""
from __future__ import annotations

import os
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
    fields = stat_fields(pid, proc)
    return fields is not None and fields[0] in (b"S", b"D")


def stat_fields(pid: int | str = "self", proc: str = "/proc") -> list[bytes] | None:
    """The fields of /proc/PID/stat after the name (state first: proc(5)'s field 3
    is [0]), or None if it cannot be read. The name may hold spaces and
    parentheses, so the fields are read from its last ')'."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as fh:
            text = fh.read()
        return text[text.rindex(b")") + 2:].split()
    except (OSError, ValueError):
        return None


def controlling_terminal() -> tuple[int, int] | None:
    """(major, minor) of this process's controlling terminal, None if it has none
    or /proc cannot say. Opening /dev/tty would not tell: the file it gives has
    /dev/tty's own inode (5, 0), whatever terminal it reaches. proc(5): field 7,
    tty_nr, holds the minor in bits 31-20 and 0-7 and the major in bits 8-15."""
    fields = stat_fields()
    try:
        nr = int(fields[4]) if fields is not None else 0
    except (ValueError, IndexError):
        return None
    if nr == 0:
        return None
    return (nr >> 8) & 0xFF, (nr & 0xFF) | ((nr >> 12) & 0xFFF00)


def mount_table(proc: str = "/proc") -> list[tuple[int, str, str]]:
    """(st_dev, file-system type, mount point) of every mount this process sees,
    from /proc/self/mountinfo (proc(5): field 3 is the device as major:minor,
    the st_dev of every file on that mount; field 5 the mount point, with
    space, tab, newline and backslash as octal escapes; the type follows the
    "-" separator). Empty if it cannot be read."""
    try:
        with open(f"{proc}/self/mountinfo", "rb") as fh:
            text = fh.read().decode("utf-8", "surrogateescape")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            major, minor = fields[2].split(":")
            fstype = fields[fields.index("-", 6) + 1]
            dev = os.makedev(int(major), int(minor))
        except (ValueError, IndexError):
            continue
        point = fields[4]
        if "\\" in point:
            point = point.encode("utf-8", "surrogateescape").decode("unicode_escape").encode(
                "latin-1").decode("utf-8", "surrogateescape")
        out.append((dev, fstype, point))
    return out


__all__ = ["controlling_terminal", "mount_table", "stat_fields", "wait_blocked"]
