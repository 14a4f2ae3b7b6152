"""The ``sbx`` console entry point, with a fast path for ``sbx run``.

``sbx run`` is parsed here by hand (``run_options``, the one table of its
options) so that a cached run imports neither click nor YAML nor the
compiler; every other command, and ``sbx run --help``, goes to the click CLI
in ``sandbox.cli``, which never imports this module back. The installed
launcher calls ``main(fast_exit=True)``:
sbx then leaves with ``os._exit`` and skips the interpreter's teardown.
"""
from __future__ import annotations

import sys

from .errors import UsageError
from .run_options import HelpRequested, parse_run, usage


def run_main(args: list[str]) -> int:
    from .launcher import main as launch, say
    try:
        opts = parse_run(args)
    except UsageError as e:
        say(f"sbx run: {e}\n{usage()}")
        return e.status
    return launch(opts)


def _exit_now(code: int) -> int:
    """Leave without interpreter finalization (~1 ms of module teardown on every
    ``sbx run``). Flushing may fail (stdout or stderr closed): the status stays."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    import os
    os._exit(code)


def main(argv: list[str] | None = None, fast_exit: bool = False) -> int:
    try:
        return _main(argv, fast_exit)
    except KeyboardInterrupt:       # Ctrl-C while Python imports what a command needs
        from .errors import EXIT_INTERRUPTED
        try:
            sys.stderr.write("sbx: interrupted\n")
        except (OSError, ValueError):
            pass
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None, fast_exit: bool) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        try:
            parse_run(argv[1:])
        except HelpRequested:
            pass
        except UsageError:
            return run_main(argv[1:])
        else:
            code = run_main(argv[1:])
            return _exit_now(code) if fast_exit else code
    from .cli import cli
    return cli.main(args=argv, prog_name="sbx", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
