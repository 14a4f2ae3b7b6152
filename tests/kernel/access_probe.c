/* access_probe MODE PATH: check that PATH is readable, the way glibc's faccessat does.
 *
 * MODE "probe": call faccessat2 first and fall back to faccessat only when the
 * kernel answers ENOSYS (glibc 2.33+ sysdeps/unix/sysv/linux/faccessat.c), as a
 * program built against a newer C library does. MODE "legacy": faccessat only,
 * as the same program built against an older C library does.
 * Prints the syscall that answered and exits 0, or the error and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_faccessat2
#define SYS_faccessat2 439          /* x86_64 and the generic table: Linux 5.8 */
#endif

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "probe") != 0 && strcmp(argv[1], "legacy") != 0)) {
        fprintf(stderr, "usage: access_probe probe|legacy PATH\n");
        return 2;
    }
    if (strcmp(argv[1], "probe") == 0) {
        if (syscall(SYS_faccessat2, AT_FDCWD, argv[2], R_OK, 0) == 0) {
            puts("faccessat2");
            return 0;
        }
        if (errno != ENOSYS) {      /* only "the kernel has no such call" falls back */
            printf("faccessat2: %s\n", strerror(errno));
            return 1;
        }
    }
    if (syscall(SYS_faccessat, AT_FDCWD, argv[2], R_OK) == 0) {
        puts("faccessat");
        return 0;
    }
    printf("faccessat: %s\n", strerror(errno));
    return 1;
}
