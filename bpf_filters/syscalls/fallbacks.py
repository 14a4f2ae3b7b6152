"""Syscalls that C libraries and language runtimes probe, and what they do when it fails.

A library built to run on older kernels calls a new syscall and, when the
kernel answers ENOSYS, falls back to an older way. A filter that denies such a
syscall with EPERM breaks the program where ENOSYS would not: glibc's
faccessat returns the EPERM to its caller instead of falling back to
faccessat, and posix_spawn fails instead of using clone. ``FALLBACKS`` records,
for each probe read in the library's source, which errors send it to the
fallback — so a policy can give ENOSYS to a syscall it denies.

Each entry cites the file and function it was read from (glibc and musl at
their 2025-26 heads, Go and Rust std as published on GitHub). Pure data: this
module imports nothing outside bpf_filters and asks nothing of the system.
"""
from __future__ import annotations

from dataclasses import dataclass

ANY_ERROR = "any error"


@dataclass(frozen=True)
class Fallback:
    """One library's probe of one syscall."""

    syscall: str
    library: str                   # and the first release with this probe
    fallback: str                  # what it does instead
    on: tuple[str, ...]            # errno names that trigger it, or (ANY_ERROR,)
    source: str                    # file: function, where the probe is
    when: str = ""                 # only for these calls
    arches: tuple[str, ...] = ("x86_64", "i386", "x32", "aarch64")


FALLBACKS: tuple[Fallback, ...] = (
    # -- process creation --------------------------------------------------
    Fallback("clone3", "glibc 2.34+", "clone", ("ENOSYS",),
             "sysdeps/unix/sysv/linux/clone-internal.c: __clone_internal",
             when="pthread_create and every internal clone"),
    Fallback("clone3", "glibc 2.38+", "clone (without CLONE_CLEAR_SIGHAND)", ("ENOSYS", "EINVAL"),
             "sysdeps/unix/sysv/linux/spawni.c: __spawnix",
             when="posix_spawn; with POSIX_SPAWN_SETCGROUP it fails with ENOTSUP instead"),
    Fallback("pidfd_open", "Go 1.23+ (os)", "wait4 and kill on the pid", (ANY_ERROR,),
             "src/os/pidfd_linux.go: checkPidfd",
             when="probed once: pidfd_open, waitid(P_PIDFD) and pidfd_send_signal must all work"),
    Fallback("pidfd_send_signal", "Go 1.23+ (os)", "kill on the pid", (ANY_ERROR,),
             "src/os/pidfd_linux.go: checkPidfd"),
    Fallback("rseq", "glibc 2.35+", "runs without rseq (__rseq_size 0)", (ANY_ERROR,),
             "sysdeps/unix/sysv/linux/rseq-internal.h: rseq_register_current_thread",
             when="at start-up and in every new thread"),
    # -- files ---------------------------------------------------------------
    Fallback("faccessat2", "glibc 2.33+", "faccessat; fstatat and a mode check for "
             "AT_SYMLINK_NOFOLLOW or AT_EACCESS in setuid programs", ("ENOSYS",),
             "sysdeps/unix/sysv/linux/faccessat.c: __faccessat",
             when="every faccessat call (unless built for kernels >= 5.8)"),
    Fallback("faccessat2", "musl 1.2.2+", "faccessat; a child process for AT_EACCESS",
             ("ENOSYS",), "src/unistd/faccessat.c: faccessat", when="flag != 0"),
    Fallback("faccessat2", "Go golang.org/x/sys/unix", "fstatat and a mode check",
             ("ENOSYS", "EPERM"), "unix/syscall_linux.go: Faccessat", when="flags != 0"),
    Fallback("fchmodat2", "glibc 2.39+", "an O_PATH descriptor chmod'ed through /proc/self/fd",
             ("ENOSYS",), "sysdeps/unix/sysv/linux/fchmodat.c: fchmodat, fchmodat_fallback",
             when="flag != 0 (AT_SYMLINK_NOFOLLOW)"),
    Fallback("fchmodat2", "musl 1.2.5+", "an O_PATH descriptor chmod'ed through /proc/self/fd",
             ("ENOSYS",), "src/stat/fchmodat.c: fchmodat", when="flag != 0"),
    Fallback("fchmodat2", "Go golang.org/x/sys/unix", "the error EOPNOTSUPP, as before fchmodat2",
             ("ENOSYS",), "unix/syscall_linux.go: Fchmodat", when="flags != 0"),
    Fallback("statx", "glibc 2.28+", "fstatat, the result converted to struct statx",
             ("ENOSYS",), "sysdeps/unix/sysv/linux/statx.c: statx (statx_generic)"),
    Fallback("statx", "glibc 2.34+", "fstatat64", ("ENOSYS",),
             "sysdeps/unix/sysv/linux/fstatat64.c: __fstatat64_time64",
             when="stat, fstat, lstat, fstatat: 32-bit ABIs with 64-bit time_t", arches=("i386",)),
    Fallback("statx", "musl 1.2.5+", "fstatat, the result converted to struct statx",
             ("ENOSYS",), "src/linux/statx.c: statx"),
    Fallback("statx", "musl 1.2.0+", "fstatat64", ("ENOSYS",),
             "src/stat/fstatat.c: __fstatat (fstatat_statx)",
             when="every stat: 32-bit ABIs whose kernel stat has 32-bit times", arches=("i386",)),
    Fallback("statx", "Rust std", "stat64 (no birth time)", (ANY_ERROR,),
             "library/std/src/sys/fs/unix.rs: try_statx",
             when="any error a probe statx(0, NULL) does not answer with EFAULT: ENOSYS, EPERM"),
    Fallback("preadv2", "glibc 2.26+", "preadv", ("ENOSYS",),
             "sysdeps/unix/sysv/linux/preadv2.c: preadv2",
             when="flags == 0 (with flags: ENOTSUP)"),
    Fallback("pwritev2", "glibc 2.26+", "pwritev", ("ENOSYS",),
             "sysdeps/unix/sysv/linux/pwritev2.c: pwritev2",
             when="flags == 0 (with flags: ENOTSUP)"),
    Fallback("close_range", "glibc 2.34+", "closes each descriptor listed in /proc/self/fd",
             (ANY_ERROR,), "io/closefrom.c: __closefrom (__closefrom_fallback)",
             when="closefrom"),
    Fallback("copy_file_range", "Go (internal/poll)", "read and write through a buffer",
             ("ENOSYS", "EXDEV", "EINVAL", "EIO", "EOPNOTSUPP", "EPERM"),
             "src/internal/poll/copy_file_range_linux.go: CopyFileRange",
             when="io.Copy between regular files, on kernels >= 5.3"),
    # -- time and randomness ---------------------------------------------------
    Fallback("getrandom", "glibc 2.36+", "/dev/urandom, after poll on /dev/random", ("ENOSYS",),
             "stdlib/arc4random.c: __arc4random_buf", when="arc4random"),
    Fallback("getrandom", "Go (crypto/rand)", "/dev/urandom", ("ENOSYS",),
             "src/crypto/internal/sysrand/rand_getrandom.go: read"),
    Fallback("getrandom", "Rust std", "/dev/urandom, after poll on /dev/random",
             ("ENOSYS", "EPERM"), "library/std/src/sys/random/linux.rs: getrandom"),
    Fallback("clock_gettime64", "glibc 2.31+", "clock_gettime with 32-bit times", ("ENOSYS",),
             "sysdeps/unix/sysv/linux/clock_gettime.c: __clock_gettime64",
             when="when the vDSO has no answer", arches=("i386",)),
    Fallback("clock_gettime64", "musl 1.2.0+", "clock_gettime with 32-bit times", ("ENOSYS",),
             "src/time/clock_gettime.c: __clock_gettime",
             when="when the vDSO has no answer", arches=("i386",)),
)


def probed() -> frozenset[str]:
    """Every syscall some library here probes."""
    return frozenset(f.syscall for f in FALLBACKS)


def for_syscall(name: str) -> tuple[Fallback, ...]:
    """The probes of syscall *name*, in table order."""
    return tuple(f for f in FALLBACKS if f.syscall == name)


def needs_enosys(name: str) -> bool:
    """True when some library falls back from *name* only on particular errors.

    For such a syscall a filter must answer ENOSYS (not EPERM) to keep the
    program working; a library that falls back on any error copes with both.
    """
    return any(ANY_ERROR not in f.on and "EPERM" not in f.on for f in for_syscall(name))


__all__ = ["ANY_ERROR", "FALLBACKS", "Fallback", "for_syscall", "needs_enosys", "probed"]
