import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {allowedSyscalls, BLOCKED, DOCKER_DEFAULT_ALLOWED, ENOSYS, EPERM, MODE_ARGUMENT, seccompProfile, type SeccompRule} from '../../src/docker/seccomp.js'
import {GENERIC_SYSCALLS, X86_64_SYSCALLS} from '../../src/docker/syscalls.generated.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const HEADERS = ['/usr/include/x86_64-linux-gnu/asm/unistd_64.h', '/usr/include/asm-generic/unistd.h']

/** What Docker's documentation lists as blocked by its default profile (and io_uring, which recent Docker blocks). */
const DOCKER_DOCUMENTED_BLOCKED = [
  'acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'clone', 'create_module', 'delete_module', 'finit_module',
  'get_kernel_syms', 'get_mempolicy', 'init_module', 'ioperm', 'iopl', 'kcmp', 'kexec_file_load', 'kexec_load', 'keyctl',
  'lookup_dcookie', 'mbind', 'mount', 'move_mount', 'open_tree', 'fsopen', 'fsmount', 'fsconfig', 'fspick', 'move_pages',
  'name_to_handle_at', 'nfsservctl', 'open_by_handle_at', 'perf_event_open', 'personality', 'pivot_root', 'process_vm_readv',
  'process_vm_writev', 'ptrace', 'query_module', 'quotactl', 'quotactl_fd', 'reboot', 'request_key', 'set_mempolicy', 'setns',
  'settimeofday', 'stime', 'swapon', 'swapoff', 'sysfs', '_sysctl', 'umount', 'umount2', 'unshare', 'uselib', 'userfaultfd',
  'ustat', 'vm86', 'vm86old', 'io_uring_setup', 'io_uring_enter', 'io_uring_register',
]

const rulesFor = (name: string): SeccompRule[] => seccompProfile().syscalls.filter((rule) => rule.names.includes(name))
const unconditional = (rule: SeccompRule): boolean => (rule.args ?? []).length === 0

describe('the syscall tables (syscalls.generated.ts)', () => {
  it('match the kernel headers of this machine (regenerate with `npm run syscalls`)', () => {
    if (HEADERS.every((header) => existsSync(header))) {
      const rendered = execFileSync(process.execPath, [path.join(root, 'scripts/syscalls.mjs'), '--stdout'], {encoding: 'utf8'})
      assert.equal(readFileSync(path.join(root, 'src/docker/syscalls.generated.ts'), 'utf8'), rendered, 'src/docker/syscalls.generated.ts drifted from the headers: run `npm run syscalls` and commit it')
    } else {
      // Without the headers there is nothing to compare with: the committed tables still hold the basics.
      for (const name of ['read', 'openat', 'fchmodat', 'clone3']) assert.ok(X86_64_SYSCALLS.includes(name) && GENERIC_SYSCALLS.includes(name), name)
    }
  })

  it('are sorted name lists of the two ABIs (x86_64 has open and chmod, the generic table does not)', () => {
    for (const table of [X86_64_SYSCALLS, GENERIC_SYSCALLS]) assert.deepEqual([...table], [...new Set(table)].sort())
    assert.ok(X86_64_SYSCALLS.includes('open') && X86_64_SYSCALLS.includes('chmod'))
    assert.ok(!GENERIC_SYSCALLS.includes('open') && !GENERIC_SYSCALLS.includes('chmod'))
    assert.ok(X86_64_SYSCALLS.length > 300 && GENERIC_SYSCALLS.length > 250)
  })
})

describe('the seccomp profile', () => {
  it('refuses by default with EPERM, on the native architectures only', () => {
    const profile = seccompProfile()
    assert.equal(profile.defaultAction, 'SCMP_ACT_ERRNO')
    assert.equal(profile.defaultErrnoRet, EPERM)
    assert.deepEqual(profile.archMap, [
      {architecture: 'SCMP_ARCH_X86_64', subArchitectures: []},
      {architecture: 'SCMP_ARCH_AARCH64', subArchitectures: []},
    ])
  })

  it('allows nothing Docker documents as blocked by its default profile, except through the rules below', () => {
    const allowed = new Set(allowedSyscalls())
    for (const name of DOCKER_DOCUMENTED_BLOCKED) assert.ok(!allowed.has(name), `${name} is allowed unconditionally`)
    for (const name of BLOCKED) assert.deepEqual(rulesFor(name), [], `${name} has a rule`)
    const tables = new Set([...X86_64_SYSCALLS, ...GENERIC_SYSCALLS])
    for (const name of allowed) assert.ok(tables.has(name), `${name} is in no syscall table`)
  })

  it('allows no syscall a newer kernel adds to the tables until it is reviewed (regenerating from newer headers adds nothing)', () => {
    // Syscalls of Linux 6.2..6.18 that Docker's default profile does not allow: regenerating the
    // tables on a machine with such headers must not let them through.
    const newer = ['file_setattr', 'listmount', 'lsm_set_self_attr', 'map_shadow_stack', 'mseal', 'open_tree_attr', 'removexattrat', 'setxattrat', 'statmount']
    const allowed = new Set(allowedSyscalls({generic: [...GENERIC_SYSCALLS, ...newer], x86_64: [...X86_64_SYSCALLS, ...newer]}))
    for (const name of newer) assert.ok(!allowed.has(name), `${name} is allowed unreviewed`)
    assert.deepEqual(allowedSyscalls({generic: GENERIC_SYSCALLS, x86_64: X86_64_SYSCALLS}), allowedSyscalls())
  })

  it('allows unconditionally only names Docker\'s default profile allows, and those only where a table has them', () => {
    const allowed = allowedSyscalls()
    for (const name of allowed) assert.ok(DOCKER_DEFAULT_ALLOWED.includes(name), `${name} is not in Docker's default allowlist`)
    // llseek is the generic table's 32-bit name (Docker's is _llseek); chown32 is in neither table.
    assert.ok(!allowed.includes('llseek') && !allowed.includes('chown32'))
    assert.deepEqual(allowedSyscalls({generic: [], x86_64: ['read', 'listmount']}), ['read'])
  })

  it('allows a mode syscall only when the mode has neither S_ISUID nor S_ISGID, and never without that condition', () => {
    for (const [name, index] of Object.entries(MODE_ARGUMENT)) {
      assert.deepEqual(rulesFor(name), [{action: 'SCMP_ACT_ALLOW', args: [{index, op: 'SCMP_CMP_MASKED_EQ', value: 0o6000, valueTwo: 0}], names: [name]}], name)
    }

    assert.equal(MODE_ARGUMENT.fchmodat, 2)
    assert.equal(MODE_ARGUMENT.mknodat, 2)
    assert.equal(MODE_ARGUMENT.chmod, 1)
  })

  it('allows open/openat when they do not create a file (O_CREAT, O_TMPFILE) or the mode is clean', () => {
    const masked = (index: number, value: number) => ({index, op: 'SCMP_CMP_MASKED_EQ', value, valueTwo: 0})
    assert.deepEqual(rulesFor('open'), [
      {action: 'SCMP_ACT_ALLOW', args: [masked(1, 0o100 | 0o20000000)], names: ['open']},
      {action: 'SCMP_ACT_ALLOW', args: [masked(2, 0o6000)], names: ['open']},
    ])
    assert.deepEqual(rulesFor('openat'), [
      {action: 'SCMP_ACT_ALLOW', args: [masked(2, 0o100 | 0o20000000)], names: ['openat']},
      {action: 'SCMP_ACT_ALLOW', args: [masked(3, 0o6000)], names: ['openat']},
    ])
  })

  it('answers ENOSYS for clone3 and openat2 (their arguments are in a struct), and allows clone without namespace flags', () => {
    for (const name of ['clone3', 'openat2']) assert.deepEqual(rulesFor(name), [{action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, names: ['clone3', 'openat2']}])
    assert.deepEqual(rulesFor('clone'), [{action: 'SCMP_ACT_ALLOW', args: [{index: 0, op: 'SCMP_CMP_MASKED_EQ', value: 0x7e020000, valueTwo: 0}], names: ['clone']}])
  })

  it('has no unconditional rule for a syscall that also has a conditional one (on Docker 20.10 the unconditional ALLOW wins)', () => {
    const byName = new Map<string, SeccompRule[]>()
    for (const rule of seccompProfile().syscalls) for (const name of rule.names) byName.set(name, [...(byName.get(name) ?? []), rule])
    for (const [name, rules] of byName) {
      if (rules.some((rule) => !unconditional(rule))) assert.ok(rules.every((rule) => !unconditional(rule)), `${name} has an unconditional rule beside its conditions`)
      assert.ok(rules.every((rule) => rule.action === 'SCMP_ACT_ALLOW') || rules.length === 1, `${name} mixes actions`)
    }
  })
})
