"""``sandbox.ebpf.tally``: what `sbx monitor` keeps of the events it reads.

Counts are exact and memory is bounded whatever the number of events and of
processes: random event streams are tallied and compared with a plain count.
"""
from __future__ import annotations

import collections

from hypothesis import given, settings, strategies as st

from sandbox.ebpf.layout import Event
from sandbox.ebpf.tally import OTHERS, Tally


def event(pid: int, nr: int, action: str = "errno", arg0: int = 0) -> Event:
    return Event("denial", pid, pid, f"p{pid}", "x86_64", nr, (arg0, 0, 0, 0, 0, 0), -1, action,
                 1, None, 0)


streams = st.lists(st.tuples(st.integers(1, 40), st.sampled_from([101, 103, 16]),
                             st.sampled_from(["errno", "trap"]), st.integers(0, 5)), max_size=400)


@given(streams, st.integers(1, 30))
@settings(max_examples=200, deadline=None)
def test_counts_are_exact_and_rows_bounded(stream, max_rows):
    tally = Tally(max_rows=max_rows)
    for pid, nr, action, arg in stream:
        tally.add(event(pid, nr, action, arg))
    per_call = collections.Counter((nr, action) for _, nr, action, _ in stream)
    got = collections.Counter()
    for row in tally.top(10 ** 6):
        got[(row.nr, row.action)] += row.count
    assert got == per_call and tally.events == len(stream)
    assert len(tally.rows) <= max_rows and len(tally.overflow) <= 6
    exact = collections.Counter((pid, nr, action) for pid, nr, action, _ in stream)
    for row in tally.rows.values():           # rows kept per process are that process's count
        assert row.count == exact[(row.pid, row.nr, row.action)]


def test_each_row_keeps_its_latest_event_and_the_overflow_has_no_process():
    tally = Tally(max_rows=2)
    for i, pid in enumerate([1, 1, 2, 3, 4, 3]):
        tally.add(event(pid, 101, arg0=i))
    rows = tally.top(10)
    assert [(r.pid, r.comm, r.count, r.example.args[0]) for r in rows] == \
        [(None, OTHERS, 3, 5), (1, "p1", 2, 1), (2, "p2", 1, 2)]
    assert len(tally) == 3
