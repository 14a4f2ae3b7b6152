"""What the analysis knows about library functions by name: which ones take a syscall
number, load a library, look up a symbol or run a program, and in which argument.

Everything else is derived from the code: a function whose ``syscall`` instruction
takes its number from an incoming argument register is found to be a wrapper by
``sandbox.analyze.code`` without being listed here.  This table is needed only
across objects, where the caller is analysed without its callee (each object is
summarized alone so that its summary can be cached): a program's call to
``syscall@plt`` must keep the constant it passes.
"""
from __future__ import annotations

import os

# argument registers of the System V x86_64 calling convention, in order
ARG_REGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")

# name -> index of the argument that holds the syscall number
SYSCALL_WRAPPERS = {"syscall": 0}

# name -> (what, index of the argument that holds the string)
STRING_ARGS: dict[str, tuple[str, int]] = {
    "dlopen": ("dlopen", 0), "dlmopen": ("dlopen", 1), "__libc_dlopen_mode": ("dlopen", 0),
    "dlsym": ("dlsym", 1), "dlvsym": ("dlsym", 1), "__libc_dlsym": ("dlsym", 1),
    "__libc_dlvsym": ("dlsym", 1),
    "execve": ("exec", 0), "execv": ("exec", 0), "execvp": ("exec", 0), "execvpe": ("exec", 0),
    "execl": ("exec", 0), "execlp": ("exec", 0), "execle": ("exec", 0),
    "posix_spawn": ("exec", 1), "posix_spawnp": ("exec", 1),
}
# glibc's __libc_start_main(main, argc, argv, ...): its first argument names main
START_MAIN = "__libc_start_main"

# Names whose call sites need the constant propagation (all of the above)
INTERESTING = frozenset(SYSCALL_WRAPPERS) | frozenset(STRING_ARGS) | {START_MAIN}

# Functions that never return (glibc's and the C++ runtime's); within an object the
# analysis also finds its own (no ret, every tail call to one that does not return).
NORETURN = frozenset({"exit", "_exit", "_Exit", "abort", "__stack_chk_fail", "__assert_fail",
                      "__assert_perror_fail", "__fortify_fail", "__chk_fail", "__libc_fatal",
                      "err", "errx", "verr", "verrx", "error_exit", "pthread_exit", "longjmp",
                      "siglongjmp", "_longjmp", "__longjmp_chk", "__cxa_throw", "__cxa_rethrow",
                      "_Unwind_Resume", "quick_exit", "thrd_exit", "__libc_start_main",
                      "__cxa_bad_cast", "__cxa_bad_typeid", "__cxa_throw_bad_array_new_length",
                      "_ZSt9terminatev", "_ZSt17__throw_bad_allocv"})

# glibc >= 2.34 builds the "files" and "dns" NSS services into libc itself; the others
# named in nsswitch.conf are loaded with dlopen("libnss_<service>.so.2").
NSSWITCH = "/etc/nsswitch.conf"
NSS_BUILTIN = frozenset({"files", "dns"})


def nss_modules(path: str = NSSWITCH) -> list[str]:
    """The libnss_*.so.2 names glibc may dlopen for the services in nsswitch.conf."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0]
        if ":" not in line:
            continue
        for word in line.split(":", 1)[1].split():
            if word.startswith("[") or word in NSS_BUILTIN:
                continue
            name = f"libnss_{word}.so.2"
            if name not in out:
                out.append(name)
    return out


def is_libc(soname: str | None, path: str) -> bool:
    return (soname or os.path.basename(path)).startswith("libc.so.")


def xid_site(insns: list[tuple[int, int, str, str]], site: int) -> bool:
    """Whether the ``syscall`` at *site* is glibc's set*id broadcast (nptl/nptl_setxid.c):
    ``INTERNAL_SYSCALL_NCS (cmdp->syscall_no, 3, cmdp->id[0], cmdp->id[1], cmdp->id[2])``
    with ``struct xid_command { int syscall_no; long id[3]; ... }``, i.e. eax loaded from
    ``dword [R]`` and rdi, rsi, rdx from ``[R + 8]``, ``[R + 0x10]``, ``[R + 0x18]``.
    The number was stored there by setuid() and its siblings, which make the same syscall
    themselves in the calling thread; the other threads only repeat it, so such a site
    adds no syscall of its own."""
    pos = next((i for i, ins in enumerate(insns) if ins[0] == site), None)
    if pos is None:
        return False
    loads: dict[str, str] = {}
    for _addr, _size, mnem, ops in reversed(insns[max(0, pos - 6):pos]):
        parts = ops.split(", ")
        if mnem == "mov" and len(parts) == 2:
            loads.setdefault(parts[0], parts[1])
    src = loads.get("eax", "")
    if not (src.startswith("dword ptr [") and src.endswith("]") and " " not in src[11:-1]):
        return False
    base = src[11:-1]
    return (loads.get("rdi") == f"qword ptr [{base} + 8]"
            and loads.get("rsi") == f"qword ptr [{base} + 0x10]"
            and loads.get("rdx") == f"qword ptr [{base} + 0x18]")
