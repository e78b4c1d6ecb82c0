/**
 * Updates of the REAL opencode through the command file (issue 9), against the real image: no
 * supervisor, so every update restarts the container, and a release that crashes at start stops
 * it. One sandbox and one listener (`occ start --no-daemon`, as the service runs it) for the
 * scenarios, in order; requests are written inside the container as `opencoder`, the way the
 * web UI writes them. The image's opencode-build recipe installs the pinned npm binaries from
 * the read-only dist dir mounted at /opt/opencode-dist.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'

import {execa} from 'execa'

import type {UpdateResult} from '../../src/index.js'
import {DIE_GRACE_MS} from '../../src/runtime/stop-events.js'
import {OCC_BIN, REAL_DIST_DIR, REAL_IMAGE, REAL_OPENCODE_VERSION, REPO_ROOT} from '../helpers/sandbox-env.js'
import {createListenerWorld, type Foreground, type ListenerWorld, waitUntil} from './listener-helpers/world.js'

const OLDER = '1.18.33'

interface Status {
  state?: string
  step?: string
  request_id?: string
}

describe('updating the real opencode (real image, container restarts, one shared sandbox)', function () {
  this.timeout(240_000)
  let world: ListenerWorld
  let listener: Foreground
  let containerId = ''

  async function startListener(): Promise<Foreground> {
    listener = await world.startForeground()
    await listener.waitForLine(/Listening for update requests/, 120_000)
    return listener
  }

  /** GET /global/health from the host, as a browser would reach it ('down' when nothing answers). */
  async function health(): Promise<{healthy?: boolean; version?: string} | 'down'> {
    try {
      const response = await fetch(`http://127.0.0.1:${world.sandbox.port}/global/health`, {signal: AbortSignal.timeout(3000)})
      return response.ok ? ((await response.json()) as {healthy?: boolean; version?: string}) : 'down'
    } catch {
      return 'down'
    }
  }

  async function waitHealthyVersion(version: string, timeoutMs = 60_000): Promise<void> {
    let last: Awaited<ReturnType<typeof health>> | undefined
    await waitUntil(
      async () => {
        last = await health()
        return last !== 'down' && last.healthy === true && last.version === version
      },
      timeoutMs,
      () => `no healthy answer from ${version}; last: ${JSON.stringify(last)}`,
    )
  }

  async function request(requestId: string, branch: string, timeoutMs = 180_000): Promise<UpdateResult> {
    await world.webUiWrite({branch, command: 'update_opencode', request_id: requestId})
    return world.waitForResult((result) => result.request_id === requestId, timeoutMs)
  }

  async function status(): Promise<Status> {
    return ((await world.readListenerJson()) ?? {}) as Status
  }

  /** What is left in the store that only a finished update removes. */
  async function leftovers(): Promise<string> {
    const result = await world.containerSh('for f in /opt/opencode/.update-lock /opt/opencode/.journal; do [ -e "$f" ] && echo "$f"; done; true', [], 'root')
    return result.stdout.trim()
  }

  async function container(): Promise<{id: string; running: boolean; restartCount: number}> {
    const info = await world.sandbox.docker.getContainer(world.sandbox.containerName).inspect()
    return {id: info.Id, restartCount: info.RestartCount, running: info.State.Running}
  }

  before(async function () {
    this.timeout(180_000)
    world = await createListenerWorld('realup', {
      image: REAL_IMAGE,
      mounts: [`${REAL_DIST_DIR}:/opt/opencode-dist:ro`],
      sourceDir: path.join(REPO_ROOT, 'test/fixtures/real/opencode-src'),
    })
    await world.pushBranch('older', {VERSION: `${OLDER}\n`})
    await world.pushBranch('crash', {VERSION: '0.0.0-crash\n'})
    await startListener()
    await waitHealthyVersion(REAL_OPENCODE_VERSION, 90_000)
    containerId = (await container()).id
  })

  after(async () => {
    await world?.cleanup()
  })

  it(`updates both ways, ${REAL_OPENCODE_VERSION} → ${OLDER} → ${REAL_OPENCODE_VERSION} (the image's own commit), each checked in /global/health`, async () => {
    const down = await request('to-older', 'older')
    assert.equal(down.status, 'success', JSON.stringify(down))
    assert.match(down.message, new RegExp(`version ${REAL_OPENCODE_VERSION.replaceAll('.', '\\.')} → ${OLDER.replaceAll('.', '\\.')}.*restarted via container`))
    assert.deepEqual(await health(), {healthy: true, version: OLDER})

    const up = await request('to-main', 'main')
    assert.equal(up.status, 'success', JSON.stringify(up))
    assert.deepEqual(await health(), {healthy: true, version: REAL_OPENCODE_VERSION})
    const commit = await world.containerSh('cat /opt/opencode/COMMIT', [], 'root')
    assert.equal(commit.stdout.trim(), world.baseCommit)
    assert.equal(await leftovers(), '')
    // The same container all along (restarted, never recreated), and the listener kept answering.
    assert.equal((await container()).id, containerId)
    assert.ok(alive(listener), listener.stderr())
  })

  it('an update to a release that exits at once: an error that says it rolled back, the old version serving, the container running, no lock', async () => {
    const started = Date.now()
    const result = await request('to-crash', 'crash')
    assert.equal(result.status, 'error', JSON.stringify(result))
    assert.equal(result.rolled_back, true)
    assert.equal(result.code, 'UPDATE_ROLLED_BACK')
    assert.match(result.message, /the new version did not come up: the container stopped \(exited, exit 3\) \(its last log lines: .*"opencode \(crash build\): exiting at once"\)\. Rolled back to [0-9a-f]{7}, which is serving again\./)
    // Not the 60 s health timeout: the wait ended when the container stopped.
    assert.ok(Date.now() - started < 60_000, `took ${Date.now() - started} ms`)
    assert.deepEqual(await health(), {healthy: true, version: REAL_OPENCODE_VERSION})
    const now = await container()
    assert.equal(now.running, true)
    assert.equal(now.id, containerId)
    assert.equal(await leftovers(), '', 'the lock or the journal was left behind')
    const current = await world.containerSh('readlink /opt/opencode/current; ls /opt/opencode/releases', [], 'root')
    assert.equal(current.stdout.split('\n')[0], `releases/${world.baseCommit}`)
    assert.doesNotMatch(current.stdout, new RegExp(await branchHead('crash')), 'the failed release was kept')

    // The listener did not take the planned stop for the end of the sandbox, and keeps answering.
    assert.ok(alive(listener), listener.stderr())
    const again = await request('after-crash', 'main')
    assert.equal(again.status, 'success', JSON.stringify(again))
    assert.match(again.message, /already/i)
    // A plain `occ start` afterwards finds nothing to repair.
    const start = await world.sandbox.occ(['start', '--json', ...world.startArgs])
    assert.equal(start.exitCode, 0, String(start.stderr))
    assert.equal((JSON.parse(String(start.stdout)) as {repair?: unknown}).repair, undefined)
  })

  it('kill -9 of the listener mid-update (while the container restarts): the next listener repairs, the next update succeeds', async () => {
    await world.webUiWrite({branch: 'older', command: 'update_opencode', request_id: 'killed'})
    let last: Status = {}
    await waitUntil(
      async () => {
        last = await status()
        return last.request_id === 'killed' && last.step === 'restart'
      },
      120_000,
      () => `listener.json: ${JSON.stringify(last)}`,
    )
    listener.child.kill('SIGKILL')
    await listener.exited
    await startListener()
    const result = await request('after-kill', 'main')
    assert.equal(result.status, 'success', JSON.stringify(result))
    await waitHealthyVersion(REAL_OPENCODE_VERSION)
    assert.equal(await leftovers(), '')
    assert.equal((await container()).running, true)
  })

  it('occ update opencode from a terminal, its container restart slower than the die grace (occ frozen between stop and start): the service holds, then answers', async () => {
    // OCC_RESTART_PAUSE_AT: occ stops itself once opencode has taken the container down, before it starts it.
    const update = execa(process.execPath, [OCC_BIN, 'update', 'opencode', '--branch', 'older', '--yes', '--json'], {
      env: {...world.sandbox.env, OCC_RESTART_PAUSE_AT: 'stopped'},
      reject: false,
      stdin: 'ignore',
    })
    const pid = update.pid!
    try {
      await waitUntil(async () => (await processState(pid)) === 'T', 180_000, () => 'occ update opencode did not reach the restart')
      assert.equal((await container()).running, false, 'the container is not stopped at the pause')
      const pausedAt = Date.now()
      // Past the grace after which a die without a start is a crash (with a margin); the service must still run then.
      await waitUntil(async () => !alive(listener) || Date.now() - pausedAt > DIE_GRACE_MS + 3000, 60_000, () => 'no end of the wait')
      assert.ok(alive(listener), `the service ended during the planned restart:\n${listener.stderr()}`)
    } finally {
      process.kill(pid, 'SIGCONT')
    }

    const done = await update
    assert.equal(done.exitCode, 0, `${String(done.stdout)}\n${String(done.stderr)}`)
    await waitHealthyVersion(OLDER)
    assert.ok(alive(listener), listener.stderr())
    assert.doesNotMatch(listener.stderr(), /died unexpectedly/)
    // The same service process keeps answering the web UI.
    const back = await request('after-terminal', 'main')
    assert.equal(back.status, 'success', `${JSON.stringify(back)}\n${listener.stderr()}`)
    await waitHealthyVersion(REAL_OPENCODE_VERSION)
  })

  it('a sandbox left stopped on an unverified release that crashes (an update killed right after the crash): occ start brings it up on the previous release', async () => {
    listener.child.kill('SIGKILL')
    await listener.exited
    // What such a kill leaves: the crash release switched in and journalled, the container stopped by its exit.
    const crash = await branchHead('crash')
    const plant = await world.containerSh(
      [
        'set -e; cd /opt/opencode',
        'mkdir -p "releases/$1/bin" && cp /opt/opencode-dist/0.0.0-crash/opencode "releases/$1/bin/opencode" && echo 0.0.0-crash > "releases/$1/VERSION"',
        'printf "release=%s\nprevious=%s\nprevious_commit=%s\nversion=0.0.0-crash\nsince=%s\n" "$1" "$2" "$2" "$(date +%s)" > .journal',
        'ln -sfn "releases/$1" .current.tmp && mv -T .current.tmp current',
      ].join('\n'),
      [crash, world.baseCommit],
      'root',
    )
    assert.equal(plant.exitCode, 0, plant.stderr)
    await world.sandbox.docker.getContainer(world.sandbox.containerName).stop({t: 10})
    const start = await world.sandbox.occ(['start', '--json', ...world.startArgs])
    assert.equal(start.exitCode, 0, `${String(start.stdout)}\n${String(start.stderr)}`)
    const started = JSON.parse(String(start.stdout)) as {repair?: {kind: string; message: string}; readiness: {opencode: {version?: string}}}
    assert.equal(started.readiness.opencode.version, REAL_OPENCODE_VERSION)
    assert.equal(started.repair?.kind, 'rolled-back', JSON.stringify(started.repair))
    // Started as it was, the crash release would have stopped the container again (SANDBOX_STOPPED).
    assert.match(started.repair?.message ?? '', /^Rolled back the unverified release [0-9a-f]{7} \(current does not point at it\)/)
    assert.deepEqual(await health(), {healthy: true, version: REAL_OPENCODE_VERSION})
    assert.equal(await leftovers(), '')
    const current = await world.containerSh('readlink /opt/opencode/current; cat /opt/opencode/COMMIT; [ -e "/opt/opencode/releases/$1" ] && echo kept; true', [crash], 'root')
    assert.equal(current.stdout.trim(), `releases/${world.baseCommit}\n${world.baseCommit}`)
  })

  /** The state letter of /proc/<pid>/stat ('T' when stopped). */
  async function processState(pid: number): Promise<string | undefined> {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
    return /\) (\S) /.exec(stat)?.[1]
  }

  function alive(foreground: Foreground): boolean {
    try {
      process.kill(foreground.pid, 0)
      return true
    } catch {
      return false
    }
  }

  async function branchHead(branch: string): Promise<string> {
    const {execa} = await import('execa')
    const {stdout} = await execa('git', ['--git-dir', world.repoDir, 'rev-parse', `refs/heads/${branch}`])
    return stdout.trim()
  }
})
