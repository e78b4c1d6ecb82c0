import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {LISTENER_FILE, REQUEST_FILE, RESULT_FILE} from '../../src/protocol/command-files.js'
import {writeFileNoFollow} from '../../src/protocol/safe-fs.js'
import type {ListenerStatusFile, UpdateResult} from '../../src/protocol/schemas.js'
import {findContainerCommandsDir, handOffUpdate} from '../../src/runtime/update/handoff.js'
import {updateOutcomeSchema} from '../../src/runtime/update/outcome-schema.js'

const A = 'a'.repeat(40)
const B = 'b'.repeat(40)

async function writeListener(dir: string, patch: Partial<ListenerStatusFile> = {}): Promise<void> {
  const now = new Date().toISOString()
  const status: ListenerStatusFile = {
    heartbeat_at: now,
    heartbeat_interval_ms: 5000,
    pid: 4242,
    started_at: now,
    state: 'idle',
    version: '0.1.0',
    ...patch,
  }
  await writeFileNoFollow(dir, LISTENER_FILE, JSON.stringify(status), {fsync: false})
}

/** A stand-in for the host listener: claims requests by rename and answers them. */
function fakeListener(
  dir: string,
  answer: (request: {request_id?: string; branch?: string; commit?: string}) => Omit<UpdateResult, 'finished_at' | 'request_id' | 'started_at'>,
  options: {stepDelayMs?: number} = {},
): {stop: () => Promise<void>; seen: Array<Record<string, unknown>>} {
  let running = true
  const seen: Array<Record<string, unknown>> = []
  const loop = (async () => {
    while (running) {
      const claim = path.join(dir, `update-command.claimed.1-${Math.random().toString(16).slice(2, 10)}.json`)
      try {
        await fs.rename(path.join(dir, REQUEST_FILE), claim)
      } catch {
        await delay(10)
        continue
      }

      const request = JSON.parse(await fs.readFile(claim, 'utf8'))
      seen.push(request)
      const started = new Date().toISOString()
      await writeListener(dir, {request_id: request.request_id, state: 'updating', step: 'build'})
      await delay(options.stepDelayMs ?? 20)
      const result: UpdateResult = {...answer(request), finished_at: new Date().toISOString(), request_id: request.request_id, started_at: started}
      await writeFileNoFollow(dir, RESULT_FILE, JSON.stringify(result), {fsync: false})
      await fs.rm(claim)
      await writeListener(dir)
    }
  })()
  return {
    seen,
    async stop() {
      running = false
      await loop
    },
  }
}

describe('update: hand-off to the host listener (container runtime)', () => {
  let dir: string
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-handoff-'))
  })
  afterEach(async () => {
    await fs.rm(dir, {force: true, recursive: true})
  })

  it('writes the request, waits for the matching result and reports the host steps', async () => {
    await writeListener(dir)
    // An old result for another request must not be taken for ours.
    await writeFileNoFollow(dir, RESULT_FILE, JSON.stringify({finished_at: new Date().toISOString(), message: 'old', request_id: 'old', started_at: new Date().toISOString(), status: 'success'}), {fsync: false})
    const listener = fakeListener(dir, () => ({changed: true, from_commit: A, message: 'Updated opencode from aaaaaaa to bbbbbbb.', status: 'success', to_commit: B}), {stepDelayMs: 300})
    const lines: string[] = []
    try {
      const outcome = await handOffUpdate({commandsDir: dir, onStatus: (line) => lines.push(line), pollMs: 10, request: {branch: 'main'}})
      assert.equal(outcome.status, 'success')
      assert.equal(outcome.changed, true)
      assert.equal(outcome.fromCommit, A)
      assert.equal(outcome.toCommit, B)
      assert.deepEqual(outcome.ref, {branch: 'main'})
      assert.equal(outcome.message, 'Updated opencode from aaaaaaa to bbbbbbb.')
      assert.ok(updateOutcomeSchema.safeParse(outcome).success)
      assert.equal(listener.seen.length, 1)
      assert.equal(listener.seen[0].command, 'update_opencode')
      assert.equal(listener.seen[0].branch, 'main')
      assert.match(String(listener.seen[0].request_id), /^occ-[0-9a-f-]{36}$/)
      assert.ok(lines.some((line) => line === 'host: Build (opencode keeps serving)…'), lines.join('\n'))
    } finally {
      await listener.stop()
    }

    assert.deepEqual((await fs.readdir(dir)).filter((name) => name.startsWith('.') || name === REQUEST_FILE), [], 'no temp or request file left')
  })

  it('defaults to the dev branch and carries an error result back as an error outcome (rolled_back and code as written)', async () => {
    await writeListener(dir)
    const listener = fakeListener(dir, () => ({
      code: 'UPDATE_ROLLED_BACK',
      error_code: 'update_failed',
      message: 'Update to 4444444 failed: x. Switched to 1111111, which is serving again.',
      rolled_back: true,
      status: 'error',
    }))
    try {
      const outcome = await handOffUpdate({commandsDir: dir, pollMs: 10, request: {}})
      assert.equal(outcome.status, 'error')
      assert.equal(outcome.rolledBack, true)
      assert.equal(outcome.error?.code, 'UPDATE_ROLLED_BACK')
      assert.equal(outcome.error?.exitCode, 8)
      assert.deepEqual(outcome.ref, {branch: 'dev'})
      assert.equal(listener.seen[0].branch, undefined)
    } finally {
      await listener.stop()
    }
  })

  it('does not guess rolledBack from the message text (an older result without rolled_back)', async () => {
    await writeListener(dir)
    const listener = fakeListener(dir, () => ({error_code: 'update_failed', message: 'The build failed; it said: rolled back nothing.', status: 'error'}))
    try {
      const outcome = await handOffUpdate({commandsDir: dir, pollMs: 10, request: {}})
      assert.equal(outcome.rolledBack, false)
      assert.equal(outcome.error?.code, 'HOST_UPDATE_FAILED')
    } finally {
      await listener.stop()
    }
  })

  it('fails at once without a live listener, and writes no request', async () => {
    await assert.rejects(handOffUpdate({commandsDir: dir, request: {}}), (error: Error & {code?: string}) => {
      assert.equal(error.code, 'UPDATE_NO_LISTENER')
      assert.match(error.message, /absent/)
      return true
    })
    const old = new Date(Date.now() - 60_000).toISOString()
    await writeListener(dir, {heartbeat_at: old})
    await assert.rejects(handOffUpdate({commandsDir: dir, request: {}}), /stale \(no heartbeat for/)
    await writeListener(dir, {disabled_reason: 'the state mount is read-only', state: 'disabled'})
    await assert.rejects(handOffUpdate({commandsDir: dir, request: {}}), /disabled: the state mount is read-only/)
    assert.deepEqual((await fs.readdir(dir)).sort(), [LISTENER_FILE])
  })

  it('withdraws a request nobody claims', async () => {
    await writeListener(dir)
    await assert.rejects(handOffUpdate({claimTimeoutMs: 100, commandsDir: dir, pollMs: 10, request: {}}), (error: Error & {code?: string}) => {
      assert.equal(error.code, 'TIMEOUT')
      assert.match(error.message, /did not pick up the request .* it was withdrawn/)
      return true
    })
    assert.deepEqual((await fs.readdir(dir)).sort(), [LISTENER_FILE])
  })

  it('waits on the monotonic clock: a wall clock leaping an hour ahead neither withdraws the request nor ends the wait', async () => {
    await writeListener(dir)
    const realNow = Date.now
    let offset = 0
    Date.now = () => realNow() + offset
    let listener: ReturnType<typeof fakeListener> | undefined
    try {
      const pending = handOffUpdate({claimTimeoutMs: 2000, commandsDir: dir, pollMs: 10, request: {}, timeoutMs: 60_000})
      await delay(100)
      offset = 3_600_000
      await delay(200)
      listener = fakeListener(dir, () => ({changed: false, message: 'done', status: 'success'}))
      const outcome = await pending
      assert.equal(outcome.message, 'done')
    } finally {
      Date.now = realNow
      await listener?.stop()
    }
  })

  it('withdraws its request when cancelled before the host claims it', async () => {
    await writeListener(dir)
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 50)
    await assert.rejects(handOffUpdate({commandsDir: dir, pollMs: 10, request: {}, signal: controller.signal}), /Cancelled before the host started the update/)
    assert.deepEqual((await fs.readdir(dir)).sort(), [LISTENER_FILE])
  })

  it('never replaces a pending request: it queues behind it', async () => {
    await writeListener(dir)
    const foreign = JSON.stringify({command: 'update_opencode', request_id: 'web-ui-1'})
    await fs.writeFile(path.join(dir, REQUEST_FILE), foreign)
    const lines: string[] = []
    const pending = handOffUpdate({commandsDir: dir, onStatus: (line) => lines.push(line), pollMs: 10, request: {commit: 'abcdef1'}})
    await delay(100)
    assert.equal(await fs.readFile(path.join(dir, REQUEST_FILE), 'utf8'), foreign, 'the web UI request is intact')
    const listener = fakeListener(dir, (request) => ({changed: false, message: `done ${request.request_id}`, status: 'success'}))
    try {
      const outcome = await pending
      assert.match(outcome.message, /^done occ-/)
      assert.deepEqual(
        listener.seen.map((request) => request.request_id === 'web-ui-1' || String(request.commit)),
        [true, 'abcdef1'],
      )
      assert.ok(lines.some((line) => /queued behind it/.test(line)))
    } finally {
      await listener.stop()
    }
  })

  it('finds the commands dir: the XDG state dir first', async () => {
    const commands = path.join(dir, 'opencode', 'opencode-cloud', 'commands')
    await assert.rejects(findContainerCommandsDir({xdgState: dir}), /No command directory/)
    await fs.mkdir(commands, {recursive: true})
    assert.equal(await findContainerCommandsDir({xdgState: dir}), commands)
  })
})
