/*
 * probe: run syscalls under a real seccomp filter and print what the kernel did.
 *
 *   probe FILTER            read "MODE NR A0 A1 A2 A3 A4 A5" lines on stdin and
 *                           print one result line per input line:
 *                             ret N             the raw return value (-errno)
 *                             trap DATA NR ARCH SIGSYS with si_errno, si_syscall, si_arch
 *                             signal N          the child died by signal N
 *                             error MESSAGE     the probe itself failed
 *   probe --check FILTER... try to install each filter; print "ok" or "errno N"
 *   probe --ip              the instruction pointers seccomp sees for MODE 64
 *                           and MODE 32 (the address after each trap instruction)
 *
 * FILTER is a raw struct sock_filter array. MODE 64 uses the `syscall`
 * instruction with the full 64-bit rax = NR and rdi, rsi, rdx, r10, r8, r9 =
 * args; MODE 32 uses `int $0x80` with eax = NR and ebx, ecx, edx, esi, edi,
 * ebp = the low 32 bits of the args. Numbers accept any strtoull base prefix.
 *
 * Each line runs in a fresh forked child: it sets no_new_privs, installs a
 * SIGSYS handler, installs the filter, makes the one syscall. Once the filter
 * is in place every syscall (write, exit...) is subject to it, so the child
 * reports through a shared anonymous mapping instead of a pipe, and if
 * exit_group is refused it ends itself with a trapping instruction. The
 * parent reads the first result the child recorded. Core dumps are disabled
 * (the filter's KILL actions would otherwise leave core files behind).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { NONE = 0, RET = 1, TRAP = 2, INSTALL_FAILED = 3, INSTALLED = 4 };

struct report {
	volatile int state;
	volatile long value;      /* RET: the return value; INSTALL_FAILED: errno */
	volatile int trap_errno;
	volatile int trap_syscall;
	volatile unsigned int trap_arch;
};

static struct report *shared;
static struct sock_fprog prog;

/* Addresses right after the trap instructions: seccomp_data.instruction_pointer. */
extern const char probe_ip64[], probe_ip32[];

static __attribute__((noreturn)) void die_quietly(void)
{
	long nr = SYS_exit_group;
	__asm__ volatile("syscall" : "+a"(nr) : "D"(0L) : "rcx", "r11", "memory");
	__builtin_trap();     /* exit_group was refused by the filter */
}

static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	if (shared->state == NONE) {
		shared->trap_errno = si->si_errno;
		shared->trap_syscall = si->si_syscall;
		shared->trap_arch = si->si_arch;
		shared->state = TRAP;
	}
	die_quietly();
}

static __attribute__((noinline)) long call64(unsigned long nr, const unsigned long *a)
{
	register unsigned long r10 __asm__("r10") = a[3];
	register unsigned long r8 __asm__("r8") = a[4];
	register unsigned long r9 __asm__("r9") = a[5];
	long ret;
	__asm__ volatile("syscall\n"
			 ".globl probe_ip64\n"
			 "probe_ip64:\n"
			 : "=a"(ret)
			 : "0"(nr), "D"(a[0]), "S"(a[1]), "d"(a[2]), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

static __attribute__((noinline)) long call32(unsigned long nr, const unsigned long *a)
{
	register const unsigned long *p __asm__("r12") = a;
	unsigned long ret;
	/* 32-bit moves zero the upper halves; rbx and rbp are saved around the
	 * call, below the red zone */
	__asm__ volatile("sub $128, %%rsp\n"
			 "push %%rbx\n"
			 "push %%rbp\n"
			 "movl 0(%%r12), %%ebx\n"
			 "movl 8(%%r12), %%ecx\n"
			 "movl 16(%%r12), %%edx\n"
			 "movl 24(%%r12), %%esi\n"
			 "movl 32(%%r12), %%edi\n"
			 "movl 40(%%r12), %%ebp\n"
			 "int $0x80\n"
			 ".globl probe_ip32\n"
			 "probe_ip32:\n"
			 "pop %%rbp\n"
			 "pop %%rbx\n"
			 "add $128, %%rsp\n"
			 : "=a"(ret)
			 : "0"(nr & 0xffffffffUL), "r"(p)
			 : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
	return (long)(int)ret;
}

/* The child's side: everything up to the filter, then the one syscall. */
static __attribute__((noreturn)) void child(int mode, unsigned long nr, const unsigned long *args)
{
	struct rlimit no_core = {0, 0};
	struct sigaction sa;

	setrlimit(RLIMIT_CORE, &no_core);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		shared->value = errno;
		shared->state = INSTALL_FAILED;
		_exit(1);
	}
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
		shared->value = errno;
		shared->state = INSTALL_FAILED;
		die_quietly();
	}
	if (mode == 0) {
		shared->state = INSTALLED;
		die_quietly();
	}
	long ret = mode == 64 ? call64(nr, args) : call32(nr, args);
	if (shared->state == NONE) {
		shared->value = ret;
		shared->state = RET;
	}
	die_quietly();
}

/* Fork a child for one syscall (mode 0: install only); print its outcome. */
static void run_one(int mode, unsigned long nr, const unsigned long *args)
{
	int status;
	memset((void *)shared, 0, sizeof(*shared));
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		printf("error fork: %s\n", strerror(errno));
		return;
	}
	if (pid == 0)
		child(mode, nr, args);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			printf("error waitpid: %s\n", strerror(errno));
			return;
		}
	}
	switch (shared->state) {
	case RET:
		printf("ret %ld\n", shared->value);
		return;
	case TRAP:
		printf("trap %d %d %u\n", shared->trap_errno, shared->trap_syscall, shared->trap_arch);
		return;
	case INSTALLED:
		printf("ok\n");
		return;
	case INSTALL_FAILED:
		printf(mode ? "error install: errno %ld\n" : "errno %ld\n", shared->value);
		return;
	}
	if (WIFSIGNALED(status))
		printf("signal %d\n", WTERMSIG(status));
	else
		printf("error child exited with status %d without a report\n", WEXITSTATUS(status));
}

static int load_filter(const char *path)
{
	static struct sock_filter insns[BPF_MAXINSNS + 1];
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "probe: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t n = fread(insns, 1, sizeof(insns), f);
	fclose(f);
	if (n % sizeof(struct sock_filter)) {
		fprintf(stderr, "probe: %s: %zu bytes is not a whole number of instructions\n", path, n);
		return -1;
	}
	prog.len = (unsigned short)(n / sizeof(struct sock_filter));
	prog.filter = insns;
	return 0;
}

static int run_lines(void)
{
	char line[512];
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long mode, nr, args[6];
		char *p = line, *end;
		unsigned long *fields[8] = {&mode, &nr, &args[0], &args[1], &args[2],
					    &args[3], &args[4], &args[5]};
		int i;
		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		for (i = 0; i < 8; i++) {
			errno = 0;
			*fields[i] = strtoull(p, &end, 0);
			if (end == p || errno)
				break;
			p = end;
		}
		if (i < 8 || (mode != 64 && mode != 32)) {
			printf("error bad input line: %s", line);
			continue;
		}
		run_one((int)mode, nr, args);
	}
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		perror("probe: mmap");
		return 2;
	}
	if (argc == 2 && !strcmp(argv[1], "--ip")) {
		printf("%lu %lu\n", (unsigned long)probe_ip64, (unsigned long)probe_ip32);
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "--check")) {
		for (int i = 2; i < argc; i++) {
			if (load_filter(argv[i]))
				return 2;
			run_one(0, 0, NULL);
		}
		fflush(stdout);
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: probe FILTER < lines | probe --check FILTER... | probe --ip\n");
		return 2;
	}
	if (load_filter(argv[1]))
		return 2;
	return run_lines();
}
