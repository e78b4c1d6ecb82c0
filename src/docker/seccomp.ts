import {GENERIC_SYSCALLS, X86_64_SYSCALLS} from './syscalls.generated.js'

/**
 * occ's seccomp profile for the sandbox container, passed on create as
 * `HostConfig.SecurityOpt: ['seccomp=<JSON>']` in place of Docker's default.
 *
 * Why a profile of occ's own: the workspace and the other bind mounts are host directories, and
 * a mode bit set through them lands on the host inode. Anything running as root in the container
 * (or the agent on its own files) could otherwise plant a setuid or setgid file there, which is a
 * privilege escalation for any host user who can reach it. Docker has no nosuid for bind mounts,
 * so the profile refuses (EPERM) every syscall that would set S_ISUID or S_ISGID in a file mode:
 * chmod, fchmod, fchmodat, fchmodat2, mkdir, mkdirat, mknod, mknodat, creat, and open/openat when
 * they create a file (O_CREAT or O_TMPFILE). openat2 passes its mode in a struct seccomp cannot
 * read, so it answers ENOSYS and libc falls back to openat.
 *
 * Otherwise it is at least as strict as Docker's default profile: everything not allowed fails
 * with EPERM; the allowlist is what Docker's default allows (DOCKER_DEFAULT_ALLOWED) that the
 * kernel's syscall tables have (syscalls.generated.ts), minus BLOCKED (what Docker's default
 * refuses a container without extra capabilities, plus io_uring, whose operations seccomp cannot
 * see, and a few more). clone may not create namespaces; clone3 answers ENOSYS (its
 * flags are in a struct) so libc uses clone. Only the native architecture is allowed: a 32-bit or
 * x32 syscall, whose numbers and argument layout the rules are not written for, kills the process
 * (the filter's bad-architecture action).
 *
 * Every rule is an ALLOW rule: a syscall with conditions is allowed only when one of its rules
 * matches and otherwise falls to the default EPERM, so no rule has to outrank another. (Tried on
 * Engine 20.10.24, runc 1.1.5, libseccomp 2.5.4: an unconditional ALLOW beside a conditional
 * ERRNO on the same syscall wins, in either order; of two conditional rules that both match,
 * the ERRNO wins.)
 */

export const EPERM = 1
export const ENOSYS = 38

/** The file-mode bits the profile refuses to set: S_ISUID | S_ISGID. */
export const SETID_BITS = 0o6000
/** open/openat create a file (and use their mode) only with one of these: O_CREAT | __O_TMPFILE (same on x86_64 and aarch64). */
export const CREATE_FLAGS = 0o100 | 0o20000000
/** clone flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET), as Docker's default refuses them. */
export const CLONE_NAMESPACE_FLAGS = 0x7e020000
/** AF_VSOCK: sockets to the hypervisor (Docker Desktop's VM), refused as Docker's default does. */
export const AF_VSOCK = 40
/** personality(2) values Docker's default allows: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE, both, and the query 0xffffffff. */
export const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]

/** Syscalls with a mode argument, and its index: allowed only when the mode has no S_ISUID/S_ISGID. */
export const MODE_ARGUMENT: Record<string, number> = {
  chmod: 1,
  creat: 1,
  fchmod: 1,
  fchmodat: 2,
  fchmodat2: 2,
  mkdir: 1,
  mkdirat: 2,
  mknod: 1,
  mknodat: 2,
}

/** open and openat: flags and mode; the mode counts only when the flags create a file. */
export const OPEN_ARGUMENTS: Record<string, {flags: number; mode: number}> = {
  open: {flags: 1, mode: 2},
  openat: {flags: 2, mode: 3},
}

/**
 * Refused outright (EPERM through the default action). Docker's documented list of what its
 * default profile blocks, what it allows only with a capability the sandbox does not have
 * (SYS_ADMIN, SYS_CHROOT, SYS_PTRACE, SYS_NICE, SYSLOG, SYS_TTY_CONFIG, SYS_TIME...), obsolete
 * or unimplemented entries, and io_uring.
 */
export const BLOCKED: ReadonlySet<string> = new Set([
  '_sysctl',
  'acct',
  'add_key',
  'afs_syscall',
  'bpf',
  'chroot',
  'clock_adjtime',
  'clock_adjtime64',
  'clock_settime',
  'clock_settime64',
  'create_module',
  'delete_module',
  'fanotify_init',
  'finit_module',
  'fsconfig',
  'fsmount',
  'fsopen',
  'fspick',
  'get_kernel_syms',
  'get_mempolicy',
  'getpmsg',
  'init_module',
  'io_uring_enter',
  'io_uring_register',
  'io_uring_setup',
  'ioperm',
  'iopl',
  'kcmp',
  'kexec_file_load',
  'kexec_load',
  'keyctl',
  'lookup_dcookie',
  'mbind',
  'migrate_pages',
  'mount',
  'mount_setattr',
  'move_mount',
  'move_pages',
  'name_to_handle_at',
  'nfsservctl',
  'open_by_handle_at',
  'open_tree',
  'perf_event_open',
  'pidfd_getfd',
  'pivot_root',
  'process_madvise',
  'process_vm_readv',
  'process_vm_writev',
  'putpmsg',
  'query_module',
  'quotactl',
  'quotactl_fd',
  'reboot',
  'request_key',
  'security',
  'set_mempolicy',
  'set_mempolicy_home_node',
  'setdomainname',
  'sethostname',
  'setns',
  'settimeofday',
  'stime',
  'swapoff',
  'swapon',
  'sysfs',
  'syslog',
  'tuxcall',
  'umount',
  'umount2',
  'unshare',
  'uselib',
  'userfaultfd',
  'ustat',
  'vhangup',
  'vm86',
  'vm86old',
  'vserver',
])

/**
 * The syscalls Docker's default profile allows without conditions or capabilities (moby's
 * profiles/seccomp/default.json; arch_prctl and modify_ldt it allows on x86_64 only,
 * sync_file_range2 on arm64 only), as far as
 * the two tables have them. The plain allowlist is this minus BLOCKED and the conditional ones,
 * so a syscall a newer kernel adds (and `npm run syscalls` puts in the tables) stays refused until
 * someone has looked at it and added it here.
 */
export const DOCKER_DEFAULT_ALLOWED: readonly string[] = [
  'accept', 'accept4', 'access', 'adjtimex', 'alarm', 'arch_prctl', 'bind', 'brk', 'capget', 'capset',
  'chdir', 'chmod', 'chown', 'clock_adjtime', 'clock_adjtime64', 'clock_getres', 'clock_getres_time64',
  'clock_gettime', 'clock_gettime64', 'clock_nanosleep', 'clock_nanosleep_time64', 'close', 'close_range',
  'connect', 'copy_file_range', 'creat', 'dup', 'dup2', 'dup3', 'epoll_create', 'epoll_create1', 'epoll_ctl',
  'epoll_ctl_old', 'epoll_pwait', 'epoll_pwait2', 'epoll_wait', 'epoll_wait_old', 'eventfd', 'eventfd2',
  'execve', 'execveat', 'exit', 'exit_group', 'faccessat', 'faccessat2', 'fadvise64', 'fadvise64_64',
  'fallocate', 'fanotify_mark', 'fchdir', 'fchmod', 'fchmodat', 'fchown', 'fchownat', 'fcntl', 'fcntl64',
  'fdatasync', 'fgetxattr', 'flistxattr', 'flock', 'fork', 'fremovexattr', 'fsetxattr', 'fstat', 'fstat64',
  'fstatat64', 'fstatfs', 'fstatfs64', 'fsync', 'ftruncate', 'ftruncate64', 'futex', 'futex_time64',
  'futex_waitv', 'futimesat', 'get_robust_list', 'get_thread_area', 'getcpu', 'getcwd', 'getdents',
  'getdents64', 'getegid', 'geteuid', 'getgid', 'getgroups', 'getitimer', 'getpeername', 'getpgid', 'getpgrp',
  'getpid', 'getppid', 'getpriority', 'getrandom', 'getresgid', 'getresuid', 'getrlimit', 'getrusage',
  'getsid', 'getsockname', 'getsockopt', 'gettid', 'gettimeofday', 'getuid', 'getxattr', 'inotify_add_watch',
  'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'io_cancel', 'io_destroy', 'io_getevents',
  'io_pgetevents', 'io_pgetevents_time64', 'io_setup', 'io_submit', 'io_uring_enter', 'io_uring_register',
  'io_uring_setup', 'ioctl', 'ioprio_get', 'ioprio_set', 'kill', 'landlock_add_rule',
  'landlock_create_ruleset', 'landlock_restrict_self', 'lchown', 'lgetxattr', 'link', 'linkat', 'listen',
  'listxattr', 'llistxattr', 'lremovexattr', 'lseek', 'lsetxattr', 'lstat', 'lstat64', 'madvise',
  'membarrier', 'memfd_create', 'memfd_secret', 'mincore', 'mkdir', 'mkdirat', 'mknod', 'mknodat', 'mlock',
  'mlock2', 'mlockall', 'mmap', 'mmap2', 'modify_ldt', 'mprotect', 'mq_getsetattr', 'mq_notify', 'mq_open',
  'mq_timedreceive', 'mq_timedreceive_time64', 'mq_timedsend', 'mq_timedsend_time64', 'mq_unlink', 'mremap',
  'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'msync', 'munlock', 'munlockall', 'munmap', 'name_to_handle_at',
  'nanosleep', 'newfstatat', 'open', 'openat', 'openat2', 'pause', 'pidfd_open', 'pidfd_send_signal', 'pipe',
  'pipe2', 'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'poll', 'ppoll', 'ppoll_time64', 'prctl', 'pread64',
  'preadv', 'preadv2', 'prlimit64', 'process_mrelease', 'pselect6', 'pselect6_time64', 'pwrite64', 'pwritev',
  'pwritev2', 'read', 'readahead', 'readlink', 'readlinkat', 'readv', 'recvfrom', 'recvmmsg',
  'recvmmsg_time64', 'recvmsg', 'remap_file_pages', 'removexattr', 'rename', 'renameat', 'renameat2',
  'restart_syscall', 'rmdir', 'rseq', 'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask', 'rt_sigqueueinfo',
  'rt_sigreturn', 'rt_sigsuspend', 'rt_sigtimedwait', 'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo',
  'sched_get_priority_max', 'sched_get_priority_min', 'sched_getaffinity', 'sched_getattr', 'sched_getparam',
  'sched_getscheduler', 'sched_rr_get_interval', 'sched_rr_get_interval_time64', 'sched_setaffinity',
  'sched_setattr', 'sched_setparam', 'sched_setscheduler', 'sched_yield', 'seccomp', 'select', 'semctl',
  'semget', 'semop', 'semtimedop', 'semtimedop_time64', 'sendfile', 'sendfile64', 'sendmmsg', 'sendmsg',
  'sendto', 'set_robust_list', 'set_thread_area', 'set_tid_address', 'setfsgid', 'setfsuid', 'setgid',
  'setgroups', 'setitimer', 'setpgid', 'setpriority', 'setregid', 'setresgid', 'setresuid', 'setreuid',
  'setrlimit', 'setsid', 'setsockopt', 'setuid', 'setxattr', 'shmat', 'shmctl', 'shmdt', 'shmget', 'shutdown',
  'sigaltstack', 'signalfd', 'signalfd4', 'socketpair', 'splice', 'stat', 'stat64', 'statfs', 'statfs64',
  'statx', 'symlink', 'symlinkat', 'sync', 'sync_file_range', 'sync_file_range2', 'syncfs', 'sysinfo', 'tee', 'tgkill', 'time',
  'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_gettime64', 'timer_settime',
  'timer_settime64', 'timerfd_create', 'timerfd_gettime', 'timerfd_gettime64', 'timerfd_settime',
  'timerfd_settime64', 'times', 'tkill', 'truncate', 'truncate64', 'umask', 'uname', 'unlink', 'unlinkat',
  'utime', 'utimensat', 'utimensat_time64', 'utimes', 'vfork', 'vmsplice', 'wait4', 'waitid', 'write',
  'writev',
]

/** Syscalls with rules of their own below (not in the plain allowlist). */
const CONDITIONAL = new Set([
  ...Object.keys(MODE_ARGUMENT),
  ...Object.keys(OPEN_ARGUMENTS),
  'clone',
  'clone3',
  'openat2',
  'personality',
  'ptrace',
  'socket',
])

export interface SeccompArg {
  index: number
  value: number
  valueTwo?: number
  op: 'SCMP_CMP_EQ' | 'SCMP_CMP_MASKED_EQ' | 'SCMP_CMP_NE'
}

export interface SeccompRule {
  names: string[]
  action: 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO'
  errnoRet?: number
  args?: SeccompArg[]
  includes?: {minKernel?: string}
}

export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ERRNO'
  defaultErrnoRet: number
  archMap: Array<{architecture: string; subArchitectures: string[]}>
  syscalls: SeccompRule[]
}

/** (arg & mask) == 0 */
const clear = (index: number, mask: number): SeccompArg => ({index, op: 'SCMP_CMP_MASKED_EQ', value: mask, valueTwo: 0})

/**
 * The names allowed without conditions: those of DOCKER_DEFAULT_ALLOWED that either table has (a
 * name one architecture lacks is skipped there), minus BLOCKED and the conditional ones.
 */
export function allowedSyscalls(tables: {x86_64: readonly string[]; generic: readonly string[]} = {generic: GENERIC_SYSCALLS, x86_64: X86_64_SYSCALLS}): string[] {
  const names = new Set([...tables.x86_64, ...tables.generic])
  return DOCKER_DEFAULT_ALLOWED.filter((name) => names.has(name) && !BLOCKED.has(name) && !CONDITIONAL.has(name)).sort()
}

export function seccompProfile(): SeccompProfile {
  const rules: SeccompRule[] = [{action: 'SCMP_ACT_ALLOW', names: allowedSyscalls()}]
  for (const [name, index] of Object.entries(MODE_ARGUMENT)) {
    rules.push({action: 'SCMP_ACT_ALLOW', args: [clear(index, SETID_BITS)], names: [name]})
  }

  for (const [name, {flags, mode}] of Object.entries(OPEN_ARGUMENTS)) {
    // Two rules, either one allows: not creating (the mode argument is unused), or a clean mode.
    rules.push({action: 'SCMP_ACT_ALLOW', args: [clear(flags, CREATE_FLAGS)], names: [name]})
    rules.push({action: 'SCMP_ACT_ALLOW', args: [clear(mode, SETID_BITS)], names: [name]})
  }

  rules.push(
    {action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, names: ['clone3', 'openat2']},
    {action: 'SCMP_ACT_ALLOW', args: [clear(0, CLONE_NAMESPACE_FLAGS)], names: ['clone']},
    {action: 'SCMP_ACT_ALLOW', args: [{index: 0, op: 'SCMP_CMP_NE', value: AF_VSOCK}], names: ['socket']},
    ...PERSONALITIES.map((value): SeccompRule => ({action: 'SCMP_ACT_ALLOW', args: [{index: 0, op: 'SCMP_CMP_EQ', value}], names: ['personality']})),
    // Since Linux 4.8 seccomp checks a syscall again after a tracer changed it, so ptrace (of the
    // caller's own processes: there is no SYS_PTRACE) cannot get around the rules above.
    {action: 'SCMP_ACT_ALLOW', includes: {minKernel: '4.8'}, names: ['ptrace']},
  )
  return {
    archMap: [
      {architecture: 'SCMP_ARCH_X86_64', subArchitectures: []},
      {architecture: 'SCMP_ARCH_AARCH64', subArchitectures: []},
    ],
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    syscalls: rules,
  }
}

/** The SecurityOpt entry: the Engine API takes the profile's JSON inline. */
export function seccompSecurityOpt(): string {
  return `seccomp=${JSON.stringify(seccompProfile())}`
}
