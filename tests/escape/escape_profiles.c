/*
 * Attempts on what particular profiles claim: that a command cannot answer
 * its own notifications, that argument checks read the bits the kernel reads,
 * that i386 multiplexers are no way around a rule, that web runs no program
 * from memory. SBX_ESCAPE_SUIDFILE: a file of the running user (fchmodat).
 */
#include "escape.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* A filter: USER_NOTIF for syscall nr, ALLOW for everything else (the arch
 * check is not needed for a filter that only ever adds a notification). */
static long install_listener(int nr)
{
    struct sock_filter insns[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = 4, .filter = insns };
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
}

static volatile int notified;

/* Answers every notification on the listener with "continue": the call then
 * runs as if this filter had allowed it. */
static void *answer(void *arg)
{
    int fd = (int)(long)arg;
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    struct pollfd p = { fd, POLLIN, 0 };
    while (poll(&p, 1, 2000) > 0) {
        memset(&req, 0, sizeof req);
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
            break;
        notified++;
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
    return NULL;
}

static int self_listener_answer(void)
{
    pthread_t t;
    /* kcmp(self, self, KCMP_VM): harmless, needs no privilege, and every
     * built-in profile denies it (@debug) */
    long fd = install_listener(SYS_kcmp);
    if (fd < 0)
        return report("seccomp(NEW_LISTENER) for kcmp", -1);
    if (pthread_create(&t, NULL, answer, (void *)fd) != 0)
        return blocked(EAGAIN, "pthread_create");
    long r = syscall(SYS_kcmp, (long)getpid(), (long)getpid(), 1L /* KCMP_VM */, 0L, 0L);
    int err = errno;
    printf("INFO notifications answered by the command's own listener: %d\n", notified);
    errno = err;
    return report("kcmp(self, self, KCMP_VM), answered 'continue' by the command's own listener", r);
}

/* int $0x80 arguments must be 32-bit addresses: a static, non-PIE binary's data is. */
static unsigned int socket_args[3];

static int memfd_exec(void)
{
    char self[4096 * 4], path[64];
    int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (exe < 0)
        return report("open /proc/self/exe", -1);
    long fd = syscall(SYS_memfd_create, "sbx-escape", 0L);     /* no MFD_NOEXEC_SEAL */
    if (fd < 0)
        return report("memfd_create(flags=0)", -1);
    long n;
    while ((n = read(exe, self, sizeof self)) > 0)
        if (write((int)fd, self, (size_t)n) != n)
            return report("write the ELF into the memfd", -1);
    snprintf(path, sizeof path, "/proc/self/fd/%ld", fd);
    char *argv[] = { "sbx-escape-memfd", "say-escaped", "memfd-exec: a program run from memory", NULL };
    extern char **environ;
    fflush(stdout);
    execve(path, argv, environ);
    return report("execve(/proc/self/fd/N of the memfd)", -1);
}

int profile_attempt(const char *name)
{
    if (!strcmp(name, "seccomp-new-listener")) {
        long fd = install_listener(SYS_getppid);
        return report("seccomp(SET_MODE_FILTER, NEW_LISTENER)", fd);
    }
    if (!strcmp(name, "self-listener-answer"))
        return self_listener_answer();
    if (!strcmp(name, "clone-sigchld-high")) {
        /* clone's flags are an unsigned long that the kernel cuts to 32 bits */
        long pid = syscall(SYS_clone, SIGCHLD | (1UL << 40), 0L, 0L, 0L, 0L);
        if (pid == 0)
            _exit(0);
        if (pid > 0)
            waitpid((pid_t)pid, NULL, 0);
        return report("clone(SIGCHLD | 1<<40) forked", pid);
    }
    if (!strcmp(name, "fchmodat-bit16-setuid")) {
        /* mode is a umode_t, 16 bits to the kernel: bit 16 is dropped, 04755 stays */
        const char *f = param("SUIDFILE");
        long r = syscall(SYS_fchmodat, (long)AT_FDCWD, f, (1L << 16) | 04755L, 0L);
        if (r == 0)
            chmod(f, 0755);
        return report("fchmodat(file, 1<<16 | 04755)", r);
    }
    if (!strcmp(name, "chmod-bit16-setuid")) {
        const char *f = param("SUIDFILE");
        long r = syscall(SYS_chmod, f, (1L << 16) | 04755L);
        if (r == 0)
            chmod(f, 0755);
        return report("chmod(file, 1<<16 | 04755)", r);
    }
    if (!strcmp(name, "i386-getpid"))
        return report("int 0x80 getpid", int80(20, 0, 0, 0, 0));
    if (!strcmp(name, "i386-socketcall-packet")) {
        socket_args[0] = 17;            /* AF_PACKET */
        socket_args[1] = 3;             /* SOCK_RAW */
        socket_args[2] = htons(ETH_P_ALL);
        long fd = int80(102, 1 /* SYS_SOCKET */, (long)(unsigned long)socket_args, 0, 0);
        if (fd >= 0)
            close((int)fd);
        return report("int 0x80 socketcall(SYS_SOCKET, AF_PACKET, SOCK_RAW)", fd);
    }
    if (!strcmp(name, "i386-ipc-shmget")) {
        long id = int80(117, 23 /* SHMGET */, IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        if (id >= 0)
            shmctl((int)id, IPC_RMID, NULL);
        return report("int 0x80 ipc(SHMGET, IPC_PRIVATE) (segment removed again)", id);
    }
    if (!strcmp(name, "memfd-exec"))
        return memfd_exec();
    return -1;
}
