/**
 * Unverified releases, against the real engine and the fixture image, one shared sandbox whose
 * commands dir is a 4 MiB tmpfs (so the sandbox can fill it). The release store is held at a
 * named point (OCC_STORE_PAUSE_AT, see release-store.sh) and occ is killed there:
 * - kill -9 of the listener during activate, and during verify (COMMIT written, journal not yet
 *   removed): occ status shows the last verified commit and the unverified release, and the
 *   next update repairs it first, never saying "nothing to do";
 * - occ start and occ restart repair a release an interrupted update left, and say what they did;
 * - a full disk during a build: the update succeeds, its answer waits (claim kept, listener.json
 *   says why) and is written once there is space again, never turned into "interrupted".
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'

import {execa, type ResultPromise} from 'execa'

import type {UpdateResult} from '../../src/index.js'
import {describeRun, expectExit, freePort, json, out} from '../helpers/sandbox-env.js'
import {CONTAINER_COMMANDS_DIR, createListenerWorld, type Foreground, type ListenerWorld, waitUntil} from './listener-helpers/world.js'

interface StatusJson {
  opencode: {
    commit: string | null
    health: {version?: string} | null
    unverifiedRelease: {release: string; previous: string | null; previousCommit: string | null} | null
  }
}

interface ListenerJson {
  state?: string
  step?: string
  request_id?: string
  pending_result?: {request_id?: string; reason: string; status: string; since: string; next_retry_at: string}
}

interface OutcomeJson {
  status: string
  message: string
  changed: boolean
  toCommit?: string
  steps: Array<{step: string; status: string; detail?: string}>
}

describe('update: unverified releases repaired; a full disk loses no answer (real engine, one shared sandbox)', function () {
  this.timeout(300_000)
  let world: ListenerWorld
  let tmpfs: string | undefined

  async function sh(script: string, args: string[] = []): Promise<string> {
    const result = await world.containerSh(script, args, 'root')
    return result.stdout.trim()
  }

  async function health(): Promise<string> {
    const result = await world.containerSh('node -e "fetch(\'http://127.0.0.1:3000/global/health\').then(r=>r.text()).then(t=>console.log(t)).catch(()=>console.log(\'down\'))"')
    return result.stdout.trim()
  }

  async function status(): Promise<StatusJson> {
    const run = await world.sandbox.occ(['status', '--json'])
    return json<StatusJson>(run)
  }

  /** Waits until the release store is held at `point` (its pid file exists); returns the script's pid. */
  async function waitPaused(point: string): Promise<string> {
    let pid = ''
    await waitUntil(async () => /^\d+$/.test((pid = await sh('cat "/opt/opencode/.paused-$1" 2>/dev/null', [point]))), 120_000, () => `the store never paused at ${point}`)
    return pid
  }

  /** Lets a held store go on (it ends by itself), and waits until it has. */
  async function release(point: string): Promise<void> {
    await sh('rm -f "/opt/opencode/.paused-$1"', [point])
    await waitUntil(async () => (await sh('ls -A /opt/opencode | grep -c "^\\.paused-" || true')) === '0', 30_000, () => 'the store is still held')
  }

  async function startListener(pauseAt?: string): Promise<Foreground> {
    if (pauseAt) world.sandbox.env.OCC_STORE_PAUSE_AT = pauseAt
    try {
      const listener = await world.startForeground()
      await listener.waitForLine(/Listening for update requests/, 90_000)
      return listener
    } finally {
      delete world.sandbox.env.OCC_STORE_PAUSE_AT
    }
  }

  async function waitListener(check: (value: ListenerJson) => boolean, timeoutMs: number, listener?: Foreground): Promise<ListenerJson> {
    let last: ListenerJson = {}
    const read = async (): Promise<boolean> => check((last = ((await world.readListenerJson()) ?? {}) as ListenerJson))
    await waitUntil(read, timeoutMs, () => `listener.json: ${JSON.stringify(last)}${listener ? `\n--- listener\n${listener.stderr()}` : ''}`)
    return last
  }

  async function claims(): Promise<string[]> {
    return (await fs.readdir(world.commandsDir)).filter((name) => name.startsWith('update-command.claimed.'))
  }

  async function waitIdle(): Promise<void> {
    await waitUntil(async () => (await world.readListenerJson())?.state === 'idle', 60_000, () => 'the listener is not idle')
  }

  /**
   * An update from the host held at `point` and killed there (kill -9 of occ), its store call let
   * go: the state an update killed in the middle of its switch leaves.
   */
  async function killHostUpdateAt(branch: string, point: string): Promise<void> {
    const update = world.sandbox.occ(['update', 'opencode', '--branch', branch], {env: {OCC_STORE_PAUSE_AT: point}}) as unknown as ResultPromise
    await waitPaused(point)
    update.kill('SIGKILL')
    await update.catch(() => undefined)
    await release(point)
  }

  before(async function () {
    this.timeout(180_000)
    world = await createListenerWorld('repair')
    world.sandbox.port = await freePort()
    const set = await world.sandbox.occ(['config', 'set', 'opencode_web_port', String(world.sandbox.port)])
    expectExit(set, 0)
    // The commands dir is a small tmpfs the sandbox can fill (mounted before the container exists,
    // so its bind mount of the state dir carries it).
    await fs.mkdir(world.commandsDir, {recursive: true})
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0755', 'tmpfs', world.commandsDir])
    tmpfs = world.commandsDir
    const start = await world.sandbox.occ(['start', ...world.startArgs])
    expectExit(start, 0)
  })

  after(async () => {
    await world?.cleanup().catch(() => undefined)
    if (tmpfs) await execa('umount', ['-l', tmpfs], {reject: false})
  })

  it('kill -9 of the listener during activate: status shows the old commit as installed and the new release unverified; the next update to it repairs first, then installs it', async () => {
    const sha = await world.pushBranch('v16', {VERSION: '1.6.0\n'})
    const listener = await startListener('linked')
    await waitIdle()
    await world.webUiWrite({branch: 'v16', command: 'update_opencode', request_id: 'activate'})
    await waitPaused('linked')
    listener.child.kill('SIGKILL')
    await listener.exited
    // The store call outlives its client: it finishes the switch; nobody restarts opencode.
    await release('linked')

    const view = await status()
    assert.equal(view.opencode.unverifiedRelease?.release, sha, JSON.stringify(view))
    assert.equal(view.opencode.commit, world.baseCommit, 'installed is the last verified commit, not the switched-in one')
    assert.equal(view.opencode.unverifiedRelease?.previousCommit, world.baseCommit)
    assert.match(await health(), /"version":"1.0.0-fixture"/, 'the old process still serves')
    const text = out(await world.sandbox.occ(['status']))
    assert.match(text, new RegExp(`Commit:\\s+${world.baseCommit.slice(0, 7)} \\(the last verified install\\)`))
    assert.match(text, new RegExp(`Unverified:\\s+release ${sha.slice(0, 12)} was switched in`))

    const update = await world.sandbox.occ(['update', 'opencode', '--branch', 'v16', '--json'])
    expectExit(update, 0)
    const outcome = json<OutcomeJson>(update)
    assert.doesNotMatch(out(update), /nothing to do/)
    const repair = outcome.steps.find((step) => step.step === 'repair')
    assert.equal(repair?.status, 'done', out(update))
    assert.match(repair?.detail ?? '', /Rolled back the unverified release/)
    assert.equal(outcome.changed, true)
    assert.equal(outcome.toCommit, sha)
    assert.match(await health(), /"version":"1.6.0"/)
    const after = await status()
    assert.equal(after.opencode.commit, sha)
    assert.equal(after.opencode.unverifiedRelease, null)
  })

  it('kill -9 during verify (COMMIT written, the journal not yet removed): status still calls it unverified, the next update re-verifies it and says so', async () => {
    const previous = (await status()).opencode.commit
    const sha = await world.pushBranch('v17', {VERSION: '1.7.0\n'})
    const listener = await startListener('committed')
    await waitIdle()
    await world.webUiWrite({branch: 'v17', command: 'update_opencode', request_id: 'verify'})
    const pid = await waitPaused('committed')
    // occ and its store call die together, between verify's two writes.
    listener.child.kill('SIGKILL')
    await listener.exited
    await sh('kill -9 "$1"; rm -f /opt/opencode/.paused-committed', [pid])
    assert.equal(await sh('cat /opt/opencode/COMMIT'), sha, 'COMMIT was written before the kill')

    const view = await status()
    assert.equal(view.opencode.commit, previous, `status must not call the unverified release installed: ${JSON.stringify(view)}`)
    assert.equal(view.opencode.unverifiedRelease?.release, sha)
    const text = out(await world.sandbox.occ(['status']))
    assert.match(text, new RegExp(`Commit:\\s+${previous!.slice(0, 7)} \\(the last verified install\\)`))
    assert.match(text, new RegExp(`Unverified:\\s+release ${sha.slice(0, 12)}`))

    const update = await world.sandbox.occ(['update', 'opencode', '--branch', 'v17', '--json'])
    expectExit(update, 0)
    const outcome = json<OutcomeJson>(update)
    assert.doesNotMatch(out(update), /nothing to do/)
    assert.match(outcome.steps.find((step) => step.step === 'repair')?.detail ?? '', /answers healthy: it is installed now/)
    assert.match(outcome.message, /left unverified by an interrupted update, answered healthy and is installed now/)
    const after = await status()
    assert.equal(after.opencode.commit, sha)
    assert.equal(after.opencode.unverifiedRelease, null)
    assert.match(await health(), /"version":"1.7.0"/)
  })

  it('occ start repairs a release an interrupted update left (one that never started: rolled back), and says so', async () => {
    const sha = await world.pushBranch('bad18', {HEALTH_FAIL: '', VERSION: '1.8.0\n'})
    const installed = (await status()).opencode.commit
    await killHostUpdateAt('bad18', 'linked')
    assert.equal((await status()).opencode.unverifiedRelease?.release, sha)

    const start = await world.sandbox.occ(['start', ...world.startArgs])
    expectExit(start, 0)
    assert.match(`${out(start)}\n${String(start.stderr)}`, /Rolled back the unverified release/)
    assert.match(out(start), /Repaired:\s+Rolled back the unverified release/, 'the result says what it repaired')
    const view = await status()
    assert.equal(view.opencode.unverifiedRelease, null)
    assert.equal(view.opencode.commit, installed)
    assert.match(await health(), /"version":"1.7.0"/)
  })

  it('occ restart repairs a release an interrupted update left (it answers healthy after the restart: installed), and says so (--json too)', async () => {
    const sha = await world.pushBranch('v19', {VERSION: '1.9.0\n'})
    await killHostUpdateAt('v19', 'linked')
    assert.equal((await status()).opencode.unverifiedRelease?.release, sha)

    const restart = await world.sandbox.occ(['restart', '--json'])
    expectExit(restart, 0)
    const result = json<{repair?: {kind: string; message: string}}>(restart)
    assert.equal(result.repair?.kind, 'verified', out(restart))
    assert.match(result.repair?.message ?? '', /answers healthy: it is installed now/)
    const view = await status()
    assert.equal(view.opencode.unverifiedRelease, null)
    assert.equal(view.opencode.commit, sha)
    assert.match(await health(), /"version":"1.9.0"/)

    // Text: the same repair said in the output.
    await killHostUpdateAt('bad18', 'linked')
    const text = await world.sandbox.occ(['restart'])
    expectExit(text, 0)
    assert.match(out(text), /Repaired:\s+Rolled back the unverified release/, describeRun(text))
    assert.match(await health(), /"version":"1.9.0"/)
  })

  it('the sandbox fills its commands mount during a build: the update succeeds, the answer waits (claim kept, retried, listener.json says why) and is written once there is space; never "interrupted"', async () => {
    const sha = await world.pushBranch('v20', {BUILD_SLEEP_SECONDS: '3\n', VERSION: '2.0.0\n'})
    const listener = await startListener()
    await waitIdle()
    await world.webUiWrite({branch: 'v20', command: 'update_opencode', request_id: 'disk-full'})
    // As the sandbox user, from inside: fill the 4 MiB mount (head stops at ENOSPC).
    await world.containerSh('head -c 8388608 /dev/zero > "$1/filler" 2>/dev/null; true', [CONTAINER_COMMANDS_DIR])
    const free = await sh('df -k "$1" | tail -n 1', [CONTAINER_COMMANDS_DIR])
    assert.match(free, /\s0\s+100%/, `the mount is full: ${free}`)

    // listener.json cannot be replaced by temp + rename on a full disk: it is overwritten in place.
    const pending = await waitListener((value) => value.pending_result?.request_id === 'disk-full', 120_000, listener)
    assert.match(pending.pending_result?.reason ?? '', /ENOSPC|no space/i)
    assert.equal(pending.pending_result?.status, 'success')
    assert.match(await health(), /"version":"2.0.0"/, 'the update itself succeeded')
    assert.equal((await claims()).length, 1, 'the claim is kept while the answer waits')
    assert.notEqual((await world.readResult())?.request_id, 'disk-full')

    assert.match(listener.stderr(), /Could not write the answer \(request_id "disk-full"\) \(.*\); keeping it and retrying\./)

    await world.containerSh('rm -f "$1/filler"', [CONTAINER_COMMANDS_DIR])
    const result: UpdateResult = await world.waitForResult((value) => value.request_id === 'disk-full', 90_000)
    assert.equal(result.status, 'success', result.message)
    assert.equal(result.to_commit, sha)
    assert.notEqual(result.error_code, 'interrupted')
    await waitListener((value) => value.pending_result === undefined, 30_000, listener)
    await waitUntil(async () => (await claims()).length === 0, 10_000, () => 'the claim was not removed after its answer')
    listener.child.kill('SIGTERM')
    assert.equal(await listener.exited, 0, listener.stderr())
  })
})
