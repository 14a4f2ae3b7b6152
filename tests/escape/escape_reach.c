/*
 * Reaching processes and sockets outside the sandbox: the launcher (the
 * parent: under sbx, the waiting sbx process), a sibling victim of the same
 * user (SBX_ESCAPE_VICTIM pid, SBX_ESCAPE_VICTIM_ADDR its marker buffer), and
 * Unix sockets the test listens on outside (SBX_ESCAPE_UNIX_PATH: a named
 * datagram socket; SBX_ESCAPE_ABSTRACT: the name of an abstract stream and,
 * with "-dgram" appended, datagram socket).
 */
#include "escape.h"

#include <signal.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

/* /proc/PID/FILE of the parent; the marker address from parent-wrap, if any. */
static void parent_file(char *out, size_t len, const char *file)
{
    snprintf(out, len, "/proc/%d/%s", (int)getppid(), file);
}

static int parent_attack(const char *name)
{
    char path[64], buf[256];
    const char *mark = getenv("SBX_ESCAPE_PARENT_MARK");
    int fd;

    if (!strcmp(name, "ppid-syscall")) {
        /* open is allowed by the kernel (the check is at read), so both count */
        parent_file(path, sizeof path, "syscall");
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return report("open /proc/PPID/syscall", -1);
        long n = read_some(fd, buf, sizeof buf);
        if (n > 0)
            buf[strcspn(buf, "\n")] = 0;
        if (n > 0)
            printf("INFO parent's syscall: %s\n", buf);
        return report("read /proc/PPID/syscall", n > 0 ? n : -1);
    }
    if (!strcmp(name, "ppid-mem-read")) {
        parent_file(path, sizeof path, "mem");
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && mark) {
            long n = pread(fd, buf, 17, (off_t)strtoul(mark, NULL, 0));
            buf[n > 0 ? n : 0] = 0;
            printf("INFO read from the parent's memory: '%s'\n", buf);
        }
        return report("open /proc/PPID/mem O_RDONLY", fd);
    }
    if (!strcmp(name, "ppid-mem-write")) {
        parent_file(path, sizeof path, "mem");
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 || !mark)            /* under sbx: never write into the launcher */
            return report("open /proc/PPID/mem O_RDWR", fd);
        return report("pwrite PWNED into the parent's memory",
                      pwrite(fd, "PWNED", 6, (off_t)strtoul(mark, NULL, 0)) == 6 ? 6 : -1);
    }
    return -1;
}

static int victim_attack(const char *name)
{
    pid_t pid = (pid_t)param_num("VICTIM");
    unsigned long addr = param_num("VICTIM_ADDR");
    char path[64], buf[4096];
    int fd;

    if (!strcmp(name, "victim-mem-read")) {
        snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return report("open /proc/VICTIM/mem O_RDONLY", -1);
        long n = pread(fd, buf, 16, (off_t)addr);
        buf[n > 0 ? n : 0] = 0;
        return report(n > 0 ? buf : "pread /proc/VICTIM/mem", n > 0 ? n : -1);
    }
    if (!strcmp(name, "victim-mem-write")) {
        snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return report("open /proc/VICTIM/mem O_RDWR", -1);
        return report("pwrite PWNED into the victim's memory",
                      pwrite(fd, "PWNED", 6, (off_t)addr) == 6 ? 6 : -1);
    }
    if (!strcmp(name, "victim-environ")) {
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return report("open /proc/VICTIM/environ", -1);
        long n = read(fd, buf, sizeof buf - 1);
        if (n < 0)
            return report("read /proc/VICTIM/environ", -1);
        for (long i = 0; i < n; i += strlen(buf + i) + 1) {
            buf[n] = 0;
            if (!strncmp(buf + i, "SBX_VICTIM_SECRET=", 18))
                return report(buf + i, n);
        }
        return blocked(0, "environ read but no secret in it");
    }
    if (!strcmp(name, "victim-kill0"))
        return report("kill(victim, 0)", kill(pid, 0));
    if (!strcmp(name, "victim-pidfd-signal")) {
        long pidfd = syscall(SYS_pidfd_open, pid, 0L);
        if (pidfd < 0)
            return report("pidfd_open(victim)", -1);
        return report("pidfd_send_signal(victim, SIGUSR2)",
                      syscall(SYS_pidfd_send_signal, pidfd, (long)SIGUSR2, NULL, 0L));
    }
    if (!strcmp(name, "victim-fsetown")) {
        /* The kernel sends SIGUSR1 to the owner when data arrives; whether it
         * does is only visible to the victim, so this prints OK once set up. */
        int p[2];
        if (pipe(p) < 0)
            return report("pipe", -1);
        if (fcntl(p[0], F_SETOWN, pid) < 0)
            return report("fcntl(F_SETOWN, victim)", -1);
        if (fcntl(p[0], F_SETSIG, SIGUSR1) < 0)
            return report("fcntl(F_SETSIG, SIGUSR1)", -1);
        if (fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK) < 0)
            return report("fcntl(F_SETFL, O_ASYNC)", -1);
        if (write(p[1], "x", 1) != 1)
            return report("write to the O_ASYNC pipe", -1);
        printf("OK F_SETOWN(victim)+F_SETSIG(SIGUSR1)+O_ASYNC set up and triggered\n");
        fflush(stdout);
        return 0;
    }
    if (!strcmp(name, "victim-prlimit")) {
        /* the same values back: a change no one can see, but a change all the same */
        struct rlimit old;
        if (syscall(SYS_prlimit64, pid, (long)RLIMIT_CORE, NULL, &old) < 0)
            getrlimit(RLIMIT_CORE, &old);
        return report("prlimit64(victim, RLIMIT_CORE, same values)",
                      syscall(SYS_prlimit64, pid, (long)RLIMIT_CORE, &old, NULL));
    }
    return -1;
}

static socklen_t unix_addr(struct sockaddr_un *a, const char *name, int abstract)
{
    size_t n = strlen(name);
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (n > sizeof a->sun_path - 2)
        n = sizeof a->sun_path - 2;
    memcpy(a->sun_path + (abstract ? 1 : 0), name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static int socket_attack(const char *name)
{
    struct sockaddr_un a;
    char dgram[128];
    char msg[64];
    struct iovec iov = { msg, 0 };
    struct msghdr mh;
    int s, pair[2];

    snprintf(msg, sizeof msg, "escaped-%s", name);
    iov.iov_len = strlen(msg);
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &a;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;

    if (!strcmp(name, "unix-abstract-stream")) {
        socklen_t l = unix_addr(&a, param("ABSTRACT"), 1);
        if ((s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
            return report("socket(AF_UNIX, SOCK_STREAM)", -1);
        return report("connect(abstract stream socket outside)", connect(s, (void *)&a, l));
    }
    if (!strcmp(name, "unix-abstract-dgram")) {
        snprintf(dgram, sizeof dgram, "%s-dgram", param("ABSTRACT"));
        socklen_t l = unix_addr(&a, dgram, 1);
        if ((s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
            return report("socket(AF_UNIX, SOCK_DGRAM)", -1);
        return report("sendto(abstract datagram socket outside)",
                      sendto(s, msg, strlen(msg), MSG_DONTWAIT, (void *)&a, l));
    }
    if (!strcmp(name, "unix-pair-abstract-sendmsg")) {
        snprintf(dgram, sizeof dgram, "%s-dgram", param("ABSTRACT"));
        mh.msg_namelen = unix_addr(&a, dgram, 1);
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) < 0)
            return report("socketpair(AF_UNIX, SOCK_DGRAM)", -1);
        return report("sendmsg(dgram socketpair, msg_name=abstract socket outside)",
                      sendmsg(pair[0], &mh, MSG_DONTWAIT));
    }
    if (!strcmp(name, "unix-pair-path-sendmsg")) {
        mh.msg_namelen = unix_addr(&a, param("UNIX_PATH"), 0);
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) < 0)
            return report("socketpair(AF_UNIX, SOCK_DGRAM)", -1);
        return report("sendmsg(dgram socketpair, msg_name=named socket outside)",
                      sendmsg(pair[0], &mh, MSG_DONTWAIT));
    }
    if (!strcmp(name, "unix-pair-raw-path-sendmsg")) {
        /* net/unix/af_unix.c unix_create: SOCK_RAW is turned into SOCK_DGRAM */
        mh.msg_namelen = unix_addr(&a, param("UNIX_PATH"), 0);
        if (socketpair(AF_UNIX, SOCK_RAW | SOCK_CLOEXEC, 0, pair) < 0)
            return report("socketpair(AF_UNIX, SOCK_RAW)", -1);
        return report("sendmsg(raw (datagram) socketpair, msg_name=named socket outside)",
                      sendmsg(pair[0], &mh, MSG_DONTWAIT));
    }
    if (!strcmp(name, "unix-path-sendto")) {
        socklen_t l = unix_addr(&a, param("UNIX_PATH"), 0);
        if ((s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
            return report("socket(AF_UNIX, SOCK_DGRAM)", -1);
        return report("sendto(named datagram socket outside)",
                      sendto(s, msg, strlen(msg), MSG_DONTWAIT, (void *)&a, l));
    }
    return -1;
}

int reach_attempt(const char *name)
{
    if (!strncmp(name, "ppid-", 5))
        return parent_attack(name);
    if (!strncmp(name, "victim-", 7))
        return victim_attack(name);
    if (!strncmp(name, "unix-", 5))
        return socket_attack(name);
    return -1;
}
