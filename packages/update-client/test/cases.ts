/**
 * The client's behaviour over real temp dirs, against a fake listener. Plain functions using
 * node:assert, so that the same cases run under mocha on Node (client.test.ts) and on Bun
 * (bun-run.ts, started by client.test.ts).
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import {
  buildUpdateCommand,
  isListenerAlive,
  type ListenerStatus,
  readListenerStatus,
  readResult,
  requestUpdate,
  UpdateClientError,
  type UpdateProgress,
  waitForResult,
} from '../src/index.js'
import {withdrawRequest} from '../src/files.js'
import {FakeListener, iso, listenerJson, result, tempDir, writeAtomic} from './fake-listener.js'

export interface Case {
  name: string
  run(): Promise<void>
}

const cases: Case[] = []
const test = (name: string, run: (dir: string) => Promise<void>): void => {
  cases.push({
    name,
    async run() {
      const dir = await tempDir()
      try {
        await run(dir)
      } finally {
        await fs.rm(dir, {force: true, recursive: true})
      }
    },
  })
}

async function rejection(promise: Promise<unknown>): Promise<UpdateClientError> {
  try {
    await promise
  } catch (error) {
    assert.ok(error instanceof UpdateClientError, `not an UpdateClientError: ${String(error)}`)
    return error
  }

  assert.fail('expected a rejection')
}

async function entries(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((name) => name !== 'listener.json').sort()
}

test('resolves with the answer to its request, reporting the steps from listener.json', async (dir) => {
  const listener = await new FakeListener(dir, {
    answer: (request) => result(request.request_id as string, {changed: true, from_commit: 'a'.repeat(40), to_commit: 'b'.repeat(40)}),
  }).start()
  const progress: UpdateProgress[] = []
  const answer = await requestUpdate({branch: 'dev', dir, onProgress: (p) => progress.push(p), pollMs: 100, requestId: 'r-1'})
  await listener.stop()
  assert.equal(answer.status, 'success')
  assert.equal(answer.request_id, 'r-1')
  assert.equal(answer.changed, true)
  assert.equal(answer.from_commit, 'a'.repeat(40))
  assert.equal(answer.to_commit, 'b'.repeat(40))
  assert.deepEqual(listener.claimed.map((c) => c.body), [{branch: 'dev', command: 'update_opencode', request_id: 'r-1'}])
  assert.ok(
    progress.some((p) => p.state === 'updating' && p.step === 'build' && p.requestId === 'r-1' && p.claimed && p.stepStartedAt),
    JSON.stringify(progress),
  )
  assert.deepEqual(await entries(dir), ['update-command.result.json'], 'no temp file or request left behind')
})

test('generates a request_id when none is given, and passes an error answer through (it resolves)', async (dir) => {
  const listener = await new FakeListener(dir, {
    answer: (request) => result(request.request_id as string, {error_code: 'update_failed', message: 'The build failed: BUILD_FAIL', status: 'error'}),
  }).start()
  const answer = await requestUpdate({dir, pollMs: 100})
  await listener.stop()
  assert.equal(answer.status, 'error')
  assert.equal(answer.error_code, 'update_failed')
  assert.match(String(answer.request_id), /^ui-[0-9a-f-]{36}$/)
  assert.equal(listener.claimed[0]?.body.request_id, answer.request_id)
})

test('a listener that claims but never answers: timeout (the host may still act)', async (dir) => {
  const listener = await new FakeListener(dir, {answer: () => undefined}).start()
  const error = await rejection(requestUpdate({dir, pollMs: 100, requestId: 'slow', timeoutMs: 1500}))
  listener.freeze()
  assert.equal(error.code, 'timeout')
  assert.equal(error.withdrawn, false)
  assert.equal(error.requestId, 'slow')
  assert.match(error.message, /No answer from the host within 2 s/)
})

test('a listener that never claims: timeout, and the request is withdrawn', async (dir) => {
  const listener = await new FakeListener(dir, {claim: false}).start()
  const error = await rejection(requestUpdate({dir, pollMs: 100, requestId: 'unclaimed', timeoutMs: 1200}))
  await listener.stop()
  assert.equal(error.code, 'timeout')
  assert.equal(error.withdrawn, true)
  assert.match(error.message, /withdrawn; nothing was changed/)
  assert.deepEqual(await entries(dir), [])
})

test('a stale heartbeat: listener_stale at once, nothing written', async (dir) => {
  await writeAtomic(dir, 'listener.json', JSON.stringify(listenerJson({heartbeat_at: iso(Date.now() - 60_000), heartbeat_interval_ms: 5000})))
  const started = performance.now()
  const error = await rejection(requestUpdate({dir, pollMs: 100}))
  assert.ok(performance.now() - started < 1000)
  assert.equal(error.code, 'listener_stale')
  assert.match(error.message, /The host service is not running: .*last heartbeat was 60 s ago.*occ install/)
  assert.deepEqual(await entries(dir), [])
})

test('a heartbeat that stops while waiting: listener_stale within three intervals, request withdrawn', async (dir) => {
  const listener = await new FakeListener(dir, {claim: false, heartbeatMs: 300}).start()
  const waiting = requestUpdate({dir, pollMs: 100, requestId: 'orphan'})
  await new Promise((resolve) => setTimeout(resolve, 300))
  listener.freeze()
  const frozenAt = performance.now()
  const error = await rejection(waiting)
  assert.ok(performance.now() - frozenAt < 2500, `took ${performance.now() - frozenAt} ms`)
  assert.equal(error.code, 'listener_stale')
  assert.equal(error.withdrawn, true)
  assert.deepEqual(await entries(dir), [])
})

test('stale means older than three intervals: exactly three is alive, a millisecond more is not', async (dir) => {
  const now = Date.parse('2026-12-01T12:00:00.000Z')
  const at = (ageMs: number) => listenerJson({heartbeat_at: iso(now - ageMs), heartbeat_interval_ms: 5000}) as unknown as ListenerStatus
  assert.equal(isListenerAlive(at(0), now), true)
  assert.equal(isListenerAlive(at(15_000), now), true)
  assert.equal(isListenerAlive(at(15_001), now), false)
  // And requestUpdate follows it: 2.5 intervals old is a listener (it writes, then times out
  // waiting and withdraws); 3.5 intervals old is listener_stale before anything is written.
  await writeAtomic(dir, 'listener.json', JSON.stringify(listenerJson({heartbeat_at: iso(Date.now() - 10_000), heartbeat_interval_ms: 4000})))
  const young = await rejection(requestUpdate({dir, pollMs: 50, requestId: 'young', timeoutMs: 400}))
  assert.equal(young.code, 'timeout', young.message)
  assert.equal(young.withdrawn, true)
  await writeAtomic(dir, 'listener.json', JSON.stringify(listenerJson({heartbeat_at: iso(Date.now() - 14_000), heartbeat_interval_ms: 4000})))
  const old = await rejection(requestUpdate({dir, pollMs: 50, requestId: 'old', timeoutMs: 400}))
  assert.equal(old.code, 'listener_stale', old.message)
  assert.deepEqual(await entries(dir), [])
})

test('a heartbeat that stops is given three intervals, not fewer', async (dir) => {
  const listener = await new FakeListener(dir, {claim: false, heartbeatMs: 400}).start()
  const waiting = requestUpdate({dir, pollMs: 50, requestId: 'patient'})
  await new Promise((resolve) => setTimeout(resolve, 200))
  listener.freeze()
  const frozenAt = performance.now()
  const error = await rejection(waiting)
  const took = performance.now() - frozenAt
  // The last beat was at most ~140 ms before the freeze; three intervals are 1200 ms.
  assert.ok(took >= 1000, `stale after ${took} ms: earlier than three intervals`)
  assert.equal(error.code, 'listener_stale')
})

test('hostile files at the result path (FIFO, directory, bad JSON, bad UTF-8) are refused without blocking; the real answer is taken', async (dir) => {
  const resultPath = path.join(dir, 'update-command.result.json')
  execFileSync('mkfifo', [resultPath])
  assert.equal(await readResult({dir}), null, 'a FIFO: not read (and no hang)')
  await fs.rm(resultPath)
  await fs.mkdir(resultPath)
  assert.equal(await readResult({dir}), null, 'a directory')
  await fs.rmdir(resultPath)
  for (const bytes of [Buffer.from('{"status": "success", "request_id": "hostile"'), Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), Buffer.from('')]) {
    await fs.writeFile(resultPath, bytes)
    assert.equal(await readResult({dir}), null, JSON.stringify(bytes.toString('latin1')))
  }

  await fs.writeFile(resultPath, Buffer.from('\uFEFF' + JSON.stringify(result('hostile'))))
  assert.equal((await readResult({dir}))?.request_id, 'hostile', 'one BOM is allowed, as the host allows it')
  await fs.writeFile(resultPath, Buffer.from('\uFEFF\uFEFF' + JSON.stringify(result('hostile'))))
  assert.equal(await readResult({dir}), null, 'two BOMs: refused, as the host refuses them')
  await fs.rm(resultPath)
  execFileSync('mkfifo', [resultPath])
  const listener = await new FakeListener(dir, {
    answer: async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 300))
      return result(request.request_id as string, {message: 'the real answer'})
    },
  }).start()
  const answer = await requestUpdate({dir, pollMs: 50, requestId: 'hostile'})
  await listener.stop()
  assert.equal(answer.message, 'the real answer')
  assert.deepEqual(listener.errors, [])
})

test('hostile listener.json (FIFO, oversized, bad JSON, symlink): no_listener naming why, nothing written, no hang', async (dir) => {
  const file = path.join(dir, 'listener.json')
  const plant: Array<[string, () => Promise<void>, RegExp]> = [
    ['fifo', async () => void execFileSync('mkfifo', [file]), /listener\.json is not a regular file/],
    ['oversized', () => fs.writeFile(file, JSON.stringify(listenerJson({version: 'v'.repeat(70 * 1024)}))), /listener\.json is larger than 64 KiB/],
    ['bad JSON', () => fs.writeFile(file, '{"pid": 1,'), /listener\.json is not valid JSON/],
    ['symlink', async () => {
      await fs.writeFile(path.join(dir, 'elsewhere.json'), JSON.stringify(listenerJson()))
      await fs.symlink(path.join(dir, 'elsewhere.json'), file)
    }, /listener\.json is a symlink/],
  ]
  for (const [what, make, why] of plant) {
    await make()
    assert.equal(await readListenerStatus({dir}), null, what)
    const started = performance.now()
    const error = await rejection(requestUpdate({dir, listenerGraceMs: 300, pollMs: 50}))
    assert.ok(performance.now() - started < 2000, what)
    assert.equal(error.code, 'no_listener', what)
    assert.match(error.message, /^The host service is not running/, what)
    assert.match(error.message, why, what)
    await fs.rm(file)
    assert.deepEqual((await entries(dir)).filter((name) => name !== 'elsewhere.json'), [], what)
  }
})

test('no listener.json: no_listener after the grace, saying the host service is not running; nothing written', async (dir) => {
  const started = performance.now()
  const error = await rejection(requestUpdate({dir, listenerGraceMs: 300, pollMs: 100}))
  assert.ok(performance.now() - started < 1500)
  assert.equal(error.code, 'no_listener')
  assert.equal(error.listener, null)
  assert.match(error.message, /^The host service is not running.*Run `occ install` on the host/)
  assert.deepEqual(await entries(dir), [])
})

test('a listener that starts within the grace is used', async (dir) => {
  const listener = new FakeListener(dir, {answer: (r) => result(r.request_id as string)})
  const started = new Promise<FakeListener>((resolve, reject) => setTimeout(() => listener.start().then(resolve, reject), 200))
  const answer = await requestUpdate({dir, listenerGraceMs: 3000, pollMs: 100, requestId: 'late-listener'})
  await (await started).stop()
  assert.equal(answer.request_id, 'late-listener')
  assert.deepEqual(listener.errors, [])
})

test('a disabled listener: no_listener with its reason', async (dir) => {
  await writeAtomic(dir, 'listener.json', JSON.stringify(listenerJson({disabled_reason: 'the state mount is read-only', state: 'disabled'})))
  const error = await rejection(requestUpdate({dir, pollMs: 100}))
  assert.equal(error.code, 'no_listener')
  assert.match(error.message, /disabled: the state mount is read-only/)
  assert.equal(error.listener?.state, 'disabled')
  assert.deepEqual(await entries(dir), [], 'nothing written')
})

test("a result for another request_id is not ours: it waits for its own", async (dir) => {
  await writeAtomic(dir, 'update-command.result.json', JSON.stringify(result('someone-else', {message: 'not yours'})))
  const listener = await new FakeListener(dir, {
    answer: async (request) => {
      await writeAtomic(dir, 'update-command.result.json', JSON.stringify(result('another-one', {message: 'still not yours'})))
      await new Promise((resolve) => setTimeout(resolve, 300))
      return result(request.request_id as string, {message: 'yours'})
    },
  }).start()
  const answer = await requestUpdate({dir, pollMs: 50, requestId: 'mine'})
  await listener.stop()
  assert.equal(answer.message, 'yours')
})

test('a result planted as a symlink is not followed; the real answer is taken', async (dir) => {
  const elsewhere = path.join(dir, 'planted.json')
  await fs.writeFile(elsewhere, JSON.stringify(result('linked', {message: 'from the symlink'})))
  await fs.symlink(elsewhere, path.join(dir, 'update-command.result.json'))
  assert.equal(await readResult({dir}), null)
  const listener = await new FakeListener(dir, {
    answer: async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 400))
      return result(request.request_id as string, {message: 'the real answer'})
    },
  }).start()
  const answer = await requestUpdate({dir, pollMs: 50, requestId: 'linked'})
  await listener.stop()
  assert.equal(answer.message, 'the real answer')
})

test('an oversized result (over 64 KiB) is not read; the real answer is taken', async (dir) => {
  const big = result('big', {message: 'x'.repeat(70 * 1024)})
  await writeAtomic(dir, 'update-command.result.json', JSON.stringify(big))
  assert.equal(await readResult({dir}), null)
  const listener = await new FakeListener(dir, {
    answer: async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 400))
      return result(request.request_id as string, {message: 'small'})
    },
  }).start()
  const answer = await requestUpdate({dir, pollMs: 50, requestId: 'big'})
  await listener.stop()
  assert.equal(answer.message, 'small')
})

test('a result that breaks the schema (unknown field, bad status) is not taken', async (dir) => {
  await writeAtomic(dir, 'update-command.result.json', JSON.stringify(result('strict', {extra: 1})))
  assert.equal(await readResult({dir}), null)
  await writeAtomic(dir, 'update-command.result.json', JSON.stringify(result('strict', {status: 'done'})))
  assert.equal(await readResult({dir}), null)
  await writeAtomic(dir, 'update-command.result.json', JSON.stringify(result('strict')))
  assert.equal((await readResult({dir, requestId: 'strict'}))?.status, 'success')
  assert.equal(await readResult({dir, requestId: 'other'}), null)
})

test('invalid input is refused before anything is written', async (dir) => {
  const listener = await new FakeListener(dir).start()
  for (const options of [{branch: 'dev', commit: 'abcdef1'}, {branch: 'a..b'}, {branch: '-rf'}, {branch: 'HEAD'}, {branch: 'x.lock'}, {commit: 'xyz'}, {requestId: 'r'.repeat(201)}]) {
    const error = await rejection(requestUpdate({dir, ...options}))
    assert.equal(error.code, 'invalid_request', JSON.stringify(options))
  }

  await listener.stop()
  assert.deepEqual(await entries(dir), [])
  assert.throws(() => buildUpdateCommand({branch: 'dev', commit: 'abcdef1'}), /Specify only one of branch or commit/)
  assert.deepEqual(buildUpdateCommand({commit: 'abcdef1', requestId: 'x'}), {command: 'update_opencode', commit: 'abcdef1', request_id: 'x'})
})

test('aborting while queued: aborted, and the request is withdrawn', async (dir) => {
  const listener = await new FakeListener(dir, {claim: false}).start()
  const controller = new AbortController()
  const waiting = requestUpdate({dir, pollMs: 100, requestId: 'abort-me', signal: controller.signal})
  setTimeout(() => controller.abort(), 300)
  const error = await rejection(waiting)
  await listener.stop()
  assert.equal(error.code, 'aborted')
  assert.equal(error.withdrawn, true)
  assert.deepEqual(await entries(dir), [])
})

test('a second request never replaces one that is still waiting: it goes in once the first is claimed', async (dir) => {
  const listener = await new FakeListener(dir, {answer: (r) => result(r.request_id as string), claim: false, stepMs: 50}).start()
  const first = requestUpdate({dir, pollMs: 50, requestId: 'first'})
  await new Promise((resolve) => setTimeout(resolve, 200))
  const second = requestUpdate({dir, pollMs: 50, requestId: 'second'})
  await new Promise((resolve) => setTimeout(resolve, 300))
  const waiting = JSON.parse(await fs.readFile(path.join(dir, 'update-command.json'), 'utf8')) as {request_id: string}
  assert.equal(waiting.request_id, 'first')
  listener.setClaiming(true)
  const answers = await Promise.all([first, second])
  await listener.stop()
  assert.deepEqual(answers.map((a) => a.request_id), ['first', 'second'])
  assert.deepEqual(listener.claimed.map((c) => c.body.request_id), ['first', 'second'])
})

test("reports its place in the listener's queue and an answer the host could not write yet", async (dir) => {
  let phase = 0
  const beat = setInterval(() => {
    const state =
      phase === 0
        ? {queue: [{claimed_at: iso(), request_id: 'other'}, {claimed_at: iso(), request_id: 'queued'}], request_id: 'running', state: 'updating', step: 'build'}
        : {next_command_at: iso(), pending_result: {next_retry_at: iso(Date.now() + 1000), reason: 'ENOSPC: no space left on device', request_id: 'queued', since: iso(), status: 'success'}, state: 'idle'}
    writeAtomic(dir, 'listener.json', JSON.stringify(listenerJson(state))).catch(() => {}) // the dir goes at the end
  }, 50)
  await writeAtomic(dir, 'listener.json', JSON.stringify(listenerJson()))
  const progress: UpdateProgress[] = []
  const waiting = requestUpdate({dir, onProgress: (p) => progress.push(p), pollMs: 50, requestId: 'queued'})
  await new Promise((resolve) => setTimeout(resolve, 150))
  await fs.rename(path.join(dir, 'update-command.json'), path.join(dir, 'update-command.claimed.1-00000000.json'))
  await new Promise((resolve) => setTimeout(resolve, 300))
  phase = 1
  await new Promise((resolve) => setTimeout(resolve, 300))
  await writeAtomic(dir, 'update-command.result.json', JSON.stringify(result('queued')))
  const answer = await waiting
  clearInterval(beat)
  assert.equal(answer.request_id, 'queued')
  assert.ok(progress.some((p) => p.queuePosition === 2 && p.claimed && p.requestId === 'running'), JSON.stringify(progress))
  assert.ok(progress.some((p) => p.pendingAnswer?.reason === 'ENOSPC: no space left on device' && p.pendingAnswer.status === 'success'), JSON.stringify(progress))
})

test('passes through rolled_back and code', async (dir) => {
  const listener = await new FakeListener(dir, {
    answer: (r) => result(r.request_id as string, {code: 'UPDATE_ROLLED_BACK', error_code: 'update_failed', message: 'rolled back', rolled_back: true, status: 'error'}),
  }).start()
  const answer = await requestUpdate({dir, pollMs: 50})
  await listener.stop()
  assert.equal(answer.rolled_back, true)
  assert.equal(answer.code, 'UPDATE_ROLLED_BACK')
})

test("withdrawing takes back only our own request, never another tab's", async (dir) => {
  const theirs = JSON.stringify({command: 'update_opencode', request_id: 'theirs'})
  await writeAtomic(dir, 'update-command.json', theirs)
  assert.equal(await withdrawRequest(dir, 'ours'), false)
  assert.equal(await fs.readFile(path.join(dir, 'update-command.json'), 'utf8'), theirs)
  await writeAtomic(dir, 'update-command.json', JSON.stringify({command: 'update_opencode', request_id: 'ours'}))
  assert.equal(await withdrawRequest(dir, 'ours'), true)
  assert.deepEqual(await entries(dir), [])
})

test('waitForResult picks up a request made before a restart', async (dir) => {
  const listener = await new FakeListener(dir, {answer: (r) => result(r.request_id as string, {message: 'after restart'})}).start()
  await writeAtomic(dir, 'update-command.json', JSON.stringify({command: 'update_opencode', request_id: 'earlier'}))
  const answer = await waitForResult('earlier', {dir, pollMs: 100})
  await listener.stop()
  assert.equal(answer.message, 'after restart')
})

test('readListenerStatus: the checked file, or null (absent, symlink, unknown field)', async (dir) => {
  assert.equal(await readListenerStatus({dir}), null)
  const status = listenerJson({next_command_at: iso()})
  await writeAtomic(dir, 'listener.json', JSON.stringify(status))
  assert.deepEqual(await readListenerStatus({dir}), status)
  await writeAtomic(dir, 'listener.json', JSON.stringify({...status, surprise: true}))
  assert.equal(await readListenerStatus({dir}), null)
  await fs.writeFile(path.join(dir, 'real.json'), JSON.stringify(status))
  await fs.rm(path.join(dir, 'listener.json'))
  await fs.symlink(path.join(dir, 'real.json'), path.join(dir, 'listener.json'))
  assert.equal(await readListenerStatus({dir}), null)
})

export {cases}
