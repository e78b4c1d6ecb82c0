import {createHash} from 'node:crypto'

import {resourceNames} from '../../../src/config/instance.js'
import type {ContainerState, ExecOptions, ExecResult, Runtime, RuntimeKind} from '../../../src/runtime/runtime.js'
import {UNUSED_CONTAINER_CONTROL} from '../runtime-stubs.js'

interface FakeAccount {
  uid: number
  home: string
  shell: string
  hash: string
}

export interface ExecCall {
  argv: string[]
  stdin?: string
  env?: Record<string, string>
  user?: string
}

/** What chpasswd would store for a password here (a fake but shadow-shaped hash). */
export function fakeHash(password: string): string {
  return `$5$fake$${createHash('sha256').update(password).digest('hex')}`
}

/**
 * A sandbox behind the `Runtime` interface, for unit tests of the user flow: accounts, shadow
 * hashes, lock states and the records dir, driven by the argv the flow sends (the users script's
 * subcommands, chpasswd with stdin, the bootstrap helper). Every exec is recorded.
 */
export class FakeSandbox implements Runtime {
  readonly kind: RuntimeKind
  readonly names = resourceNames('fake')
  readonly calls: ExecCall[] = []
  readonly accounts = new Map<string, FakeAccount>([
    ['root', {hash: '*', home: '/root', shell: '/bin/bash', uid: 0}],
    ['opencoder', {hash: '!', home: '/home/opencoder', shell: '/bin/bash', uid: 1000}],
    ['nobody', {hash: '*', home: '/nonexistent', shell: '/usr/sbin/nologin', uid: 65_534}],
  ])

  /** File name in /var/lib/opencode-users → content. */
  readonly records = new Map<string, string>()
  builtinList = ['opencoder']
  running = true
  failCreate = new Set<string>()
  failChpasswd = false
  bootstrapOutput = ''

  constructor(kind: RuntimeKind = 'host') {
    this.kind = kind
  }

  verifies(name: string, password: string): boolean {
    return this.accounts.get(name)?.hash === fakeHash(password)
  }

  async containerState(): Promise<ContainerState> {
    return {exists: true, labels: {}, mounts: [], name: this.names.container, running: this.running, status: this.running ? 'running' : 'exited'}
  }

  async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    const stdin = options.stdin === undefined ? undefined : String(options.stdin)
    this.calls.push({argv, env: options.env, stdin, user: options.user})
    if (argv[0] === 'sh' && argv[1] === '-c' && argv[3] === 'occ-users') return this.usersOp(argv[4], argv[5], stdin)
    if (argv[0] === 'chpasswd') return this.chpasswd(stdin ?? '', argv[1] === '-e')
    if (argv[0] === '/usr/local/bin/opencode-cloud-bootstrap') return ok(this.bootstrapOutput)
    return {exitCode: 127, stderr: `not faked: ${argv[0]}`, stdout: ''}
  }

  async probeHealth(): Promise<never> {
    throw new Error('not used')
  }

  async opencodeUrl(): Promise<string> {
    return 'http://localhost:3000'
  }

  async restartMethod(): Promise<'supervisor'> {
    return 'supervisor'
  }

  async restartOpencode(): Promise<'supervisor'> {
    return 'supervisor'
  }

  holdLifecycle = UNUSED_CONTAINER_CONTROL.holdLifecycle
  putArchive = UNUSED_CONTAINER_CONTROL.putArchive
  startContainer = UNUSED_CONTAINER_CONTROL.startContainer

  // eslint-disable-next-line require-yield
  async *logs(): AsyncIterable<never> {
    throw new Error('not used')
  }

  private chpasswd(input: string, encrypted: boolean): ExecResult {
    if (this.failChpasswd) return {exitCode: 1, stderr: 'chpasswd: (line 1, user x) password not changed', stdout: ''}
    for (const line of input.split('\n').filter(Boolean)) {
      const colon = line.indexOf(':')
      const name = line.slice(0, colon)
      const account = this.accounts.get(name)
      if (!account) return {exitCode: 1, stderr: `chpasswd: line 1: user '${name}' does not exist`, stdout: ''}
      account.hash = encrypted ? line.slice(colon + 1) : fakeHash(line.slice(colon + 1))
    }

    return ok('')
  }

  private usersOp(op: string, name: string | undefined, stdin: string | undefined): ExecResult {
    const account = name === undefined ? undefined : this.accounts.get(name)
    switch (op) {
      case 'inventory': {
        const lines = ['builtin opencoder', 'builtin ubuntu', ...this.builtinList.map((entry) => `builtin ${entry}`)]
        for (const [user, info] of this.accounts) lines.push(`passwd ${user}:x:${info.uid}:${info.uid}::${info.home}:${info.shell}`)
        for (const [user, info] of this.accounts) lines.push(`pwstatus ${user} ${info.hash.startsWith('!') || info.hash === '*' ? 'L' : 'P'}`)
        for (const [file, content] of this.records) lines.push(`record ${file} ${Buffer.from(content).toString('base64')}`)
        return ok(`${lines.join('\n')}\n`)
      }

      case 'shadow': {
        if (!account) return {exitCode: 3, stderr: '', stdout: ''}
        return ok(`hash=${account.hash}\nstatus=${account.hash.startsWith('!') ? 'L' : 'P'}\n`)
      }

      case 'create': {
        if (account) return {exitCode: 9, stderr: `useradd: user '${name}' already exists`, stdout: ''}
        if (this.failCreate.has(name!)) return {exitCode: 1, stderr: 'useradd: cannot lock /etc/passwd', stdout: ''}
        const uid = Math.max(999, ...[...this.accounts.values()].map((info) => info.uid).filter((uid) => uid < 60_000)) + 1
        this.accounts.set(name!, {hash: '!', home: `/home/${name}`, shell: '/bin/bash', uid})
        return ok('')
      }

      case 'delete': {
        this.accounts.delete(name!)
        this.records.delete(`${name}.json`)
        return ok('')
      }

      case 'write': {
        this.records.set(`${name}.json`, stdin ?? '')
        return ok('')
      }

      case 'lock': {
        if (account && !account.hash.startsWith('!')) account.hash = `!${account.hash}`
        return account ? ok('') : {exitCode: 1, stderr: 'no such user', stdout: ''}
      }

      case 'unlock': {
        if (account?.hash.startsWith('!') && account.hash.length > 1) account.hash = account.hash.slice(1)
        return account ? ok('') : {exitCode: 1, stderr: 'no such user', stdout: ''}
      }

      default: {
        return {exitCode: 2, stderr: `unknown op ${op}`, stdout: ''}
      }
    }
  }
}

function ok(stdout: string): ExecResult {
  return {exitCode: 0, stderr: '', stdout}
}
