import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {describeListener, isPidAlive, processLooksLikeOcc, readListenerStatus} from '../../../src/protocol/listener-status.js'
import type {ListenerStatusFile} from '../../../src/protocol/schemas.js'

const NOW = new Date('2026-03-01T12:00:00.000Z')

function status(overrides: Partial<ListenerStatusFile> = {}): ListenerStatusFile {
  return {
    heartbeat_at: '2026-03-01T11:59:58.000Z',
    heartbeat_interval_ms: 5000,
    next_command_at: '2026-03-01T11:59:58.000Z',
    pid: 4242,
    started_at: '2026-03-01T11:00:00.000Z',
    state: 'idle',
    version: '0.1.0',
    ...overrides,
  }
}

describe('protocol/listener-status', () => {
  let dir: string
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-status-'))
  })
  afterEach(() => fs.rm(dir, {force: true, recursive: true}))
  const write = (value: unknown) => fs.writeFile(path.join(dir, 'listener.json'), JSON.stringify(value))

  it('is absent without listener.json', async () => {
    const view = await readListenerStatus(dir, {now: NOW})
    assert.deepEqual(view, {state: 'absent'})
    assert.match(describeListener(view), /^absent/)
  })

  it('is active with a fresh heartbeat, and says what it is doing', async () => {
    await write(status())
    const idle = await readListenerStatus(dir, {now: NOW})
    assert.equal(idle.state, 'active')
    assert.equal(describeListener(idle), 'active (idle, pid 4242, heartbeat 2s ago)')
    await write(status({request_id: 'r1', state: 'updating', step: 'build', step_started_at: '2026-03-01T11:59:00.000Z'}))
    assert.equal(describeListener(await readListenerStatus(dir, {now: NOW})), 'active (updating "r1", step build, pid 4242, heartbeat 2s ago)')
  })

  it('is stale after three missed heartbeats, or when the pid is gone', async () => {
    await write(status({heartbeat_at: '2026-03-01T11:59:44.000Z'}))
    const old = await readListenerStatus(dir, {now: NOW})
    assert.equal(old.state, 'stale')
    assert.equal(describeListener(old), 'stale (no heartbeat for 16s)')
    await write(status())
    const gone = await readListenerStatus(dir, {isAlive: () => false, now: NOW})
    assert.match(describeListener(gone), /stale \(the listener process \(pid 4242\) is gone\)/)
    const foreign = await readListenerStatus(dir, {isAlive: () => true, looksLikeOcc: () => false, now: NOW})
    assert.equal(describeListener(foreign), 'stale (pid 4242 is not an occ process)')
  })

  if (process.platform === 'linux') {
    it('does not call a planted pid 1 an active listener', async () => {
      await write(status({pid: 1}))
      const view = await readListenerStatus(dir, {isAlive: isPidAlive, now: NOW})
      assert.equal(describeListener(view), 'stale (pid 1 is not an occ process)')
    })

    it('tells an occ-looking process (bin/run.js) from another one by its command line', async () => {
      const bin = path.join(dir, 'bin')
      await fs.mkdir(bin)
      await fs.writeFile(path.join(bin, 'run.js'), 'setInterval(() => {}, 1000)')
      const occ = spawn(process.execPath, [path.join(bin, 'run.js'), 'start', '--no-daemon'], {stdio: 'ignore'})
      const other = spawn('sleep', ['30'], {stdio: 'ignore'})
      try {
        await new Promise((resolve) => setTimeout(resolve, 200))
        assert.equal(processLooksLikeOcc(occ.pid!), true)
        assert.equal(processLooksLikeOcc(other.pid!), false)
        assert.equal(processLooksLikeOcc(2 ** 22 + 12_345), false, 'a pid that does not exist')
      } finally {
        occ.kill()
        other.kill()
      }
    })
  }

  it('strips control characters and caps the text it shows from listener.json (the sandbox can write it)', async () => {
    const evil = `\u001B]0;pwned\u0007\u001B[2J\u009B31mread-only${'x'.repeat(1000)}`
    await write(status({disabled_reason: evil, next_command_at: undefined, state: 'disabled', version: '1\u001B[31m.0'}))
    const view = await readListenerStatus(dir, {now: NOW})
    const line = describeListener(view)
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(line, /[\u0000-\u001F\u007F-\u009F]/)
    assert.ok(line.length <= 'disabled: '.length + 120, `${line.length} characters`)
    assert.equal((view as {status: {version: string}}).status.version, '1[31m.0')
    await write(status({request_id: 'r\u001B[1A\r\nFAKE', state: 'updating'}))
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(describeListener(await readListenerStatus(dir, {now: NOW})), /[\u0000-\u001F]/)
  })

  it('reads listener.json with the shared untrusted-JSON rules (a BOM is fine, bad UTF-8 is not)', async () => {
    await fs.writeFile(path.join(dir, 'listener.json'), `\uFEFF${JSON.stringify(status())}`)
    assert.equal((await readListenerStatus(dir, {now: NOW})).state, 'active')
    const bad = Buffer.concat([Buffer.from(JSON.stringify(status()).slice(0, -2)), Buffer.from([0xff]), Buffer.from('"}')])
    await fs.writeFile(path.join(dir, 'listener.json'), bad)
    assert.deepEqual(await readListenerStatus(dir, {now: NOW}), {reason: 'listener.json is not valid JSON', state: 'stale'})
  })

  it('is disabled, with the reason, when the listener said so', async () => {
    await write(status({disabled_reason: 'the bind mount is read-only', next_command_at: undefined, state: 'disabled'}))
    assert.equal(describeListener(await readListenerStatus(dir, {now: NOW})), 'disabled: the bind mount is read-only')
  })

  it('calls a garbled, foreign or symlinked listener.json stale, never trusting it', async () => {
    await fs.writeFile(path.join(dir, 'listener.json'), '{oops')
    assert.equal((await readListenerStatus(dir, {now: NOW})).state, 'stale')
    await write({...status(), extra: true})
    assert.equal((await readListenerStatus(dir, {now: NOW})).state, 'stale')
    await fs.rm(path.join(dir, 'listener.json'))
    const elsewhere = path.join(dir, 'real.json')
    await fs.writeFile(elsewhere, JSON.stringify(status()))
    await fs.symlink(elsewhere, path.join(dir, 'listener.json'))
    assert.equal((await readListenerStatus(dir, {now: NOW})).state, 'stale')
  })

  it('never calls a listener stale because its reader met the heartbeat replacing listener.json (temp + rename)', async function () {
    this.timeout(20_000)
    const file = path.join(dir, 'listener.json')
    const body = JSON.stringify(status({heartbeat_at: '2099-01-01T00:00:00.000Z'}))
    await fs.writeFile(file, body)
    // Another process replaces the file every 10 ms (a heartbeat does it every few seconds).
    const writer = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs'); const [file, body] = process.argv.slice(1); let i = 0
         const timer = setInterval(() => { const tmp = file + '.' + (i++) + '.tmp'; fs.writeFileSync(tmp, body); fs.renameSync(tmp, file) }, 10)
         setTimeout(() => clearInterval(timer), 15000)`,
        file,
        body,
      ],
      {stdio: 'ignore'},
    )
    try {
      const seen = new Map<string, number>()
      for (let i = 0; i < 3000; i++) {
        const view = await readListenerStatus(dir, {now: new Date('2099-01-01T00:00:01.000Z')})
        const key = view.state === 'stale' ? `stale: ${view.reason}` : view.state
        seen.set(key, (seen.get(key) ?? 0) + 1)
      }

      assert.deepEqual([...seen.keys()], ['active'], JSON.stringify(Object.fromEntries(seen)))
    } finally {
      writer.kill()
    }
  })

  it('tells a live pid from a dead one', () => {
    assert.equal(isPidAlive(process.pid), true)
    assert.equal(isPidAlive(2 ** 22 + 12_345), false)
  })
})
