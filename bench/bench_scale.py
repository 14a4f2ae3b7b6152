"""Large generated profiles: compile time and program size at 1k, 4k and 10k rules.

``profile_text(n)`` writes a deterministic profile of *n* rules shaped like
big real ones: arg-free allows of many distinct syscalls, and for the
syscalls that take integer arguments, chains of conditional rules with
``==``, ``!=``, masks, ordered comparisons, two-condition rules and ``in``
lists (some of them runs of consecutive values, like ioctl request ranges or
file-descriptor numbers).  ``measure`` times YAML -> bytes (load, lower,
compile) for each size; a profile whose program does not fit the kernel's
4,096 instructions is timed up to that error and reported as too large.

Usage: python3 bench/bench_scale.py [--sizes 1000,4000,10000] [--runs 3] [--json]
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


def profile_text(n_rules: int, seed: int = 0) -> str:
    """A profile of exactly *n_rules* rules (see the module docstring)."""
    from bpf_filters.syscalls import table
    rng = random.Random(seed)
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


def compile_once(path: str) -> dict:
    """YAML -> bytes once: the milliseconds it took and the program's length, or the error."""
    from sandbox.policy import PolicyError, build_filter, load_profile
    t0 = time.perf_counter()
    try:
        flt = build_filter(load_profile(path))
        flt.encode()
    except PolicyError as err:
        first = next((d for d in err.diagnostics if d.severity == "error"), None)
        return {"ms": (time.perf_counter() - t0) * 1e3, "insns": None,
                "error": first.message if first else str(err)}
    return {"ms": (time.perf_counter() - t0) * 1e3, "insns": len(flt.insns), "error": None}


def measure(sizes=SIZES, runs: int = 3) -> dict:
    """{size: {"ms": median, "runs": [...], "insns": n | None, "error": text | None}}."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"scale-{n}.yaml"
            path.write_text(profile_text(n))
            results = [compile_once(str(path)) for _ in range(runs)]
            out[n] = {"ms": statistics.median(r["ms"] for r in results),
                      "runs": [round(r["ms"], 1) for r in results],
                      "insns": results[0]["insns"], "error": results[0]["error"],
                      "yaml_bytes": path.stat().st_size}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    res = measure([int(s) for s in args.sizes.split(",")], args.runs)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for n, r in res.items():
            what = f"{r['insns']} insns" if r["insns"] else f"error: {r['error']}"
            print(f"{n:>6} rules  {r['ms']:10.1f} ms  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
