/*
 * Files and ports (Landlock's filesystem: and network: rules). Parameters:
 * SBX_ESCAPE_SECRET (a dummy key below $HOME/.ssh) and SBX_ESCAPE_SECRET_TEXT
 * (what reading it must show), SBX_ESCAPE_SYMLINK and SBX_ESCAPE_HARDLINK (a
 * symbolic and a hard link to it the test made in $TMPDIR), SBX_ESCAPE_FD (a
 * descriptor of it the test passed down), SBX_ESCAPE_OUTSIDE (a file of the running
 * user outside every write grant), SBX_ESCAPE_PORT (a TCP listener outside, on
 * a port no profile lists), SBX_ESCAPE_BINDPORT (a free port no profile lists).
 * A read escapes when it returns the secret's text.
 */
#include "escape.h"

#include <arpa/inet.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

static int read_secret(const char *what, int fd)
{
    char buf[512];
    if (fd < 0)
        return report(what, -1);
    long n = read_some(fd, buf, sizeof buf);
    close(fd);
    if (n < 0)
        return report(what, -1);
    if (!strstr(buf, param("SECRET_TEXT")))
        return blocked(0, "opened, but the secret's text is not there");
    return report(what, n);
}

/* the secret's path below $HOME ("./ssh/key"), for the *at attempts */
static const char *below_home(void)
{
    const char *home = getenv("HOME"), *secret = param("SECRET");
    size_t n = home ? strlen(home) : 0;
    if (!n || strncmp(secret, home, n) || secret[n] != '/') {
        printf("NOPARAM SBX_ESCAPE_SECRET is not below $HOME\n");
        exit(65);
    }
    return secret + n + 1;
}

static long openat2_secret(int dirfd, const char *path, unsigned long long resolve)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = resolve;
    return syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

static int tcp(const char *name)
{
    struct sockaddr_in a;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return report("socket(AF_INET, SOCK_STREAM)", -1);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!strcmp(name, "tcp-connect")) {
        a.sin_port = htons((unsigned short)param_num("PORT"));
        return report("connect(127.0.0.1, a port the profile does not list)",
                      connect(s, (void *)&a, sizeof a));
    }
    a.sin_port = htons((unsigned short)param_num("BINDPORT"));
    return report("bind(127.0.0.1, a port the profile does not list)", bind(s, (void *)&a, sizeof a));
}

int files_attempt(const char *name)
{
    char path[600];
    const char *secret;
    int fd;

    if (!strcmp(name, "tcp-connect") || !strcmp(name, "tcp-bind"))
        return tcp(name);
    if (strncmp(name, "fs-", 3))
        return -1;
    secret = param("SECRET");
    if (!strcmp(name, "fs-read-direct"))
        return read_secret("open+read the secret", open(secret, O_RDONLY | O_CLOEXEC));
    if (!strcmp(name, "fs-read-symlink"))
        return read_secret("read through a symlink in $TMPDIR", open(param("SYMLINK"), O_RDONLY | O_CLOEXEC));
    if (!strcmp(name, "fs-read-hardlink")) {
        scratch_path(path, sizeof path, tmpdir(), "sbx-escape-hardlink");
        if (link(secret, path) < 0)
            return report("link(secret, $TMPDIR/...)", -1);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        unlink(path);
        return read_secret("read through a new hard link in $TMPDIR", fd);
    }
    if (!strcmp(name, "fs-rename-refer")) {
        scratch_path(path, sizeof path, tmpdir(), "sbx-escape-moved");
        if (rename(secret, path) < 0)
            return report("rename(secret, $TMPDIR/...)", -1);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        rename(path, secret);
        return read_secret("read after moving the secret into $TMPDIR", fd);
    }
    if (!strcmp(name, "fs-proc-root")) {
        snprintf(path, sizeof path, "/proc/self/root%s", secret);
        return read_secret("read via /proc/self/root", open(path, O_RDONLY | O_CLOEXEC));
    }
    if (!strcmp(name, "fs-openat-home-opath") || !strcmp(name, "fs-openat-home-dir")) {
        int opath = !strcmp(name, "fs-openat-home-opath");
        int dirfd = open(getenv("HOME"), (opath ? O_PATH : O_RDONLY) | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
            return report(opath ? "open $HOME O_PATH" : "open $HOME O_DIRECTORY", -1);
        return read_secret("openat($HOME fd, .ssh/...)", openat(dirfd, below_home(), O_RDONLY | O_CLOEXEC));
    }
    if (!strcmp(name, "fs-opath-reopen")) {
        fd = open(secret, O_PATH | O_CLOEXEC);
        if (fd < 0)
            return report("open the secret O_PATH", -1);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        return read_secret("reopen /proc/self/fd/N of an O_PATH descriptor", open(path, O_RDONLY | O_CLOEXEC));
    }
    if (!strcmp(name, "fs-openat2-beneath") || !strcmp(name, "fs-openat2-in-root")) {
        int beneath = !strcmp(name, "fs-openat2-beneath");
        int dirfd = open(getenv("HOME"), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
            return report("open $HOME O_PATH", -1);
        snprintf(path, sizeof path, "%s%s", beneath ? "" : "/", below_home());
        return read_secret(beneath ? "openat2(RESOLVE_BENEATH)" : "openat2(RESOLVE_IN_ROOT)",
                           (int)openat2_secret(dirfd, path, beneath ? RESOLVE_BENEATH : RESOLVE_IN_ROOT));
    }
    if (!strcmp(name, "fs-openat2-no-links"))
        return read_secret("openat2(RESOLVE_NO_SYMLINKS|NO_MAGICLINKS|NO_XDEV)",
                           (int)openat2_secret(AT_FDCWD, secret, RESOLVE_NO_SYMLINKS |
                                               RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV));
    if (!strcmp(name, "fs-read-inherited"))         /* opened by the test before sbx started */
        return read_secret("read an inherited descriptor", dup((int)param_num("FD")));
    if (!strcmp(name, "fs-read-old-hardlink"))      /* made by the test in $TMPDIR before the run */
        return read_secret("read a hard link that existed before the run",
                           open(param("HARDLINK"), O_RDONLY | O_CLOEXEC));
    if (!strcmp(name, "fs-read-shadow")) {
        char buf[4096];
        fd = open("/etc/shadow", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return report("open /etc/shadow", -1);
        long n = read_some(fd, buf, sizeof buf);
        if (n > 0 && !strstr(buf, "root:"))
            return blocked(0, "read /etc/shadow, but there is no root entry in it");
        return report("read /etc/shadow", n > 0 ? n : -1);
    }
    if (!strcmp(name, "fs-truncate-outside")) {
        struct stat st;
        const char *f = param("OUTSIDE");
        if (stat(f, &st) < 0)
            return report("stat", -1);
        return report("truncate a file outside the write grants (to its own size)", truncate(f, st.st_size));
    }
    if (!strcmp(name, "fs-chmod-outside")) {
        struct stat st;
        const char *f = param("OUTSIDE");
        if (stat(f, &st) < 0)
            return report("stat", -1);
        long r = chmod(f, 0600);
        chmod(f, st.st_mode & 07777);
        return report("chmod 0600 of a file outside the write grants (changed back)", r);
    }
    if (!strcmp(name, "fs-write-home") || !strcmp(name, "fs-write-etc")) {
        int home = !strcmp(name, "fs-write-home");
        scratch_path(path, sizeof path, home ? getenv("HOME") : "/etc", "sbx-escape-out");
        fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (fd >= 0)
            unlink(path);
        return report(home ? "create a file in $HOME" : "create a file in /etc", fd);
    }
    return -1;
}
