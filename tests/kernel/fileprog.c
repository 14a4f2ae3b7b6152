/* A small program for sbx trace's file tests (tests/kernel/test_trace_files.py).
 *
 *   fileprog CONFIG OUTPUT [STEP...]
 *
 * Reads CONFIG ("greeting=WORD"), writes "WORD\n" to OUTPUT (created or
 * truncated) and reads it back; any failure there exits 1.  Then each STEP:
 *   try:PATH    create PATH; prints "PATH: ok" or "PATH: <errno name>"
 *   ops:DIR     every kind of file syscall sbx trace records (and the bind of a
 *               Unix socket), in DIR, through relative paths and directory
 *               descriptors; exits 2 on failure
 *   tcp:PORT    bind a TCP socket to 127.0.0.1:PORT, listen, connect to it;
 *               prints "tcp PORT: ok" or "tcp PORT: <errno name>"
 *   udp:PORT    bind a UDP socket to 127.0.0.1:PORT (Landlock ignores UDP)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static const char *err_name(int e)
{
	switch (e) {
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	default: return strerror(e);
	}
}

#define CHECK(call) do { if ((call) < 0) { \
	fprintf(stderr, "fileprog: %s: %s\n", #call, strerror(errno)); exit(2); } } while (0)

static void ops(const char *dir)
{
	struct open_how how = { .flags = O_RDONLY };
	int d, fd;

	CHECK(chdir(dir));
	CHECK(mkdir("made", 0755));                               /* mkdir, relative */
	CHECK(d = open("made", O_RDONLY | O_DIRECTORY));
	CHECK(fd = openat(d, "a.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644));  /* openat, dirfd */
	CHECK(write(fd, "a\n", 2));
	close(fd);
	CHECK(renameat2(d, "a.txt", AT_FDCWD, "b.txt", RENAME_NOREPLACE));  /* across dirs */
	CHECK(linkat(AT_FDCWD, "b.txt", d, "c.txt", 0));
	CHECK(symlinkat("c.txt", d, "d.link"));
	CHECK(mknodat(d, "fifo", S_IFIFO | 0644, 0));
	CHECK(truncate("b.txt", 0));
	CHECK(fd = syscall(SYS_openat2, d, "c.txt", &how, sizeof(how)));
	close(fd);
	CHECK(fd = creat("e.txt", 0644));
	close(fd);
	{
		struct sockaddr_un u = { .sun_family = AF_UNIX, .sun_path = "made/sock" };
		int s = socket(AF_UNIX, SOCK_STREAM, 0);

		CHECK(bind(s, (void *)&u, sizeof(u)));               /* a Unix socket's file */
		close(s);
	}
	CHECK(unlinkat(d, "sock", 0));
	CHECK(unlinkat(d, "d.link", 0));
	CHECK(unlinkat(d, "fifo", 0));
	CHECK(unlink("e.txt"));
	close(d);
}

static void tcp(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (void *)&a, sizeof(a)) < 0 || listen(s, 1) < 0)
		printf("tcp %d: bind %s\n", port, err_name(errno));
	else if (connect(c, (void *)&a, sizeof(a)) < 0)
		printf("tcp %d: connect %s\n", port, err_name(errno));
	else
		printf("tcp %d: ok\n", port);
	close(c);
	close(s);
}

static void udp(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	printf("udp %d: %s\n", port, bind(s, (void *)&a, sizeof(a)) < 0 ? err_name(errno) : "ok");
	close(s);
}

int main(int argc, char **argv)
{
	char conf[256] = "", back[256] = "";
	const char *word;
	FILE *f;

	if (argc < 3) {
		fprintf(stderr, "usage: fileprog CONFIG OUTPUT [STEP...]\n");
		return 1;
	}
	if (!(f = fopen(argv[1], "r")) || !fgets(conf, sizeof(conf), f) ||
	    strncmp(conf, "greeting=", 9) != 0) {
		perror(argv[1]);
		return 1;
	}
	fclose(f);
	word = conf + 9;
	if (!(f = fopen(argv[2], "w")) || fputs(word, f) < 0 || fclose(f) != 0) {
		perror(argv[2]);
		return 1;
	}
	if (!(f = fopen(argv[2], "r")) || !fgets(back, sizeof(back), f) || strcmp(back, word)) {
		perror(argv[2]);
		return 1;
	}
	fclose(f);
	for (int i = 3; i < argc; i++) {
		if (!strncmp(argv[i], "try:", 4)) {
			int fd = open(argv[i] + 4, O_WRONLY | O_CREAT | O_TRUNC, 0644);

			printf("%s: %s\n", argv[i] + 4, fd < 0 ? err_name(errno) : "ok");
			if (fd >= 0)
				close(fd);
		} else if (!strncmp(argv[i], "ops:", 4)) {
			ops(argv[i] + 4);
		} else if (!strncmp(argv[i], "tcp:", 4)) {
			tcp(atoi(argv[i] + 4));
		} else if (!strncmp(argv[i], "udp:", 4)) {
			udp(atoi(argv[i] + 4));
		}
	}
	fflush(stdout);
	return 0;
}
