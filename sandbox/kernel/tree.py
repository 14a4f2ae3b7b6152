"""The processes a traced command leaves behind: followed until they exit or a deadline.

A server that daemonizes forks and lets its first process exit; the work is
done by descendants that outlive the command. ``sbx trace`` makes itself a
child subreaper (``PR_SET_CHILD_SUBREAPER``) while it records, so the kernel
reparents such orphans to sbx instead of to init: they stay sbx's children,
listed in ``/proc/self/task/*/children`` and reaped by sbx. A child's pid
cannot be reused before sbx reaps it, so signalling the listed children can
never hit an unrelated process (a pid remembered from a notification could).

``Follower`` is the policy (who is left, when to stop them), ``follow`` the
wait loop of the eBPF recorder; the notify recorder calls ``Follower.tick``
from its own loop (``kernel.notify.run_supervised``).
"""
from __future__ import annotations

import os
import signal
import time

from .spawn import adopt_orphans, children as spawn_children

GRACE_S = 3.0                 # from SIGTERM to SIGKILL, as sbx verify's deadline


class Subreaper:
    """Context manager: this process adopts its orphaned descendants meanwhile."""

    def __enter__(self) -> Subreaper:
        self.was = adopt_orphans(1)
        return self

    def __exit__(self, *exc) -> None:
        adopt_orphans(self.was)


def children() -> list[int]:
    """This process's children, zombies included, in order (``spawn.children``)."""
    return sorted(spawn_children())


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


class Follower:
    """Who the command left running, and when to stop them.

    *deadline* (time.monotonic) stops everything still running then: SIGTERM,
    SIGKILL after GRACE_S; *on_left(pids)* is told, once, which processes
    outlived the command; *on_stop(pids)* which ones the deadline stopped.
    """

    def __init__(self, deadline: float | None = None, on_left=None, on_stop=None):
        self.deadline, self.on_left, self.on_stop = deadline, on_left, on_stop
        self.command: int | None = None
        self._before: set[int] = set()
        self.left: list[int] = []            # what outlived the command, when it exited
        self.stopped = False                 # the deadline fired
        self.done = False                    # the command has exited
        self._killed_at: float | None = None
        self._told = False

    def started(self, pid: int, before: list[int] | None = None) -> None:
        """The command's pid; the children this process already had are not its
        (sbx used as a library, or in a test runner, may have others). *before*:
        those children, listed before the command was started (a command that
        may run before this is called could already have left orphans here)."""
        self.command = pid
        self._before = set(children() if before is None else before) - {pid}

    def others(self) -> list[int]:
        """The children that are neither the command nor older than it: what it left."""
        return [p for p in children() if p != self.command and p not in self._before]

    def reap_others(self) -> None:
        """Reap the exited children that are not the command (its recorder reaps it)."""
        for pid in self.others():
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def tick(self, command_done: bool) -> bool:
        """Reap, report, enforce the deadline; True once the command and everything it
        left have exited."""
        self.done = self.done or command_done
        self.reap_others()
        rest = self.others()
        if command_done and not self._told:
            self._told = True
            self.left = rest
            if rest and self.on_left is not None:
                self.on_left(rest)
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            targets = rest + ([] if command_done or self.command is None else [self.command])
            if not self.stopped:
                self.stopped, self._killed_at = True, now + GRACE_S
                if targets and self.on_stop is not None:
                    self.on_stop(targets)
                self.signal(targets, signal.SIGTERM)
            elif self._killed_at is not None and now >= self._killed_at:
                self.signal(targets, signal.SIGKILL)
        return command_done and not rest

    def forward(self, signo: int) -> None:
        """A signal another process sent sbx: to the command, or, once it has exited,
        to what it left running."""
        self.signal(self.others() if self.done or self.command is None else [self.command], signo)

    @staticmethod
    def signal(pids: list[int], signo: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, signo)
            except ProcessLookupError:
                pass


def follow(pid: int, follower: Follower, every=None, interval: float = 0.02) -> int:
    """Wait for *pid* and then for what it left running (``Follower``), calling
    *every* at least every *interval* seconds; forwards the signals of
    ``spawn.FORWARD`` that other processes send to sbx. Returns *pid*'s raw wait
    status. Call ``follower.started(pid)`` before the command may run: a child
    that exits at once leaves its orphans to this process before this starts."""
    from .spawn import FORWARD
    watch = set(FORWARD) | {signal.SIGCHLD}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, watch)
    if follower.command != pid:
        follower.started(pid)
    status: int | None = None
    try:
        while True:
            if status is None:
                try:
                    done, st = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, st = pid, 0
                if done:
                    status = st
            if follower.tick(status is not None):
                return status if status is not None else 0
            if every is not None:
                every()
            info = signal.sigtimedwait(watch, interval)
            if info is None or info.si_signo == signal.SIGCHLD or info.si_code > 0:
                continue
            if info.si_pid == pid or info.si_pid in follower.left:
                continue
            follower.forward(info.si_signo)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


__all__ = ["Follower", "Subreaper", "children", "comm", "follow"]
