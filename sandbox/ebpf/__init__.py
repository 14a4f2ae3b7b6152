"""The eBPF side of sbx: the object (sbx.bpf.c and sbx.h, built into sbx.bpf.o),
its Python twin (``layout``) and the loader (``probe``).

They live together here, not in ``bpf_filters``, which stays pure (classic BPF
compiled from policies, no loader, no OS calls). ``syscall_nr.h`` is generated
from the syscall tables by tools/gen_syscalls.py, so the C code types no
syscall number by hand.
"""
from .layout import Event, PathEvent
from .probe import DEFAULT_OBJECT, FAMILIES, Probe, ProbeUnavailable, available

__all__ = ["DEFAULT_OBJECT", "Event", "FAMILIES", "PathEvent", "Probe", "ProbeUnavailable",
           "available"]
