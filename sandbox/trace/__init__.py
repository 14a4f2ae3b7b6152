"""``sbx trace``: record what a command does and write the tightest profile that runs it.

Pipeline: ``record`` (the eBPF tracer as root, else seccomp user notification)
-> ``observe`` (numbers to names, the launcher's own calls taken out)
-> ``merge`` with earlier generated profiles (``observed_from_profile``)
-> ``write_profile`` (commented YAML, byte-identical for the same input).
The files and ports a run used go the same way beside the syscalls: recorded
into an ``access.FileLog``, resolved to real paths when the run ends,
generalised and written by ``files``.  ``verify`` runs a command under a
written profile and counts what it allows.  Only ``record`` and ``verify``
touch the kernel (through ``sandbox.ebpf``, ``sandbox.kernel.spawn`` and
``sandbox.kernel.notify``); everything else is pure.  ``sandbox.cli.trace``
is the command line.
"""
from .observe import Observed, command_text, merge, observe, observed_from_profile
from ..errors import TraceError
from .record import BACKEND_TEXT, BACKENDS, Recording, choose_backend, observer_steps, record
from .verify import allowed_syscalls, count_allowed, verify_profile
from .write import (LAUNCHER_NEEDS, ZERO_ARGS, base_ref, choose_baseline, default_name,
                    kernel_baseline, plan_rules, render, spell, syscall_groups, write_profile)

__all__ = ["BACKENDS", "BACKEND_TEXT", "LAUNCHER_NEEDS", "Observed", "Recording", "TraceError",
           "ZERO_ARGS", "allowed_syscalls", "base_ref", "choose_backend", "choose_baseline", "command_text", "count_allowed",
           "default_name", "kernel_baseline", "merge", "observe", "observed_from_profile",
           "observer_steps", "plan_rules", "record", "render", "spell", "syscall_groups", "verify_profile",
           "write_profile"]
