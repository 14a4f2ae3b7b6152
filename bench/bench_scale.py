"""Large generated profiles: compile time and program size at 1k, 4k and 10k rules.

``profile_text(n, shape)`` writes a deterministic profile of *n* rules:
- ``mixed``: shaped like big hand-written ones: arg-free allows of many
  distinct syscalls, and for the syscalls that take integer arguments,
  chains of conditional rules with ``==``, ``!=``, masks, ordered
  comparisons, two-condition rules and ``in`` lists (some of them runs of
  consecutive values).  Past ~1,000 rules its program no longer fits the
  kernel's 4,096 instructions: it is timed up to that (positioned) error.
- ``values``: shaped like a profile listing observed values, one rule per
  value (``allow: ioctl when arg1 == 0x5401``) in runs of consecutive
  numbers with gaps, now and then a denial in between, over ~100 syscalls:
  neighbouring rules merge into sets and runs into ranges, so it fits.
``measure`` times YAML -> bytes (load, lower, compile) for each size.

Usage: python3 bench/bench_scale.py [--sizes 1000,4000,10000] [--shapes mixed,values] [--runs 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

SIZES = (1000, 4000, 10000)
SHAPES = ("mixed", "values")
ACTIONS = ("allow", "errno(EPERM)", "errno(EACCES)", "kill-process", "log")


def _int_args() -> list[tuple[str, int, int]]:
    """(syscall, argument index, width) of every x86_64 integer argument of 32 or 64 bits."""
    from bpf_filters.syscalls import table
    from bpf_filters.syscalls.signatures import SIGNATURES
    t = table("x86_64")
    return [(name, i, a.width) for name, sig in sorted(SIGNATURES.items()) if name in t
            for i, a in enumerate(sig) if not a.pointer and a.width in (32, 64)]


def _condition(rng: random.Random, arg: int, _width: int) -> str:
    top = (1 << 31) - 1          # fits every ABI's reading of the argument (i386: 32 bits)
    kind = rng.random()
    if kind < 0.35:
        return f"arg{arg} == {rng.randrange(0, 4096)}"
    if kind < 0.5:
        return f"arg{arg} != {rng.randrange(0, 64)}"
    if kind < 0.65:
        return f"arg{arg} & {1 << rng.randrange(0, 31):#x} != 0"
    if kind < 0.75:
        return f"arg{arg} {rng.choice(['<', '<=', '>', '>='])} {rng.randrange(0, top):#x}"
    if kind < 0.9:                                # a run of consecutive values
        start = rng.randrange(0, 1 << 20)
        vals = range(start, start + rng.randrange(4, 40))
    else:                                         # scattered values
        vals = sorted(rng.sample(range(0, 1 << 16), rng.randrange(2, 24)))
    op = "not in" if rng.random() < 0.2 else "in"
    return f"arg{arg} {op} [{', '.join(str(v) for v in vals)}]"


def profile_text(n_rules: int, seed: int = 0, shape: str = "mixed") -> str:
    """A profile of exactly *n_rules* rules (see the module docstring)."""
    return (_values if shape == "values" else _mixed)(n_rules, random.Random(seed))


def _mixed(n_rules: int, rng: random.Random) -> str:
    from bpf_filters.syscalls import table
    args = _int_args()
    with_args = sorted({name for name, _, _ in args})
    plain = [n for n in sorted(table("x86_64").by_name) if n not in with_args]
    n_plain = min(len(plain), n_rules // 5)
    lines = ["name: scale", f"description: generated, {n_rules} rules", "default: errno(EPERM)",
             "rules:"]
    for _ in range(n_rules - n_plain - len(with_args)):
        name, arg, width = rng.choice(args)
        conds = [_condition(rng, arg, width)]
        if rng.random() < 0.2:
            other = [(a, w) for n, a, w in args if n == name and a != arg]
            if other:
                conds.append(_condition(rng, *rng.choice(other)))
        lines.append(f"  - {rng.choice(ACTIONS)}: {name}")
        lines.append(f"    when: [{', '.join(json.dumps(c) for c in conds)}]")
    for name in with_args:                        # what the conditions leave: allowed
        lines.append(f"  - allow: {name}")
    for name in rng.sample(plain, n_plain):
        lines.append(f"  - allow: {name}")
    return "\n".join(lines) + "\n"


def _values(n_rules: int, rng: random.Random) -> str:
    args = _int_args()
    picked = rng.sample(args, min(len(args), 100))
    per = n_rules // len(picked)
    lines = ["name: values", f"description: generated, {n_rules} one-value rules",
             "default: errno(EPERM)", "rules:"]
    written = 0
    for k, (name, arg, _width) in enumerate(picked):
        count = per if k < len(picked) - 1 else n_rules - written
        v = rng.randrange(0, 1 << 16)
        for _ in range(count):
            if rng.random() < 0.03:
                lines.append(f"  - errno(EPERM): {name}")
            else:
                lines.append(f"  - allow: {name}")
            lines.append(f'    when: ["arg{arg} == {v:#x}"]')
            v += 1 if rng.random() < 0.9 else rng.randrange(2, 50)      # runs with gaps
        written += count
    return "\n".join(lines) + "\n"


def compile_once(path: str) -> dict:
    """YAML -> bytes once: milliseconds to load (read, parse, resolve) and lower, and to
    compile (codegen, optimize, verify, encode); the program's length, or the error."""
    from sandbox.policy import PolicyError, load_profile, lower
    from sandbox.policy import build_filter
    t0 = time.perf_counter()
    prof = load_profile(path)
    lower(prof)
    t1 = time.perf_counter()
    try:
        flt = build_filter(prof)              # lowers again: ~1% of the whole
        flt.encode()
        insns, error = len(flt.insns), None
    except PolicyError as err:
        first = next((d for d in err.diagnostics if d.severity == "error"), None)
        insns, error = None, first.message if first else str(err)
    t2 = time.perf_counter()
    return {"load_ms": (t1 - t0) * 1e3, "compile_ms": (t2 - t1) * 1e3, "ms": (t2 - t0) * 1e3,
            "insns": insns, "error": error}


def measure(sizes=SIZES, runs: int = 3, shapes=SHAPES) -> dict:
    """{shape: {size: {"ms": median, "runs": [...], "insns": n | None, "error": text | None}}}."""
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            for n in sizes:
                path = Path(tmp) / f"{shape}-{n}.yaml"
                path.write_text(profile_text(n, shape=shape))
                results = [compile_once(str(path)) for _ in range(runs)]
                out.setdefault(shape, {})[n] = {
                    "ms": statistics.median(r["ms"] for r in results),
                    "load_ms": statistics.median(r["load_ms"] for r in results),
                    "compile_ms": statistics.median(r["compile_ms"] for r in results),
                    "runs": [round(r["ms"], 1) for r in results],
                    "insns": results[0]["insns"], "error": results[0]["error"],
                    "yaml_bytes": path.stat().st_size}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    res = measure([int(s) for s in args.sizes.split(",")], args.runs, args.shapes.split(","))
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for shape, rows in res.items():
            for n, r in rows.items():
                what = f"{r['insns']} insns" if r["insns"] else f"error: {r['error']}"
                print(f"{shape:7} {n:>6} rules  load {r['load_ms']:8.1f} ms  compile "
                      f"{r['compile_ms']:8.1f} ms  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
