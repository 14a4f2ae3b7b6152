/*
 * `escape`: escape attempts against sbx's non-seccomp layers too (Landlock,
 * capabilities, the launcher's own protection, the filter cache), one per
 * subcommand, grouped by family in escape_*.c. Output as in escape.h.
 *
 *   escape NAME                   one attempt
 *   escape chain NAME...          the attempts one after another, each in a fresh
 *                                 image (execve), "START NAME" before each; stops
 *                                 after an escape (the harness runs the rest anew),
 *                                 unless SBX_ESCAPE_KEEP_GOING is set (for attempts
 *                                 that change nothing about the process)
 *   escape victim                 a sibling to aim at (see victim())
 *   escape parent-wrap NAME       unconfined control for attacks on the parent:
 *                                 fork, the child runs NAME against this process,
 *                                 then "PARENT-BUFFER <marker>" shows what landed
 *   escape say-escaped WHAT       prints "ESCAPED WHAT" (a program run from memory)
 *   escape noop                   prints OK
 *
 * Every attempt is harmless even where it succeeds: files it creates are its
 * own and removed again, modes it changes are changed back, opened devices and
 * /proc/sys files are closed without a write, signals go to the test's own
 * victim (which handles them), rename probes aim at a non-empty directory (the
 * kernel refuses them with ENOTEMPTY once past the permission checks).
 */
#include "escape.h"

#include <signal.h>
#include <sys/wait.h>

int escaped;

int report(const char *what, long ret)
{
    if (ret >= 0) {
        escaped = 1;
        printf("ESCAPED %s ret=%ld\n", what, ret);
    } else {
        printf("BLOCKED errno=%d %s (%s)\n", errno, strerrorname_np(errno) ?: "?", what);
    }
    fflush(stdout);
    return 0;
}

int blocked(int err, const char *why)
{
    printf("BLOCKED errno=%d %s (%s)\n", err, err ? (strerrorname_np(err) ?: "?") : "NONE", why);
    fflush(stdout);
    return 0;
}

const char *param(const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "SBX_ESCAPE_%s", name);
    const char *v = getenv(key);
    if (!v || !*v) {
        printf("NOPARAM %s\n", key);
        fflush(stdout);
        exit(65);
    }
    return v;
}

unsigned long param_num(const char *name)
{
    return strtoul(param(name), NULL, 0);
}

long read_some(int fd, char *buf, size_t len)
{
    long n = read(fd, buf, len - 1);
    buf[n > 0 ? n : 0] = 0;
    return n;
}

const char *tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

void scratch_path(char *out, size_t len, const char *dir, const char *prefix)
{
    snprintf(out, len, "%s/%s-%d", dir, prefix, (int)getpid());
}

long int80(long nr, long a, long b, long c, long d)
{
    long ret;
    __asm__ volatile ("int $0x80"
                      : "=a"(ret)
                      : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d)
                      : "memory", "r8", "r9", "r10", "r11");
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

/* The sibling: a marker buffer (for /proc/PID/mem), a secret in its environment
 * (SBX_VICTIM_SECRET, for /proc/PID/environ), and counters of the signals the
 * attempts aim at it. Each byte on stdin asks for its state; EOF ends it. */
static char victim_buf[64] = "victim-untouched";
static volatile sig_atomic_t got_usr1, got_usr2, got_io;

static void count(int sig)
{
    if (sig == SIGUSR1)
        got_usr1++;
    else if (sig == SIGUSR2)
        got_usr2++;
    else if (sig == SIGIO)
        got_io++;
}

static int victim(void)
{
    struct sigaction sa;
    char c;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGIO, &sa, NULL);
    printf("VICTIM %d %p\n", getpid(), (void *)victim_buf);
    fflush(stdout);
    while (read(0, &c, 1) > 0) {
        printf("STATE buffer=%s usr1=%d usr2=%d io=%d\n", victim_buf, (int)got_usr1, (int)got_usr2,
               (int)got_io);
        fflush(stdout);
    }
    return 0;
}

static char parent_buf[64] = "parent-untouched";

static int parent_wrap(char *self, char *name)
{
    char addr[32];
    int status = 0;
    snprintf(addr, sizeof addr, "%p", (void *)parent_buf);
    setenv("SBX_ESCAPE_PARENT_MARK", addr, 1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = { self, name, NULL };
        execv(self, argv);
        _exit(70);
    }
    waitpid(pid, &status, 0);
    printf("PARENT-BUFFER %s\n", parent_buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 71;
}

static int attempt(const char *name)
{
    int r;
    if (!strcmp(name, "noop")) {
        puts("OK");
        return 0;
    }
    if ((r = reach_attempt(name)) >= 0 || (r = root_attempt(name)) >= 0 ||
        (r = cache_attempt(name)) >= 0 || (r = profile_attempt(name)) >= 0 ||
        (r = files_attempt(name)) >= 0)
        return r;
    fprintf(stderr, "escape: unknown attempt '%s'\n", name);
    return 64;
}

static int chain(int argc, char **argv)
{
    extern char **environ;
    int r;
    if (argc < 3)
        return 0;
    printf("START %s\n", argv[2]);
    fflush(stdout);
    r = attempt(argv[2]);
    fflush(stdout);
    if (r != 0 || (escaped && !getenv("SBX_ESCAPE_KEEP_GOING")) || argc == 3)
        return r;
    argv[2] = argv[1];                  /* argv+1 becomes: prog chain rest... */
    argv[1] = argv[0];
    execve(argv[0], argv + 1, environ);
    printf("CHAIN-EXEC-FAILED errno=%d\n", errno);
    return 70;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "chain"))
        return chain(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "victim"))
        return victim();
    if (argc > 2 && !strcmp(argv[1], "parent-wrap"))
        return parent_wrap(argv[0], argv[2]);
    if (argc > 2 && !strcmp(argv[1], "say-escaped")) {
        printf("ESCAPED %s\n", argv[2]);
        return 0;
    }
    if (argc > 1)
        return attempt(argv[1]);
    fprintf(stderr, "usage: escape NAME | chain NAME... | victim | parent-wrap NAME\n");
    return 64;
}
