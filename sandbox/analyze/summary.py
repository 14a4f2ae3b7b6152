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
            if isinstance(value, dict):
                out[key] = {str(k): v for k, v in value.items()}
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Summary":
        """The summary from *data*; ValueError if it is malformed in any way (a cache entry
        is data from disk: every field is checked before the walk trusts it)."""
        try:
            return cls._from_json(data)
        except (TypeError, KeyError, AttributeError, IndexError) as err:
            raise ValueError(f"malformed summary: {err}") from None

    @classmethod
    def _from_json(cls, data: dict) -> "Summary":
        kwargs = {}
        for f in fields(cls):
            value = data[f.name]
            if f.name in _SHAPES:
                value = _checked(f.name, value)
            kwargs[f.name] = value
        out = cls(**kwargs)
        out.roots = [(str(w), _int(r)) for w, r in out.roots]
        out.params = {r: [(str(k), _int(i)) for k, i in items] for r, items in out.params.items()}
        out.consts = {r: [(str(k), str(n), v if v is None else [x if isinstance(x, (int, str))
                                                                 else _bad(x) for x in v], _int(s))
                           for k, n, v, s in items] for r, items in out.consts.items()}
        n = len(out.starts)
        regions = [r for table in (out.calls, out.takes, out.sys, out.names, out.plt, out.params,
                                   out.consts, out.unknown, out.foreign, out.imports,
                                   out.takes_imports) for r in table]
        regions += out.gaps + out.indirect + out.data_takes + out.ifunc + out.mixed
        regions += [r for rs in out.calls.values() for r in rs]
        regions += [r for rs in out.takes.values() for r in rs]
        regions += [r for rs in out.exports.values() for r in rs] + [r for _, r in out.roots]
        regions += [out.main] if out.main is not None else []
        if len(out.ends) != n or any(not 0 <= r < n for r in regions):
            raise ValueError("malformed summary: a region number out of range")
        return out


def _bad(value):
    raise TypeError(f"unexpected {type(value).__name__}")


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else _bad(value)


# field -> (key type, value type) for dicts keyed by region ("list-int": a list of ints)
_SHAPES = {
    "name": "str", "build_id": "str", "kind": "str",
    "starts": "list-int", "ends": "list-int", "gaps": "list-int", "indirect": "list-int",
    "data_takes": "list-int", "ifunc": "list-int", "mixed": "list-int",
    "data_takes_imports": "list-str",
    "names": ("region", "str"), "plt": ("region", "str"),
    "sys": ("region", "list-int"), "unknown": ("region", "list-int"),
    "foreign": ("region", "list-int"), "calls": ("region", "list-int"),
    "takes": ("region", "list-int"), "imports": ("region", "list-str"),
    "takes_imports": ("region", "list-str"), "params": ("region", "list"),
    "consts": ("region", "list"), "exports": ("str", "list-int"), "roots": "list",
}


def _checked(name: str, value):
    shape = _SHAPES[name]
    if isinstance(shape, str):
        return _typed(shape, value)
    if not isinstance(value, dict):
        _bad(value)
    keys = (lambda k: _int(int(k))) if shape[0] == "region" else str
    return {keys(k): _typed(shape[1], v) for k, v in value.items()}


def _typed(shape: str, value):
    if shape == "str":
        return value if type(value) is str else _bad(value)
    if type(value) is not list:
        _bad(value)
    if shape == "list-int" and not all(type(v) is int for v in value):
        _bad(value)
    if shape == "list-str" and not all(type(v) is str for v in value):
        _bad(value)
    return value
