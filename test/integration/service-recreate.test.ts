/**
 * Service mode across a recreate: `occ start --no-daemon` follows its container when it is
 * replaced under the same name (a new ID), keeps answering the web UI, and holds a request that
 * arrives during the swap until the new container runs; a removal with nothing after it still
 * ends service mode as before. One listener world, one service process through the first tests.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'

import {execa} from 'execa'

import {resourceNames} from '../../src/config/instance.js'
import {resolvePaths} from '../../src/config/paths.js'
import {REQUEST_FILE} from '../../src/index.js'
import {recreateNoticeFile} from '../../src/runtime/recreate-notice.js'
import {sharedRegistry, type TestRegistry} from '../helpers/registry.js'
import {OCC_BIN} from '../helpers/sandbox-env.js'
import {createListenerWorld, type Foreground, type ListenerWorld, waitUntil} from './listener-helpers/world.js'

describe('service mode across a recreate (occ start --no-daemon, real container)', function () {
  this.timeout(240_000)
  let world: ListenerWorld
  let foreground: Foreground

  async function containerId(): Promise<string | undefined> {
    try {
      return (await world.sandbox.docker.getContainer(world.sandbox.containerName).inspect()).Id
    } catch {
      return undefined
    }
  }

  async function listenerIdle(): Promise<Record<string, unknown>> {
    let status: Record<string, unknown> | undefined
    await waitUntil(
      async () => {
        status = await world.readListenerJson()
        return status?.state === 'idle'
      },
      60_000,
      () => `listener.json: ${JSON.stringify(status)}`,
    )
    return status!
  }

  /** Whether the service process still runs (has not exited by the next turn of the event loop). */
  async function running(fg: Foreground): Promise<boolean> {
    return Promise.race([fg.exited.then(() => false), new Promise<boolean>((resolve) => setImmediate(() => resolve(true)))])
  }

  before(async () => {
    world = await createListenerWorld('recr')
    foreground = await world.startForeground()
    await foreground.waitForLine(/Listening for update requests/)
    await listenerIdle()
  })
  after(async () => {
    await world?.cleanup()
  })

  it('follows occ start --recreate (a new container ID): the same process answers a request written from inside the new container', async () => {
    const before = await containerId()
    const recreate = await world.sandbox.occ(['start', '--recreate', ...world.startArgs])
    assert.equal(recreate.exitCode, 0, String(recreate.stderr))
    const after = await containerId()
    assert.ok(after && after !== before, `the container ID did not change (${before} → ${after})`)
    await foreground.waitForLine(new RegExp(`following the new one \\(${after.slice(0, 12)}\\)`))
    assert.equal(await running(foreground), true, `service mode ended:\n${foreground.stderr()}`)

    await world.webUiWrite({command: 'update_opencode', request_id: 'after-recreate'})
    const result = await world.waitForResult((r) => r.request_id === 'after-recreate')
    assert.equal(result.status, 'success', JSON.stringify(result))
    assert.equal(result.to_commit, world.baseCommit)
    const status = await listenerIdle()
    assert.equal(status.pid, foreground.pid, 'listener.json is not the same service process')
  })

  it('a request that arrives during the swap waits for the new container and is answered from it', async () => {
    const before = await containerId()
    const noticeFile = recreateNoticeFile(resolvePaths(world.sandbox.env), resourceNames(world.sandbox.instance))
    const recreate = execa(process.execPath, [OCC_BIN, 'start', '--recreate', ...world.startArgs], {env: world.sandbox.env, reject: false, stdin: 'ignore'})
    // The swap has begun once its note is there; freeze the recreating occ in the middle of it.
    await waitUntil(async () => fs.lstat(noticeFile).then(() => true, () => false), 60_000, () => 'occ start --recreate wrote no recreate note')
    process.kill(recreate.pid!, 'SIGSTOP')
    try {
      // As the web UI does it (temp file, rename), through the state mount: the old container may be gone already.
      const tmp = path.join(world.commandsDir, '.update-command.swap.tmp')
      await fs.writeFile(tmp, JSON.stringify({command: 'update_opencode', request_id: 'during-swap'}))
      await fs.rename(tmp, path.join(world.commandsDir, REQUEST_FILE))
      await foreground.waitForLine(/The container is being replaced; the update starts once the new one runs\./)
      assert.equal(await world.readResult().then((r) => r?.request_id), 'after-recreate', 'answered during the swap')
    } finally {
      process.kill(recreate.pid!, 'SIGCONT')
    }

    const result = await world.waitForResult((r) => r.request_id === 'during-swap', 120_000)
    assert.equal(result.status, 'success', `${JSON.stringify(result)}\n${foreground.stderr()}`)
    assert.equal((await recreate).exitCode, 0)
    const after = await containerId()
    assert.ok(after && after !== before, 'the container was not recreated')
    const stderr = foreground.stderr()
    const followed = stderr.indexOf(`following the new one (${after.slice(0, 12)})`)
    const finished = stderr.indexOf('Update (request_id "during-swap") finished')
    assert.ok(followed !== -1 && finished > followed, `the update did not wait for the new container:\n${stderr}`)
    assert.equal(await running(foreground), true, `service mode ended:\n${foreground.stderr()}`)
  })

  it('a removal with no successor (occ stop --remove) still ends service mode at once with exit 0', async () => {
    const started = Date.now()
    const stop = await world.sandbox.occ(['stop', '--remove', '--timeout', '5'])
    assert.equal(stop.exitCode, 0, String(stop.stderr))
    assert.equal(await foreground.exited, 0)
    assert.ok(Date.now() - started < 20_000, `service mode took ${Date.now() - started} ms to end`)
    assert.match(foreground.stderr(), /The container was removed\./)
    assert.equal(await world.readListenerJson(), undefined)
  })

  it('docker rm -f with nothing after it ends service mode too (exit 0: a removal is deliberate)', async () => {
    const start = await world.sandbox.occ(['start', ...world.startArgs])
    assert.equal(start.exitCode, 0, String(start.stderr))
    const fg = await world.startForeground()
    await fg.waitForLine(/Listening for update requests/)
    await world.sandbox.docker.getContainer(world.sandbox.containerName).remove({force: true})
    const code = await fg.exited
    assert.equal(code, 0, fg.stderr())
    assert.match(fg.stderr(), /The container was removed\./)
  })
})

describe('service mode across occ update container v1 → v2 (local registry)', function () {
  this.timeout(300_000)
  let registry: TestRegistry
  let world: ListenerWorld
  let foreground: Foreground
  let tag: string

  before(async function () {
    this.timeout(300_000)
    registry = await sharedRegistry()
    tag = `svc-${process.pid}`
    await registry.publish('v1', tag)
    world = await createListenerWorld('recu', {image: registry.ref(tag)})
    foreground = await world.startForeground()
    await foreground.waitForLine(/Listening for update requests/, 120_000)
  })
  after(async () => {
    await world?.cleanup()
    for (const ref of [registry?.ref(tag), `${registry?.repository}:instance-${world?.sandbox.instance}-previous`]) {
      if (ref) await world?.sandbox.docker.getImage(ref).remove().catch(() => {})
    }
  })

  it('follows the new container, and a request written during the swap waits and is answered from v2', async () => {
    const docker = world.sandbox.docker
    const before = (await docker.getContainer(world.sandbox.containerName).inspect()).Id
    await registry.publish('v2', tag)
    const noticeFile = recreateNoticeFile(resolvePaths(world.sandbox.env), resourceNames(world.sandbox.instance))
    const update = execa(process.execPath, [OCC_BIN, 'update', 'container', '--yes'], {env: world.sandbox.env, reject: false, stdin: 'ignore'})
    // The swap begins with its note (the pull is done by then); freeze update container in it.
    await waitUntil(async () => fs.lstat(noticeFile).then(() => true, () => false), 120_000, () => `update container wrote no recreate note:\n${foreground.stderr()}`)
    process.kill(update.pid!, 'SIGSTOP')
    try {
      const tmp = path.join(world.commandsDir, '.update-command.swap.tmp')
      await fs.writeFile(tmp, JSON.stringify({command: 'update_opencode', request_id: 'during-update-container'}))
      await fs.rename(tmp, path.join(world.commandsDir, REQUEST_FILE))
      await foreground.waitForLine(/The container is being replaced; the update starts once the new one runs\./)
      // Claimed, and waiting: listener.json still beats, from the same process.
      let status: Record<string, unknown> | undefined
      await waitUntil(
        async () => {
          status = await world.readListenerJson()
          return status?.state === 'updating' && status.request_id === 'during-update-container'
        },
        15_000,
        () => `listener.json: ${JSON.stringify(status)}`,
      )
      assert.equal(status?.pid, foreground.pid)
    } finally {
      process.kill(update.pid!, 'SIGCONT')
    }

    const updated = await update
    assert.equal(updated.exitCode, 0, String(updated.stderr))
    const result = await world.waitForResult((r) => r.request_id === 'during-update-container', 120_000)
    assert.equal(result.status, 'success', `${JSON.stringify(result)}\n${foreground.stderr()}`)
    const info = await docker.getContainer(world.sandbox.containerName).inspect()
    assert.notEqual(info.Id, before, 'the container was not recreated')
    assert.equal(info.Config.Labels['org.opencode-cloud.version'], 'v2')
    const stderr = foreground.stderr()
    const followed = stderr.indexOf(`following the new one (${info.Id.slice(0, 12)})`)
    const finished = stderr.indexOf('Update (request_id "during-update-container") finished: success')
    assert.ok(followed !== -1 && finished > followed, `the update did not wait for the new container:\n${stderr}`)
    // And the web UI in the new container gets answers as before.
    await world.webUiWrite({command: 'update_opencode', request_id: 'from-v2'})
    const fromV2 = await world.waitForResult((r) => r.request_id === 'from-v2', 60_000)
    assert.equal(fromV2.status, 'success', JSON.stringify(fromV2))
    assert.equal((await world.readListenerJson())?.pid, foreground.pid)
  })

  it('update container killed mid-swap: service mode ends at once with exit 1, and the service manager\'s next start repairs the swap and listens again', async () => {
    await registry.publish('v1', tag)
    const started = Date.now()
    const killed = await world.sandbox.occ(['update', 'container'], {env: {OCC_UPDATE_CONTAINER_CRASH_AT: 'renamed'}})
    assert.equal(killed.signal, 'SIGKILL', `update container was not killed at the crash point: ${String(killed.stderr)}`)
    assert.equal(await foreground.exited, 1, foreground.stderr())
    assert.ok(Date.now() - started < 30_000, `service mode took ${Date.now() - started} ms to end`)
    assert.match(foreground.stderr(), /the recreate was interrupted/)

    foreground = await world.startForeground()
    await foreground.waitForLine(/Listening for update requests/, 120_000)
    const names = (await world.sandbox.docker.listContainers({all: true, filters: {label: [`opencode-cloud.instance=${world.sandbox.instance}`]}})).map((c) => c.Names[0])
    assert.deepEqual(names, [`/${world.sandbox.containerName}`], 'the kept container was not put back')
    await world.webUiWrite({command: 'update_opencode', request_id: 'after-crash'})
    const result = await world.waitForResult((r) => r.request_id === 'after-crash', 60_000)
    assert.equal(result.status, 'success', JSON.stringify(result))
  })
})
