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
 *   sys_exit       match or report a denial (classified below)
 *   signal_generate  a SYS_SECCOMP SIGSYS: remember it, the denial is a trap
 *   sched_process_fork  a tracked parent's child is tracked, fresh
 *   sched_process_exec  exec from a non-leader thread: the tid changes
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
#include "sbx.h"

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

/* exec from a non-leader thread: the thread takes the leader's pid. */
static __always_inline int on_exec(struct task_struct *task, pid_t old_pid)
{
	__u32 tid = BPF_CORE_READ(task, pid);
	__u32 old = old_pid;
	struct sbx_task *t, copy;

	if (old == tid)
		return 0;
	t = bpf_map_lookup_elem(&sbx_tasks, &old);
	if (!t)
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
int BPF_PROG(sbx_exec_btf, struct task_struct *task, pid_t old_pid)
{
	return on_exec(task, old_pid);
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
int BPF_PROG(sbx_exec_raw, struct task_struct *task, pid_t old_pid)
{
	return on_exec(task, old_pid);
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(sbx_gone_raw, struct task_struct *task)
{
	return on_task_exit(task);
}
