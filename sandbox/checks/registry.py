"""The rules ``sbx check`` knows: id, name, severity, what, why, how to fix; and the Finding they make.

One row per rule id (stable across releases: SARIF results and ``--fail-on``
key on them); docs/checks.md has the same table, and a test keeps the two
equal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..policy.diagnostics import Diagnostic, Position

SEVERITIES = ("error", "warning", "note", "info")          # most severe first
RANK = {"error": 3, "warning": 2, "note": 1, "info": 0}
PENALTY = {"error": 30, "warning": 10, "note": 2, "info": 0}


@dataclass(frozen=True)
class Check:
    id: str
    name: str
    severity: str
    short: str                   # what is wrong, one line
    full: str                    # why it matters; its first sentence is quoted in messages
    hint: str | None = None      # how to fix it


CHECKS: tuple[Check, ...] = tuple(Check(*row) for row in (
    ("SBX001", "profile-error", "error", "The profile does not load",
     "The profile has a syntax, name or condition error; nothing else can be checked."),
    ("SBX101", "default-allows", "error", "The default action allows",
     "With default allow (or log) every syscall no rule names passes, including ones added to the "
     "kernel later: the profile only blocks what its author thought of.",
     "use default: errno(EPERM) and allow what the program needs"),
    ("SBX102", "bad-arch-allows", "error", "Calls from other ABIs are allowed unfiltered",
     "bad_arch decides every call made through an ABI the profile does not list (i386 int 0x80 and "
     "x32 calls on x86_64); if it allows, any rule is bypassed by switching ABI.",
     "use bad_arch: kill-process"),
    ("SBX103", "extra-abi", "warning", "A second ABI is listed",
     "Listing i386 or x32 beside the native ABI admits a second syscall table with other numbers, "
     "32-bit arguments and multiplexers (socketcall, ipc) whose arguments seccomp cannot see."),
    ("SBX104", "unknown-allows", "warning", "Unknown syscall numbers are allowed",
     "unknown decides numbers the syscall table does not name, the syscalls of newer kernels; "
     "allowing them lets new kernel interfaces in unreviewed.", "use unknown: errno(ENOSYS)"),
    ("SBX105", "unknown-not-enosys", "note", "Unknown syscalls do not fail with ENOSYS",
     "Programs probe new syscalls and fall back when the kernel answers ENOSYS; any other answer "
     "makes them fail instead.", "use unknown: errno(ENOSYS)"),
    ("SBX106", "kill-thread", "note", "kill-thread as a profile action",
     "kill-thread ends one thread and leaves the process running in an inconsistent state.",
     "use kill-process"),
    ("SBX110", "ptrace-allowed", "error", "ptrace is allowed",
     "A process can attach to every other process of the same user, including ones outside the "
     "sandbox, and run code there."),
    ("SBX111", "bpf-allowed", "error", "bpf is allowed",
     "eBPF programs run in the kernel, and its verifier has been a steady source of privilege "
     "escalations."),
    ("SBX112", "kernel-code-allowed", "error", "Kernel module or kexec loading is allowed",
     "Module and kexec loading replace or extend the running kernel: a host takeover for a "
     "privileged process."),
    ("SBX113", "mount-allowed", "error", "Mounting or changing root is allowed",
     "Mounts, the new mount API, pivot_root and chroot rewrite the file system view and, with "
     "CAP_SYS_ADMIN in any user namespace, undo file system confinement."),
    ("SBX114", "user-namespace", "error", "User namespaces can be created",
     "A new user namespace gives the process every capability inside it and exposes kernel code "
     "written for root. clone3 counts: its flags are in memory seccomp cannot read.",
     "deny unshare, deny clone when arg0 & CLONE_NEWUSER != 0, and errno(ENOSYS) for clone3"),
    ("SBX115", "namespaces", "warning", "Namespaces can be created or joined",
     "With privileges, new or joined namespaces change what the process sees of mounts, network, "
     "PIDs and IPC."),
    ("SBX116", "process-vm", "error", "Cross-process memory access is allowed",
     "process_vm_readv and process_vm_writev read and write the memory of other processes of the "
     "same user, inside or outside the sandbox."),
    ("SBX117", "raw-io", "error", "I/O port access is allowed",
     "iopl and ioperm give direct hardware access to a process with CAP_SYS_RAWIO."),
    ("SBX118", "sysv-ipc", "warning", "System V IPC is reachable",
     "System V shared memory, message queues and semaphores have numbers, not paths, so no "
     "file rule confines them: the command may attach the segments, read the queues and hold "
     "the semaphores of every other process of its user (root's, run as root), whose numbers "
     "/proc/sysvipc lists.",
     "deny them: errno(ENOSYS): \"@sysv-ipc\", as the built-in profiles do"),
    ("SBX120", "perf-events", "warning", "perf_event_open is allowed",
     "Performance counters observe other processes and are a large, often exploited kernel surface."),
    ("SBX121", "keyring", "warning", "Kernel keyrings are reachable",
     "Keyrings are shared by all processes of a user and not namespaced, so secrets cross the "
     "sandbox boundary."),
    ("SBX122", "userfaultfd", "warning", "userfaultfd is reachable",
     "userfaultfd (the syscall, or ioctl USERFAULTFD_IOC_NEW on /dev/userfaultfd) stalls the kernel "
     "mid-copy, the classic primitive of race exploits.",
     "deny userfaultfd and ioctl when arg1 == 0xaa00"),
    ("SBX123", "io-uring", "warning", "io_uring is allowed",
     "io_uring performs I/O that seccomp never sees and has a long exploit record."),
    ("SBX124", "open-by-handle", "warning", "open_by_handle_at is allowed",
     "With CAP_DAC_READ_SEARCH it opens any file by handle, bypassing the path walk (the "
     "'shocker' container escape)."),
    ("SBX125", "personality", "warning", "personality is allowed without an argument filter",
     "Personalities such as READ_IMPLIES_EXEC and ADDR_NO_RANDOMIZE weaken memory protections of "
     "the process and its children.",
     "deny personality when arg0 not in [PER_LINUX, PER_LINUX32, UNAME26, 0xffffffff]"),
    ("SBX126", "terminal-injection", "error", "ioctl allows TIOCSTI or TIOCLINUX",
     "TIOCSTI pushes input into the controlling terminal for the shell outside the sandbox to run, "
     "and TIOCLINUX reads and pastes the console.",
     "put `errno(EPERM): ioctl when arg1 in [TIOCSTI, TIOCLINUX]` above the ioctl allow"),
    ("SBX127", "host-admin", "warning", "Host administration calls are allowed",
     "Reboot, swap, clocks, host name, accounting, quotas, the kernel log and fanotify act on the "
     "whole host for a process with the capability."),
    ("SBX128", "legacy-cpu", "note", "Legacy CPU emulation calls are allowed",
     "modify_ldt and vm86 reach old kernel paths with a history of privilege escalations."),
    ("SBX130", "clone3-not-enosys", "warning", "clone3 is denied with something else than ENOSYS",
     "glibc falls back from clone3 to clone only when clone3 fails with ENOSYS; any other denial "
     "makes thread and process creation fail.", "use errno(ENOSYS) for clone3"),
    ("SBX131", "pointer-compared", "warning", "A pointer argument is compared by value",
     "seccomp sees the address, not the memory it points to, which another thread can change after "
     "the check (time of check to time of use); only a NULL test is meaningful.",
     "seccomp cannot read memory; only a NULL test (== 0) is meaningful"),
    ("SBX132", "unreachable-denial", "warning", "A denial never applies",
     "An earlier rule allows the syscall for every argument, so the later denial is dead.",
     "move the denial above the allow"),
    ("SBX133", "redundant-rule", "note", "A rule repeats an earlier decision",
     "An earlier rule already lets the syscall through for every argument."),
    ("SBX134", "overridden-rule", "info", "A rule is overridden by an earlier denial",
     "An earlier unconditional rule denies the syscall, so a later rule (a broad group allow, or an "
     "inherited rule) never decides it: the usual deny-before-allow layout."),
    ("SBX135", "duplicate-name", "note", "A syscall is named twice in one rule",
     "The rule names the syscall twice, directly or through groups."),
    ("SBX136", "missing-on-arch", "info", "A syscall does not exist on the target ABI",
     "The name matches nothing on the ABI the profile is built for (fcntl64 on x86_64); harmless "
     "in a profile meant for several native ABIs."),
    ("SBX137", "matches-nothing", "warning", "A syscall exists on none of the profile's ABIs",
     "The rule names a syscall that none of the listed architectures has: it has no effect."),
    ("SBX138", "probe-not-enosys", "warning", "A syscall libraries probe is denied without ENOSYS",
     "C libraries and language runtimes call some newer syscalls first and fall back to an older "
     "way when the kernel does not have them, most only when it answers ENOSYS; another denial, "
     "or a kill, makes the call fail instead (the table of probes is docs/syscall-ages.md).",
     "answer errno(ENOSYS) for it, or give the profile a baseline older than the syscall"),
    ("SBX140", "widened", "error", "The profile lets through what its baseline denied",
     "Compared with the earlier profile given to sbx check --baseline, some syscall and argument "
     "region that was denied is now allowed, logged or handed to a notify listener: the sandbox "
     "got wider.", "if the program needs it, say so in review and update the baseline; else "
     "restore the denial"),
    ("SBX141", "narrowed", "info", "The profile denies what its baseline let through",
     "Compared with the earlier profile, some syscall and argument region that passed is now "
     "denied, or another layer grants less (a capability, TCP port or filesystem right taken "
     "away, a scope closed, Landlock enforced): the sandbox got narrower, and a program that "
     "relied on it fails (try it under sbx verify)."),
    ("SBX142", "denial-changed", "note", "The profile denies differently from its baseline",
     "Compared with the earlier profile, a denial now answers differently (kill-process became "
     "errno(EPERM), EPERM became ENOSYS) or an allow became log: what the caller sees changes, "
     "nothing new gets through."),
    ("SBX143", "layer-widened", "error", "Another confinement layer lets through what its baseline did not",
     "Compared with the earlier profile, a layer beside the seccomp filter got wider: a capability "
     "added, a scope opened (sandbox to any), landlock: best-effort where it was enforce, a TCP "
     "port (or any) added to network bind or connect, or a filesystem right on a path the earlier "
     "profile did not grant there (paths compared as written, the most specific one deciding).",
     "if the program needs it, say so in review and update the baseline; else take the grant "
     "back"),
    ("SBX144", "static-only-sensitive", "note", "A security-sensitive syscall was only found statically",
     "sbx analyze found the syscall reachable in the program's code, but no trace ever saw it: "
     "static analysis over-approximates, so the program may never need it.",
     "merge a trace of the program's real work (sbx trace --merge); drop the name if it never "
     "appears"),
    ("SBX145", "too-large", "error", "The filter is too large for the kernel",
     "The compiled program has more instructions than the kernel accepts (4,096): sbx run, "
     "compile and explain refuse the profile."),
    ("SBX150", "no-filesystem", "note", "The profile says nothing about files",
     "Without a filesystem: section the command reads and writes every file its user can: SSH "
     "keys, shell start-up files, the profile itself; the syscall filter cannot tell one path from "
     "another.", "add a filesystem: section; sbx trace writes one from a real run"),
    ("SBX151", "no-filesystem-network", "warning", "The profile allows the network but says nothing about files",
     "A command that can read every file of its user and reach the network can send them anywhere.",
     "add a filesystem: section; sbx trace writes one from a real run"),
    ("SBX152", "writes-system", "error", "Write access reaches system files",
     "Writes under /etc, /usr, /boot, /proc, /sys, /dev and the like change the host and outlive "
     "the sandbox.", "grant write only to the directories the program works in"),
    ("SBX153", "writes-home", "warning", "Write access over the whole home",
     "A command that may write the home directory may change shell start-up files, editor and git "
     "hooks: code its user runs later, outside the sandbox.",
     "grant write to the project or data directory only"),
    ("SBX154", "exec-writable", "note", "A directory is both writable and executable",
     "The command may write a program there and run it, so the exec grant does not limit what "
     "runs; the syscall filter still applies to it.",
     "drop exec from the writable directory, or add it to deny: if nothing runs from there"),
    ("SBX155", "secrets-readable", "warning", "Read access reaches SSH, GnuPG or cloud keys",
     "~/.ssh, ~/.gnupg and ~/.aws hold keys that open other machines.", "add them to deny:"),
    ("SBX156", "capability-escapes", "warning", "A kept capability reaches past the sandbox",
     "Some capabilities act on the whole host or read around Landlock's path rules; kept, they "
     "make the other layers advisory.", "keep only what the program needs, often none"),
    ("SBX157", "scope-open", "warning", "Signals or abstract Unix sockets reach outside the sandbox",
     "scope: any lets the command signal, or connect to abstract Unix sockets of, processes of its "
     "user outside the sandbox (a desktop session's X11 and D-Bus listen there).",
     "leave scope at sandbox"),
    ("SBX158", "landlock-best-effort", "warning", "The profile runs without Landlock where it is missing",
     "landlock: best-effort runs the command on an older kernel without its file, port and scope "
     "rules: the profile promises less than it says.", "leave landlock at enforce"),
    ("SBX159", "notify-unsupervised", "note", "notify under sbx run",
     "notify hands the call to a supervisor; sbx run installs none, so the call fails with ENOSYS "
     "there (sbx trace supervises).", "use errno(...) or allow"),
    ("SBX160", "errno-zero", "warning", "errno(0) denies a call but reports success",
     "The call does not run yet returns 0: the program goes on as if it had happened, writing to "
     "files that were never opened or trusting a lock it never took.",
     "use an errno the program handles, such as EPERM"),
    ("SBX161", "capability-identity", "note", "A kept capability lets root become another user or group",
     "With SETUID or SETGID a root command may take any user's or group's identity, and so reach "
     "the Unix sockets that identity may connect to (a session bus that starts programs, a "
     "database's peer authentication): Landlock controls files, not those sockets. Its file "
     "rules still hold under every identity.",
     "run the server as its own user where you can"),
    ("SBX162", "devices-readable", "warning", "Read access reaches /dev",
     "Root owns the raw disks, and uid 0 reads them without any capability: a disk holds every "
     "file on it, the profile's denied ones included. Input devices, cameras and the kernel log "
     "are there too.",
     "add /dev to deny: and grant the devices the command uses by name"),
    ("SBX163", "terminals-open", "warning", "The command may open a terminal that is not its own",
     "/dev/pts holds the user's terminals, each owned by the user: a command that may open them "
     "reads what is typed into another one (a password given to sudo or ssh in another window) "
     "and writes to its screen. /dev/pts/N is another window's once this one is closed, and "
     "/dev/tty is the terminal sbx was started from even when the command's input and output "
     "are redirected. Its own terminals are $TTY.",
     "grant $TTY instead"),
))
BY_ID = {c.id: c for c in CHECKS}


@dataclass
class Finding(Diagnostic):
    """A Diagnostic with what it is about, for JSON and SARIF output."""
    syscalls: list[str] = field(default_factory=list)
    arches: list[str] = field(default_factory=list)


def finding(check_id: str, pos: Position | None, message: str, hint: str | None = "",
            notes: list[Diagnostic] | None = None, names=(), arches=()) -> Finding:
    """A finding of *check_id*; *hint* "" means the check's own hint."""
    check = BY_ID[check_id]
    return Finding(pos, message, check.severity, check.hint if hint == "" else hint,
                   list(notes or []), check_id, list(names), list(arches))

