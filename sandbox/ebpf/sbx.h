/* Layouts shared by sbx.bpf.c and sandbox/ebpf/layout.py (which mirrors them with
 * the `struct` module).  Every struct is fixed-size, naturally aligned and has
 * explicit padding, so the Python format strings below each one are exact.
 * Change a layout here and in sandbox/ebpf/layout.py together.
 */
#ifndef SBX_H
#define SBX_H

/* Architectures, as reported in keys and events. */
#define SBX_ARCH_X86_64 0
#define SBX_ARCH_I386   1   /* int 0x80 / sysenter from any process (TS_COMPAT) */
#define SBX_ARCH_X32    2   /* nr has __X32_SYSCALL_BIT; nr reported without it */

/* How a denial was classified. */
#define SBX_ACTION_UNKNOWN 0
#define SBX_ACTION_ERRNO   1   /* ret in [-4095, 0], no SIGSYS */
#define SBX_ACTION_TRAP    2   /* SIGSYS (SYS_SECCOMP) generated, task lives on */
#define SBX_ACTION_KILL    3   /* task's seccomp mode is DEAD (kill-thread/process) */
#define SBX_ACTION_NOTIFY  4   /* a listener's notification id advanced meanwhile */

/* sbx_config.flags */
#define SBX_CFG_DENIALS (1u << 0)  /* report unmatched sys_exit as denials */
#define SBX_CFG_CALLS   (1u << 1)  /* count (arch, nr) at sys_enter */
#define SBX_CFG_ARGS    (1u << 2)  /* count argument values listed in sbx_argspec */
#define SBX_CFG_CGROUP  (1u << 3)  /* adopt tasks whose cgroup v2 id is in sbx_cgroups */
#define SBX_CFG_PATHS   (1u << 4)  /* report the paths of file syscalls that succeed and
				    * of execs, count TCP ports bound and connected to */

/* Indexes of the sbx_stats array (u64 each). */
#define SBX_STAT_DROPPED        0  /* ring buffer reserve failed: event lost */
#define SBX_STAT_EVENTS         1  /* events submitted */
#define SBX_STAT_DENIAL_KEYS    2  /* sbx_denials full: a denial went uncounted */
#define SBX_STAT_CALL_KEYS      3  /* sbx_calls full: a call went uncounted */
#define SBX_STAT_ARG_KEYS       4  /* sbx_argvals full: a value went uncounted */
#define SBX_STAT_TASKS_FULL     5  /* sbx_tasks full: a new task went untracked */
#define SBX_STAT_PATHS_LOST     6  /* a file syscall's paths could not be sent (ring buffer full) */
#define SBX_STAT_PORT_KEYS      7  /* sbx_ports full: a port went uncounted */
#define SBX_STAT_COUNT          8

#define SBX_EVENT_DENIAL 1
#define SBX_EVENT_PATH   2

/* sbx_tasks value, key = tid (u32).  Python: "<IBBBBiiI4xQQ" (40 bytes).
 * Userspace seeds entries with tgid set, fresh = 1 and everything else 0. */
struct sbx_task {
	__u32 tgid;
	__u8  in_syscall;      /* sys_enter seen, sys_exit pending */
	__u8  fresh;           /* ignore one unmatched sys_exit until the next sys_enter */
	__u8  sigsys_pending;  /* a SYS_SECCOMP SIGSYS was generated for this task */
	__u8  kill_reported;   /* a kill denial was already reported for this task */
	__s32 sigsys_nr;       /* siginfo si_syscall of that SIGSYS */
	__s32 sigsys_errno;    /* siginfo si_errno (SECCOMP_RET_DATA) */
	__u32 has_notif;       /* the filter chain below has a user-notif listener */
	__u32 pad;
	__u64 filter;          /* current->seccomp.filter at the last sys_exit */
	__u64 notif_seen;      /* sum of the listeners' next_id at the last sys_exit */
};

/* sbx_config value (array, key 0).  Python: "<II" (8 bytes). */
struct sbx_config {
	__u32 flags;
	__u32 reserved;
};

/* sbx_denials key.  Python: "<IiI4x" (16 bytes); value u64. */
struct sbx_denial_key {
	__u32 arch;
	__s32 nr;
	__u32 action;
	__u32 pad;
};

/* sbx_calls and sbx_argspec key.  Python: "<Ii" (8 bytes); calls value u64. */
struct sbx_call_key {
	__u32 arch;
	__s32 nr;
};

/* sbx_argspec value: which arguments to count, and the mask applied to each
 * value before counting.  Python: "<I4x6Q" (56 bytes). */
struct sbx_argspec {
	__u32 argmask;         /* bit i set: count argument i */
	__u32 pad;
	__u64 mask[6];
};

/* sbx_argvals key.  Python: "<IiI4xQ" (24 bytes); value u64. */
struct sbx_arg_key {
	__u32 arch;
	__s32 nr;
	__u32 argidx;
	__u32 pad;
	__u64 value;
};

/* Ring buffer record.  Python: "<QIIIIiIqQ6QIiiI16s" (128 bytes). */
struct sbx_event {
	__u64 time_ns;         /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 kind;            /* SBX_EVENT_* */
	__u32 pid;             /* tgid */
	__u32 tid;
	__u32 arch;            /* SBX_ARCH_* */
	__s32 nr;
	__u32 pad0;
	__s64 ret;             /* syscall return value seen at sys_exit */
	__u64 cgroup_id;       /* cgroup v2 id of the task */
	__u64 args[6];
	__u32 action;          /* SBX_ACTION_* */
	__s32 errno_val;       /* -ret for errno/notify; SECCOMP_RET_DATA for trap; -1 if none */
	__s32 signal;          /* 31 (SIGSYS) for trap/kill, 0 if none */
	__u32 pad1;
	char  comm[16];
};

/* Trace mode, file syscalls that succeeded: each path is read at sys_exit with
 * bpf_probe_read_user_str, at most SBX_PATH_LEN bytes (NUL included); execs
 * at sched_process_exec from the kernel's copy of the name.  A relative path
 * (or an empty one with AT_EMPTY_PATH) comes with the path of the directory
 * it is relative to (the task's cwd or the dirfd's file), read from the
 * dentries: its names leaf first, each NUL-terminated, crossing mount points
 * up to the root of the mount tree, at most SBX_BASE_DEPTH steps and
 * SBX_BASE_LEN bytes. */
#define SBX_PATH_LEN   256
#define SBX_BASE_LEN   1024
#define SBX_NAME_LEN   256            /* NAME_MAX + 1 */
#define SBX_BASE_DEPTH 40

/* sbx_path_event.status */
#define SBX_PATH_CUT1  (1u << 0)      /* path1 filled its buffer: longer paths are cut */
#define SBX_PATH_CUT2  (1u << 1)
#define SBX_PATH_BAD1  (1u << 2)      /* path1 or its base could not be read */
#define SBX_PATH_BAD2  (1u << 3)

/* Ring buffer record of a file syscall that succeeded.  Python header:
 * "<QIIIiqQii4HII" (64 bytes), then the four buffers at fixed offsets; the
 * record ends after the last buffer used. */
struct sbx_path_event {
	__u64 time_ns;
	__u32 kind;            /* SBX_EVENT_PATH */
	__u32 pid;             /* tgid */
	__u32 tid;
	__s32 nr;              /* x86_64 syscall number (execve for every exec) */
	__s64 ret;
	__u64 flags;           /* open flags (openat2: how.flags; creat: O_CREAT|O_WRONLY|O_TRUNC);
				* mknod(at) mode; unlinkat, renameat2, linkat, execveat flags */
	__s32 dirfd1;          /* what path1 is relative to (AT_FDCWD: the cwd) */
	__s32 dirfd2;
	__u16 len1;            /* bytes used in path1, NUL included; 0: no such path */
	__u16 len2;
	__u16 blen1;           /* bytes used in base1; 0: path1 is absolute */
	__u16 blen2;           /* bytes used in base2; 0: absolute, or the same base as path1 */
	__u32 status;          /* SBX_PATH_* */
	__u32 pad;
	char  path1[SBX_PATH_LEN];   /* open, exec, mkdir ... target; rename/link: the old path;
				      * symlink: the new link; bind: the Unix socket path */
	char  base1[SBX_BASE_LEN];
	char  path2[SBX_PATH_LEN];   /* rename/link: the new path */
	char  base2[SBX_BASE_LEN];
};

/* sbx_ports key: a TCP port a SOCK_STREAM AF_INET/AF_INET6 socket was asked to
 * bind (op 0) or connect to (op 1), at sys_enter.  Python "<II"; value u64. */
struct sbx_port_key {
	__u32 op;
	__u32 port;
};

#endif /* SBX_H */
