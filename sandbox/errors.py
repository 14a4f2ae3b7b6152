"""The errors every sbx command can end with, and the exit statuses they map to.

One place, so that the fast path of ``sbx run``, the click commands and the
kernel seam agree on what a status means. ``PolicyError`` (a profile that
cannot be loaded) lives with the diagnostics it carries and subclasses
``SbxError`` like the rest.
"""
from __future__ import annotations

EXIT_USAGE = 2            # bad input: a profile, an option, an argument
EXIT_TIMEOUT = 124        # sbx verify --timeout: the command ran out of time
EXIT_SANDBOX = 125        # sbx could not set up the sandbox: the command did not run
EXIT_NOEXEC = 126         # the command exists but cannot be executed
EXIT_NOTFOUND = 127       # the command does not exist
EXIT_INTERRUPTED = 130    # Ctrl-C (SIGINT) stopped sbx itself, as a shell reports 128 + SIGINT


class SbxError(Exception):
    """An error with a one-line message for the user and the status sbx exits with."""

    status = 1

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status

    def render(self) -> str:
        """The message as sbx prints it."""
        return f"sbx: {self}"


class UsageError(SbxError):
    """Bad options or arguments on the command line."""

    status = EXIT_USAGE


class LaunchError(SbxError):
    """The command could not be started confined (125), found (127) or executed (126)."""

    status = EXIT_SANDBOX


def exec_status(errno_: int) -> int:
    """The status for a failed execve: 127 when the file is missing, else 126."""
    return EXIT_NOTFOUND if errno_ == 2 else EXIT_NOEXEC


def wait_status_code(status: int) -> int:
    """A raw wait status as a shell reports it: the exit code, or 128 + signal."""
    import os
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


class TraceError(SbxError):
    """sbx trace could not record or write (status 1, or 2 for bad input)."""
