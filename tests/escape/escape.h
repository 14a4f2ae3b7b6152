/*
 * Shared by the `escape` program's attempt families (escape_*.c).
 *
 * An attempt prints one line, as attack.c's do:
 *   ESCAPED <what> ...          the attack worked
 *   BLOCKED errno=<n> <NAME>    it failed with that errno (NONE: no errno, e.g. no capability held)
 *   OK <what>                   it did what it could; the verdict lies outside (a signal the
 *                               victim did or did not receive)
 * Parameters come from SBX_ESCAPE_* environment variables set by the test,
 * so that every attempt of a chain sees the same ones.
 */
#ifndef SBX_ESCAPE_H
#define SBX_ESCAPE_H
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

extern int escaped;                     /* an attempt in this image succeeded */

/* ret >= 0: ESCAPED, else BLOCKED with errno. */
int report(const char *what, long ret);
/* BLOCKED with an explicit errno (0 prints NONE). */
int blocked(int err, const char *why);
/* The value of SBX_ESCAPE_<name>; exits 65 with a message if unset (a broken test, not a verdict). */
const char *param(const char *name);
/* SBX_ESCAPE_<name> as a number. */
unsigned long param_num(const char *name);
/* Read up to len-1 bytes of fd into buf (NUL-terminated); -1 with errno on failure. */
long read_some(int fd, char *buf, size_t len);
/* $TMPDIR, or /tmp. */
const char *tmpdir(void);
/* A per-process name below dir: dir/prefix-PID. */
void scratch_path(char *out, size_t len, const char *dir, const char *prefix);
/* int $0x80 from 64-bit code (i386 entry point); returns -errno style results as -1 + errno. */
long int80(long nr, long a, long b, long c, long d);

/* Families: each returns -1 for a name it does not know. */
int reach_attempt(const char *name);
int root_attempt(const char *name);
int cache_attempt(const char *name);
int profile_attempt(const char *name);
int files_attempt(const char *name);

#endif
