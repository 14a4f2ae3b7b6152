"""Argument signatures: coverage, widths from the kernel prototypes, per-ABI adaptation."""
import pytest

from bpf_filters.syscalls import UnknownArchError, all_names, table
from bpf_filters.syscalls.signatures import SIGNATURES, Arg, signature

REQUIRED = """
socket socketpair connect bind accept4 setsockopt getsockopt sendto recvfrom ioctl prctl
clone clone3 unshare setns personality mmap mprotect pkey_mprotect madvise fcntl open openat
openat2 kill tkill tgkill ptrace keyctl add_key request_key bpf perf_event_open io_uring_setup
userfaultfd mount umount2 open_by_handle_at process_vm_readv process_vm_writev seccomp setuid
setgid setresuid setresgid setgroups chmod fchmod fchmodat mknod mknodat execve execveat futex
sched_setaffinity memfd_create pidfd_open pidfd_getfd quotactl syslog reboot kexec_load
kexec_file_load init_module finit_module delete_module socketcall ipc copy_file_range dup3
pipe2 eventfd2 epoll_create1 inotify_init1 getrandom accept shutdown listen flock lseek read
write close wait4 waitid rt_sigaction rt_sigprocmask
""".split()


@pytest.mark.parametrize("name", REQUIRED)
def test_required_syscall_has_a_signature(name):
    assert signature(name) is not None


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature_is_well_formed_and_names_a_real_syscall(name):
    args = SIGNATURES[name]
    assert name in all_names()
    assert 1 <= len(args) <= 6
    assert len({a.name for a in args}) == len(args)
    for arg in args:
        assert arg.width in (16, 32, 64)
        if arg.pointer:
            assert arg.width == 64 and arg.ctype.endswith("*")


def _shape(name, arch=None):
    return [(a.name, a.ctype, a.width, a.pointer) for a in signature(name, arch)]


@pytest.mark.parametrize("name, index, ctype, width", [
    ("personality", 0, "unsigned int", 32),
    ("ioctl", 0, "unsigned int", 32),
    ("ioctl", 1, "unsigned int", 32),
    ("ioctl", 2, "unsigned long", 64),
    ("prctl", 0, "int", 32),
    ("prctl", 1, "unsigned long", 64),
    ("fcntl", 1, "unsigned int", 32),
    ("kill", 0, "pid_t", 32),
    ("kill", 1, "int", 32),
    ("clone", 0, "unsigned long", 32),
    ("unshare", 0, "unsigned long", 64),
    ("setns", 1, "int", 32),
    ("mmap", 2, "unsigned long", 32),
    ("mmap", 3, "unsigned long", 32),
    ("mmap", 4, "unsigned long", 32),
    ("mmap", 5, "unsigned long", 64),
    ("fcntl", 2, "unsigned long", 32),
    ("ptrace", 1, "long", 32),
    ("keyctl", 1, "unsigned long", 32),
    ("mount", 3, "unsigned long", 32),
    ("fchmodat", 2, "umode_t", 16),
    ("arch_prctl", 0, "int", 32),
    ("prlimit64", 0, "pid_t", 32),
    ("mprotect", 2, "unsigned long", 64),
    ("madvise", 2, "int", 32),
    ("socket", 0, "int", 32),
    ("socket", 1, "int", 32),
    ("socket", 2, "int", 32),
    ("sendto", 2, "size_t", 64),
    ("sendto", 3, "unsigned int", 32),
    ("open", 1, "int", 32),
    ("open", 2, "umode_t", 16),
    ("ptrace", 0, "long", 64),
    ("seccomp", 0, "unsigned int", 32),
    ("io_uring_setup", 0, "u32", 32),
    ("quotactl", 2, "qid_t", 32),
    ("add_key", 4, "key_serial_t", 32),
    ("lseek", 1, "off_t", 64),
    ("setuid", 0, "uid_t", 32),
    ("ipc", 5, "long", 64),
], ids=str)
def test_argument_type_and_width(name, index, ctype, width):
    arg = signature(name)[index]
    assert (arg.ctype, arg.width, arg.pointer) == (ctype, width, False)


def test_clone_argument_order_on_64_bit_abis():
    order = ["clone_flags", "newsp", "parent_tidptr", "child_tidptr", "tls"]
    for arch in (None, "x86_64", "x32", "aarch64"):
        assert [a.name for a in signature("clone", arch)] == order


def test_i386_clone_is_clone_backwards_and_32_bit():
    assert _shape("clone", "i386") == [
        ("clone_flags", "unsigned long", 32, False),
        ("newsp", "unsigned long", 32, False),
        ("parent_tidptr", "int __user *", 32, True),
        ("tls_val", "unsigned long", 32, False),
        ("child_tidptr", "int __user *", 32, True),
    ]


def test_i386_mmap_is_old_mmap():
    assert _shape("mmap", "i386") == [("arg", "struct mmap_arg_struct __user *", 32, True)]
    assert len(signature("mmap2", "i386")) == 6


def test_i386_narrows_every_argument():
    for name in SIGNATURES:
        if name in ("clone", "mmap", "ipc"):            # i386 entry points of their own
            assert all(a.width <= 32 for a in signature(name, "i386"))
            continue
        assert all(a.width == min(b.width, 32) for a, b in zip(signature(name, "i386"),
                                                              signature(name)))
    assert signature("prctl")[1].width == 64       # the table itself is untouched
    assert signature("ipc", "i386")[0].width == 16  # ksys_ipc keeps the call's low 16 bits


def test_every_narrowing_names_a_real_argument_with_a_reason():
    from bpf_filters.syscalls.signatures import NARROWED
    for (name, idx), (width, why) in NARROWED.items():
        arg = signature(name)[idx]
        assert arg.width == width < 64 and not arg.pointer and arg.ctype in ("long", "unsigned long")
        assert "/" in why and ".c" in why, why


def test_pointer_arguments_are_flagged():
    execve = signature("execve")
    assert [a.pointer for a in execve] == [True, True, True]
    assert execve[1].ctype == "const char __user *const __user *"
    assert signature("connect")[1] == Arg("uservaddr", "struct sockaddr __user *", 64, True)


def test_socketcall_and_ipc_exist_only_on_i386():
    assert table("i386").nr("socketcall") == 102 and table("i386").nr("ipc") == 117
    assert signature("socketcall") is not None and signature("ipc") is not None


def test_unknown_names_and_arches():
    assert signature("no_such_syscall") is None
    assert signature("no_such_syscall", "i386") is None
    with pytest.raises(UnknownArchError):
        signature("read", "mips")
