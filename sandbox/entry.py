"""The ``sbx`` console entry point, with a fast path for ``sbx run``.

``sbx run`` is parsed here by hand so that a cached run imports neither click
nor YAML nor the compiler (they cost tens of milliseconds); every other
command, and ``sbx run --help``, goes to the click CLI in ``sandbox.cli``.
"""
from __future__ import annotations

import sys

RUN_USAGE = "usage: sbx run [--profile NAME|FILE] [--mode enforce|complain] [--log] [--monitor] [--no-cache] -- CMD [ARGS...]"


class UsageError(Exception):
    pass


class HelpRequested(Exception):
    pass


def parse_run(args: list[str]) -> dict:
    """Parse ``sbx run`` arguments (everything after 'run')."""
    opts = {"profile": "default", "mode": "enforce", "log": False, "monitor": False,
            "use_cache": True}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        name, eq, val = a.partition("=")
        if name in ("--profile", "-p", "--mode"):
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"option {name} needs a value")
                val = args[i]
            if name == "--mode":
                if val not in ("enforce", "complain"):
                    raise UsageError(f"--mode must be enforce or complain, not {val!r}")
                opts["mode"] = val
            else:
                opts["profile"] = val
        elif a == "--log":
            opts["log"] = True
        elif a == "--monitor":
            opts["monitor"] = True
        elif a in ("--help", "-h"):
            raise HelpRequested
        elif a == "--no-cache":
            opts["use_cache"] = False
        else:
            raise UsageError(f"unknown option {a!r}")
        i += 1
    cmd = args[i:]
    if not cmd:
        raise UsageError("missing command to run")
    opts["argv"] = cmd
    return opts


def run_main(args: list[str]) -> int:
    from .errors import LaunchError
    from .launcher import RunOptions, run
    try:
        opts = parse_run(args)
    except UsageError as e:
        print(f"sbx run: {e}\n{RUN_USAGE}", file=sys.stderr)
        return 2
    try:
        return run(RunOptions(**opts))
    except LaunchError as e:
        print(f"sbx: {e}", file=sys.stderr)
        return e.status
    except Exception as e:                      # a bad profile: file:line:col diagnostics
        from .policy.diagnostics import PolicyError
        if isinstance(e, PolicyError):
            print(e.render(), file=sys.stderr)
            return 2
        raise


def _exit_now(code: int) -> int:
    """Leave without interpreter finalization (~1 ms of module teardown on every
    ``sbx run``); only when run as the sbx program, never from tests."""
    if __name__ != "__main__" and sys.argv and not sys.argv[0].endswith("sbx"):
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    import os
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        try:
            parse_run(argv[1:])
        except HelpRequested:
            pass
        except UsageError:
            return run_main(argv[1:])
        else:
            return _exit_now(run_main(argv[1:]))
    from .cli import cli
    return cli.main(args=argv, prog_name="sbx", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
