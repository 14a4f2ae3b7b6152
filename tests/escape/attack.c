/*
 * Sandbox escape attempts, one per subcommand: `attack NAME [ARGS]`.
 *
 * Each attempt makes one system call (after harmless setup) and prints one
 * machine-readable line on stdout, then exits 0:
 *   ESCAPED <what> ret=<n>     the call succeeded
 *   BLOCKED errno=<n> <NAME>   the call failed with that errno
 * A call the filter kills prints nothing; the process dies of SIGSYS.
 *
 * Every attempt is harmless even where a filter wrongly lets it through:
 * host-wide operations get arguments the kernel rejects (bad reboot magic,
 * nonexistent paths, invalid flags, bad descriptors) and therefore answer
 * with a distinctive errno; the rest only affect this short-lived process
 * (its own namespaces, its own personality, a pty the test owns, a victim
 * process the test started for the purpose).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define X32_BIT 0x40000000UL
#define HIGH 0x100000000UL            /* garbage in the upper half of a 64-bit register */
#define NOWHERE "/nonexistent/sbx-escape-test"

static char victim_buf[64] = "victim-untouched";
static int escaped;                     /* an attempt in this image succeeded */

static int report(const char *what, long ret)
{
    if (ret >= 0)
        escaped = 1;
    if (ret >= 0)
        printf("ESCAPED %s ret=%ld\n", what, ret);
    else
        printf("BLOCKED errno=%d %s\n", errno, strerrorname_np(errno) ?: "?");
    fflush(stdout);
    return 0;
}

/* int $0x80 from 64-bit code: the i386 entry point, audit arch I386. */
static long int80(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile ("int $0x80"
                      : "=a"(ret)
                      : "a"(nr), "b"(a), "c"(b), "d"(c)
                      : "memory", "r8", "r9", "r10", "r11");
    return ret;
}

static int report_int80(const char *what, long ret)
{
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        ret = -1;
    }
    return report(what, ret);
}

/* The child half of a fork-like clone: exit 42 if it landed in a new user
 * namespace, 43 if in a new mount namespace, 0 otherwise. */
static char parent_userns[64], parent_mntns[64];

static void read_ns(const char *which, char *out, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/ns/%s", which);
    ssize_t n = readlink(path, out, len - 1);
    out[n < 0 ? 0 : n] = 0;
}

static void clone_child(void)
{
    char user[64], mnt[64];
    read_ns("user", user, sizeof user);
    read_ns("mnt", mnt, sizeof mnt);
    _exit(strcmp(user, parent_userns) ? 42 : strcmp(mnt, parent_mntns) ? 43 : 0);
}

static int clone_report(const char *what, long ret)
{
    if (ret == 0)
        clone_child();
    if (ret > 0) {
        int status = 0;
        waitpid((pid_t)ret, &status, __WALL);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        escaped = 1;
        printf("ESCAPED %s ret=%ld newns=%s\n", what, ret,
               code == 42 ? "user" : code == 43 ? "mnt" : "none");
        fflush(stdout);
        return 0;
    }
    return report(what, ret);
}

static int do_clone(unsigned long flags)
{
    read_ns("user", parent_userns, sizeof parent_userns);
    read_ns("mnt", parent_mntns, sizeof parent_mntns);
    return clone_report("clone", syscall(SYS_clone, flags, 0L, 0L, 0L, 0L));
}

static int do_clone3(unsigned long flags)
{
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    read_ns("user", parent_userns, sizeof parent_userns);
    read_ns("mnt", parent_mntns, sizeof parent_mntns);
    return clone_report("clone3", syscall(SYS_clone3, &args, sizeof args));
}

static long install_allow_all(int via_prctl)
{
    struct sock_filter insns[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
    struct sock_fprog prog = { .len = 1, .filter = insns };
    if (via_prctl)
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static int status_field(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t n = strlen(field);
    int value = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            value = atoi(line + n + 1);
    fclose(f);
    return value;
}

static unsigned long num(const char *s)
{
    return s ? strtoul(s, NULL, 0) : 0;
}

/* Sibling attacks: argv = pid, address of the victim's buffer. */
static int sibling(const char *name, pid_t pid, unsigned long addr)
{
    char buf[16] = "PWNED";
    struct iovec local = { buf, 6 }, remote = { (void *)addr, 6 };

    if (!strcmp(name, "ptrace-attach")) {
        long r = ptrace(PTRACE_ATTACH, pid, 0, 0);
        if (r == 0) {
            waitpid(pid, NULL, __WALL);
            ptrace(PTRACE_DETACH, pid, 0, 0);
        }
        return report("ptrace(PTRACE_ATTACH, sibling)", r);
    }
    if (!strcmp(name, "ptrace-seize")) {
        long r = ptrace(PTRACE_SEIZE, pid, 0, 0);
        if (r == 0)
            ptrace(PTRACE_DETACH, pid, 0, 0);
        return report("ptrace(PTRACE_SEIZE, sibling)", r);
    }
    if (!strcmp(name, "process-vm-writev"))
        return report("process_vm_writev(sibling)",
                      syscall(SYS_process_vm_writev, pid, &local, 1L, &remote, 1L, 0L));
    if (!strcmp(name, "process-vm-readv"))
        return report("process_vm_readv(sibling)",
                      syscall(SYS_process_vm_readv, pid, &local, 1L, &remote, 1L, 0L));
    if (!strcmp(name, "pidfd-getfd")) {
        long pidfd = syscall(SYS_pidfd_open, pid, 0L);   /* -1 if denied: then EBADF if reached */
        return report("pidfd_getfd(sibling, 0)", syscall(SYS_pidfd_getfd, pidfd, 0L, 0L));
    }
    if (!strcmp(name, "process-madvise")) {
        long pidfd = syscall(SYS_pidfd_open, pid, 0L);
        struct iovec range = { (void *)(addr & ~4095UL), 4096 };
        return report("process_madvise(sibling, MADV_COLD)",
                      syscall(SYS_process_madvise, pidfd, &range, 1L, 20L /* MADV_COLD */, 0L));
    }
    if (!strcmp(name, "kcmp"))
        return report("kcmp(self, sibling, KCMP_VM)",
                      syscall(SYS_kcmp, getpid(), pid, 1L /* KCMP_VM */, 0L, 0L));
    return -1;
}

static int victim(void)
{
    char c;
    printf("VICTIM %d %p\n", getpid(), (void *)victim_buf);
    fflush(stdout);
    while (read(0, &c, 1) > 0) {        /* each byte asks for the buffer; EOF ends */
        printf("BUFFER %s\n", victim_buf);
        fflush(stdout);
    }
    return 0;
}

static int tty_attack(const char *name)
{
    char c = '#';
    char linux_sub = 6;                 /* TIOCL_GETSHIFTSTATE: a read */
    if (!strcmp(name, "tiocsti"))
        return report("ioctl(0, TIOCSTI)", syscall(SYS_ioctl, 0, 0x5412UL, &c));
    if (!strcmp(name, "tiocsti-high-bits"))
        return report("ioctl(0, 1<<32|TIOCSTI)", syscall(SYS_ioctl, 0, HIGH | 0x5412UL, &c));
    if (!strcmp(name, "tioclinux"))
        return report("ioctl(0, TIOCLINUX)", syscall(SYS_ioctl, 0, 0x541CUL, &linux_sub));
    if (!strcmp(name, "tioclinux-high-bits"))
        return report("ioctl(0, 1<<32|TIOCLINUX)", syscall(SYS_ioctl, 0, HIGH | 0x541CUL, &linux_sub));
    return -1;
}

/* /dev/userfaultfd (Linux 6.1+) hands out userfaultfds by ioctl, without the
 * userfaultfd syscall; USERFAULTFD_IOC_NEW is _IO(0xAA, 0). */
static int uffd_device_attack(const char *name)
{
    unsigned long cmd = 0xAA00;
    int fd;
    if (!strcmp(name, "userfaultfd-device-high-bits"))
        cmd |= HIGH;
    else if (strcmp(name, "userfaultfd-device"))
        return -1;
    fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        fd = open("/dev/userfaultfd", O_RDONLY | O_CLOEXEC);
    fprintf(stderr, "open(/dev/userfaultfd) = %d\n", fd);
    return report("ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)", syscall(SYS_ioctl, fd, cmd, (long)O_CLOEXEC));
}

static int namespace_attack(const char *name)
{
    if (!strcmp(name, "clone-newuser"))
        return do_clone(CLONE_NEWUSER | SIGCHLD);
    if (!strcmp(name, "clone-newuser-high-bits"))
        return do_clone(HIGH | CLONE_NEWUSER | SIGCHLD);
    if (!strcmp(name, "clone-newns"))
        return do_clone(CLONE_NEWNS | SIGCHLD);
    if (!strcmp(name, "clone3-newuser"))
        return do_clone3(CLONE_NEWUSER);
    if (!strcmp(name, "unshare-newuser"))
        return report("unshare(CLONE_NEWUSER)", unshare(CLONE_NEWUSER));
    if (!strcmp(name, "unshare-newns"))
        return report("unshare(CLONE_NEWNS)", unshare(CLONE_NEWNS));
    if (!strcmp(name, "unshare-nr-high-bits"))
        return report("syscall(1<<32|__NR_unshare, CLONE_NEWUSER)",
                      syscall(HIGH | SYS_unshare, CLONE_NEWUSER));
    if (!strcmp(name, "setns"))
        return report("setns(-1, 0)", syscall(SYS_setns, -1, 0));
    return -1;
}

static int seccomp_attack(const char *name)
{
    long r = -1;
    if (!strcmp(name, "seccomp-allow-all"))
        r = install_allow_all(0);
    else if (!strcmp(name, "prctl-seccomp-allow-all"))
        r = install_allow_all(1);
    else if (!strcmp(name, "prctl-seccomp-disable")) {
        r = prctl(PR_SET_SECCOMP, SECCOMP_MODE_DISABLED, 0, 0, 0);
        prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0);
    } else
        return -1;
    fprintf(stderr, "step 1 (loosen): ret=%ld errno=%d\n", r, r < 0 ? errno : 0);
    return report("unshare(CLONE_NEWUSER) after loosening", unshare(CLONE_NEWUSER));
}

static int socket_attack(const char *name)
{
    if (!strcmp(name, "socket-vsock"))
        return report("socket(AF_VSOCK)", syscall(SYS_socket, 40L, 1L, 0L));
    if (!strcmp(name, "socket-vsock-high-bits"))
        return report("socket(1<<32|AF_VSOCK)", syscall(SYS_socket, HIGH | 40, 1L, 0L));
    if (!strcmp(name, "socket-packet-high-bits"))
        return report("socket(1<<32|AF_PACKET, SOCK_RAW)", syscall(SYS_socket, HIGH | 17, 3L, 0L));
    if (!strcmp(name, "socket-raw-high-bits"))
        return report("socket(AF_INET, 1<<32|SOCK_RAW, ICMP)", syscall(SYS_socket, 2L, HIGH | 3, 1L));
    if (!strcmp(name, "socket-netlink-audit-high-bits"))
        return report("socket(AF_NETLINK, SOCK_RAW, 1<<32|NETLINK_AUDIT)",
                      syscall(SYS_socket, 16L, 3L, HIGH | 9));
    return -1;
}

static int personality_attack(const char *name)
{
    if (!strcmp(name, "personality-read-implies-exec"))
        return report("personality(READ_IMPLIES_EXEC)", syscall(SYS_personality, 0x0400000L));
    if (!strcmp(name, "personality-high-bits"))
        return report("personality(1<<32|READ_IMPLIES_EXEC)", syscall(SYS_personality, HIGH | 0x0400000));
    if (!strcmp(name, "personality-addr-no-randomize"))
        return report("personality(ADDR_NO_RANDOMIZE)", syscall(SYS_personality, 0x0040000L));
    return -1;
}

static int kernel_attack(const char *name)
{
    char zero[256];
    struct { unsigned int bytes; int type; } handle = { 0, 0 };
    struct perf_event_attr pe;
    struct timespec ts = { 0, 0 };
    memset(zero, 0, sizeof zero);
    memset(&pe, 0, sizeof pe);
    pe.type = PERF_TYPE_SOFTWARE;
    pe.size = sizeof pe;
    pe.config = PERF_COUNT_SW_DUMMY;
    pe.disabled = 1;
    pe.exclude_kernel = 1;

#define CASE(n, what, call) if (!strcmp(name, n)) return report(what, call)
    CASE("io-uring-setup", "io_uring_setup(1)", syscall(SYS_io_uring_setup, 1L, zero));
    CASE("open-by-handle-at", "open_by_handle_at(empty handle)",
         syscall(SYS_open_by_handle_at, AT_FDCWD, &handle, O_RDONLY));
    CASE("keyctl", "keyctl(KEYCTL_GET_KEYRING_ID, thread keyring)", syscall(SYS_keyctl, 0L, -1L, 0L));
    CASE("add-key", "add_key(no such type)",
         syscall(SYS_add_key, "sbx-no-such-type", "d", "x", 1L, -1L));
    CASE("request-key", "request_key(no such type)",
         syscall(SYS_request_key, "sbx-no-such-type", "d", NULL, -1L));
    CASE("bpf-prog-load", "bpf(BPF_PROG_LOAD, empty program)", syscall(SYS_bpf, 5L, zero, 128L));
    CASE("bpf-map-create", "bpf(BPF_MAP_CREATE, invalid attr size)", syscall(SYS_bpf, 0L, zero, 1L << 20));
    CASE("perf-event-open", "perf_event_open(software dummy on self)",
         syscall(SYS_perf_event_open, &pe, 0L, -1L, -1L, 0L));
    CASE("userfaultfd", "userfaultfd(O_CLOEXEC)", syscall(SYS_userfaultfd, (long)O_CLOEXEC));
    CASE("kexec-load", "kexec_load(invalid flags)", syscall(SYS_kexec_load, 0L, 0L, NULL, 0x80L));
    CASE("kexec-file-load", "kexec_file_load(bad fds, invalid flags)",
         syscall(SYS_kexec_file_load, -1L, -1L, 0L, "", 0x80L));
    CASE("init-module", "init_module(empty image)", syscall(SYS_init_module, zero, 0L, ""));
    CASE("finit-module", "finit_module(-1)", syscall(SYS_finit_module, -1L, "", 0L));
    CASE("delete-module", "delete_module(no such module)",
         syscall(SYS_delete_module, "sbx_no_such_module", (long)O_NONBLOCK));
    CASE("mount", "mount(nonexistent, nonexistent, MS_BIND)",
         syscall(SYS_mount, NOWHERE "-src", NOWHERE "-dst", NULL, 4096L /* MS_BIND */, NULL));
    CASE("umount2", "umount2(nonexistent)", syscall(SYS_umount2, NOWHERE, 0L));
    CASE("pivot-root", "pivot_root(nonexistent, nonexistent)",
         syscall(SYS_pivot_root, NOWHERE "-new", NOWHERE "-old"));
    CASE("chroot", "chroot(nonexistent)", syscall(SYS_chroot, NOWHERE));
    CASE("fsopen", "fsopen(no such fs)", syscall(SYS_fsopen, "sbx-no-such-fs", 0L));
    CASE("open-tree", "open_tree(nonexistent)", syscall(SYS_open_tree, AT_FDCWD, NOWHERE, 0L));
    CASE("swapon", "swapon(nonexistent)", syscall(SYS_swapon, NOWHERE, 0L));
    CASE("swapoff", "swapoff(nonexistent)", syscall(SYS_swapoff, NOWHERE));
    CASE("reboot", "reboot(bad magic)", syscall(SYS_reboot, 0xdeadL, 0xbeefL, 0L, NULL));
    CASE("sethostname", "sethostname(len 65)", syscall(SYS_sethostname, zero, 65L));
    CASE("clock-settime", "clock_settime(invalid clock)", syscall(SYS_clock_settime, 0x7fffL, &ts));
    CASE("adjtimex-read", "adjtimex(modes=0)", syscall(SYS_adjtimex, zero));
    CASE("fanotify-init", "fanotify_init(FAN_CLASS_NOTIF)", syscall(SYS_fanotify_init, 0L, (long)O_RDONLY));
    CASE("syslog", "syslog(SYSLOG_ACTION_SIZE_BUFFER)", syscall(SYS_syslog, 10L, NULL, 0L));
    CASE("iopl", "iopl(3)", syscall(SYS_iopl, 3L));
    CASE("ioperm", "ioperm(0x80, 1, on)", syscall(SYS_ioperm, 0x80L, 1L, 1L));
    CASE("modify-ldt", "modify_ldt(read)", syscall(SYS_modify_ldt, 0L, zero, 16L));
#undef CASE
    return -1;
}

static int nr_attack(const char *name)
{
#define CASE(n, what, call) if (!strcmp(name, n)) return report(what, call)
    CASE("x32-getpid", "x32 getpid", syscall(X32_BIT | SYS_getpid));
    CASE("x32-ptrace", "x32 ptrace (521)", syscall(X32_BIT | 521, -1L, 0L, 0L, 0L));
    CASE("x32-unshare", "x32 unshare", syscall(X32_BIT | SYS_unshare, CLONE_NEWUSER));
    CASE("nr-470", "syscall 470", syscall(470L, 0L, 0L, 0L));
    CASE("nr-1000", "syscall 1000", syscall(1000L, 0L, 0L, 0L));
    CASE("nr-table-gap-400", "syscall 400 (gap in the x86_64 table)", syscall(400L, 0L, 0L, 0L));
    CASE("nr-0x3fffffff", "syscall 0x3fffffff", syscall(0x3fffffffL, 0L, 0L, 0L));
    CASE("nr-0xffffffff", "syscall 0xffffffff", syscall(0xffffffffL, 0L, 0L, 0L));
    CASE("nr-0x80000027", "syscall 0x80000000|getpid", syscall(0x80000000L | SYS_getpid));
#undef CASE
    /* i386 numbers: 20 getpid, 26 ptrace, 310 unshare. ptrace gets an
     * invalid request so it is harmless even where it runs. */
    if (!strcmp(name, "i386-getpid"))
        return report_int80("int 0x80 getpid", int80(20, 0, 0, 0));
    if (!strcmp(name, "i386-ptrace"))
        return report_int80("int 0x80 ptrace", int80(26, 0x4242, 0, 0));
    if (!strcmp(name, "i386-unshare"))
        return report_int80("int 0x80 unshare", int80(310, CLONE_NEWUSER, 0, 0));
    return -1;
}

static int attempt(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "";
    int r;

    if (!strcmp(name, "noop")) {
        puts("OK");
        return 0;
    }
    if (!strcmp(name, "victim"))
        return victim();
    if (!strcmp(name, "nnp")) {
        printf("NNP %d SECCOMP %d\n", status_field("NoNewPrivs"), status_field("Seccomp"));
        return 0;
    }
    if (!strcmp(name, "euid")) {
        printf("EUID %d NNP %d\n", (int)geteuid(), status_field("NoNewPrivs"));
        return 0;
    }
    if (argc > 3 && (r = sibling(name, (pid_t)num(argv[2]), num(argv[3]))) >= 0)
        return r;
    if ((r = tty_attack(name)) >= 0 || (r = uffd_device_attack(name)) >= 0 || (r = namespace_attack(name)) >= 0 ||
        (r = seccomp_attack(name)) >= 0 || (r = socket_attack(name)) >= 0 ||
        (r = personality_attack(name)) >= 0 || (r = kernel_attack(name)) >= 0 ||
        (r = nr_attack(name)) >= 0)
        return r;
    fprintf(stderr, "attack: unknown attempt '%s'\n", name);
    return 64;
}

/*
 * `attack chain PID ADDR NAME...`: the attempts one after another, each in a
 * fresh image of this program (execve), so none sees another's leftovers.
 * "START NAME" precedes each attempt's line. The chain stops after an escape
 * (the harness runs the rest anew); a SIGSYS kill ends it by itself.
 */
static int chain(int argc, char **argv)
{
    extern char **environ;
    char *one[] = { argv[0], argv[4], argv[2], argv[3], NULL };
    int r;

    if (argc < 5)
        return 0;
    printf("START %s\n", argv[4]);
    fflush(stdout);
    r = attempt(4, one);
    fflush(stdout);
    if (r != 0 || escaped || argc == 5)
        return r;
    argv[4] = argv[3];                  /* argv+1 becomes: prog chain PID ADDR rest... */
    argv[3] = argv[2];
    argv[2] = "chain";
    argv[1] = argv[0];
    execve(argv[0], argv + 1, environ);
    printf("CHAIN-EXEC-FAILED errno=%d\n", errno);
    return 70;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "chain"))
        return chain(argc, argv);
    return attempt(argc, argv);
}
