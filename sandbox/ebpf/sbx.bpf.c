// SPDX-License-Identifier: GPL-2.0
/* sbx.bpf.c: seccomp denial monitor and syscall tracer for a tracked task tree.
 *
 * A syscall that seccomp refuses (errno, trap, kill, notify reply) skips the
 * sys_enter tracepoint but still fires sys_exit.  So for tracked threads we
 * mark "in syscall" at sys_enter, and a sys_exit that finds no mark is a
 * denial.  The only other unmatched sys_exit is a new task's first return
 * from fork/clone (and a seeded task's in-flight syscall): such tasks start
 * "fresh" and their first unmatched exit is ignored.
 *
 *   sys_enter      mark; in trace mode count (arch, nr) and argument values
 *   sys_exit       match or report a denial (classified below); in trace mode
 *                  report the paths of a file syscall that succeeded, count
 *                  the TCP ports of bind and connect
 *   signal_generate  a SYS_SECCOMP SIGSYS: remember it, the denial is a trap
 *   sched_process_fork  a tracked parent's child is tracked, fresh
 *   sched_process_exec  exec from a non-leader thread: the tid changes; in
 *                       trace mode report the file executed
 *   sched_process_exit  kill-thread of a non-last thread never reaches
 *                       sys_exit: report it here; forget the task
 *
 * Each program exists as tp_btf (preferred) and raw_tp (fallback); userspace
 * loads one family.  Counters are in maps, independent of the ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "sbx.h"
#include "syscall_nr.h"        /* NR_<name>, generated from the syscall tables */

char LICENSE[] SEC("license") = "GPL";

#define X32_SYSCALL_BIT   0x40000000
#define TS_COMPAT         0x0002      /* arch/x86: 32-bit syscall in progress */
#define SECCOMP_MODE_DEAD 3           /* kernel/seccomp.c: set by kill actions */
#define SYS_SECCOMP       1           /* si_code of a seccomp SIGSYS */
#define SIGSYS            31
#define PF_IO_WORKER      0x00000010
#define PF_KTHREAD        0x00200000
#define MAX_ERRNO         4095
#define FILTER_DEPTH      8           /* listeners looked for in the chain */
#define E2BIG             7
#define AT_FDCWD          -100
#define O_WRONLY_CREAT_TRUNC 0x241    /* what creat() opens with */
#define AF_UNIX           1
#define AF_INET           2
#define AF_INET6          10
#define SOCK_STREAM       1
#define S_IFMT            00170000
#define S_IFSOCK          0140000


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct sbx_task);
} sbx_tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sbx_config);
} sbx_cfg SEC(".maps");

/* cgroup v2 id -> unused; sbx_config.reserved holds the bitmask of levels. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u32);
} sbx_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sbx_denial_key);
	__type(value, __u64);
} sbx_denials SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct sbx_call_key);
	__type(value, __u64);
} sbx_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct sbx_call_key);
	__type(value, struct sbx_argspec);
} sbx_argspec SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct sbx_arg_key);
	__type(value, __u64);
} sbx_argvals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SBX_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} sbx_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} sbx_events SEC(".maps");

/* Trace mode: where a path event is put together (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sbx_path_event);
} sbx_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sbx_port_key);
	__type(value, __u64);
} sbx_ports SEC(".maps");

static __always_inline void stat_add(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&sbx_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* Add one to map[key]; a full map is itself counted, never silent. */
static __always_inline void count_key(void *map, void *key, __u32 full_stat)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(map, key);

	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	if (bpf_map_update_elem(map, key, &one, BPF_NOEXIST) == 0)
		return;
	v = bpf_map_lookup_elem(map, key);  /* another CPU inserted it first */
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		stat_add(full_stat);
}

static __always_inline struct sbx_config *get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sbx_cfg, &zero);
}

/* Is the current task in one of the tracked cgroups (or below one)? */
static __always_inline bool in_tracked_cgroup(__u32 levels)
{
	for (int level = 0; level < 16; level++) {
		if (!(levels & (1u << level)))
			continue;
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		if (id && bpf_map_lookup_elem(&sbx_cgroups, &id))
			return true;
	}
	return false;
}

/* Start tracking the current task because of its cgroup. */
static __always_inline struct sbx_task *adopt(__u32 tid, __u64 pid_tgid,
					      struct sbx_config *cfg)
{
	struct sbx_task t = {};

	if (!cfg || !(cfg->flags & SBX_CFG_CGROUP) || !in_tracked_cgroup(cfg->reserved))
		return NULL;
	t.tgid = pid_tgid >> 32;
	if (bpf_map_update_elem(&sbx_tasks, &tid, &t, BPF_NOEXIST) == -E2BIG)
		stat_add(SBX_STAT_TASKS_FULL);
	return bpf_map_lookup_elem(&sbx_tasks, &tid);
}

/* Architecture of the syscall in progress; strips the x32 bit from *nr. */
static __always_inline __u32 syscall_arch(struct task_struct *task, __s32 *nr)
{
	if (BPF_CORE_READ(task, thread_info.status) & TS_COMPAT)
		return SBX_ARCH_I386;
	if (*nr & X32_SYSCALL_BIT) {
		*nr &= ~X32_SYSCALL_BIT;
		return SBX_ARCH_X32;
	}
	return SBX_ARCH_X86_64;
}

/* The six syscall arguments as the syscall sees them. */
static __always_inline void read_args(struct pt_regs *regs, __u32 arch, __u64 *args)
{
	struct pt_regs r = {};

	bpf_probe_read_kernel(&r, sizeof(r), regs);
	if (arch == SBX_ARCH_I386) {
		args[0] = (__u32)r.bx;
		args[1] = (__u32)r.cx;
		args[2] = (__u32)r.dx;
		args[3] = (__u32)r.si;
		args[4] = (__u32)r.di;
		args[5] = (__u32)r.bp;
	} else {
		args[0] = r.di;
		args[1] = r.si;
		args[2] = r.dx;
		args[3] = r.r10;
		args[4] = r.r8;
		args[5] = r.r9;
	}
}

/* Sum of next_id over the user-notif listeners in the current filter chain. */
static __always_inline __u64 notif_ids(struct seccomp_filter *f, __u32 *has_notif)
{
	__u64 sum = 0;

	*has_notif = 0;
	for (int i = 0; i < FILTER_DEPTH && f; i++) {
		struct notification *n = BPF_CORE_READ(f, notif);

		if (n) {
			*has_notif = 1;
			sum += BPF_CORE_READ(n, next_id);
		}
		f = BPF_CORE_READ(f, prev);
	}
	return sum;
}

/* At a matched sys_exit: remember the listeners' state, to tell a notify
 * reply from an errno at the next unmatched exit. */
static __always_inline void snapshot_notif(struct sbx_task *t)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct seccomp_filter *f = BPF_CORE_READ(task, seccomp.filter);

	if ((__u64)f == t->filter && !t->has_notif)
		return;
	t->filter = (__u64)f;
	t->notif_seen = notif_ids(f, &t->has_notif);
}

/* Did a listener in the chain receive a notification since the snapshot? */
static __always_inline bool notified(struct task_struct *task, struct sbx_task *t)
{
	struct seccomp_filter *f = BPF_CORE_READ(task, seccomp.filter);
	__u32 has_notif;
	__u64 sum = notif_ids(f, &has_notif);
	bool advanced = has_notif && sum != t->notif_seen;

	t->filter = (__u64)f;
	t->has_notif = has_notif;
	t->notif_seen = sum;
	return advanced;
}

static __always_inline void emit(struct sbx_event *src)
{
	struct sbx_event *e = bpf_ringbuf_reserve(&sbx_events, sizeof(*e), 0);

	if (!e) {
		stat_add(SBX_STAT_DROPPED);
		return;
	}
	__builtin_memcpy(e, src, sizeof(*e));
	bpf_ringbuf_submit(e, 0);
	stat_add(SBX_STAT_EVENTS);
}

/* Classify, count and report one denied syscall of the current task. */
static __always_inline void report_denial(struct pt_regs *regs, long ret,
					  struct sbx_task *t, __u64 pid_tgid)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct sbx_event ev = {};
	struct sbx_denial_key dk = {};
	__s32 raw_nr = BPF_CORE_READ(regs, orig_ax);
	__s32 nr = raw_nr;
	__u32 arch = syscall_arch(task, &nr);

	ev.errno_val = -1;
	if (BPF_CORE_READ(task, seccomp.mode) == SECCOMP_MODE_DEAD) {
		ev.action = SBX_ACTION_KILL;
		ev.signal = SIGSYS;
		t->kill_reported = 1;
	} else if (t->sigsys_pending && t->sigsys_nr == raw_nr) {
		ev.action = SBX_ACTION_TRAP;
		ev.signal = SIGSYS;
		ev.errno_val = t->sigsys_errno;
	} else if (notified(task, t)) {
		ev.action = SBX_ACTION_NOTIFY;
		if (ret >= -MAX_ERRNO && ret < 0)
			ev.errno_val = -ret;
	} else if (ret >= -MAX_ERRNO && ret <= 0) {
		ev.action = SBX_ACTION_ERRNO;
		ev.errno_val = -ret;
	}
	t->sigsys_pending = 0;

	dk.arch = arch;
	dk.nr = nr;
	dk.action = ev.action;
	count_key(&sbx_denials, &dk, SBX_STAT_DENIAL_KEYS);

	ev.time_ns = bpf_ktime_get_ns();
	ev.kind = SBX_EVENT_DENIAL;
	ev.pid = pid_tgid >> 32;
	ev.tid = (__u32)pid_tgid;
	ev.arch = arch;
	ev.nr = nr;
	ev.ret = ret;
	ev.cgroup_id = bpf_get_current_cgroup_id();
	read_args(regs, arch, ev.args);
	bpf_get_current_comm(ev.comm, sizeof(ev.comm));
	emit(&ev);
}

/* -- trace mode: paths and ports ------------------------------------------- */

/* The file behind descriptor *fd* of *task*, or NULL. */
static __always_inline struct file *task_file(struct task_struct *task, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *f = NULL;

	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

struct walk {
	struct mount *m;
	struct dentry *d;
	char *buf;
	__u32 off;
	int done;            /* bytes used at the root; -1 while walking or on failure */
};

/* One step up from w->d: a name, or a mount crossing (bpf_loop callback: the
 * verifier checks it once, not once per step). */
static long walk_step(__u32 i, struct walk *w)
{
	struct dentry *d = w->d, *parent = BPF_CORE_READ(d, d_parent);
	struct mount *m = w->m;
	long n;

	if (d == BPF_CORE_READ(m, mnt.mnt_root) || d == parent) {
		struct mount *up = BPF_CORE_READ(m, mnt_parent);

		if (up == m || !up) {
			w->done = w->off ? w->off : 1;   /* "/": one NUL */
			return 1;
		}
		w->d = BPF_CORE_READ(m, mnt_mountpoint);
		w->m = up;
		return 0;
	}
	if (w->off > SBX_BASE_LEN - SBX_NAME_LEN)
		return 1;
	n = bpf_probe_read_kernel_str(w->buf + w->off, SBX_NAME_LEN, BPF_CORE_READ(d, d_name.name));
	if (n <= 0)
		return 1;
	w->off += n;
	w->d = parent;
	return 0;
}

/* Write the names of the directory (mnt, dentry) leaf first into buf, each
 * NUL-terminated, up to the root of the mount tree.  Returns the bytes used,
 * or -1 if the walk could not reach the root within its limits. */
static __always_inline int walk_path(struct vfsmount *vfsmnt, struct dentry *d, char *buf)
{
	struct walk w = {
		.m = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt),
		.d = d, .buf = buf, .off = 0, .done = -1,
	};

	bpf_loop(SBX_BASE_DEPTH, walk_step, &w, 0);
	return w.done;
}

/* The directory a relative path given with *dirfd* starts from, into base. */
static __always_inline int read_base(struct task_struct *task, int dirfd, char *base)
{
	if (dirfd == AT_FDCWD)
		return walk_path(BPF_CORE_READ(task, fs, pwd.mnt),
				 BPF_CORE_READ(task, fs, pwd.dentry), base);
	struct file *f = task_file(task, dirfd);

	if (!f)
		return -1;
	return walk_path(BPF_CORE_READ(f, f_path.mnt), BPF_CORE_READ(f, f_path.dentry), base);
}

/* Read a user path (and its base when relative); returns status bits. */
static __always_inline __u32 read_path(struct task_struct *task, __u64 uptr, int dirfd,
				       char *path, __u16 *len, char *base, __u16 *blen,
				       __u32 cut, __u32 bad)
{
	long n = bpf_probe_read_user_str(path, SBX_PATH_LEN, (void *)uptr);
	int b;

	if (n <= 0)
		return bad;
	*len = n;
	if (path[0] == '/')
		return n == SBX_PATH_LEN ? cut : 0;
	b = read_base(task, dirfd, base);
	if (b < 0)
		return bad;
	*blen = b;
	return n == SBX_PATH_LEN ? cut : 0;
}

/* Count a TCP port of bind/connect: AF_INET/AF_INET6 addresses on stream sockets. */
static __always_inline void count_port(struct task_struct *task, __u64 *args, __u32 op)
{
	struct sbx_port_key pk = {};
	__u16 family = 0, port = 0;
	struct file *f;
	struct socket *sock;

	if (bpf_probe_read_user(&family, sizeof(family), (void *)args[1]) ||
	    (family != AF_INET && family != AF_INET6))
		return;
	f = task_file(task, (int)args[0]);
	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return;
	sock = BPF_CORE_READ(f, private_data);
	if (!sock || BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return;
	if (bpf_probe_read_user(&port, sizeof(port), (void *)(args[1] + 2)))
		return;
	pk.op = op;
	pk.port = bpf_ntohs(port);
	count_key(&sbx_ports, &pk, SBX_STAT_PORT_KEYS);
}

/* Where each file syscall keeps its paths: path1's dirfd and pointer, path2's,
 * and the flags argument.  Returns false for other syscalls. */
static __always_inline bool path_args(__s32 nr, __u64 *a, int *d1, __u64 *p1, int *d2,
				      __u64 *p2, __u64 *flags)
{
	*d1 = *d2 = AT_FDCWD;
	*p2 = 0;
	*flags = 0;
	switch (nr) {
	case NR_open:
		*p1 = a[0]; *flags = a[1]; return true;
	case NR_creat:
		*p1 = a[0]; *flags = O_WRONLY_CREAT_TRUNC; return true;
	case NR_openat:
		*d1 = a[0]; *p1 = a[1]; *flags = a[2]; return true;
	case NR_openat2:                      /* struct open_how: flags first */
		*d1 = a[0]; *p1 = a[1];
		if (bpf_probe_read_user(flags, sizeof(*flags), (void *)a[2]))
			*flags = 0;
		return true;
	case NR_mkdir: case NR_rmdir: case NR_unlink: case NR_truncate: case NR_chdir:
		*p1 = a[0]; return true;
	case NR_mknod:
		*p1 = a[0]; *flags = a[1]; return true;
	case NR_mkdirat:
		*d1 = a[0]; *p1 = a[1]; return true;
	case NR_mknodat: case NR_unlinkat:
		*d1 = a[0]; *p1 = a[1]; *flags = a[2]; return true;
	case NR_rename: case NR_link:
		*p1 = a[0]; *p2 = a[1]; return true;
	case NR_renameat: case NR_renameat2: case NR_linkat:
		*d1 = a[0]; *p1 = a[1]; *d2 = a[2]; *p2 = a[3];
		*flags = nr == NR_renameat ? 0 : a[4];
		return true;
	case NR_symlink:                      /* the new link; its target needs no right */
		*p1 = a[1]; return true;
	case NR_symlinkat:
		*d1 = a[1]; *p1 = a[2]; return true;
	}
	return false;
}

/* The event of the current task's file syscall in the scratch buffer, header set. */
static __always_inline struct sbx_path_event *start_event(__u64 pid_tgid, __s32 nr, long ret)
{
	__u32 zero = 0;
	struct sbx_path_event *e = bpf_map_lookup_elem(&sbx_scratch, &zero);

	if (!e)
		return NULL;
	e->time_ns = bpf_ktime_get_ns();
	e->kind = SBX_EVENT_PATH;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->nr = nr;
	e->ret = ret;
	e->flags = 0;
	e->dirfd1 = e->dirfd2 = AT_FDCWD;
	e->len1 = e->len2 = e->blen1 = e->blen2 = 0;
	e->status = 0;
	return e;
}

/* Send the event, up to the end of its last buffer used. */
static __always_inline void send_event(struct sbx_path_event *e)
{
	__u64 size;

	if (e->blen2)
		size = offsetof(struct sbx_path_event, base2) + e->blen2;
	else if (e->len2)
		size = offsetof(struct sbx_path_event, path2) + e->len2;
	else if (e->blen1)
		size = offsetof(struct sbx_path_event, base1) + e->blen1;
	else
		size = offsetof(struct sbx_path_event, path1) + e->len1;
	if (size > sizeof(*e))
		size = sizeof(*e);
	if (bpf_ringbuf_output(&sbx_events, e, size, 0))
		stat_add(SBX_STAT_PATHS_LOST);
	else
		stat_add(SBX_STAT_EVENTS);
}

/* sys_exit of a tracked x86_64 syscall: a file syscall that succeeded reports
 * its paths, bind and connect count their TCP port whatever the result
 * (Landlock decides before the call can fail).  Read at sys_exit, not
 * sys_enter: the kernel has copied the strings by then, so their pages are
 * present, and bpf_probe_read_user cannot fault a page in (a string literal
 * in a program's read-only data often is not, at sys_enter).  The argument
 * registers are as the call found them (pt_regs is saved at entry). */
static __always_inline void trace_paths(struct pt_regs *regs, __s32 nr, long ret, __u64 pid_tgid)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct sbx_path_event *e;
	__u64 args[6], p1, p2, flags;
	int d1, d2;

	read_args(regs, SBX_ARCH_X86_64, args);
	if (nr == NR_bind || nr == NR_connect) {
		__u16 family = 0;

		count_port(task, args, nr == NR_connect);
		/* bind of a Unix socket makes a file: report its path */
		if (nr == NR_connect || ret < 0 ||
		    bpf_probe_read_user(&family, sizeof(family), (void *)args[1]) ||
		    family != AF_UNIX)
			return;
		d1 = d2 = AT_FDCWD;
		p1 = args[1] + 2;
		p2 = flags = 0;
	} else if (ret < 0 || !path_args(nr, args, &d1, &p1, &d2, &p2, &flags)) {
		return;
	}
	e = start_event(pid_tgid, nr, ret);
	if (!e)
		return;
	e->flags = flags;
	e->dirfd1 = d1;
	e->dirfd2 = d2;
	e->status = read_path(task, p1, d1, e->path1, &e->len1, e->base1, &e->blen1,
			      SBX_PATH_CUT1, SBX_PATH_BAD1);
	if (nr == NR_bind && e->len1 <= 1 && !(e->status & SBX_PATH_BAD1))
		return;                       /* an abstract Unix socket: no file */
	if (p2) {
		if (e->blen1 && d2 == d1) {   /* the same base: userspace takes base1 */
			long n = bpf_probe_read_user_str(e->path2, SBX_PATH_LEN, (void *)p2);

			if (n <= 0)
				e->status |= SBX_PATH_BAD2;
			else
				e->len2 = n;
			if (n == SBX_PATH_LEN)
				e->status |= SBX_PATH_CUT2;
		} else {
			e->status |= read_path(task, p2, d2, e->path2, &e->len2, e->base2,
					       &e->blen2, SBX_PATH_CUT2, SBX_PATH_BAD2);
		}
	}
	send_event(e);
}

/* sched_process_exec: the file the task now runs, as execve named it (the
 * kernel's copy of the name; relative to the cwd when relative).  Through a
 * descriptor (/dev/fd/N, closed on exec by now): the file the kernel loaded,
 * which for a script is its interpreter. */
static __always_inline void trace_exec(struct task_struct *task, struct linux_binprm *bprm)
{
	struct sbx_path_event *e = start_event(bpf_get_current_pid_tgid(), NR_execve, 0);
	const char *name = BPF_CORE_READ(bprm, filename);
	long n;

	if (!e)
		return;
	n = bpf_probe_read_kernel_str(e->path1, SBX_PATH_LEN, name);
	if (n <= 0) {
		e->status = SBX_PATH_BAD1;
	} else if (n > 8 && e->path1[0] == '/' && e->path1[1] == 'd' && e->path1[2] == 'e' &&
		   e->path1[3] == 'v' && e->path1[4] == '/' && e->path1[5] == 'f' &&
		   e->path1[6] == 'd' && e->path1[7] == '/') {
		int b = walk_path(BPF_CORE_READ(bprm, file, f_path.mnt),
				  BPF_CORE_READ(bprm, file, f_path.dentry), e->base1);

		e->path1[0] = 0;
		e->len1 = 1;
		if (b < 0)
			e->status = SBX_PATH_BAD1;
		else
			e->blen1 = b;
	} else {
		e->len1 = n;
		if (n == SBX_PATH_LEN)
			e->status = SBX_PATH_CUT1;
		if (e->path1[0] != '/') {
			int b = read_base(task, AT_FDCWD, e->base1);

			if (b < 0)
				e->status |= SBX_PATH_BAD1;
			else
				e->blen1 = b;
		}
	}
	send_event(e);
}

/* Trace mode: count the call and the listed argument values. */
static __always_inline void trace_call(struct pt_regs *regs, long id, __u32 flags)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct sbx_call_key ck = {};
	struct sbx_arg_key ak = {};
	struct sbx_argspec *spec;
	__u64 args[6];
	__s32 nr = id;

	ck.arch = syscall_arch(task, &nr);
	ck.nr = nr;
	if (flags & SBX_CFG_CALLS)
		count_key(&sbx_calls, &ck, SBX_STAT_CALL_KEYS);
	if (!(flags & SBX_CFG_ARGS))
		return;
	spec = bpf_map_lookup_elem(&sbx_argspec, &ck);
	if (!spec)
		return;
	read_args(regs, ck.arch, args);
	ak.arch = ck.arch;
	ak.nr = nr;
	for (int i = 0; i < 6; i++) {
		if (!(spec->argmask & (1u << i)))
			continue;
		ak.argidx = i;
		ak.value = args[i] & spec->mask[i];
		count_key(&sbx_argvals, &ak, SBX_STAT_ARG_KEYS);
	}
}

static __always_inline int on_sys_enter(struct pt_regs *regs, long id)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct sbx_task *t = bpf_map_lookup_elem(&sbx_tasks, &tid);
	struct sbx_config *cfg;

	if (!t) {
		t = adopt(tid, pid_tgid, get_config());
		if (!t)
			return 0;
	}
	t->in_syscall = 1;
	t->fresh = 0;
	cfg = get_config();
	if (cfg && (cfg->flags & (SBX_CFG_CALLS | SBX_CFG_ARGS)))
		trace_call(regs, id, cfg->flags);
	return 0;
}

static __always_inline int on_sys_exit(struct pt_regs *regs, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct sbx_task *t = bpf_map_lookup_elem(&sbx_tasks, &tid);
	struct sbx_config *cfg;
	struct task_struct *task;

	if (!t) {
		/* First seen leaving a syscall entered before adoption. */
		adopt(tid, pid_tgid, get_config());
		return 0;
	}
	cfg = get_config();
	if (t->in_syscall && cfg && (cfg->flags & SBX_CFG_PATHS)) {
		struct task_struct *cur = (void *)bpf_get_current_task();
		__s32 nr = BPF_CORE_READ(regs, orig_ax);

		if (syscall_arch(cur, &nr) == SBX_ARCH_X86_64)
			trace_paths(regs, nr, ret, pid_tgid);
	}
	if (!cfg || !(cfg->flags & SBX_CFG_DENIALS)) {
		t->in_syscall = 0;
		return 0;
	}
	if (t->in_syscall) {
		t->in_syscall = 0;
		t->sigsys_pending = 0;
		snapshot_notif(t);
		return 0;
	}
	if (t->fresh) {
		t->fresh = 0;
		return 0;
	}
	/* Without a filter nothing can be denied (a ptrace SYSEMU skip, say). */
	task = (void *)bpf_get_current_task();
	if (BPF_CORE_READ(task, seccomp.mode) == 0)
		return 0;
	report_denial(regs, ret, t, pid_tgid);
	return 0;
}

static __always_inline int on_signal(int sig, struct kernel_siginfo *info,
				     struct task_struct *task)
{
	struct sbx_task *t;
	__u32 tid;

	if (sig != SIGSYS || (__u64)info < 4096)
		return 0;
	tid = BPF_CORE_READ(task, pid);
	t = bpf_map_lookup_elem(&sbx_tasks, &tid);
	if (!t || BPF_CORE_READ(info, si_code) != SYS_SECCOMP)
		return 0;
	t->sigsys_pending = 1;
	t->sigsys_nr = BPF_CORE_READ(info, _sifields._sigsys._syscall);
	t->sigsys_errno = BPF_CORE_READ(info, si_errno);
	return 0;
}

static __always_inline int on_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 ptid = BPF_CORE_READ(parent, pid);
	__u32 ctid = BPF_CORE_READ(child, pid);
	struct sbx_task *p, c = {};

	if (BPF_CORE_READ(child, flags) & (PF_KTHREAD | PF_IO_WORKER))
		return 0;
	p = bpf_map_lookup_elem(&sbx_tasks, &ptid);
	if (!p) {
		struct sbx_config *cfg = get_config();

		if (!cfg || !(cfg->flags & SBX_CFG_CGROUP) || !in_tracked_cgroup(cfg->reserved))
			return 0;
	} else {
		c.filter = p->filter;
		c.has_notif = p->has_notif;
		c.notif_seen = p->notif_seen;
	}
	c.tgid = BPF_CORE_READ(child, tgid);
	c.fresh = 1;
	if (bpf_map_update_elem(&sbx_tasks, &ctid, &c, BPF_ANY))
		stat_add(SBX_STAT_TASKS_FULL);
	return 0;
}

/* An exec: report the file in trace mode.  From a non-leader thread, the
 * thread takes the leader's pid. */
static __always_inline int on_exec(struct task_struct *task, pid_t old_pid,
				   struct linux_binprm *bprm)
{
	__u32 tid = BPF_CORE_READ(task, pid);
	__u32 old = old_pid;
	struct sbx_task *t, copy;
	struct sbx_config *cfg;

	t = bpf_map_lookup_elem(&sbx_tasks, &old);
	if (!t)
		return 0;
	cfg = get_config();
	if (cfg && (cfg->flags & SBX_CFG_PATHS))
		trace_exec(task, bprm);
	if (old == tid)
		return 0;
	__builtin_memcpy(&copy, t, sizeof(copy));
	copy.in_syscall = 1;  /* its execve has not returned yet */
	if (bpf_map_update_elem(&sbx_tasks, &tid, &copy, BPF_ANY))
		stat_add(SBX_STAT_TASKS_FULL);
	bpf_map_delete_elem(&sbx_tasks, &old);
	return 0;
}

static __always_inline int on_task_exit(struct task_struct *task)
{
	__u32 tid = BPF_CORE_READ(task, pid);
	struct sbx_task *t = bpf_map_lookup_elem(&sbx_tasks, &tid);
	struct sbx_config *cfg = get_config();

	if (!t)
		return 0;
	/* kill-thread with other threads alive: do_exit() straight from
	 * seccomp, no sys_exit.  The registers still hold the syscall. */
	if (cfg && (cfg->flags & SBX_CFG_DENIALS) && !t->kill_reported &&
	    BPF_CORE_READ(task, seccomp.mode) == SECCOMP_MODE_DEAD) {
		struct pt_regs *regs = (void *)bpf_task_pt_regs(bpf_get_current_task_btf());

		report_denial(regs, BPF_CORE_READ(regs, ax), t, bpf_get_current_pid_tgid());
	}
	bpf_map_delete_elem(&sbx_tasks, &tid);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sbx_enter_btf, struct pt_regs *regs, long id)
{
	return on_sys_enter(regs, id);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sbx_exit_btf, struct pt_regs *regs, long ret)
{
	return on_sys_exit(regs, ret);
}

SEC("tp_btf/signal_generate")
int BPF_PROG(sbx_signal_btf, int sig, struct kernel_siginfo *info, struct task_struct *task)
{
	return on_signal(sig, info, task);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sbx_fork_btf, struct task_struct *parent, struct task_struct *child)
{
	return on_fork(parent, child);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sbx_exec_btf, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	return on_exec(task, old_pid, bprm);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sbx_gone_btf, struct task_struct *task)
{
	return on_task_exit(task);
}

SEC("raw_tp/sys_enter")
int BPF_PROG(sbx_enter_raw, struct pt_regs *regs, long id)
{
	return on_sys_enter(regs, id);
}

SEC("raw_tp/sys_exit")
int BPF_PROG(sbx_exit_raw, struct pt_regs *regs, long ret)
{
	return on_sys_exit(regs, ret);
}

SEC("raw_tp/signal_generate")
int BPF_PROG(sbx_signal_raw, int sig, struct kernel_siginfo *info, struct task_struct *task)
{
	return on_signal(sig, info, task);
}

SEC("raw_tp/sched_process_fork")
int BPF_PROG(sbx_fork_raw, struct task_struct *parent, struct task_struct *child)
{
	return on_fork(parent, child);
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(sbx_exec_raw, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	return on_exec(task, old_pid, bprm);
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(sbx_gone_raw, struct task_struct *task)
{
	return on_task_exit(task);
}
