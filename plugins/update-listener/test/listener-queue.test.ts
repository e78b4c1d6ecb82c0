/**
 * The listener's queue, its answers that cannot be written yet, recovered claims, monotonic
 * time, the repair at start and the health it reports (real temp dirs, fake update plan).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'

import {claimFileName, LISTENER_FILE, listenerStatusSchema, REQUEST_FILE, RESULT_FILE, writeFileNoFollow} from 'opencode-cloud/internal'

import {exists, fakeUpdate, makeWorld, sleep, waitFor, waitForListenerJson, type World} from './helpers.js'

async function listenerJson(world: World) {
  return listenerStatusSchema.parse(JSON.parse(await fs.readFile(path.join(world.dir, LISTENER_FILE), 'utf8')))
}

async function requestGone(world: World): Promise<void> {
  await waitFor(() => exists(path.join(world.dir, REQUEST_FILE)).then((present) => !present))
}

/**
 * Request "one" and wait for its answer, set the wall clock an hour back (`jumpBack`), request
 * "two": it must be answered within 3 s (a 300 ms rate limit timed on the wall clock waits an hour).
 */
async function bothAnsweredAcrossJumpBack(world: World, jumpBack: () => void): Promise<void> {
  await world.request({command: 'update_opencode', request_id: 'one'})
  await world.waitForResults(1)
  jumpBack()
  await world.request({command: 'update_opencode', request_id: 'two'})
  await world.waitForResults(2, 3000)
}

describe('update listener: queue, pending answers, recovery, clocks', () => {
  let world: World
  beforeEach(async () => {
    world = await makeWorld()
  })
  afterEach(async () => {
    await world.cleanup()
  })

  it('a second request renamed in during a build no longer replaces a waiting one: both are answered, in order', async () => {
    const {calls, update} = fakeUpdate({steps: [['build', 400]]})
    world.start({updateOpencode: update})
    await world.request({command: 'update_opencode', request_id: 'running'})
    await waitFor(() => calls.length === 1)
    await world.request({command: 'update_opencode', request_id: 'burst-A'})
    await requestGone(world)
    // The web UI renames the next one into place as soon as the path is free.
    await world.request({command: 'update_opencode', request_id: 'burst-B'})
    const results = await world.waitForResults(3, 10_000)
    assert.deepEqual(results.map((result) => result.request_id), ['running', 'burst-A', 'burst-B'])
    assert.equal(calls.length, 3)
  })

  it('past the queue cap a request is answered at once: "busy: N requests waiting"', async () => {
    const {update} = fakeUpdate({steps: [['build', 600]]})
    world.start({maxQueue: 2, updateOpencode: update})
    await world.request({command: 'update_opencode', request_id: 'running'})
    for (const id of ['q1', 'q2', 'over']) {
      await requestGone(world)
      await world.request({command: 'update_opencode', request_id: id})
    }

    await waitFor(() => world.results.some((result) => result.request_id === 'over'))
    const busy = world.results.find((result) => result.request_id === 'over')!
    assert.equal(busy.error_code, 'busy')
    assert.equal(busy.code, 'UPDATE_BUSY')
    assert.match(busy.message, /^busy: 3 requests waiting/)
    // listener.json is written after each claim, with no order against the busy answer: wait for both queued.
    const status = await waitForListenerJson(world, (view) => (view.queue?.length ?? 0) >= 2)
    assert.deepEqual(status.queue?.map((item) => item.request_id), ['q1', 'q2'])
    const results = await world.waitForResults(4, 10_000)
    assert.deepEqual(results.map((result) => result.request_id), ['over', 'running', 'q1', 'q2'])
  })

  it('by default (as the READMEs say) 8 requests wait behind a running update; the next is busy', async () => {
    const {update} = fakeUpdate({steps: [['build', 30_000]]})
    world.start({updateOpencode: update})
    await world.request({command: 'update_opencode', request_id: 'running'})
    const queued = Array.from({length: 8}, (_, index) => `q${index + 1}`)
    for (const id of [...queued, 'over']) {
      await requestGone(world)
      await world.request({command: 'update_opencode', request_id: id})
    }

    await waitFor(() => world.results.some((result) => result.request_id === 'over'))
    const busy = world.results.find((result) => result.request_id === 'over')!
    assert.equal(busy.error_code, 'busy')
    assert.match(busy.message, /^busy: 9 requests waiting/)
    assert.deepEqual(world.results.map((result) => result.request_id), ['over'])
    // listener.json is written after each claim, with no order against the busy answer: wait for all 8 queued.
    const status = await waitForListenerJson(world, (view) => (view.queue?.length ?? 0) >= 8)
    assert.deepEqual(status.queue?.map((item) => item.request_id), queued)
  })

  it('an answer that cannot be written (ENOSPC) stays pending, listener.json says why, and it is written once it can be', async () => {
    let failures = 3
    const writeFile: typeof writeFileNoFollow = async (dir, name, data, options) => {
      if (name === RESULT_FILE && failures > 0) {
        failures--
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), {code: 'ENOSPC'})
      }

      return writeFileNoFollow(dir, name, data, options)
    }

    const pendingDir = path.join(world.root, 'pending')
    world.start({pendingDir, writeFile})
    await world.request({command: 'update_opencode', request_id: 'full-disk'})
    await waitFor(() => world.events.some((event) => event.type === 'pending'))
    await waitFor(async () => (await listenerJson(world)).pending_result !== undefined)
    const status = await listenerJson(world)
    assert.equal(status.pending_result?.request_id, 'full-disk')
    assert.match(status.pending_result?.reason ?? '', /ENOSPC/)
    assert.ok(await exists(path.join(pendingDir, (await fs.readdir(pendingDir))[0])), 'kept on the host too')
    const [result] = await world.waitForResults(1, 15_000)
    assert.equal(result.request_id, 'full-disk')
    assert.equal(result.status, 'success', 'the real answer, not "interrupted"')
    assert.deepEqual(await fs.readdir(pendingDir), [], 'forgotten once written')
    await waitFor(async () => (await listenerJson(world)).pending_result === undefined)
  })

  it('a pending answer survives a restart of occ: the next listener writes it instead of "interrupted"', async () => {
    const pendingDir = path.join(world.root, 'pending')
    const alwaysFull: typeof writeFileNoFollow = async (dir, name, data, options) => {
      if (name === RESULT_FILE) throw Object.assign(new Error('ENOSPC: no space left on device'), {code: 'ENOSPC'})
      return writeFileNoFollow(dir, name, data, options)
    }

    const first = world.start({pendingDir, pid: 4_100_000, writeFile: alwaysFull})
    await world.request({command: 'update_opencode', request_id: 'owed'})
    await waitFor(() => world.events.some((event) => event.type === 'pending'))
    await first.stop()
    assert.equal(await exists(path.join(world.dir, RESULT_FILE)), false)
    // The disk has room again; occ (the service) starts again.
    world.start({isAlive: (pid) => pid !== 4_100_000, pendingDir})
    const [result] = await world.waitForResults(1)
    assert.equal(result.request_id, 'owed')
    assert.equal(result.status, 'success')
    assert.notEqual(result.error_code, 'interrupted')
  })

  it('recovered claims: the 16 newest answered without charging the rate limit, older ones set aside; a real request is not delayed', async () => {
    const deadPid = 4_000_123
    for (let i = 0; i < 20; i++) {
      await fs.writeFile(path.join(world.dir, claimFileName(deadPid)), JSON.stringify({command: 'update_opencode', request_id: `planted-${i}`}))
      await sleep(2)
    }

    const {calls, update} = fakeUpdate()
    const started = performance.now()
    world.start({isAlive: (pid) => pid !== deadPid, rateLimitMs: 5000, updateOpencode: update})
    await waitFor(() => world.results.length >= 16)
    await world.request({command: 'update_opencode', request_id: 'real'})
    await waitFor(() => world.results.some((result) => result.request_id === 'real'), 3000)
    assert.ok(performance.now() - started < 2500, `the real request waited ${Math.round(performance.now() - started)} ms`)
    assert.equal(calls.length, 1)
    const interrupted = world.results.filter((result) => result.error_code === 'interrupted').map((result) => result.request_id)
    assert.equal(interrupted.length, 16)
    assert.ok(interrupted.includes('planted-19') && !interrupted.includes('planted-0'), 'the newest are answered')
    const left = (await fs.readdir(world.dir)).filter((name) => name.startsWith('update-command.claimed.'))
    assert.deepEqual(left, [])
  })

  it('intervals use the monotonic clock: the wall clock jumping back an hour does not delay the next request', async () => {
    let offset = 0
    const {calls, update} = fakeUpdate()
    world.start({clock: () => Date.now() + offset, monotonic: () => performance.now(), rateLimitMs: 300, updateOpencode: update})
    await bothAnsweredAcrossJumpBack(world, () => {
      offset = -3_600_000
    })
    assert.equal(calls.length, 2)
    // listener.json is rewritten after the answer: wait for an idle one taken on the jumped clock (heartbeat_at).
    const status = await waitForListenerJson(world, (view) => view.state === 'idle' && Math.abs(Date.parse(view.heartbeat_at) - (Date.now() + offset)) < 2000)
    assert.ok(Math.abs(Date.parse(status.next_command_at!) - (Date.now() + offset)) < 2000, 'next_command_at is not an hour off')
  })

  it('with the default clocks (as occ starts it), Date.now jumping back an hour does not delay the next request', async () => {
    const realNow = Date.now
    let offset = 0
    Date.now = () => realNow() + offset
    try {
      const {calls, update} = fakeUpdate()
      world.start({rateLimitMs: 300, updateOpencode: update})
      await bothAnsweredAcrossJumpBack(world, () => {
        offset = -3_600_000
      })
      assert.equal(calls.length, 2)
    } finally {
      Date.now = realNow
    }
  })

  it('repairs an unverified release first, shows step repair meanwhile, then answers requests; reports opencode health', async () => {
    let finish!: () => void
    const repaired = new Promise<void>((resolve) => {
      finish = resolve
    })
    const {calls, update} = fakeUpdate()
    world.start({
      heartbeatMs: 50,
      probeHealth: async () => ({body: {healthy: false}, kind: 'http', status: 503}),
      async repairRelease() {
        await repaired
        return {kind: 'rolled-back', message: 'Rolled back the unverified release 4444444.'}
      },
      updateOpencode: update,
    })
    await waitFor(async () => (await exists(path.join(world.dir, LISTENER_FILE))) && (await listenerJson(world)).step === 'repair')
    await world.request({command: 'update_opencode', request_id: 'after-repair'})
    // Claimed into the queue (listener.json shows it; no fixed sleep for the claim), and still not run.
    const status = await waitForListenerJson(world, (view) => (view.queue?.length ?? 0) > 0)
    await sleep(100)
    assert.equal(calls.length, 0, 'no update while the repair runs')
    assert.deepEqual(status.queue?.map((item) => item.request_id), ['after-repair'])
    await waitFor(async () => (await listenerJson(world)).opencode_health?.state === 'unhealthy')
    assert.match((await listenerJson(world)).opencode_health?.detail ?? '', /HTTP 503/)
    finish()
    await world.waitForResults(1)
    assert.equal(calls.length, 1)
    assert.ok(world.logs.some((line) => /Rolled back the unverified release/.test(line)))
  })
})
