"""The per-object result of the analysis (``Summary``) and its JSON form.

A summary depends on one ELF file only, never on the program that loads it, so
it can be cached by build-id and shared by every program that uses the library.
Functions ("regions") are numbered in address order; every field maps a region
number to what that function does.
"""
from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field, fields


@dataclass
class Summary:
    name: str                                  # soname or file name, for display
    build_id: str
    kind: str                                  # elf.Elf.kind
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)          # regions not bounded by an FDE
    names: dict[int, str] = field(default_factory=dict)
    sys: dict[int, list[int]] = field(default_factory=dict)          # inline syscall numbers
    unknown: dict[int, list[int]] = field(default_factory=dict)      # sites, number unknown
    foreign: dict[int, list[int]] = field(default_factory=dict)      # int 0x80 / sysenter sites
    mixed: list[int] = field(default_factory=list)   # regions without FDE holding undecodable bytes
    # functions that pass an argument on: [(kind, k)] where kind is "syscall" (argument k
    # is the syscall number), "dlopen", "dlsym" or "exec" (argument k names the library,
    # symbol or program)
    params: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    calls: dict[int, list[int]] = field(default_factory=dict)        # direct calls, tail jumps
    imports: dict[int, list[str]] = field(default_factory=dict)      # calls through PLT/GOT
    plt: dict[int, str] = field(default_factory=dict)                # PLT stub -> symbol
    indirect: list[int] = field(default_factory=list)                # calls through pointers
    takes: dict[int, list[int]] = field(default_factory=dict)        # function addresses taken
    takes_imports: dict[int, list[str]] = field(default_factory=dict)
    data_takes: list[int] = field(default_factory=list)              # pointers in data
    data_takes_imports: list[str] = field(default_factory=list)
    ifunc: list[int] = field(default_factory=list)                   # IFUNC resolvers
    exports: dict[str, list[int]] = field(default_factory=dict)      # defined dynamic functions
    roots: list[tuple[str, int]] = field(default_factory=list)       # (what, region) run by ld.so
    # region -> [(kind, name or callee, values or None, site)] for calls whose constant
    # arguments matter: ("syscall", via, [numbers] or None, site), ("dlopen", via,
    # [strings] or None, site), ("dlsym", ...), ("exec", ...)
    consts: dict[int, list[tuple[str, str, list | None, int]]] = field(default_factory=dict)
    main: int | None = None
    stripped: bool = False                     # no function symbols at all
    insns: int = 0
    seconds: float = 0.0

    def region_at(self, addr: int) -> int | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.ends[i]:
            return i
        return None

    def label(self, rid: int) -> str:
        """The function's name, else its address in the object."""
        if rid in self.plt:
            return f"{self.plt[rid]}@plt"
        return self.names.get(rid) or f"{self.starts[rid]:#x}"

    # -- JSON: dict keys become strings, tuples lists ----------------------------------
    def to_json(self) -> dict:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, dict) and key != "exports":
                out[key] = {str(k): v for k, v in value.items()}
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Summary":
        """The summary from *data*; ValueError/TypeError/KeyError if it is malformed."""
        if not isinstance(data, dict):
            raise TypeError("not an object")
        kwargs = {}
        for f in fields(cls):
            if f.name not in data:
                raise KeyError(f.name)
            value = data[f.name]
            if isinstance(value, dict) and f.name != "exports":
                value = {int(k): v for k, v in value.items()}
            kwargs[f.name] = value
        out = cls(**kwargs)
        out.roots = [(str(w), int(r)) for w, r in out.roots]
        out.params = {r: [(str(k), int(i)) for k, i in items] for r, items in out.params.items()}
        out.consts = {r: [(str(k), str(n), v, int(s)) for k, n, v, s in items]
                      for r, items in out.consts.items()}
        n = len(out.starts)
        if len(out.ends) != n or any(not 0 <= r < n for r in out.calls):
            raise ValueError("inconsistent region tables")
        return out
