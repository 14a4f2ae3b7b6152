/*
 * Syscall cost loop for `make bench`: installs a raw seccomp filter read from
 * a file (or none), then times one syscall in a tight loop.
 *
 *   loop FILTER|- CASE ITERATIONS [PATH]
 *   loop FILTER|- CASE SECONDSs [PATH]  (e.g. 10s: as many calls as fit in that time)
 *
 * CASE: getppid      allowed, reads no argument (the kernel's action cache
 *                    skips the filter when the filter allows it by number)
 *       syslog       syslog(SYSLOG_ACTION_SIZE_BUFFER): denied by Docker's
 *                    default profile (errno), harmless when not filtered
 *       personality  personality(0xffffffff), the query form: allowed by an
 *                    argument comparison, so the filter runs on every call
 *       openat       openat(AT_FDCWD, PATH, O_RDONLY) then close: what a
 *                    Landlock domain (applied before exec, see
 *                    bench/bench_landlock.py) adds to opening a file
 *
 * Prints "<ns per call> <first return value> <first errno>", and in the timed
 * form a fourth field: the number of calls made.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long call_getppid(void) { return syscall(SYS_getppid); }
static long call_syslog(void) { return syscall(SYS_syslog, 10, NULL, 0); }
static long call_personality(void) { return syscall(SYS_personality, 0xffffffffUL); }
static const char *open_path;
static long call_openat(void)
{
	long fd = syscall(SYS_openat, AT_FDCWD, open_path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		close((int)fd);
	return fd;
}

static void install(const char *path)
{
	static struct sock_filter insns[4096];
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	size_t n = fread(insns, sizeof(insns[0]), 4096, f);
	fclose(f);
	struct sock_fprog prog = { .len = (unsigned short)n, .filter = insns };
	if (n == 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
		fprintf(stderr, "cannot install %s (%zu insns): %s\n", path, n, strerror(errno));
		exit(2);
	}
}

static double elapsed_ns(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1e9 + (b->tv_nsec - a->tv_nsec);
}

/* Calls fn for *seconds*, reading the clock every 1024 calls (a vDSO call,
 * no syscall: the monitor sees only fn's calls). */
static int timed_loop(long (*fn)(void), long seconds)
{
	errno = 0;
	long first = fn();
	int first_errno = first == -1 ? errno : 0;
	long calls = 1;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do {
		for (int i = 0; i < 1024; i++)
			fn();
		calls += 1024;
		clock_gettime(CLOCK_MONOTONIC, &b);
	} while (elapsed_ns(&a, &b) < seconds * 1e9);
	printf("%.2f %ld %d %ld\n", elapsed_ns(&a, &b) / (calls - 1), first, first_errno, calls);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4 && !(argc == 5 && !strcmp(argv[2], "openat"))) {
		fprintf(stderr, "usage: %s FILTER|- getppid|syslog|personality ITERATIONS|SECONDSs\n"
			"       %s FILTER|- openat ITERATIONS|SECONDSs PATH\n", argv[0], argv[0]);
		return 2;
	}
	long (*fn)(void);
	if (!strcmp(argv[2], "getppid"))
		fn = call_getppid;
	else if (!strcmp(argv[2], "syslog"))
		fn = call_syslog;
	else if (!strcmp(argv[2], "personality"))
		fn = call_personality;
	else if (!strcmp(argv[2], "openat")) {
		fn = call_openat;
		open_path = argv[4];
	}
	else {
		fprintf(stderr, "unknown case %s\n", argv[2]);
		return 2;
	}
	char *end;
	long n = strtol(argv[3], &end, 10);
	int timed = *end == 's' && end[1] == 0;
	if (n <= 0 || (*end && !timed)) {
		fprintf(stderr, "ITERATIONS must be a positive number, or SECONDS followed by s\n");
		return 2;
	}
	if (strcmp(argv[1], "-"))
		install(argv[1]);
	if (timed)
		return timed_loop(fn, n);

	errno = 0;
	long first = fn();
	int first_errno = first == -1 ? errno : 0;
	for (long i = 0; i < n / 10; i++)       /* warm up */
		fn();
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		fn();
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = elapsed_ns(&a, &b) / n;
	printf("%.2f %ld %d\n", ns, first, first_errno);
	return 0;
}
