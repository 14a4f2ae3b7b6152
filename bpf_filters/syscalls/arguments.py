"""What the arguments profiles narrow mean: the one table of argument knowledge.

``signatures`` says how wide each argument is (the bits the kernel reads);
this table says, for the arguments that decide what a call does:
- ``spelling``: how a value is written for a person — ``enum`` (one constant
  whose name starts with one of ``prefixes``), ``flags`` (an OR of such
  constants), ``socket-type`` (a SOCK_ type plus SOCK_NONBLOCK/SOCK_CLOEXEC);
- ``selector``: the argument says *what* the call does (socket's family,
  ioctl's request, prctl's option), so a profile generated from observed
  calls narrows it even where no rule of the profile tests it;
- ``traced``: the tracers count its values (the eBPF probe and the notify
  supervisor record them for ``sbx trace`` and report them to ``sbx run
  --monitor``), compared under ``traced_mask`` (default: the argument's width).

``PATH_ARGS`` says where each file syscall keeps its paths, directory
descriptors and flags: the tracers read them to learn Landlock's rights.

Consumers: the tracers (``counted``, ``PATH_ARGS``), the trace writer and ``sbx refine``
(selectors, spelling via ``sandbox.policy.spell``), ``sbx import`` (spelling).
Pure data: no OS calls, nothing from ``sandbox``.
"""
from __future__ import annotations

from . import table
from .signatures import arg_width

ENUM, FLAGS, SOCKET_TYPE = "enum", "flags", "socket-type"
_SOCK_FLAGS = 0x800 | 0x80000          # SOCK_NONBLOCK | SOCK_CLOEXEC: not the socket's type


class Meaning:
    """What one argument of one syscall means (see the module docstring)."""

    __slots__ = ("syscall", "index", "spelling", "prefixes", "selector", "traced", "traced_mask")

    def __init__(self, syscall: str, index: int, spelling: str | None, prefixes: tuple[str, ...] = (),
                 selector: bool = False, traced: bool = False, traced_mask: int | None = None):
        self.syscall, self.index, self.spelling, self.prefixes = syscall, index, spelling, prefixes
        self.selector, self.traced, self.traced_mask = selector, traced, traced_mask


_PERSONALITY = ("PER_", "UNAME26", "ADDR_", "READ_IMPLIES_EXEC", "FDPIC_FUNCPTRS", "MMAP_PAGE_ZERO",
                "SHORT_INODE", "WHOLE_SECONDS", "STICKY_TIMEOUTS")
_IOCTL = ("TC", "TIOC", "FIO", "SIOC")


def _m(name, idx, spelling, prefixes=(), selector=False, traced=False, traced_mask=None):
    return (name, idx), Meaning(name, idx, spelling, prefixes, selector, traced, traced_mask)


ARGUMENTS: dict[tuple[str, int], Meaning] = dict([
    _m("socket", 0, ENUM, ("AF_",), selector=True, traced=True),
    _m("socket", 1, SOCKET_TYPE, ("SOCK_",), traced=True, traced_mask=0xFFFF_FFFF & ~_SOCK_FLAGS),
    _m("socketpair", 0, ENUM, ("AF_",), selector=True, traced=True),
    _m("socketpair", 1, SOCKET_TYPE, ("SOCK_",)),
    _m("ioctl", 1, ENUM, _IOCTL, selector=True, traced=True),
    _m("prctl", 0, ENUM, ("PR_",), selector=True, traced=True),
    _m("arch_prctl", 0, ENUM, ("ARCH_",), selector=True),
    _m("fcntl", 1, ENUM, ("F_",), selector=True, traced=True),
    _m("fcntl64", 1, ENUM, ("F_",), selector=True, traced=True),
    _m("personality", 0, FLAGS, _PERSONALITY, selector=True, traced=True),
    _m("clone", 0, FLAGS, ("CLONE_",), selector=True, traced=True),
    _m("unshare", 0, FLAGS, ("CLONE_",), selector=True),
    _m("setns", 1, FLAGS, ("CLONE_",), selector=True),
    _m("setsockopt", 1, ENUM, ("SOL_",), selector=True, traced=True),
    _m("setsockopt", 2, ENUM, ("SO_",), selector=True, traced=True),
    _m("getsockopt", 1, ENUM, ("SOL_",), selector=True),
    _m("getsockopt", 2, ENUM, ("SO_",), selector=True),
    _m("madvise", 2, ENUM, ("MADV_",), selector=True),
    _m("seccomp", 0, ENUM, ("SECCOMP_",), selector=True),
    _m("bpf", 0, None, selector=True),
    _m("ptrace", 0, None, selector=True),
    _m("keyctl", 0, None, selector=True),
    _m("mmap", 2, FLAGS, ("PROT_",), traced=True),
    _m("mmap2", 2, FLAGS, ("PROT_",), traced=True),
    _m("mmap", 3, FLAGS, ("MAP_",)),
    _m("mprotect", 2, FLAGS, ("PROT_",), selector=True, traced=True),
    _m("pkey_mprotect", 2, FLAGS, ("PROT_",), selector=True),
    _m("memfd_create", 1, FLAGS, ("MFD_",), selector=True),
    _m("getrandom", 2, FLAGS, ("GRND_",)),
    _m("open", 1, FLAGS, ("O_",)),
    _m("openat", 2, FLAGS, ("O_",)),
    _m("futex", 1, ENUM, ("FUTEX_",)),
    _m("kill", 1, ENUM, ("SIG",), selector=True, traced=True),
    _m("tkill", 1, ENUM, ("SIG",), selector=True, traced=True),
    _m("tgkill", 2, ENUM, ("SIG",), selector=True, traced=True),
])


def meaning(name: str, index: int) -> Meaning | None:
    return ARGUMENTS.get((name, index))


def selectors(name: str) -> tuple[int, ...]:
    """The arguments that say what a call of *name* does."""
    return tuple(sorted(i for (n, i), m in ARGUMENTS.items() if n == name and m.selector))


def traced_names() -> tuple[str, ...]:
    """The syscalls whose argument values the tracers count."""
    return tuple(sorted({n for (n, _i), m in ARGUMENTS.items() if m.traced}))


def counted(arches: tuple[str, ...] = ("x86_64", "i386", "x32")) -> dict[tuple[str, int], dict[int, int]]:
    """{(arch, nr): {argidx: mask}} of the traced arguments, numbers as the
    tracers report them (x32 without its bit), masks at the width the kernel
    reads on that arch. i386's mmap is old_mmap (one pointer): not counted."""
    from . import reported_nr
    out: dict[tuple[str, int], dict[int, int]] = {}
    for arch in arches:
        tbl = table(arch)
        for (name, idx), m in ARGUMENTS.items():
            nr = tbl.nr(name)
            if not m.traced or nr is None or (arch, name) == ("i386", "mmap"):
                continue
            mask = (1 << arg_width(arch, name, idx)) - 1
            if m.traced_mask is not None:
                mask &= m.traced_mask
            out.setdefault((arch, reported_nr(arch, nr)), {})[idx] = mask
    return out


# Where each x86_64 file syscall keeps its paths: (dirfd, path) argument indexes of
# the first and the second path, and the flags argument (an int: its index; a
# tuple: a constant).  sandbox/ebpf/sbx.bpf.c (path_args) reads the same.
PATH_ARGS: dict[str, tuple] = {
    "open": (None, 0, None, None, 1),
    "creat": (None, 0, None, None, (0o1101,)),     # O_CREAT | O_WRONLY | O_TRUNC
    "openat": (0, 1, None, None, 2),
    "openat2": (0, 1, None, None, "how"),          # struct open_how's flags, in memory
    "execve": (None, 0, None, None, None),
    "execveat": (0, 1, None, None, 4),
    "mkdir": (None, 0, None, None, None),
    "mkdirat": (0, 1, None, None, None),
    "mknod": (None, 0, None, None, 1),
    "mknodat": (0, 1, None, None, 2),
    "unlink": (None, 0, None, None, None),
    "unlinkat": (0, 1, None, None, 2),
    "rmdir": (None, 0, None, None, None),
    "rename": (None, 0, None, 1, None),
    "renameat": (0, 1, 2, 3, None),
    "renameat2": (0, 1, 2, 3, 4),
    "link": (None, 0, None, 1, None),
    "linkat": (0, 1, 2, 3, 4),
    "symlink": (None, 1, None, None, None),          # the new link; its target needs no right
    "symlinkat": (1, 2, None, None, None),
    "truncate": (None, 0, None, None, None),
    "chdir": (None, 0, None, None, None),
}


__all__ = ["ARGUMENTS", "ENUM", "FLAGS", "Meaning", "PATH_ARGS", "SOCKET_TYPE", "counted", "meaning",
           "selectors", "traced_names"]
