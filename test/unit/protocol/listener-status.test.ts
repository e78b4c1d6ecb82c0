import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {describeListener, isPidAlive, readListenerStatus} from '../../../src/protocol/listener-status.js'
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

  it('tells a live pid from a dead one', () => {
    assert.equal(isPidAlive(process.pid), true)
    assert.equal(isPidAlive(2 ** 22 + 12_345), false)
  })
})
