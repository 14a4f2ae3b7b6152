"""What ``sbx monitor`` keeps of the denial events it reads: counts, in bounded memory.

A monitor may read millions of events (a C loop denied by its filter makes
over a million a second); it keeps none of them.  Each event adds one to its
row, keyed by (pid, comm, arch, syscall, action), and becomes that row's
example (the most recent event of the row: a bounded sample of what was
seen).  Rows are bounded too: past ``max_rows`` distinct processes and
calls, new ones are added to one row per (arch, syscall, action) with no
process, so the counts stay exact whatever the number of processes.  Pure:
no kernel access.
"""
from __future__ import annotations

MAX_ROWS = 4096
OTHERS = "(other processes)"


class Row:
    """The count of one (pid, comm, arch, nr, action) and its latest event."""

    __slots__ = ("pid", "comm", "arch", "nr", "action", "count", "example")

    def __init__(self, pid, comm: str, arch: str, nr: int, action: str):
        self.pid, self.comm, self.arch, self.nr, self.action = pid, comm, arch, nr, action
        self.count, self.example = 0, None


class Tally:
    """Counts of delivered denial events, in at most ``max_rows`` rows plus
    one overflow row per (arch, syscall, action)."""

    def __init__(self, max_rows: int = MAX_ROWS):
        self.max_rows = max_rows
        self.rows: dict[tuple, Row] = {}
        self.overflow: dict[tuple, Row] = {}
        self.events = 0

    def add(self, ev) -> None:
        self.events += 1
        key = (ev.pid, ev.comm, ev.arch, ev.nr, ev.action)
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) < self.max_rows:
                row = self.rows[key] = Row(ev.pid, ev.comm, ev.arch, ev.nr, ev.action)
            else:
                call = (ev.arch, ev.nr, ev.action)
                row = self.overflow.get(call)
                if row is None:
                    row = self.overflow[call] = Row(None, OTHERS, ev.arch, ev.nr, ev.action)
        row.count += 1
        row.example = ev

    def top(self, n: int) -> list[Row]:
        """The *n* largest rows (overflow rows included), largest first."""
        rows = list(self.rows.values()) + list(self.overflow.values())
        rows.sort(key=lambda r: (-r.count, r.pid is None, r.pid or 0, r.arch, r.nr, r.action))
        return rows[:n]

    def __len__(self) -> int:
        return len(self.rows) + len(self.overflow)
