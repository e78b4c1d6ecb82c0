import assert from 'node:assert/strict'

import fc from 'fast-check'

import {OccError} from '../../../src/errors.js'
import {parseSandboxFacts, sandboxFactsArgv} from '../../../src/runtime/status.js'
import {statusViewSchema} from '../../../src/runtime/status-schema.js'
import {exposedBind, iotpInfo, iotpResetHints, isLocalhostBind, parseBootstrapAnswer} from '../../../src/runtime/users/iotp.js'
import {assertUsername, usernameProblem} from '../../../src/runtime/users/names.js'
import {generatePassword, passwordLength, readPasswordLine} from '../../../src/runtime/users/password.js'
import {parseInventory, parseShadow, renderRecord} from '../../../src/runtime/users/sandbox-script.js'
import {UserStore} from '../../../src/runtime/users/store.js'
import {FakeSandbox, fakeHash} from './fake-sandbox.js'

async function rejects(promise: Promise<unknown>, code: string, message?: RegExp): Promise<OccError> {
  try {
    await promise
  } catch (error) {
    assert.ok(error instanceof OccError, `not an OccError: ${error}`)
    assert.equal(error.code, code, error.message)
    if (message) assert.match(error.message, message)
    return error
  }

  assert.fail(`expected ${code}`)
}

function record(sandbox: FakeSandbox, name: string): {username: string; password_hash: string; locked: boolean} | undefined {
  const text = sandbox.records.get(`${name}.json`)
  return text === undefined ? undefined : JSON.parse(text)
}

describe('user flow (UserStore over a fake Runtime)', () => {
  let sandbox: FakeSandbox
  let synced: string[][]
  let store: UserStore

  beforeEach(() => {
    sandbox = new FakeSandbox('host')
    synced = []
    store = new UserStore(sandbox, {onUsersChanged: async (users) => void synced.push(users)})
  })

  it('add: creates the account, sets the password through chpasswd stdin only, writes the record, syncs config.users', async () => {
    const password = 'Tr0ub4dor-and-3'
    const result = await store.add('alice', password)
    assert.deepEqual(result, {username: 'alice', users: ['alice']})
    assert.ok(sandbox.verifies('alice', password))
    assert.deepEqual(record(sandbox, 'alice'), {locked: false, password_hash: fakeHash(password), username: 'alice'})
    assert.equal(sandbox.records.get('alice.json'), renderRecord({locked: false, password_hash: fakeHash(password), username: 'alice'}))
    assert.deepEqual(synced, [['alice']])
    const carrying = sandbox.calls.filter((call) => JSON.stringify(call).includes(password))
    assert.deepEqual(carrying.map((call) => [call.argv, call.stdin]), [[['chpasswd'], `alice:${password}\n`]])
    for (const call of sandbox.calls) {
      assert.ok(!call.argv.join(' ').includes(password) && !JSON.stringify(call.env ?? {}).includes(password))
      assert.equal(call.user, 'root')
    }
  })

  it('add refuses an existing account, built-ins (also from the image list) and bad passwords', async () => {
    await store.add('alice', 'first-password-1')
    await rejects(store.add('alice', 'another-pass-1'), 'USER_EXISTS', /User 'alice' already exists in the container/)
    await rejects(store.add('opencoder', 'another-pass-1'), 'USAGE', /User 'opencoder' is built-in and cannot be persisted/)
    await rejects(store.add('ubuntu', 'another-pass-1'), 'USAGE', /built-in/)
    sandbox.builtinList.push('imagebuilt')
    await rejects(store.add('imagebuilt', 'another-pass-1'), 'USAGE', /built-in/)
    await rejects(store.add('bob', ''), 'USAGE', /cannot be empty/)
    await rejects(store.add('bob', 'two\nlines'), 'USAGE', /one line/)
  })

  it('hostile names are refused before any exec, by every operation', async () => {
    const hostile = ['../x', 'a;b', '-rf', 'a'.repeat(33), 'аdmin', 'ab', '', 'Alice', '1abc', 'x y', 'a/b', 'a.b', 'a-b', 'ａｌｉｃｅ']
    for (const name of hostile) {
      await rejects(store.add(name, 'a-good-password'), 'USAGE')
      await rejects(store.remove(name, {force: true}), 'USAGE')
      await rejects(store.passwd(name, 'a-good-password'), 'USAGE')
      await rejects(store.setEnabled(name, false), 'USAGE')
    }

    assert.equal(sandbox.calls.length, 0)
  })

  it('the one name rule: only [a-z_][a-z0-9_]{2,31}, whatever fast-check throws at it', () => {
    fc.assert(
      fc.property(fc.string({maxLength: 40, unit: 'binary'}), (name) => {
        const valid = usernameProblem(name) === undefined
        assert.equal(valid, /^[a-z_][a-z0-9_]{2,31}$/.test(name))
      }),
    )
    assert.equal(assertUsername('a_1'), 'a_1')
    assert.equal(usernameProblem('a'.repeat(33)), 'Username must be at most 32 characters')
    assert.equal(usernameProblem('ab'), 'Username must be at least 3 characters')
    assert.equal(usernameProblem(''), 'Username cannot be empty')
  })

  it('list: managed users whose account exists, built-ins never, enabled from the lock state', async () => {
    await store.add('bob', 'bob-password-1')
    await store.add('alice', 'alice-password-1')
    await store.setEnabled('bob', false)
    sandbox.records.set('ghost.json', renderRecord({locked: false, password_hash: '', username: 'ghost'}))
    sandbox.records.set('opencoder.json', renderRecord({locked: false, password_hash: '', username: 'opencoder'}))
    const users = await store.list()
    assert.deepEqual(users, [
      {enabled: true, home: '/home/alice', shell: '/bin/bash', uid: 1002, username: 'alice'},
      {enabled: false, home: '/home/bob', shell: '/bin/bash', uid: 1001, username: 'bob'},
    ])
  })

  it('disable/enable lock and unlock, and the record follows', async () => {
    await store.add('alice', 'alice-password-1')
    assert.deepEqual(await store.setEnabled('alice', false), {enabled: false, username: 'alice', users: ['alice']})
    assert.equal(record(sandbox, 'alice')?.locked, true)
    assert.ok(!sandbox.verifies('alice', 'alice-password-1'))
    await store.setEnabled('alice', true)
    assert.equal(record(sandbox, 'alice')?.locked, false)
    assert.ok(sandbox.verifies('alice', 'alice-password-1'))
    await rejects(store.setEnabled('opencoder', false), 'USAGE', /built-in/)
    assert.equal(sandbox.accounts.get('opencoder')?.hash, '!', 'a built-in is refused before it is locked')
  })

  it('passwd changes the hash and the record; unknown and system accounts are refused', async () => {
    await store.add('alice', 'alice-password-1')
    await store.passwd('alice', 'alice-password-2')
    assert.ok(sandbox.verifies('alice', 'alice-password-2'))
    assert.equal(record(sandbox, 'alice')?.password_hash, fakeHash('alice-password-2'))
    await rejects(store.passwd('nosuch', 'a-password-1'), 'USER_MISSING', /does not exist/)
    await rejects(store.passwd('root', 'a-password-1'), 'USER_PROTECTED', /system account/)
    await rejects(store.passwd('nobody', 'a-password-1'), 'USER_PROTECTED')
  })

  it('remove: the last-user guard (--force overrides), the protected user, records and config.users', async () => {
    await store.add('alice', 'alice-password-1')
    await rejects(store.remove('alice', {force: false}), 'LAST_USER', /^Cannot remove last user\. Add another user first or use --force\.$/)
    await store.add('bob', 'bob-password-1')
    assert.deepEqual(await store.remove('alice', {force: false}), {username: 'alice', users: ['bob']})
    assert.equal(sandbox.records.has('alice.json'), false)
    assert.equal(sandbox.accounts.has('alice'), false)
    await rejects(store.remove('opencoder', {force: true}), 'USER_PROTECTED', /^Cannot remove 'opencoder' - this is a protected system user required for the container to function\.$/)
    await rejects(store.remove('root', {force: true}), 'USER_PROTECTED')
    assert.deepEqual(await store.remove('bob', {force: true}), {username: 'bob', users: []})
    assert.deepEqual(synced.at(-1), [])
  })

  it('remove drops a record whose account is gone (what a failed restore tells the user to run)', async () => {
    sandbox.records.set('ghost.json', renderRecord({locked: false, password_hash: '', username: 'ghost'}))
    assert.deepEqual(await store.remove('ghost', {force: false}), {username: 'ghost', users: []})
    assert.equal(sandbox.records.has('ghost.json'), false)
    await rejects(store.remove('ghost', {force: true}), 'USER_MISSING')
  })

  it('add leaves no half-made account when the password or the record cannot be written', async () => {
    sandbox.failChpasswd = true
    await rejects(store.add('alice', 'alice-password-1'), 'USER_COMMAND_FAILED', /Setting the password failed/)
    assert.equal(sandbox.accounts.has('alice'), false, 'the account made before the failure is gone again')
    assert.equal(sandbox.records.has('alice.json'), false)
    sandbox.failChpasswd = false
    assert.deepEqual(await store.add('alice', 'alice-password-1'), {username: 'alice', users: ['alice']})
  })

  it('preflight: a stopped container, and the container runtime without root', async () => {
    sandbox.running = false
    await rejects(store.preflight(), 'CONTAINER_NOT_RUNNING')
    const inside = new UserStore(new FakeSandbox('container'))
    const realGetuid = process.getuid
    process.getuid = () => 1000
    try {
      await rejects(inside.preflight(), 'NOT_SUPPORTED', /requires root/)
    } finally {
      process.getuid = realGetuid
    }
  })

  describe('restore (every start and restart)', () => {
    it('recreates a missing account with its hash (chpasswd -e on stdin) and lock state; fixes a lock state that differs', async () => {
      const hash = fakeHash('kept-password-1')
      sandbox.records.set('alice.json', renderRecord({locked: false, password_hash: hash, username: 'alice'}))
      sandbox.records.set('bob.json', renderRecord({locked: true, password_hash: `!${fakeHash('bob-password-1')}`, username: 'bob'}))
      sandbox.accounts.set('carol', {hash: `!${fakeHash('carol-1')}`, home: '/home/carol', shell: '/bin/bash', uid: 1003})
      sandbox.records.set('carol.json', renderRecord({locked: false, password_hash: fakeHash('carol-1'), username: 'carol'}))
      const report = await store.restore()
      assert.deepEqual(report.restored, ['alice', 'bob'])
      assert.deepEqual(report.relocked, ['carol'])
      assert.deepEqual(report.users, ['alice', 'bob', 'carol'])
      assert.deepEqual(synced.at(-1), ['alice', 'bob', 'carol'])
      assert.ok(sandbox.verifies('alice', 'kept-password-1'))
      assert.equal(sandbox.accounts.get('bob')?.hash, `!${fakeHash('bob-password-1')}`)
      assert.ok(sandbox.verifies('carol', 'carol-1'))
      for (const call of sandbox.calls) assert.ok(!call.argv.join(' ').includes(hash), 'a hash never travels in argv')
    })

    it('a second restore changes nothing (one exec)', async () => {
      sandbox.records.set('alice.json', renderRecord({locked: false, password_hash: fakeHash('x-password-1'), username: 'alice'}))
      await store.restore()
      const before = sandbox.calls.length
      const report = await store.restore()
      assert.deepEqual([report.restored, report.relocked, report.migrated], [[], [], []])
      assert.equal(sandbox.calls.length - before, 1)
    })

    it('no records: unmanaged /home users are migrated into records (built-ins and system accounts not)', async () => {
      sandbox.accounts.set('dave', {hash: fakeHash('dave-1'), home: '/home/dave', shell: '/bin/bash', uid: 1005})
      sandbox.accounts.set('svc', {hash: '*', home: '/var/lib/svc', shell: '/bin/false', uid: 1006})
      const report = await store.restore()
      assert.deepEqual(report.migrated, ['dave'])
      assert.deepEqual([...sandbox.records.keys()], ['dave.json'])
      assert.deepEqual(record(sandbox, 'dave'), {locked: false, password_hash: fakeHash('dave-1'), username: 'dave'})
    })

    it('fails naming the user when an account cannot be recreated', async () => {
      sandbox.records.set('erin.json', renderRecord({locked: false, password_hash: fakeHash('e-1'), username: 'erin'}))
      sandbox.failCreate.add('erin')
      await rejects(store.restore(), 'USER_RESTORE_FAILED', /Could not restore the login user 'erin'/)
    })

    it('hostile records are skipped: a bad name, a name that is not its file, a hash that could inject a chpasswd line, bad JSON', async () => {
      sandbox.records.set('x.json', renderRecord({locked: false, password_hash: '', username: '../x'}))
      sandbox.records.set('mallory.json', renderRecord({locked: false, password_hash: '', username: 'root'}))
      sandbox.records.set('eve.json', renderRecord({locked: false, password_hash: 'h\nroot:$1$x', username: 'eve'}))
      sandbox.records.set('oops.json', '{not json')
      const report = await store.restore()
      assert.equal(report.skipped.length, 4)
      assert.deepEqual(report.restored, [])
      assert.equal(sandbox.accounts.get('root')?.hash, '*')
    })
  })

  it('parity: the same sequence through a host-kind and a container-kind runtime gives the same results and records', async () => {
    const sequence = async (target: FakeSandbox): Promise<unknown[]> => {
      const flow = new UserStore(target)
      const steps: unknown[] = []
      const step = async (run: () => Promise<unknown>): Promise<void> => {
        try {
          steps.push(await run())
        } catch (error) {
          steps.push({code: (error as OccError).code, message: (error as OccError).message})
        }

        steps.push(Object.fromEntries(target.records))
      }

      await step(() => flow.add('erin', 'erin-password-1'))
      await step(() => flow.add('frank', 'frank-password-1'))
      await step(() => flow.setEnabled('frank', false))
      await step(() => flow.list())
      await step(() => flow.setEnabled('frank', true))
      await step(() => flow.passwd('erin', 'erin-password-2'))
      await step(() => flow.add('opencoder', 'x-password-1'))
      await step(() => flow.remove('erin', {force: false}))
      await step(() => flow.remove('frank', {force: false}))
      await step(() => flow.remove('frank', {force: true}))
      return steps
    }

    const realGetuid = process.getuid
    process.getuid = () => 0
    try {
      assert.deepEqual(await sequence(new FakeSandbox('container')), await sequence(new FakeSandbox('host')))
    } finally {
      process.getuid = realGetuid
    }
  })
})

describe('inventory parsing (untrusted sandbox output)', () => {
  it('never throws and never yields an invalid record, whatever the sandbox prints', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.constantFrom('record a.json e30=', 'passwd a:x:1:1::/h:/s', 'pwstatus a L')), {maxLength: 30}), (lines) => {
        const inventory = parseInventory(lines.join('\n'))
        for (const [name, value] of inventory.records) assert.ok(/^[a-z_][a-z0-9_]{2,31}$/.test(name) && value.username === name)
      }),
    )
  })
})

describe('inventory parsing (untrusted sandbox output)', () => {
  it('home and shell reach `occ user list` without escape sequences; passwd -S status only L, P or NP', () => {
    const inventory = parseInventory('passwd evil:x:1050:1050::/home/ev\u001B[31mRED:/bin/ba\u001B]0;pwned\u0007sh\n')
    assert.deepEqual(inventory.accounts.get('evil'), {home: '/home/evRED', name: 'evil', shell: '/bin/bash', uid: 1050})
    assert.deepEqual(parseShadow('hash=$y$j9T$abc\nstatus=P\n'), {hash: '$y$j9T$abc', status: 'P'})
    for (const text of ['hash=\nstatus=\n', 'hash=$y$x\nstatus=\u001B[2J\n', 'hash=a:b\nstatus=P\n']) assert.equal(parseShadow(text), undefined, text)
  })
})

describe('IOTP: the bootstrap helper, parsed strictly', () => {
  const OTP = 'ab'.repeat(48)

  it('the active form, with and without the secret', () => {
    assert.deepEqual(iotpInfo(parseBootstrapAnswer(JSON.stringify({active: true, created_at: '2026-01-01T00:00:00Z', ok: true, otp: OTP}))), {
      createdAt: '2026-01-01T00:00:00Z',
      detail: null,
      label: 'unused (active)',
      otp: OTP,
      state: 'active',
    })
    assert.equal(iotpInfo(parseBootstrapAnswer('{"ok":true,"active":true,"created_at":"t"}')).otp, null)
  })

  it('the inactive reasons and the helper error payload', () => {
    const state = (text: string): string => iotpInfo(parseBootstrapAnswer(text)).label
    assert.equal(state('{"ok":true,"active":false,"reason":"user_exists"}'), 'inactive (users configured)')
    assert.equal(state('{"ok":true,"active":false,"reason":"completed","completed_at":"t"}'), 'used (completed)')
    assert.equal(state('{"ok":true,"active":false,"reason":"not_initialized"}'), 'inactive (not initialized)')
    assert.equal(state('{"ok":true,"active":false,"reason":"invalid_state"}'), 'error (invalid bootstrap state)')
    assert.equal(state('{"ok":true,"active":false,"reason":"invalid_secret"}'), 'error (invalid bootstrap state)')
    assert.equal(iotpInfo(parseBootstrapAnswer('{"ok":false,"code":"otp_invalid","message":"bad otp","status":401}')).detail, 'otp_invalid: bad otp')
  })

  it('anything else is an error: not JSON, an extra field, a malformed OTP, an unknown reason, too long', () => {
    for (const text of [
      'garbage',
      '',
      `{"ok":true,"active":true,"created_at":"t","otp":"${OTP}","extra":1}`,
      '{"ok":true,"active":true,"created_at":"t","otp":"../../etc"}',
      '{"ok":true,"active":false,"reason":"because"}',
      `{"ok":true,"active":false,"reason":"completed","completed_at":"${'x'.repeat(5000)}"}`,
      '{"ok":true,"active":true,"created_at":"\\u001b]0;pwned\\u0007"}',
      '{"ok":true,"active":false,"reason":"completed","completed_at":"2026\\u001b[2J"}',
    ]) {
      const info = iotpInfo(parseBootstrapAnswer(text))
      assert.equal(info.state, 'error', text)
      assert.equal(info.otp, null)
    }

    assert.match(iotpInfo(parseBootstrapAnswer('{')).detail ?? '', /failed to parse/)
    const error = iotpInfo(parseBootstrapAnswer('{"ok":false,"code":"inactive","message":"no\\u001b[31m more\\u009b2J","status":403}'))
    assert.equal(error.detail, 'inactive: no more', 'a helper message reaches the terminal without escape sequences')
  })

  it('status reads it through the one facts exec: the secret is asked for only with --show-secrets', () => {
    assert.deepEqual(sandboxFactsArgv(false).slice(3), ['occ-facts'])
    assert.deepEqual(sandboxFactsArgv(true).slice(3), ['occ-facts', '--include-secret'])
    const facts = parseSandboxFacts(`broker_socket=1\niotp={"ok":true,"active":true,"created_at":"t","otp":"${OTP}"}\n`)
    assert.equal(facts.iotp?.otp, OTP)
    assert.equal(parseSandboxFacts('iotp_missing=1\n').iotp?.state, 'error')
    assert.equal(parseSandboxFacts('iotp=\n').iotp?.state, 'error')
  })

  it('localhost judgement and the reset hints (--force only when exposed)', () => {
    for (const address of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LOCALHOST']) assert.ok(isLocalhostBind(address), address)
    for (const address of ['0.0.0.0', '::', '192.168.1.2', '[::]']) assert.ok(!isLocalhostBind(address), address)
    assert.deepEqual(iotpResetHints('127.0.0.1'), ['Reset IOTP: occ reset iotp'])
    assert.equal(iotpResetHints('0.0.0.0').length, 2)
    assert.match(iotpResetHints('0.0.0.0')[1], /--force/)
    // reset iotp: exposed when the config or the container's real binding is not loopback.
    assert.equal(exposedBind('127.0.0.1', '127.0.0.1'), undefined)
    assert.equal(exposedBind('127.0.0.1'), undefined)
    assert.equal(exposedBind('127.0.0.1', '0.0.0.0'), '0.0.0.0', 'a container still published on the network')
    assert.equal(exposedBind('0.0.0.0', '127.0.0.1'), '0.0.0.0')
  })
})

describe('passwords', () => {
  it('generated: CSPRNG alphanumeric, 30 by default, OPENCODE_PASSWORD_LENGTH 12–128', () => {
    const password = generatePassword()
    assert.match(password, /^[A-Za-z0-9]{30}$/)
    assert.notEqual(generatePassword(), password)
    assert.equal(passwordLength({}), 30)
    assert.equal(passwordLength({OPENCODE_PASSWORD_LENGTH: '12'}), 12)
    assert.equal(passwordLength({OPENCODE_PASSWORD_LENGTH: '128'}), 128)
    assert.equal(generatePassword(128).length, 128)
    for (const bad of ['11', '129', 'abc', '-5', '20.5']) assert.throws(() => passwordLength({OPENCODE_PASSWORD_LENGTH: bad}), /12 to 128/)
  })

  it('--password-stdin takes the first line, without its line end', async () => {
    const {Readable} = await import('node:stream')
    assert.equal(await readPasswordLine(Readable.from(['sec', 'ret\r\nsecond line\n'])), 'secret')
    assert.equal(await readPasswordLine(Readable.from(['no-newline-at-all'])), 'no-newline-at-all')
    await assert.rejects(readPasswordLine(Readable.from(['\n'])), /cannot be empty/)
  })
})

describe('first login at the end of occ start', () => {
  const OTP = 'cd'.repeat(48)
  const config = (users: string[], allow = false, bind = '127.0.0.1'): import('../../../src/config/schema.js').OccConfig =>
    ({allow_unauthenticated_network: allow, bind_address: bind, users}) as unknown as import('../../../src/config/schema.js').OccConfig

  it('asks the helper for the IOTP only when nobody can log in yet', async () => {
    const {firstLogin} = await import('../../../src/runtime/users/host-users.js')
    const sandbox = new FakeSandbox('host')
    sandbox.bootstrapOutput = JSON.stringify({active: true, created_at: 't', ok: true, otp: OTP})
    const first = await firstLogin(sandbox, config([]))
    assert.equal(first?.iotp.value, OTP)
    assert.equal(first?.iotp.masked, false)
    assert.ok(statusViewSchema.shape.iotp.safeParse(first?.iotp).success, 'start --json has the IOTP in the shape status --json has')
    assert.deepEqual(sandbox.calls.map((call) => [call.argv, call.user]), [[['/usr/local/bin/opencode-cloud-bootstrap', 'status', '--include-secret'], 'root']])
    assert.equal(await firstLogin(sandbox, config(['alice'])), null)
    assert.equal(await firstLogin(sandbox, config([], true)), null)
    assert.equal(sandbox.calls.length, 1)
  })

  it('says why there is no IOTP, with the reset hint (and --force when exposed)', async () => {
    const {firstLogin} = await import('../../../src/runtime/users/host-users.js')
    const sandbox = new FakeSandbox('host')
    sandbox.bootstrapOutput = '{"ok":true,"active":false,"reason":"completed"}'
    const first = await firstLogin(sandbox, config([], false, '0.0.0.0'))
    assert.equal(first?.iotp.state, 'completed')
    assert.equal(first?.iotp.value, null)
    assert.equal(first?.hints.length, 2)
    assert.match(first?.fromLogs ?? '', /INITIAL ONE-TIME PASSWORD \(IOTP\): /)
  })
})
