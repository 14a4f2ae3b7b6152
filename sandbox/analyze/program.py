"""Analyse a program: load its objects, summarize each (or take the cached summary), walk
the call graph, then the programs it runs with a constant path.

This is the one entry point the command line uses (``analyze_program``).  The
result keeps, per syscall, where it is made and the chain that reaches it, so
that the profile's comments and ``--explain`` can say why it is allowed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field

from . import cache as cache_mod
from .callgraph import Obj, Reach, walk
from .code import summarize
from .elf import AnalyzeError, open_elf
from .loader import Loaded, load_order
from .summary import Summary

MAX_EXEC_DEPTH = 3


@dataclass
class ObjectStat:
    path: str
    key: str
    cached: bool
    seconds: float
    insns: int


@dataclass
class Analysis:
    """One program (and the programs it runs): what it reaches and how it was analysed."""
    path: str
    kind: str
    reach: Reach
    stats: list[ObjectStat] = field(default_factory=list)
    children: list["Analysis"] = field(default_factory=list)     # programs it runs
    ran_by: str | None = None                                    # "libc.so.6 0x4c020 runs it"
    seconds: float = 0.0
    cache_note: str | None = None

    def all_syscalls(self) -> dict[int, list[tuple["Analysis", tuple, str]]]:
        """nr -> [(analysis, node, via)] over this program and the programs it runs."""
        out: dict[int, list] = {}
        for a in [self] + self.descendants():
            for nr, sites in a.reach.syscalls.items():
                out.setdefault(nr, []).extend((a, node, via) for node, via in sites)
        return out

    def descendants(self) -> list["Analysis"]:
        out = []
        for c in self.children:
            out += [c] + c.descendants()
        return out


def object_key(loaded: Loaded) -> str:
    """The cache key: the build-id and the file's size (strip keeps the build-id but drops
    the symbol names the analysis uses), else a digest of the file's bytes."""
    if loaded.elf.build_id:
        return f"{loaded.elf.build_id}s{len(loaded.elf.raw)}"
    return "sha256" + hashlib.sha256(loaded.elf.raw).hexdigest()[:40]


class Analyser:
    """Summaries for objects, through the cache; remembers what it did for the report."""

    def __init__(self, cache: cache_mod.SummaryCache):
        self.cache = cache
        self.stats: list[ObjectStat] = []
        self.memo: dict[str, Summary] = {}

    def __call__(self, loaded: Loaded) -> Summary:
        key = object_key(loaded)
        if key in self.memo:
            return self.memo[key]
        began = time.perf_counter()
        summary = self.cache.load(key)
        cached = summary is not None
        if summary is None:
            elf = open_elf(loaded.path, loaded.elf.raw)
            summary = summarize(elf, loaded.elf.soname or loaded.name, key)
            self.cache.store(key, summary)
        self.memo[key] = summary
        self.stats.append(ObjectStat(loaded.path, key, cached, time.perf_counter() - began,
                                     summary.insns))
        return summary


def open_program(path: str) -> Loaded:
    """The program at *path*, or found on PATH when it is a bare name (its headers);
    AnalyzeError when it is not one."""
    if "/" not in path and not os.path.exists(path):
        path = shutil.which(path) or path
    elf = open_elf(path, full=False)
    if elf.kind == "library":
        raise AnalyzeError(f"{path}: a shared library{f' ({elf.soname})' if elf.soname else ''}, "
                           "not a program", "give the program that loads it")
    return Loaded(path, elf, "program")


def analyze_program(path: str, cache: cache_mod.SummaryCache | None = None,
                    env: dict[str, str] | None = None, extra_execs: list[str] = (),
                    follow_execs: bool = True) -> Analysis:
    """Analyse *path*, the programs it runs with a constant path, and *extra_execs*."""
    cache = cache if cache is not None else cache_mod.SummaryCache()
    env = dict(os.environ) if env is None else env
    analyser = Analyser(cache)
    began = time.perf_counter()
    top = _one(path, analyser, env)
    done = {os.path.realpath(path)}
    pending = [(top, p, node, 1) for p, node in top.reach.execs] if follow_execs else []
    pending += [(top, p, None, 1) for p in extra_execs]
    while pending:
        parent, prog, node, depth = pending.pop(0)
        found = _which(prog, env)
        if found is None:
            parent.reach.limits.append(f"runs {prog}, which is not found here: its syscalls are "
                                       "not in this profile")
            continue
        if os.path.realpath(found) in done:
            continue
        done.add(os.path.realpath(found))
        child = _one(found, analyser, env)
        child.ran_by = (f"run by {parent.reach.label(node)}" if node is not None
                        else "named with --exec")
        parent.children.append(child)
        if follow_execs and depth < MAX_EXEC_DEPTH:
            pending += [(child, p, n, depth + 1) for p, n in child.reach.execs]
    top.stats = analyser.stats
    top.seconds = time.perf_counter() - began
    top.cache_note = cache.warning
    return top


def _one(path: str, analyser: Analyser, env: dict[str, str]) -> Analysis:
    program = open_program(path)
    order = load_order(program, env)
    objects = [Obj(o, analyser(o)) for o in order]
    reach = walk(objects, analyser, env)
    return Analysis(program.path, program.elf.kind, reach)


def _which(prog: str, env: dict[str, str]) -> str | None:
    """*prog* as execvp finds it: as given when it has a slash, else on PATH."""
    if "/" in prog:
        return prog if os.path.isfile(prog) and os.access(prog, os.X_OK) else None
    return shutil.which(prog, path=env.get("PATH", os.defpath))
