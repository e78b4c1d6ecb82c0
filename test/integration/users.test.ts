import assert from 'node:assert/strict'
import {realpathSync} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {execa, type Result} from 'execa'

import {statusViewSchema} from '../../src/runtime/status-schema.js'
import {resetIotpResultSchema, userAddResultSchema, userEnabledResultSchema, userListResultSchema} from '../../src/runtime/users/schemas.js'
import type {StatusView} from '../../src/runtime/status.js'
import {createSandboxEnv, describeRun, expectExit, json, out, REPO_ROOT, type SandboxEnv, useFixtureImage} from '../helpers/sandbox-env.js'

/**
 * Login users and the first-login password against the real fixture sandbox: one container for
 * the whole file (each scenario leaves it as it found it: no login user). Passwords are checked
 * against /etc/shadow inside the sandbox with perl's crypt(), not only by a record existing.
 */

const OTP_LINE = /Initial One-Time Password \(IOTP\): ([0-9a-f]{96})/
/** Reads the password on stdin (never argv) and checks it against the user's shadow hash. */
const VERIFY_PERL =
  'chomp(my $pw = <STDIN>); open(my $f, "<", "/etc/shadow") or die "shadow: $!"; ' +
  'while (<$f>) { my @x = split /:/; if ($x[0] eq $ARGV[0]) { print((crypt($pw, $x[1]) // "") eq $x[1] ? "ok" : "bad"); exit 0 } } print "none"'
/** Where the host's Node and this checkout are mounted, to run occ inside the sandbox (container runtime). */
const NODE_DIR = '/opt/occ-node'
const OCC_DIR = '/opt/occ'




describe('integration: login users and the first-login password (occ user *, occ reset iotp)', function () {
  this.timeout(240_000)
  let sandbox: SandboxEnv
  let startOutput: Result
  /** The sandbox's mounts: the host's Node and this checkout, so occ can run inside it too. */
  let startArgs: string[]

  const inside = (argv: string[], input?: string): Promise<Result> =>
    execa('docker', ['exec', ...(input === undefined ? [] : ['-i']), '-u', 'root', sandbox.containerName, ...argv], {input, reject: false}) as Promise<Result>
  const verifies = async (name: string, password: string): Promise<string> => out(await inside(['perl', '-e', VERIFY_PERL, name], `${password}\n`)).trim()
  const passwdStatus = async (name: string): Promise<string> => out(await inside(['passwd', '-S', name])).split(' ')[1] ?? ''
  const records = async (): Promise<string[]> =>
    out(await inside(['sh', '-c', 'cd /var/lib/opencode-users && ls *.json 2>/dev/null || true'])).split('\n').filter(Boolean).sort()
  const status = async (...extra: string[]): Promise<StatusView> => {
    const result = await sandbox.occ(['status', '--json', ...extra])
    expectExit(result, 0)
    const parsed = statusViewSchema.safeParse(json(result))
    assert.ok(parsed.success, `status --json does not match its schema: ${parsed.error?.message}`)
    return parsed.data as StatusView
  }

  const configUsers = async (): Promise<string[]> => JSON.parse(await fs.readFile(sandbox.configFile, 'utf8')).users

  before(async () => {
    sandbox = await createSandboxEnv('users')
    await useFixtureImage(sandbox)
    const nodeDir = path.dirname(realpathSync(process.execPath))
    startArgs = ['start', '--mount', `${nodeDir}:${NODE_DIR}:ro`, '--mount', `${realpathSync(REPO_ROOT)}:${OCC_DIR}:ro`]
    startOutput = await sandbox.occ(startArgs)
    expectExit(startOutput, 0)
  })

  after(async () => {
    await sandbox?.cleanup()
  })

  it('a fresh sandbox: start prints the IOTP, status reports it active (masked unless --show-secrets), reset iotp issues a new one', async () => {
    const otp = OTP_LINE.exec(out(startOutput))?.[1]
    assert.ok(otp, `start printed no IOTP:\n${describeRun(startOutput)}`)
    assert.match(out(startOutput), /First-time onboarding/)
    const logs = await execa('docker', ['logs', sandbox.containerName], {reject: false})
    assert.ok(`${logs.stdout}`.includes(`INITIAL ONE-TIME PASSWORD (IOTP): ${otp}`), 'the container log has the same IOTP line')

    const masked = await status()
    assert.equal(masked.iotp.state, 'active')
    assert.equal(masked.iotp.label, 'unused (active)')
    assert.equal(masked.iotp.masked, true)
    assert.equal(masked.iotp.value, null)
    assert.ok(!JSON.stringify(masked).includes(otp), 'the IOTP is not in status --json without --show-secrets')
    const text = await sandbox.occ(['status'])
    assert.ok(!out(text).includes(otp) && /IOTP state:\s+unused \(active\)/.test(out(text)), describeRun(text))
    assert.equal((await status('--show-secrets')).iotp.value, otp)

    // Refused while the config binds a network address, unless --force (the IOTP stays as it was).
    expectExit(await sandbox.occ(['config', 'set', 'bind_address', '0.0.0.0']), 0)
    const exposed = await sandbox.occ(['reset', 'iotp', '--json'])
    expectExit(exposed, 2)
    assert.match(json<{error: {message: string}}>(exposed).error.message, /not localhost/)
    expectExit(await sandbox.occ(['config', 'set', 'bind_address', '127.0.0.1']), 0)
    assert.equal((await status('--show-secrets')).iotp.value, otp)

    const reset = await sandbox.occ(['reset', 'iotp', '--json'])
    expectExit(reset, 0)
    assert.ok(resetIotpResultSchema.safeParse(json(reset)).success, out(reset))
    const fresh = json<{iotp: {state: string; value: string}}>(reset).iotp
    assert.equal(fresh.state, 'active')
    assert.match(fresh.value, /^[0-9a-f]{96}$/)
    assert.notEqual(fresh.value, otp)
    assert.equal((await status('--show-secrets')).iotp.value, fresh.value)
  })

  it('refuses hostile names, and a missing password or name without a terminal, before anything runs (no Docker engine is even asked)', async () => {
    const before = out(await inside(['getent', 'passwd']))
    const noEngine = {env: {DOCKER_HOST: `unix://${sandbox.root}/no-such-docker.sock`}}
    // After `--`, so even '-rf' reaches occ as the name (not as flags).
    const runs = [
      ...['../x', 'a;b', '-rf', 'a'.repeat(33), 'аdmin', 'Root', '1abc', 'x/../../etc'].map((name) => ['user', 'add', '--generate', '--json', '--', name]),
      ['user', 'remove', '--force', '--json', '--', '../x'],
      ['user', 'passwd', '--generate', '--json', '--', 'a;b'],
      ['user', 'disable', '--json', '--', '-rf'],
    ]
    // Without a terminal (stdin left open), a password or name that is not given is an error, not a prompt.
    const noPrompt = [['user', 'add', 'dora', '--json'], ['user', 'add', '--json'], ['user', 'passwd', 'dora', '--json']]
    const results = await Promise.all([
      ...runs.map((argv) => sandbox.occ(argv, noEngine)),
      ...noPrompt.map((argv) => sandbox.occ(argv, {...noEngine, stdin: 'pipe', timeout: 30_000})),
    ])
    for (const result of results) {
      expectExit(result, 2)
      assert.equal(json<{error: {code: string}}>(result).error.code, 'USAGE', describeRun(result))
    }

    assert.equal(out(await inside(['getent', 'passwd'])), before, 'no account changed')
  })

  it('add --generate --print-password-only: only the password on stdout, it verifies against shadow; the IOTP goes inactive', async () => {
    const add = await sandbox.occ(['user', 'add', 'alice', '--generate', '--print-password-only'])
    expectExit(add, 0)
    const password = out(add).trim()
    assert.match(out(add), /^[A-Za-z0-9]{30}\n?$/, 'stdout is exactly one 30-char alphanumeric password')
    assert.equal(await verifies('alice', password), 'ok')
    assert.equal(await verifies('alice', `${password}x`), 'bad', 'a wrong password does not verify (the check can fail)')
    assert.deepEqual(await records(), ['alice.json'])
    const record = JSON.parse(out(await inside(['cat', '/var/lib/opencode-users/alice.json'])))
    assert.deepEqual(Object.keys(record).sort(), ['locked', 'password_hash', 'username'])
    assert.equal(record.locked, false)
    assert.equal(out(await inside(['stat', '-c', '%a', '/var/lib/opencode-users', '/var/lib/opencode-users/alice.json'])), '700\n600')
    assert.deepEqual(await configUsers(), ['alice'])
    const listed = await sandbox.occ(['user', 'list', '--json'])
    assert.ok(userListResultSchema.safeParse(json(listed)).success, out(listed))
    const again = await sandbox.occ(['user', 'add', 'alice', '--generate', '--json'])
    expectExit(again, 1)
    assert.equal(json<{error: {message: string}}>(again).error.message, "User 'alice' already exists in the container.")
    const view = await status('--show-secrets')
    assert.equal(view.iotp.state, 'user_exists')
    assert.equal(view.iotp.value, null)
    assert.deepEqual(view.security?.users, ['alice'])
    const noReset = await sandbox.occ(['reset', 'iotp', '--json'])
    expectExit(noReset, 1)
    assert.equal(json<{error: {code: string}}>(noReset).error.code, 'IOTP_INACTIVE')

    const remove = await sandbox.occ(['user', 'remove', 'alice', '--force', '--json'])
    expectExit(remove, 0)
    assert.deepEqual(json(remove), {removed: true, username: 'alice', users: []})
    assert.deepEqual(await records(), [])
    assert.deepEqual(await configUsers(), [])
  })

  it('--password-stdin: the password verifies and is never in the sandbox ps (args or env), occ output or the container log', async () => {
    const password = 'Pw-stdin-7f3a9c2e41d'
    await inside(['rm', '-f', '/tmp/occ-ps-stop'])
    const monitor = execa('docker', [
      'exec', sandbox.containerName, 'sh', '-c',
      'n=0; while [ ! -e /tmp/occ-ps-stop ] && [ $n -lt 3000 ]; do ps axeww -o args; n=$((n+1)); done; echo "snapshots=$n"',
    ], {reject: false})
    const add = await sandbox.occ(['user', 'add', 'bob', '--password-stdin', '-v'], {input: `${password}\n`, stdin: 'pipe'})
    await inside(['touch', '/tmp/occ-ps-stop'])
    const seen = await monitor
    expectExit(add, 0)
    assert.equal(await verifies('bob', password), 'ok')
    const snapshots = Number(/snapshots=(\d+)/.exec(String(seen.stdout))?.[1] ?? 0)
    assert.ok(snapshots > 5, `the ps monitor ran during the add (${snapshots} snapshots)`)
    assert.ok(String(seen.stdout).includes('occ-users'), 'the monitor saw the add at work in the sandbox')
    assert.ok(!String(seen.stdout).includes(password), 'the password was in ps output inside the sandbox')
    assert.ok(!`${out(add)}${add.stderr}`.includes(password), 'the password was in occ output')
    const logs = await execa('docker', ['logs', sandbox.containerName], {reject: false})
    assert.ok(!`${logs.stdout}${logs.stderr}`.includes(password), 'the password was in the container log')

    const disable = await sandbox.occ(['user', 'disable', 'bob', '--json'])
    expectExit(disable, 0)
    assert.ok(userEnabledResultSchema.safeParse(json(disable)).success)
    assert.deepEqual(json(disable), {enabled: false, username: 'bob', users: ['bob']})
    assert.equal(await passwdStatus('bob'), 'L')
    assert.equal(await verifies('bob', password), 'bad', 'a disabled user cannot sign in')
    const list = json<{users: Array<{username: string; enabled: boolean}>}>(await sandbox.occ(['user', 'list', '--json']))
    assert.deepEqual(list.users.map((user) => [user.username, user.enabled]), [['bob', false]])

    expectExit(await sandbox.occ(['user', 'enable', 'bob']), 0)
    assert.equal(await verifies('bob', password), 'ok')
    const changed = await sandbox.occ(['user', 'passwd', 'bob', '--password-stdin'], {input: 'Second-pass-88\n', stdin: 'pipe'})
    expectExit(changed, 0)
    assert.equal(await verifies('bob', 'Second-pass-88'), 'ok')
    assert.equal(await verifies('bob', password), 'bad')
    expectExit(await sandbox.occ(['user', 'remove', 'bob', '--force']), 0)
  })

  it('stop --remove && start: users and lock states come back; an account deleted in a running sandbox is recreated by occ start', async () => {
    const added = await sandbox.occ(['user', 'add', 'carol', '--generate', '--json'])
    expectExit(added, 0)
    const parsedAdd = userAddResultSchema.parse(json(added))
    const carol = parsedAdd.password ?? ''
    assert.match(carol, /^[A-Za-z0-9]{30}$/)
    const dave = out(await sandbox.occ(['user', 'add', 'dave', '--generate', '--print-password-only'])).trim()
    expectExit(await sandbox.occ(['user', 'disable', 'dave']), 0)
    expectExit(await sandbox.occ(['stop', '--remove']), 0)
    const restarted = await sandbox.occ(startArgs)
    expectExit(restarted, 0)
    assert.ok(!OTP_LINE.test(out(restarted)), 'no IOTP block once users exist')
    assert.equal(await verifies('carol', carol), 'ok')
    assert.equal(await passwdStatus('dave'), 'L')
    assert.equal(await verifies('dave', dave), 'bad')
    expectExit(await sandbox.occ(['user', 'enable', 'dave']), 0)
    assert.equal(await verifies('dave', dave), 'ok', 'the hash came back with the lock')

    // occ's own restore (not only the image's entrypoint): the account goes, occ start brings it back.
    expectExit(await inside(['userdel', '-r', 'carol']), 0)
    const again = await sandbox.occ(['start', '--json'])
    expectExit(again, 0)
    assert.deepEqual(json<{users: {restored: string[]}}>(again).users.restored, ['carol'])
    assert.equal(await verifies('carol', carol), 'ok')

    const last = await sandbox.occ(['user', 'remove', 'carol'])
    expectExit(last, 0)
    const guarded = await sandbox.occ(['user', 'remove', 'dave', '--json'])
    expectExit(guarded, 1)
    assert.equal(json<{error: {code: string; message: string}}>(guarded).error.message, 'Cannot remove last user. Add another user first or use --force.')
    const builtin = await sandbox.occ(['user', 'remove', 'opencoder', '--json'])
    expectExit(builtin, 1)
    assert.match(json<{error: {message: string}}>(builtin).error.message, /protected system user/)
    expectExit(await sandbox.occ(['user', 'remove', 'dave', '--force']), 0)
    assert.deepEqual(await configUsers(), [])
  })

  it('parity: the same sequence through the host runtime and the container runtime (occ inside the sandbox) gives the same results and records', async () => {
    const viaHost = (args: string[], input?: string): Promise<Result> =>
      sandbox.occ([...args, '--json'], input === undefined ? {} : {input, stdin: 'pipe'})
    const viaContainer = (args: string[], input?: string): Promise<Result> =>
      inside([`${NODE_DIR}/node`, `${OCC_DIR}/bin/run.js`, ...args, '--json', '--runtime', 'container'], input)
    const sequence: Array<{args: string[]; input?: string; password?: [string, string]}> = [
      {args: ['user', 'add', 'erin', '--password-stdin'], input: 'Erin-pass-1\n', password: ['erin', 'Erin-pass-1']},
      {args: ['user', 'add', 'frank', '--password-stdin'], input: 'Frank-pass-1\n', password: ['frank', 'Frank-pass-1']},
      {args: ['user', 'list']},
      {args: ['user', 'disable', 'frank']},
      {args: ['user', 'list']},
      {args: ['user', 'enable', 'frank'], password: ['frank', 'Frank-pass-1']},
      {args: ['user', 'passwd', 'erin', '--password-stdin'], input: 'Erin-pass-2\n', password: ['erin', 'Erin-pass-2']},
      {args: ['user', 'add', 'opencoder', '--password-stdin'], input: 'whatever-pass\n'},
      {args: ['user', 'remove', 'opencoder']},
      {args: ['user', 'remove', 'erin']},
      {args: ['user', 'remove', 'frank']},
      {args: ['user', 'remove', 'frank', '--force']},
      {args: ['user', 'list']},
    ]
    // Every record in one exec: name, lock state and the hash's scheme (its salt differs per run).
    const snapshot = async (): Promise<string> => {
      const dump = out(await inside(['sh', '-c', 'for f in /var/lib/opencode-users/*.json; do [ -f "$f" ] && { echo "== ${f##*/}"; cat "$f"; }; done; true']))
      return dump
        .split('== ')
        .filter(Boolean)
        .map((chunk) => {
          const [file, ...rest] = chunk.split('\n')
          const record = JSON.parse(rest.join('\n'))
          return `${file}: ${record.username} locked=${record.locked} scheme=${/^!?(\$[^$]+\$)/.exec(record.password_hash)?.[1]}`
        })
        .join('\n')
    }

    const run = async (via: typeof viaHost): Promise<Array<{exit: number; result: unknown; records: string; verified: string}>> => {
      const steps = []
      for (const step of sequence) {
        const result = await via(step.args, step.input)
        const parsed = JSON.parse(out(result) || '{}')
        // Only the error's code and message: where to run it next may name the runtime.
        const comparable = parsed.error ? {code: parsed.error.code, message: parsed.error.message} : parsed
        steps.push({
          exit: result.exitCode ?? -1,
          records: await snapshot(),
          result: comparable,
          verified: step.password ? await verifies(...step.password) : '',
        })
      }

      return steps
    }

    const host = await run(viaHost)
    const container = await run(viaContainer)
    assert.deepEqual(container, host)
    assert.deepEqual(host.map((step) => step.exit), [0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 1, 0, 0], JSON.stringify(host, null, 1))
    assert.ok(host.every((step) => step.verified === '' || step.verified === 'ok'))
    // config.users: the host writes it; a change made inside reaches it at the next host command.
    expectExit(await viaContainer(['user', 'add', 'gina', '--password-stdin'], 'Gina-pass-1\n'), 0)
    expectExit(await sandbox.occ(['user', 'list']), 0)
    assert.deepEqual(await configUsers(), ['gina'])
    expectExit(await sandbox.occ(['user', 'remove', 'gina', '--force']), 0)
  })

  it('restart restores and syncs: a user added inside the sandbox (config.users out of reach there) reaches config.users at occ restart', async () => {
    const added = await inside([`${NODE_DIR}/node`, `${OCC_DIR}/bin/run.js`, 'user', 'add', 'hank', '--password-stdin', '--runtime', 'container'], 'Hank-pass-1\n')
    expectExit(added, 0)
    assert.match(String(added.stderr), /config\.users follows at the next occ start, occ restart or occ user command/, describeRun(added))
    assert.deepEqual(await configUsers(), [], 'not written from inside the sandbox')
    const restarted = await sandbox.occ(['restart', '--json'])
    expectExit(restarted, 0)
    assert.deepEqual(json<{users: {users: string[]}}>(restarted).users.users, ['hank'])
    assert.deepEqual(await configUsers(), ['hank'])
    assert.equal(await verifies('hank', 'Hank-pass-1'), 'ok')
    expectExit(await sandbox.occ(['user', 'remove', 'hank', '--force']), 0)
  })
})
