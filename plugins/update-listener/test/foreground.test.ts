import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {
  type ForegroundContext,
  type HostRuntimeApi,
  LISTENER_FILE,
  type MountSpec,
  MOUNT_STATE,
  readListenerStatus,
  REQUEST_FILE,
  RESULT_FILE,
  resolvePaths,
  resourceNames,
} from 'opencode-cloud/internal'

import foreground from '../src/hooks/foreground.js'
import {runUpdateListener} from '../src/index.js'
import {fakeUpdate, waitFor} from './helpers.js'

function context(
  root: string,
  mounts: () => Promise<MountSpec[]>,
  logs: string[],
  controller: AbortController,
  failures: Error[] = [],
): ForegroundContext {
  const runtime = {bindMounts: mounts, kind: 'host', names: resourceNames('fg')} as unknown as HostRuntimeApi
  return {
    config: {} as ForegroundContext['config'],
    fail: (error) => failures.push(error),
    log: (line) => logs.push(line),
    paths: resolvePaths({HOME: root}),
    runtime,
    signal: controller.signal,
    updateOpencode: fakeUpdate().update,
    version: '1.2.3',
  }
}

describe('the occ:foreground hook', () => {
  let root: string
  let logs: string[]
  let controller: AbortController
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-fg-'))
    logs = []
    controller = new AbortController()
  })
  afterEach(() => fs.rm(root, {force: true, recursive: true}))
  const commands = () => path.join(root, 'opencode-cloud', 'commands')

  it('is a function oclif can call', () => {
    assert.equal(typeof foreground, 'function')
  })

  it('disables itself without a state mount and says why on stderr', async () => {
    await runUpdateListener(context(root, async () => [], logs, controller))
    assert.match(logs.join('\n'), /Update listener disabled: no bind mount for \/home\/opencoder\/.local\/state\/opencode/)
    assert.equal(await fs.access(commands()).then(() => true, () => false), false)
  })

  it('retries reading the mounts while the engine does not answer (saying so once), then listens', async () => {
    let calls = 0
    const mounts = async (): Promise<MountSpec[]> => {
      calls++
      if (calls <= 3) throw new Error('engine gone')
      return [{container: MOUNT_STATE, host: root, readOnly: false}]
    }

    const running = runUpdateListener(context(root, mounts, logs, controller), {mountRetry: {firstMs: 10, maxMs: 40}})
    await waitFor(async () => (await readListenerStatus(commands())).state === 'active')
    assert.equal(calls, 4)
    assert.equal(logs.filter((line) => /cannot read the container's mounts \(engine gone\); retrying/.test(line)).length, 1)
    assert.doesNotMatch(logs.join('\n'), /disabled/)
    controller.abort()
    await running
  })

  it('stops retrying (and resolves) when the signal aborts', async () => {
    const running = runUpdateListener(
      context(root, async () => Promise.reject(new Error('engine gone')), logs, controller),
      {mountRetry: {firstMs: 60_000, maxMs: 60_000}},
    )
    await waitFor(() => logs.length > 0)
    const before = Date.now()
    controller.abort()
    await running
    assert.ok(Date.now() - before < 1000)
    assert.equal(await fs.access(commands()).then(() => true, () => false), false)
  })

  it('throws and calls fail() when the listener cannot go on (its commands dir was replaced), so the service restarts occ', async () => {
    const failures: Error[] = []
    const running = runUpdateListener(context(root, async () => [{container: MOUNT_STATE, host: root, readOnly: false}], logs, controller, failures), {
      heartbeatMs: 30,
    })
    let settled = false
    running.then(
      () => {
        settled = true
      },
      () => {
        settled = true
      },
    )
    await waitFor(async () => (await readListenerStatus(commands())).state === 'active')
    await fs.rename(commands(), path.join(root, 'opencode-cloud', 'moved'))
    await fs.mkdir(commands())
    await waitFor(() => settled, 5000)
    await assert.rejects(running, /Update listener stopped: .*commands was replaced or moved/)
    assert.match(logs.join('\n'), /Update listener failed: /)
    assert.equal(failures.length, 1, 'fail() ends service mode at once, without waiting for the other hooks')
    assert.match(failures[0].message, /commands was replaced or moved/)
  })

  it('with a read-only state mount: says why, and listener.json tells status and the web UI', async () => {
    const running = runUpdateListener(context(root, async () => [{container: MOUNT_STATE, host: root, readOnly: true}], logs, controller))
    await waitFor(async () => (await readListenerStatus(commands())).state === 'disabled')
    const view = await readListenerStatus(commands())
    assert.equal(view.state, 'disabled')
    assert.match((view as {reason: string}).reason, /read-only/)
    assert.match(logs.join('\n'), /Update listener disabled: .*read-only/)
    // It answers nothing.
    await fs.writeFile(path.join(commands(), REQUEST_FILE), JSON.stringify({command: 'update_opencode'}))
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(await fs.access(path.join(commands(), RESULT_FILE)).then(() => true, () => false), false)
    controller.abort()
    await running
    assert.equal(await fs.access(path.join(commands(), LISTENER_FILE)).then(() => true, () => false), false)
  })

  it('with a writable state mount: prepares the dir and answers requests until the signal', async () => {
    const running = foreground.call(
      {} as never,
      {...context(root, async () => [{container: MOUNT_STATE, host: root, readOnly: false}], logs, controller)} as never,
    )
    await waitFor(async () => (await readListenerStatus(commands())).state === 'active')
    const mode = (await fs.stat(commands())).mode & 0o7777
    assert.equal(mode, process.getuid?.() === 1000 ? 0o700 : 0o1777)
    await fs.writeFile(path.join(commands(), '.t'), JSON.stringify({command: 'update_opencode', request_id: 'fg'}))
    await fs.rename(path.join(commands(), '.t'), path.join(commands(), REQUEST_FILE))
    await waitFor(async () => fs.access(path.join(commands(), RESULT_FILE)).then(() => true, () => false))
    const result = JSON.parse(await fs.readFile(path.join(commands(), RESULT_FILE), 'utf8'))
    assert.equal(result.request_id, 'fg')
    assert.equal(result.status, 'success')
    controller.abort()
    await running
    assert.deepEqual(await readListenerStatus(commands()), {state: 'absent'})
  })
})
