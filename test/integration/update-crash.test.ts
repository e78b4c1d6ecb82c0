/**
 * An update that survives anything (issue 8), against the real engine and the fixture image:
 * one sandbox shared by the scenarios, in order. Each scenario reproduces a finding that broke
 * before: planted claims, a listener starting while opencode is frozen, a burst of requests
 * during a build while the wall clock jumps, SIGTERM during the health wait, kill -9 during the
 * restart (an unverified release, then repaired), docker restart during an update (the lock),
 * an exec that times out, a build writing 4 MiB lines full of escapes, and docker kill during an
 * update (the lock again).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import Docker from 'dockerode'
import {execa} from 'execa'

import {execInContainer} from '../../src/docker/exec.js'
import type {UpdateResult} from '../../src/index.js'
import {RESULT_FILE} from '../../src/protocol/command-files.js'
import {describeRun, freePort} from '../helpers/sandbox-env.js'
import {createListenerWorld, type Foreground, type ListenerWorld, waitUntil} from './listener-helpers/world.js'

interface Status {
  state?: string
  step?: string
  request_id?: string
  queue?: Array<{request_id?: string}>
  opencode_health?: {state: string; detail?: string}
}

describe('update: crash anywhere, nothing lost (real engine, one shared sandbox)', function () {
  this.timeout(240_000)
  let world: ListenerWorld
  let listener: Foreground | undefined
  let clockFile: string
  let preload: string

  async function startListener(): Promise<Foreground> {
    listener = await world.startForeground()
    await listener.waitForLine(/Listening for update requests/, 90_000)
    return listener
  }

  async function status(): Promise<Status> {
    return ((await world.readListenerJson()) ?? {}) as Status
  }

  async function waitStatus(check: (value: Status) => boolean, timeoutMs = 60_000): Promise<Status> {
    let last: Status = {}
    await waitUntil(async () => check((last = await status())), timeoutMs, () => `listener.json: ${JSON.stringify(last)}`)
    return last
  }

  async function resultFor(requestId: string, timeoutMs = 90_000): Promise<UpdateResult> {
    return world.waitForResult((result) => result.request_id === requestId, timeoutMs)
  }

  async function health(): Promise<string> {
    const result = await world.containerSh('node -e "fetch(\'http://127.0.0.1:3000/global/health\').then(r=>r.text()).then(t=>console.log(t)).catch(()=>console.log(\'down\'))"')
    return result.stdout.trim()
  }

  async function opencodePid(): Promise<string> {
    const result = await world.containerSh('/usr/local/bin/opencode-supervisorctl status', [], 'root')
    return result.stdout.trim().split(' ')[1] ?? ''
  }

  before(async function () {
    this.timeout(180_000)
    world = await createListenerWorld('crash')
    world.sandbox.port = await freePort()
    const set = await world.sandbox.occ(['config', 'set', 'opencode_web_port', String(world.sandbox.port)])
    assert.equal(set.exitCode, 0, describeRun(set))
    // A wall clock the test can move for the listener (Date.now shifted by the number in a file).
    clockFile = path.join(world.sandbox.root, 'clock-offset')
    preload = path.join(world.sandbox.root, 'clock-shift.mjs')
    await fs.writeFile(clockFile, '0')
    await fs.writeFile(
      preload,
      [
        "import {readFileSync} from 'node:fs'",
        'const real = Date.now.bind(Date)',
        'let offset = 0',
        `const read = () => { try { offset = Number(readFileSync(${JSON.stringify(clockFile)}, 'utf8')) || 0 } catch { offset = 0 } }`,
        'setInterval(read, 50).unref()',
        'Date.now = () => real() + offset',
      ].join('\n'),
    )
    world.sandbox.env.NODE_OPTIONS = `--import=${preload}`
    const start = await world.sandbox.occ(['start', ...world.startArgs])
    assert.equal(start.exitCode, 0, describeRun(start))
  })

  after(async () => {
    await world?.cleanup()
  })

  afterEach(async () => {
    await fs.writeFile(clockFile, '0')
  })

  it('comes up while opencode is frozen (SIGSTOP), reports it unhealthy, and 20 planted claims do not delay a real request', async () => {
    // Planted while no listener runs (it has not run yet): claims of a pid that is not alive.
    await fs.mkdir(world.commandsDir, {recursive: true})
    for (let i = 1; i <= 20; i++) {
      const name = `update-command.claimed.999999-${i.toString(16).padStart(16, '0')}.json`
      await fs.writeFile(path.join(world.commandsDir, name), JSON.stringify({command: 'update_opencode', request_id: `planted-${i}`}))
    }

    const pid = await opencodePid()
    await world.containerSh('kill -STOP "$1"', [pid], 'root')
    try {
      const started = Date.now()
      await startListener()
      assert.ok(Date.now() - started < 60_000)
      const frozen = await waitStatus((value) => value.opencode_health?.state === 'unhealthy', 30_000)
      assert.match(frozen.opencode_health?.detail ?? '', /timeout|refused|HTTP/)
    } finally {
      await world.containerSh('kill -CONT "$1"', [pid], 'root')
    }

    await waitStatus((value) => value.state === 'idle')
    const written = Date.now()
    await world.webUiWrite({branch: 'main', command: 'update_opencode', request_id: 'real-after-planted'})
    const result = await resultFor('real-after-planted', 30_000)
    assert.equal(result.status, 'success', result.message)
    assert.match(result.message, /already at/)
    assert.ok(Date.now() - written < 10_000, `answered ${Date.now() - written} ms after the request`)
    // The claim goes right after its answer is written: wait for that, do not race it.
    let left: string[] = []
    const noClaims = async () => (left = (await fs.readdir(world.commandsDir)).filter((name) => name.startsWith('update-command.claimed.'))).length === 0
    await waitUntil(noClaims, 10_000, () => `claims left: ${left.join(', ')}`)
  })

  it('a burst of two requests during a build: both answered, in order; a wall clock leaping ahead during the health wait does not roll back', async () => {
    const sha = await world.pushBranch('slow', {BUILD_SLEEP_SECONDS: '3\n', VERSION: '1.1.0\n'})
    await world.webUiWrite({branch: 'slow', command: 'update_opencode', request_id: 'slow-A'})
    await waitStatus((value) => value.request_id === 'slow-A' && value.step === 'build')
    // While it builds: the wall clock leaps an hour every 100 ms, until the answer.
    let leaping = true
    const leap = (async () => {
      let offset = 0
      while (leaping) {
        offset += 3_600_000
        await fs.writeFile(clockFile, String(offset))
        await delay(100)
      }
    })()
    await world.webUiWrite({branch: 'no..such', command: 'update_opencode', request_id: 'burst-A'})
    await waitUntil(async () => !(await world.requestPresent()), 10_000, () => 'burst-A was not claimed during the build')
    await world.webUiWrite({commit: 'zz', command: 'update_opencode', request_id: 'burst-B'})
    await waitUntil(async () => !(await world.requestPresent()), 10_000, () => 'burst-B was not claimed during the build')
    // listener.json follows the claim (its write comes just after): wait for it, do not race it.
    await waitStatus((value) => JSON.stringify(value.queue?.map((item) => item.request_id)) === '["burst-A","burst-B"]', 10_000)
    const first = await resultFor('slow-A')
    leaping = false
    await leap
    // And now an hour back: the next answers must not wait an hour.
    await fs.writeFile(clockFile, String(-3_600_000))
    assert.equal(first.status, 'success', first.message)
    assert.equal(first.to_commit, sha)
    const startedB = Date.now()
    await resultFor('burst-B', 30_000)
    assert.ok(Date.now() - startedB < 20_000)
    assert.ok(/burst-A/.test(listener!.stderr()), 'burst-A was answered too (the listener says so)')
    assert.match(await health(), /"version":"1.1.0"/)
  })

  it('SIGTERM during the health wait stops it at once, rolls back, and the result says so', async () => {
    await world.pushBranch('bad', {HEALTH_FAIL: '', VERSION: '1.3.0\n'})
    await world.webUiWrite({branch: 'bad', command: 'update_opencode', request_id: 'term'})
    await waitStatus((value) => value.request_id === 'term' && value.step === 'restart', 120_000)
    await delay(1000)
    const signalled = Date.now()
    listener!.child.kill('SIGTERM')
    assert.equal(await listener!.exited, 0, listener!.stderr())
    assert.ok(Date.now() - signalled < 30_000, `took ${Date.now() - signalled} ms to stop`)
    const result = await resultFor('term', 5000)
    assert.equal(result.status, 'error')
    assert.equal(result.rolled_back, true)
    assert.equal(result.code, 'UPDATE_INTERRUPTED')
    assert.equal(result.error_code, 'interrupted')
    assert.match(result.message, /rolled back/)
    assert.doesNotMatch(result.message, /did not finish in/)
    assert.match(await health(), /"version":"1.1.0"/)
  })

  it('kill -9 during the restart step leaves an unverified release: status says so, and the next update repairs it first (no "nothing to do")', async () => {
    await startListener()
    await world.webUiWrite({branch: 'bad', command: 'update_opencode', request_id: 'killed'})
    await waitStatus((value) => value.request_id === 'killed' && value.step === 'restart', 120_000)
    listener!.child.kill('SIGKILL')
    await listener!.exited
    const statusRun = await world.sandbox.occ(['status', '--json'])
    const view = JSON.parse(String(statusRun.stdout)) as {opencode: {unverifiedRelease: {release: string} | null}}
    assert.ok(view.opencode.unverifiedRelease, `status shows the unverified release: ${statusRun.stdout}`)

    // The lock's owner was killed: the next update takes it over at once, repairs, then updates.
    const started = Date.now()
    const update = await world.sandbox.occ(['update', 'opencode', '--branch', 'main', '--json'])
    const text = String(update.stdout)
    assert.doesNotMatch(text, /nothing to do/, describeRun(update))
    const outcome = JSON.parse(text) as {status: string; message: string; steps: Array<{step: string; status: string; detail?: string}>}
    const repair = outcome.steps.find((step) => step.step === 'repair')
    assert.equal(repair?.status, 'done', text)
    assert.match(repair?.detail ?? '', /Rolled back the unverified release/)
    assert.ok(Date.now() - started < 90_000)
    assert.equal(outcome.status, 'success', outcome.message)
    assert.match(await health(), /"healthy":true/)
    const after = JSON.parse(String((await world.sandbox.occ(['status', '--json'])).stdout)) as typeof view
    assert.equal(after.opencode.unverifiedRelease, null)
  })

  it('docker restart during an update: the lock it left is taken over at once, a new update succeeds within 10 s', async () => {
    await startListener()
    await world.pushBranch('slower', {BUILD_SLEEP_SECONDS: '30\n', VERSION: '1.4.0\n'})
    await world.webUiWrite({branch: 'slower', command: 'update_opencode', request_id: 'cut'})
    await waitStatus((value) => value.request_id === 'cut' && value.step === 'build')
    await execa('docker', ['restart', '-t', '1', world.sandbox.containerName])
    const cut = await resultFor('cut', 60_000)
    assert.equal(cut.status, 'error')
    await waitStatus((value) => value.state === 'idle', 60_000)
    await waitUntil(async () => /"healthy":true/.test(await health()), 60_000, () => 'opencode did not come back')
    await delay(5500) // the rate limit after the answer
    const written = Date.now()
    await world.webUiWrite({branch: 'main', command: 'update_opencode', request_id: 'after-restart'})
    const result = await resultFor('after-restart', 30_000)
    assert.equal(result.status, 'success', result.message)
    assert.ok(Date.now() - written < 10_000, `took ${Date.now() - written} ms`)
    assert.doesNotMatch(result.message, /Another opencode update is running/)
  })

  it('an exec that times out is killed inside the container (its whole process tree)', async () => {
    const docker = new Docker()
    const info = await docker.getContainer(world.sandbox.containerName).inspect()
    await assert.rejects(execInContainer(docker, info.Id, ['sh', '-c', 'sleep 317 & sleep 318; wait'], {timeoutMs: 800}), /did not finish/)
    await waitUntil(
      async () => !/sleep 31[78]/.test((await world.containerSh('ps -eo args', [], 'root')).stdout),
      5000,
      () => 'a sleep of the timed-out exec is still running',
    )
  })

  it('a build writing 4 MiB lines with escapes: the result, the log and the host terminal get bounded, clean text', async () => {
    // eslint-disable-next-line no-control-regex
    const control = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/
    const longest = (text: string) => Math.max(...text.split('\n').map((line) => line.length))
    await world.pushBranch('noisy', {BUILD_NOISE: '', VERSION: '1.5.0\n'})
    await delay(5500) // the rate limit after the previous answer
    const logBefore = listener!.stderr().length
    await world.webUiWrite({branch: 'noisy', command: 'update_opencode', request_id: 'noisy'})
    const result = await resultFor('noisy', 120_000)
    assert.equal(result.status, 'error')
    assert.match(result.message, /^The build failed \(exit 1\): .*… \(\d+ bytes cut\)/s)
    assert.doesNotMatch(result.message, control)
    assert.ok(Buffer.byteLength(result.message) <= 4096 + 64, `message of ${Buffer.byteLength(result.message)} bytes`)
    const file = await fs.stat(path.join(world.commandsDir, RESULT_FILE))
    assert.ok(file.size < 16 * 1024, `result file of ${file.size} bytes (the hand-off reads at most 64 KiB)`)
    const log = listener!.stderr().slice(logBefore)
    assert.ok(log.length > 0 && log.length < 256 * 1024, `listener log of ${log.length} chars for this update`)
    assert.doesNotMatch(log, control)
    assert.ok(longest(log) <= 8192, `a log line of ${longest(log)} chars`)
    assert.match(await health(), /"healthy":true/)

    // The same build from the host's terminal: what occ prints is cleaned and capped line by line.
    const update = await world.sandbox.occ(['update', 'opencode', '--branch', 'noisy'])
    assert.notEqual(update.exitCode, 0, describeRun(update))
    const printed = `${String(update.stdout)}\n${String(update.stderr)}`
    assert.match(printed, /The build failed/)
    assert.doesNotMatch(printed, control)
    assert.ok(printed.length < 256 * 1024, `occ printed ${printed.length} chars`)
    assert.ok(longest(printed) <= 8192, `a printed line of ${longest(printed)} chars`)
  })

  it('docker kill during an update: after occ start, the lock it left is taken over at once and an update from the host succeeds within 10 s', async () => {
    await delay(5500) // the rate limit after the previous answer
    await world.webUiWrite({branch: 'slower', command: 'update_opencode', request_id: 'container-killed'})
    await waitStatus((value) => value.request_id === 'container-killed' && value.step === 'build')
    await execa('docker', ['kill', world.sandbox.containerName])
    // It hung here about one run in five: an exec start into the dying container that the engine
    // never answered kept occ alive (test/unit/docker-exec.test.ts has that case on its own).
    const code = await Promise.race([listener!.exited, delay(60_000).then(() => 'still running' as const)])
    assert.notEqual(code, 'still running', `the listener did not exit within 60 s of docker kill:\n${listener!.stderr()}`)
    assert.notEqual(code, 0, 'the listener stops with the container')
    listener = undefined
    const start = await world.sandbox.occ(['start', ...world.startArgs])
    assert.equal(start.exitCode, 0, describeRun(start))
    const started = Date.now()
    const update = await world.sandbox.occ(['update', 'opencode', '--branch', 'main', '--json'])
    assert.equal(update.exitCode, 0, describeRun(update))
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`)
    assert.doesNotMatch(`${String(update.stdout)}${String(update.stderr)}`, /Another opencode update is running/)
  })
})
