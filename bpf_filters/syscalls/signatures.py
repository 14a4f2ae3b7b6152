"""Argument signatures of the syscalls that profiles filter on or checks inspect.

Each argument carries the width the kernel really reads, which decides how
a filter compares it: seccomp hands every argument over as a 64-bit value,
and a filter must compare exactly the bits the kernel will act on, or a value
with garbage in the bits the kernel drops slips past a rule.
- A 32-bit C type (``int``, ``unsigned int``, ``pid_t`` ...) is read as its
  low word: width 32.
- ``umode_t`` is 16 bits: ``fchmodat(0x10000|04755)`` sets mode 04755.
  Width 16: compared as the low word masked with 0xffff.
- A ``long``-sized type is compared on both halves (width 64) only where the
  kernel keeps or validates the high word (``unshare``, ``mprotect`` ...).
  Where the kernel truncates it, ``NARROWED`` gives the real width with the
  kernel line that drops the rest (``clone``'s flags go through
  ``lower_32_bits``: ``clone(SIGCHLD | 1 << 40)`` forks like ``SIGCHLD``).
Each narrowing was shown on this machine's kernel (6.18) by a call with high
bits set, except ``kexec_load`` (not built in here: from the source).

The prototypes are the ``SYSCALL_DEFINEn`` ones of the 64-bit kernel, with
the kernel's own parameter names.

``signature(name, arch)`` adapts them to an ABI: on i386 every argument is a
32-bit register, and a few i386 entry points take other arguments (clone is
CONFIG_CLONE_BACKWARDS there; mmap is old_mmap, one pointer to a struct).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from . import ARCHES, UnknownArchError


@dataclass(frozen=True)
class Arg:
    """One syscall argument: its name, C type, compared width and pointer-ness."""

    name: str
    ctype: str
    width: int      # 16, 32 or 64: the bits the kernel reads
    pointer: bool


_WIDTHS = {
    "int": 32, "unsigned int": 32, "unsigned": 32, "u32": 32,
    "pid_t": 32, "uid_t": 32, "gid_t": 32, "qid_t": 32, "key_t": 32,
    "key_serial_t": 32, "umode_t": 16,
    "long": 64, "unsigned long": 64, "size_t": 64, "off_t": 64,
}
_PARAM = re.compile(r"(?P<ctype>.*?[\s*])(?P<name>\w+)")


def _arg(param: str) -> Arg:
    """Parse one kernel parameter such as ``"const char __user *filename"``."""
    match = _PARAM.fullmatch(param.strip())
    if match is None:
        raise ValueError(f"bad parameter {param!r}")
    ctype = " ".join(match["ctype"].split())
    if ctype.endswith("*"):
        return Arg(match["name"], ctype, 64, True)
    if ctype not in _WIDTHS:
        raise ValueError(f"parameter {param!r}: no width known for type {ctype!r}")
    return Arg(match["name"], ctype, _WIDTHS[ctype], False)


def _sig(*params: str) -> tuple[Arg, ...]:
    return tuple(_arg(p) for p in params)


_FD = "unsigned int fd"
_PATH = "const char __user *filename"
_SOCKADDR = "struct sockaddr __user *"

SIGNATURES: dict[str, tuple[Arg, ...]] = {
    # I/O and descriptors
    "read": _sig(_FD, "char __user *buf", "size_t count"),
    "write": _sig(_FD, "const char __user *buf", "size_t count"),
    "close": _sig(_FD),
    "lseek": _sig(_FD, "off_t offset", "unsigned int whence"),
    "ioctl": _sig(_FD, "unsigned int cmd", "unsigned long arg"),
    "fcntl": _sig(_FD, "unsigned int cmd", "unsigned long arg"),
    "fcntl64": _sig(_FD, "unsigned int cmd", "unsigned long arg"),
    "flock": _sig(_FD, "unsigned int cmd"),
    "dup3": _sig("unsigned int oldfd", "unsigned int newfd", "int flags"),
    "pipe2": _sig("int __user *fildes", "int flags"),
    "eventfd2": _sig("unsigned int count", "int flags"),
    "epoll_create1": _sig("int flags"),
    "inotify_init1": _sig("int flags"),
    "copy_file_range": _sig("int fd_in", "loff_t __user *off_in", "int fd_out",
                            "loff_t __user *off_out", "size_t len", "unsigned int flags"),
    "getrandom": _sig("char __user *ubuf", "size_t len", "unsigned int flags"),
    "memfd_create": _sig("const char __user *uname", "unsigned int flags"),
    "userfaultfd": _sig("int flags"),
    # files and mounts
    "open": _sig(_PATH, "int flags", "umode_t mode"),
    "openat": _sig("int dfd", _PATH, "int flags", "umode_t mode"),
    "openat2": _sig("int dfd", _PATH, "struct open_how __user *how", "size_t usize"),
    "open_by_handle_at": _sig("int mountdirfd", "struct file_handle __user *handle",
                              "int flags"),
    "chmod": _sig(_PATH, "umode_t mode"),
    "fchmod": _sig(_FD, "umode_t mode"),
    "fchmodat": _sig("int dfd", _PATH, "umode_t mode"),
    "fchmodat2": _sig("int dfd", _PATH, "umode_t mode", "unsigned int flags"),
    "mknod": _sig(_PATH, "umode_t mode", "unsigned dev"),
    "mknodat": _sig("int dfd", _PATH, "umode_t mode", "unsigned int dev"),
    "mount": _sig("char __user *dev_name", "char __user *dir_name", "char __user *type",
                  "unsigned long flags", "void __user *data"),
    "umount2": _sig("char __user *name", "int flags"),
    "quotactl": _sig("unsigned int cmd", "const char __user *special", "qid_t id",
                     "void __user *addr"),
    # sockets
    "socket": _sig("int family", "int type", "int protocol"),
    "socketpair": _sig("int family", "int type", "int protocol", "int __user *usockvec"),
    "connect": _sig("int fd", _SOCKADDR + "uservaddr", "int addrlen"),
    "bind": _sig("int fd", _SOCKADDR + "umyaddr", "int addrlen"),
    "listen": _sig("int fd", "int backlog"),
    "accept": _sig("int fd", _SOCKADDR + "upeer_sockaddr", "int __user *upeer_addrlen"),
    "accept4": _sig("int fd", _SOCKADDR + "upeer_sockaddr", "int __user *upeer_addrlen",
                    "int flags"),
    "shutdown": _sig("int fd", "int how"),
    "setsockopt": _sig("int fd", "int level", "int optname", "char __user *optval",
                       "int optlen"),
    "getsockopt": _sig("int fd", "int level", "int optname", "char __user *optval",
                       "int __user *optlen"),
    "sendto": _sig("int fd", "void __user *buff", "size_t len", "unsigned int flags",
                   _SOCKADDR + "addr", "int addr_len"),
    "recvfrom": _sig("int fd", "void __user *ubuf", "size_t size", "unsigned int flags",
                     _SOCKADDR + "addr", "int __user *addr_len"),
    "sendmsg": _sig("int fd", "struct user_msghdr __user *msg", "unsigned int flags"),
    "recvmsg": _sig("int fd", "struct user_msghdr __user *msg", "unsigned int flags"),
    "socketcall": _sig("int call", "unsigned long __user *args"),
    "ipc": _sig("unsigned int call", "int first", "unsigned long second",
                "unsigned long third", "void __user *ptr", "long fifth"),
    # processes, namespaces, credentials
    "clone": _sig("unsigned long clone_flags", "unsigned long newsp",
                  "int __user *parent_tidptr", "int __user *child_tidptr",
                  "unsigned long tls"),
    "clone3": _sig("struct clone_args __user *uargs", "size_t size"),
    "unshare": _sig("unsigned long unshare_flags"),
    "setns": _sig("int fd", "int flags"),
    "execve": _sig(_PATH, "const char __user *const __user *argv",
                   "const char __user *const __user *envp"),
    "execveat": _sig("int fd", _PATH, "const char __user *const __user *argv",
                     "const char __user *const __user *envp", "int flags"),
    "wait4": _sig("pid_t upid", "int __user *stat_addr", "int options",
                  "struct rusage __user *ru"),
    "waitid": _sig("int which", "pid_t upid", "struct siginfo __user *infop",
                   "int options", "struct rusage __user *ru"),
    "prctl": _sig("int option", "unsigned long arg2", "unsigned long arg3",
                  "unsigned long arg4", "unsigned long arg5"),
    "personality": _sig("unsigned int personality"),
    "ptrace": _sig("long request", "long pid", "unsigned long addr", "unsigned long data"),
    "process_vm_readv": _sig("pid_t pid", "const struct iovec __user *lvec",
                             "unsigned long liovcnt", "const struct iovec __user *rvec",
                             "unsigned long riovcnt", "unsigned long flags"),
    "process_vm_writev": _sig("pid_t pid", "const struct iovec __user *lvec",
                              "unsigned long liovcnt", "const struct iovec __user *rvec",
                              "unsigned long riovcnt", "unsigned long flags"),
    "pidfd_open": _sig("pid_t pid", "unsigned int flags"),
    "pidfd_getfd": _sig("int pidfd", "int fd", "unsigned int flags"),
    "pidfd_send_signal": _sig("int pidfd", "int sig", "siginfo_t __user *info",
                              "unsigned int flags"),
    "sched_setaffinity": _sig("pid_t pid", "unsigned int len",
                              "unsigned long __user *user_mask_ptr"),
    "setuid": _sig("uid_t uid"),
    "setgid": _sig("gid_t gid"),
    "setreuid": _sig("uid_t ruid", "uid_t euid"),
    "setregid": _sig("gid_t rgid", "gid_t egid"),
    "setresuid": _sig("uid_t ruid", "uid_t euid", "uid_t suid"),
    "setresgid": _sig("gid_t rgid", "gid_t egid", "gid_t sgid"),
    "setgroups": _sig("int gidsetsize", "gid_t __user *grouplist"),
    # signals
    "kill": _sig("pid_t pid", "int sig"),
    "tkill": _sig("pid_t pid", "int sig"),
    "tgkill": _sig("pid_t tgid", "pid_t pid", "int sig"),
    "rt_sigaction": _sig("int sig", "const struct sigaction __user *act",
                         "struct sigaction __user *oact", "size_t sigsetsize"),
    "rt_sigprocmask": _sig("int how", "sigset_t __user *nset", "sigset_t __user *oset",
                           "size_t sigsetsize"),
    # memory
    "mmap": _sig("unsigned long addr", "unsigned long len", "unsigned long prot",
                 "unsigned long flags", "unsigned long fd", "unsigned long off"),
    "mmap2": _sig("unsigned long addr", "unsigned long len", "unsigned long prot",
                  "unsigned long flags", "unsigned long fd", "unsigned long pgoff"),
    "mprotect": _sig("unsigned long start", "size_t len", "unsigned long prot"),
    "pkey_mprotect": _sig("unsigned long start", "size_t len", "unsigned long prot",
                          "int pkey"),
    "madvise": _sig("unsigned long start", "size_t len_in", "int behavior"),
    "futex": _sig("u32 __user *uaddr", "int op", "u32 val",
                  "const struct __kernel_timespec __user *utime", "u32 __user *uaddr2",
                  "u32 val3"),
    # kernel-facing interfaces
    "bpf": _sig("int cmd", "union bpf_attr __user *uattr", "unsigned int size"),
    "perf_event_open": _sig("struct perf_event_attr __user *attr_uptr", "pid_t pid",
                            "int cpu", "int group_fd", "unsigned long flags"),
    "io_uring_setup": _sig("u32 entries", "struct io_uring_params __user *params"),
    "seccomp": _sig("unsigned int op", "unsigned int flags", "void __user *uargs"),
    "keyctl": _sig("int option", "unsigned long arg2", "unsigned long arg3",
                   "unsigned long arg4", "unsigned long arg5"),
    "add_key": _sig("const char __user *_type", "const char __user *_description",
                    "const void __user *_payload", "size_t plen",
                    "key_serial_t ringid"),
    "request_key": _sig("const char __user *_type", "const char __user *_description",
                        "const char __user *_callout_info", "key_serial_t destringid"),
    "syslog": _sig("int type", "char __user *buf", "int len"),
    "arch_prctl": _sig("int option", "unsigned long arg2"),
    "prlimit64": _sig("pid_t pid", "unsigned int resource",
                      "const struct rlimit64 __user *new_rlim",
                      "struct rlimit64 __user *old_rlim"),
    "setpriority": _sig("int which", "int who", "int niceval"),
    "getpriority": _sig("int which", "int who"),
    "umask": _sig("int mask"),
    "kcmp": _sig("pid_t pid1", "pid_t pid2", "int type", "unsigned long idx1",
                 "unsigned long idx2"),
    "process_madvise": _sig("int pidfd", "const struct iovec __user *vec", "size_t vlen",
                            "int behavior", "unsigned int flags"),
    "msgget": _sig("key_t key", "int msgflg"),
    "msgctl": _sig("int msqid", "int cmd", "struct msqid_ds __user *buf"),
    "semget": _sig("key_t key", "int nsems", "int semflg"),
    "semctl": _sig("int semid", "int semnum", "int cmd", "unsigned long arg"),
    "shmget": _sig("key_t key", "size_t size", "int shmflg"),
    "shmctl": _sig("int shmid", "int cmd", "struct shmid_ds __user *buf"),
    "reboot": _sig("int magic1", "int magic2", "unsigned int cmd", "void __user *arg"),
    "kexec_load": _sig("unsigned long entry", "unsigned long nr_segments",
                       "struct kexec_segment __user *segments", "unsigned long flags"),
    "kexec_file_load": _sig("int kernel_fd", "int initrd_fd", "unsigned long cmdline_len",
                            "const char __user *cmdline_ptr", "unsigned long flags"),
    "init_module": _sig("void __user *umod", "unsigned long len",
                        "const char __user *uargs"),
    "finit_module": _sig("int fd", "const char __user *uargs", "int flags"),
    "delete_module": _sig("const char __user *name_user", "unsigned int flags"),
}

# Arguments whose C type is wider than what the kernel reads: (name, index) ->
# (width, the kernel source that drops the rest; Linux 6.12/6.18).
NARROWED: dict[tuple[str, int], tuple[int, str]] = {
    ("clone", 0): (32, "kernel/fork.c sys_clone: .flags = lower_32_bits(clone_flags)"),
    ("mmap", 2): (32, "mm/mmap.c do_mmap: calc_vm_prot_bits(prot) ignores unknown bits"),
    ("mmap", 3): (32, "mm/mmap.c do_mmap: flags &= LEGACY_MAP_MASK unless MAP_SHARED_VALIDATE"),
    ("mmap", 4): (32, "mm/mmap.c ksys_mmap_pgoff: fget(fd), fs/file.c fget(unsigned int fd)"),
    ("fcntl", 2): (32, "fs/fcntl.c do_fcntl: int argi = (int)arg for every value command"),
    ("ptrace", 1): (32, "kernel/ptrace.c: find_get_task_by_vpid(pid) takes a pid_t"),
    ("process_vm_readv", 2): (32, "lib/iov_iter.c import_iovec: unsigned nr_segs"),
    ("process_vm_writev", 2): (32, "lib/iov_iter.c import_iovec: unsigned nr_segs"),
    ("keyctl", 1): (32, "security/keys/keyctl.c: (key_serial_t) arg2 for every key-id option"),
    ("kexec_load", 3): (32, "kernel/kexec.c: only KEXEC_FLAGS/KEXEC_ARCH_MASK bits of the "
                            "low word are examined"),
    ("mount", 3): (32, "fs/namespace.c: with MS_MGC_VAL the kernel discards bits 16-63; "
                       "only mask tests on bits 0-15 are exact"),
}
for (_name, _idx), (_width, _why) in NARROWED.items():
    _args = list(SIGNATURES[_name])
    _args[_idx] = replace(_args[_idx], width=_width)
    SIGNATURES[_name] = tuple(_args)

# Entry points whose i386 arguments differ from the 64-bit prototype.
_I386_SIGNATURES: dict[str, tuple[Arg, ...]] = {
    # arch/x86/kernel/sys_ia32.c: "The 32-bit clone ABI is CONFIG_CLONE_BACKWARDS"
    "clone": _sig("unsigned long clone_flags", "unsigned long newsp",
                  "int __user *parent_tidptr", "unsigned long tls_val",
                  "int __user *child_tidptr"),
    # i386 nr 90 is old_mmap: every mmap argument sits in a struct in memory
    "mmap": _sig("struct mmap_arg_struct __user *arg"),
    # ipc/syscall.c ksys_ipc: version = call >> 16, call &= 0xffff
    "ipc": (replace(_arg("unsigned int call"), width=16),) + _sig(
        "int first", "unsigned long second", "unsigned long third", "void __user *ptr",
        "long fifth"),
}


def signature(name: str, arch: str | None = None) -> tuple[Arg, ...] | None:
    """The arguments of syscall *name*, or None when no signature is recorded.

    With *arch* None or a 64-bit ABI (x86_64, x32, aarch64) this is the
    kernel's 64-bit prototype. With "i386" the i386 entry point's arguments
    are returned, each 32 bits wide.
    """
    if arch is not None and arch not in ARCHES:
        raise UnknownArchError(f"unknown architecture '{arch}'; known: {', '.join(ARCHES)}")
    if arch == "i386":
        args = _I386_SIGNATURES.get(name, SIGNATURES.get(name))
        return None if args is None else tuple(replace(a, width=min(a.width, 32)) for a in args)
    return SIGNATURES.get(name)


def arg_width(arch: str, name: str, arg: int) -> int:
    """How many low bits of argument *arg* of *name* the kernel reads on *arch*
    (16, 32 or 64); 64 when no signature is recorded, 32 for any i386 argument."""
    sig = signature(name, arch)
    if sig and arg < len(sig):
        return sig[arg].width
    return 32 if arch == "i386" else 64


def fits(value: int, width: int) -> bool:
    """*value* can be written in *width* bits (as a signed or an unsigned number)."""
    return -(1 << (width - 1)) <= value < (1 << width)


__all__ = ["Arg", "NARROWED", "SIGNATURES", "arg_width", "fits", "signature"]
