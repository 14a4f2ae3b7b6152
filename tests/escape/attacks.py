"""The escape attempts tried against every built-in profile, one line each.

``kernel`` lists the errnos the kernel answers when the call gets past the
filter with these harmless arguments (measured unconfined, as root, on
Linux 6.18; ``test_unconfined_attack_reaches_the_kernel`` re-checks it), so
a confined run that answers the same way has slipped through the filter.
ENOSYS is listed where this kernel lacks the call (kexec, modules, iopl):
the profiles kill those, and an ENOSYS could be the kernel's own answer.
"""
from tests.escape.harness import Attack

# Profiles that restrict socket families (default allows packet, raw and
# netlink sockets by design; it only bans AF_VSOCK).
FAMILY_RESTRICTED = ("web", "python", "build", "strict-net", "minimal")

ATTACKS = [
    # --- other ABIs: x32 numbering and the i386 entry point (bad_arch) ---
    Attack("x32-getpid", "syscall(__NR_getpid | 0x40000000): x32 numbering is killed", must="kill",
           kernel=("ENOSYS",)),
    Attack("x32-ptrace", "syscall(0x40000000 | 521): x32 ptrace is killed", must="kill", kernel=("ENOSYS",)),
    Attack("x32-unshare", "syscall(0x40000000 | __NR_unshare, CLONE_NEWUSER) is killed", must="kill",
           kernel=("ENOSYS",)),
    Attack("i386-getpid", "int 0x80 eax=20 (i386 getpid) from a 64-bit process is killed", must="kill"),
    Attack("i386-ptrace", "int 0x80 eax=26 (i386 ptrace) is killed", must="kill", kernel=("ESRCH",)),
    Attack("i386-unshare", "int 0x80 eax=310 (i386 unshare CLONE_NEWUSER) is killed", must="kill"),
    Attack("i386-elf-exec", "exec a static i386 ELF (write+exit via int 0x80): killed at its first call",
           must="kill", program="i386-elf"),

    # --- numbers outside the table: nothing may run ---
    Attack("nr-470", "syscall 470, above the 6.18 table, does not run", must="fail", kernel=("ENOSYS",)),
    Attack("nr-1000", "syscall 1000 does not run", must="fail", kernel=("ENOSYS",)),
    Attack("nr-table-gap-400", "syscall 400, in the x86_64 table's gap, does not run", must="fail",
           kernel=("ENOSYS",)),
    Attack("nr-0x3fffffff", "syscall 0x3fffffff, just below the x32 bit, does not run", must="fail",
           kernel=("ENOSYS",)),
    Attack("nr-0xffffffff", "syscall 0xffffffff (-1) does not run", must="fail", kernel=("ENOSYS",)),
    Attack("nr-0x80000027", "syscall 0x80000000|getpid (negative nr) does not run", must="fail",
           kernel=("ENOSYS",)),
    Attack("unshare-nr-high-bits", "syscall(1<<32 | __NR_unshare, CLONE_NEWUSER): the kernel drops the "
           "high half of rax, so the filter must see unshare"),

    # --- namespaces and process creation ---
    Attack("clone3-newuser", "clone3 with CLONE_NEWUSER in struct clone_args gets ENOSYS", must="enosys"),
    Attack("clone-newuser", "clone(CLONE_NEWUSER|SIGCHLD) is denied"),
    Attack("clone-newuser-high-bits", "clone(1<<32|CLONE_NEWUSER|SIGCHLD): the kernel uses the low 32 "
           "bits of the flags, the filter must too"),
    Attack("clone-newns", "clone(CLONE_NEWNS|SIGCHLD) is denied"),
    Attack("unshare-newuser", "unshare(CLONE_NEWUSER) is denied"),
    Attack("unshare-newns", "unshare(CLONE_NEWNS) is denied"),
    Attack("setns", "setns(-1, 0) is denied", kernel=("EBADF",)),

    # --- other processes: a sibling the test started ---
    Attack("ptrace-attach", "ptrace(PTRACE_ATTACH) on a sibling process is denied", needs="victim"),
    Attack("ptrace-seize", "ptrace(PTRACE_SEIZE) on a sibling process is denied", needs="victim"),
    Attack("process-vm-writev", "process_vm_writev into a sibling's memory is denied", needs="victim"),
    Attack("process-vm-readv", "process_vm_readv from a sibling's memory is denied", needs="victim"),
    Attack("pidfd-getfd", "pidfd_getfd steals a sibling's descriptor: denied", needs="victim",
           kernel=("EBADF",)),
    Attack("process-madvise", "process_madvise(MADV_COLD) on a sibling's memory is denied", needs="victim",
           kernel=("EBADF", "EINVAL")),
    Attack("kcmp", "kcmp(self, sibling, KCMP_VM) is denied", needs="victim"),

    # --- terminal injection (stdin is a pty the test owns) ---
    Attack("tiocsti", "ioctl(tty, TIOCSTI) keystroke injection is denied", needs="tty"),
    Attack("tiocsti-high-bits", "ioctl(tty, 1<<32|TIOCSTI): cmd is 32-bit to the kernel, so it is TIOCSTI",
           needs="tty"),
    Attack("tioclinux", "ioctl(tty, TIOCLINUX) is denied", needs="tty", kernel=("ENOTTY", "EINVAL")),
    Attack("tioclinux-high-bits", "ioctl(tty, 1<<32|TIOCLINUX) is denied", needs="tty",
           kernel=("ENOTTY", "EINVAL")),

    # --- loosening the filter from inside ---
    Attack("seccomp-allow-all", "seccomp(SET_MODE_FILTER, allow-all) then unshare(CLONE_NEWUSER): still denied"),
    Attack("prctl-seccomp-allow-all", "prctl(PR_SET_SECCOMP, FILTER, allow-all) then unshare: still denied"),
    Attack("prctl-seccomp-disable", "prctl(PR_SET_SECCOMP, DISABLED) and PR_SET_NO_NEW_PRIVS 0, then "
           "unshare: still denied"),

    # --- memory-protection weakening ---
    Attack("personality-read-implies-exec", "personality(READ_IMPLIES_EXEC) is denied"),
    Attack("personality-high-bits", "personality(1<<32|READ_IMPLIES_EXEC): the kernel takes an unsigned "
           "int, the filter must see READ_IMPLIES_EXEC"),
    Attack("personality-addr-no-randomize", "personality(ADDR_NO_RANDOMIZE) is denied"),

    # --- sockets, with garbage in the upper half of 32-bit arguments ---
    Attack("socket-vsock", "socket(AF_VSOCK) reaching the hypervisor is denied", absent="EAFNOSUPPORT"),
    Attack("socket-vsock-high-bits", "socket(1<<32|AF_VSOCK): family is an int, so this is AF_VSOCK",
           absent="EAFNOSUPPORT"),
    Attack("socket-packet-high-bits", "socket(1<<32|AF_PACKET, SOCK_RAW) is denied where families are "
           "restricted", only=FAMILY_RESTRICTED),
    Attack("socket-raw-high-bits", "socket(AF_INET, 1<<32|SOCK_RAW, ICMP) is denied where raw sockets are",
           only=FAMILY_RESTRICTED),
    Attack("socket-netlink-audit-high-bits", "socket(AF_NETLINK, SOCK_RAW, 1<<32|NETLINK_AUDIT) is "
           "denied where only routing netlink is allowed", only=FAMILY_RESTRICTED),

    # --- kernel attack surface and host administration (harmless arguments) ---
    Attack("io-uring-setup", "io_uring_setup is denied"),
    Attack("open-by-handle-at", "open_by_handle_at (the 'shocker' escape) is denied", kernel=("EINVAL",)),
    Attack("keyctl", "keyctl on the shared keyrings is denied", kernel=("ENOKEY",)),
    Attack("add-key", "add_key is denied", kernel=("ENODEV",)),
    Attack("request-key", "request_key is denied", kernel=("ENOKEY", "ENODEV")),
    Attack("bpf-prog-load", "bpf(BPF_PROG_LOAD) is denied", kernel=("E2BIG", "EINVAL")),
    Attack("bpf-map-create", "bpf(BPF_MAP_CREATE) is denied", kernel=("E2BIG", "EINVAL")),
    Attack("userfaultfd-device", "open /dev/userfaultfd + ioctl(USERFAULTFD_IOC_NEW): userfaultfd without "
           "the syscall is denied", kernel=("EBADF",)),
    Attack("userfaultfd-device-high-bits", "the same with 1<<32|USERFAULTFD_IOC_NEW (cmd is 32-bit to the "
           "kernel)", kernel=("EBADF",)),
    Attack("perf-event-open", "perf_event_open is denied"),
    Attack("userfaultfd", "userfaultfd is denied"),
    Attack("kexec-load", "kexec_load is denied", kernel=("EINVAL", "ENOSYS")),
    Attack("kexec-file-load", "kexec_file_load is denied", kernel=("EINVAL", "EBADF", "ENOSYS")),
    Attack("init-module", "init_module is denied", kernel=("ENOEXEC", "EFAULT", "ENOSYS")),
    Attack("finit-module", "finit_module is denied", kernel=("EBADF", "ENOSYS")),
    Attack("delete-module", "delete_module is denied", kernel=("ENOENT", "ENOSYS")),
    Attack("mount", "mount(MS_BIND) is denied", kernel=("ENOENT",)),
    Attack("umount2", "umount2 is denied", kernel=("ENOENT",)),
    Attack("pivot-root", "pivot_root is denied", kernel=("ENOENT",)),
    Attack("chroot", "chroot is denied", kernel=("ENOENT",)),
    Attack("fsopen", "fsopen (new mount API) is denied", kernel=("ENODEV",)),
    Attack("open-tree", "open_tree is denied", kernel=("ENOENT",)),
    Attack("swapon", "swapon is denied", kernel=("ENOENT",)),
    Attack("swapoff", "swapoff is denied", kernel=("ENOENT",)),
    Attack("reboot", "reboot (with invalid magic) is denied", kernel=("EINVAL",)),
    Attack("sethostname", "sethostname is denied", kernel=("EINVAL",)),
    Attack("clock-settime", "clock_settime is denied", kernel=("EINVAL",)),
    Attack("adjtimex-read", "adjtimex (the clock discipline, even a read) is denied"),
    Attack("fanotify-init", "fanotify_init (whole-filesystem watching) is denied"),
    Attack("syslog", "syslog (reading the kernel log) is denied"),
    Attack("iopl", "iopl(3) is denied", kernel=("ENOSYS",)),
    Attack("ioperm", "ioperm is denied", kernel=("ENOSYS",)),
    Attack("modify-ldt", "modify_ldt is denied"),
]

BY_NAME = {a.name: a for a in ATTACKS}
assert len(BY_NAME) == len(ATTACKS), "duplicate attack name"


def applies(attack: Attack, profile: str) -> bool:
    return attack.only is None or profile in attack.only
