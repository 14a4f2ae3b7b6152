/*
 * What uid 0 can do without any capability, and what only capabilities give:
 * a confined root command must have neither. Parameters: SBX_ESCAPE_LOOPDEV
 * (a loop device the test bound to a scratch file that starts with
 * "SBX-LOOP-MARKER\n"), SBX_ESCAPE_SUIDFILE (a file of the running user that the
 * test created in its temporary directory), SBX_ESCAPE_CHOWNFILE (root's file in
 * a directory of root's that no profile lets the command write).
 */
#include "escape.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

static int cap_eff(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long eff = 0;
    if (!f)
        return report("open /proc/self/status", -1);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "CapEff:", 7))
            eff = strtoull(line + 7, NULL, 16);
    fclose(f);
    /* SBX_ESCAPE_CAPS_GRANTED: the mask the profile's capabilities: keeps */
    unsigned long long granted = strtoull(param("CAPS_GRANTED"), NULL, 0);
    if (eff & ~granted) {
        escaped = 1;
        printf("ESCAPED CapEff=%016llx (granted %016llx)\n", eff, granted);
        fflush(stdout);
        return 0;
    }
    return blocked(0, "CapEff holds no capability beyond what the profile grants");
}

int root_attempt(const char *name)
{
    char path[512];
    int fd;

    if (!strcmp(name, "cap-eff"))
        return cap_eff();
    if (!strcmp(name, "mknod-block")) {
        scratch_path(path, sizeof path, tmpdir(), "sbx-escape-blk");
        long r = mknod(path, S_IFBLK | 0600, makedev(7, 0));
        if (r == 0)
            unlink(path);
        return report("mknod(block 7:0) in $TMPDIR", r);
    }
    if (!strcmp(name, "mknod-char")) {
        scratch_path(path, sizeof path, tmpdir(), "sbx-escape-chr");
        long r = mknod(path, S_IFCHR | 0600, makedev(1, 3));
        if (r == 0)
            unlink(path);
        return report("mknod(char 1:3) in $TMPDIR", r);
    }
    if (!strcmp(name, "core-pattern-open")) {
        /* never written: only whether it could be (a "|prog" pattern runs as full root) */
        fd = open("/proc/sys/kernel/core_pattern", O_WRONLY | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        return report("open /proc/sys/kernel/core_pattern O_WRONLY (closed unwritten)", fd);
    }
    if (!strcmp(name, "blockdev-rdwr")) {
        fd = open(param("LOOPDEV"), O_RDWR | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        return report("open a root-owned block device O_RDWR (closed unwritten)", fd);
    }
    if (!strcmp(name, "blockdev-read")) {
        /* a raw disk holds every file on it, denied ones included: its first bytes are
           the test's marker */
        char buf[16];
        long r = -1;
        fd = open(param("LOOPDEV"), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            r = read(fd, buf, sizeof buf);
            if (r >= 0 && (r != (long) sizeof buf || memcmp(buf, "SBX-LOOP-MARKER\n", 16)))
                return blocked(0, "read the block device but not the marker");
            close(fd);
        }
        return report("read a root-owned block device (its marker)", r);
    }
    if (!strcmp(name, "chown-foreign")) {
        /* Landlock has no right for owners: with CAP_CHOWN, any file one can name (here
           root's, in a directory no profile lets the command write) could be handed to
           a user outside the sandbox (/etc/passwd, to one's own account); given back */
        const char *f = param("CHOWNFILE");
        long r = chown(f, 65534, -1);
        if (r == 0)
            chown(f, 0, -1);
        return report("chown of root's file outside the writable places to nobody", r);
    }
    if (!strcmp(name, "chmod-setuid")) {
        const char *f = param("SUIDFILE");
        long r = chmod(f, 04755);
        if (r == 0)
            chmod(f, 0755);
        return report("chmod 04755 of own file", r);
    }
    if (!strcmp(name, "sock-packet")) {
        /* the kernel turns (AF_INET, SOCK_PACKET) into an AF_PACKET socket */
        fd = socket(AF_INET, SOCK_PACKET, htons(ETH_P_ALL));
        if (fd >= 0)
            close(fd);
        return report("socket(AF_INET, SOCK_PACKET, ETH_P_ALL)", fd);
    }
    return -1;
}
