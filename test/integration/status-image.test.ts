/**
 * `occ status` and the image: its registry digest, and per update_check whether the registry
 * has a newer one for the tag — from a cache that a detached refresher fills, so status never
 * waits for the registry. Against the local registry (test/helpers/registry.ts), one sandbox.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'

import {resourceNames} from '../../src/config/instance.js'
import {resolvePaths} from '../../src/config/paths.js'
import {imageCheckFiles, type ImageCheckRecord} from '../../src/runtime/image-check.js'
import {statusViewSchema} from '../../src/runtime/status-schema.js'
import type {StatusView} from '../../src/runtime/status.js'
import {waitUntil} from './listener-helpers/world.js'
import {sharedRegistry, type TestRegistry} from '../helpers/registry.js'
import {createSandboxEnv, expectExit, json, out, type SandboxEnv, useFixtureImage} from '../helpers/sandbox-env.js'

describe('integration: occ status shows the image digest and whether a newer image is available', function () {
  this.timeout(240_000)
  let registry: TestRegistry
  let sandbox: SandboxEnv
  let tag: string
  let files: {cache: string; claim: string}

  const status = async (): Promise<StatusView> => {
    const result = await sandbox.occ(['status', '--json'])
    expectExit(result, 0)
    return statusViewSchema.parse(json(result)) as StatusView
  }

  const readCache = async (): Promise<ImageCheckRecord | undefined> => fs.readFile(files.cache, 'utf8').then((text) => JSON.parse(text), () => undefined)
  const exists = async (file: string): Promise<boolean> => fs.lstat(file).then(() => true, () => false)
  /** Makes the cached answer two hours old (as time passing would). */
  const age = async (): Promise<void> => {
    const cache = await readCache()
    assert.ok(cache, 'no cache to age')
    await fs.writeFile(files.cache, JSON.stringify({...cache, checkedAt: new Date(Date.now() - 2 * 3_600_000).toISOString()}))
  }

  const refreshed = async (since: string | undefined): Promise<ImageCheckRecord> => {
    let cache: ImageCheckRecord | undefined
    await waitUntil(
      async () => {
        cache = await readCache()
        return cache !== undefined && cache.checkedAt !== since && !(await exists(files.claim))
      },
      60_000,
      () => `the refresher wrote nothing new: ${JSON.stringify(cache)}`,
    )
    return cache!
  }

  before(async function () {
    this.timeout(300_000)
    registry = await sharedRegistry()
    tag = `st-${process.pid}`
    await registry.publish('v1', tag)
    sandbox = await createSandboxEnv('stimg')
    await useFixtureImage(sandbox, {}, registry.ref(tag))
    files = imageCheckFiles(resolvePaths(sandbox.env), resourceNames(sandbox.instance))
    expectExit(await sandbox.occ(['start']), 0)
  })
  after(async () => {
    await sandbox?.cleanup()
    for (const ref of [registry?.ref(tag), `${registry?.repository}:instance-${sandbox?.instance}-previous`]) {
      if (ref) await sandbox?.docker.getImage(ref).remove().catch(() => {})
    }

    if (registry && !registry.running()) await registry.start()
  })

  it('always: the first status answers at once (checking in the background), the next says up to date', async () => {
    const first = await status()
    assert.equal(first.image.digest, registry.digests.v1)
    assert.equal(first.image.update?.check, 'always')
    assert.equal(first.image.update?.state, 'unknown')
    assert.match(first.image.update?.detail ?? '', /checking in the background/)
    const cache = await refreshed(undefined)
    assert.equal(cache.remoteDigest, registry.digests.v1)
    const second = await status()
    assert.deepEqual({remote: second.image.update?.remoteDigest, state: second.image.update?.state}, {remote: registry.digests.v1, state: 'up-to-date'})
    assert.equal(second.image.update?.checkedAt, cache.checkedAt)
  })

  it('a new image pushed to the tag: shown once the cached answer is due and refreshed; text status names the command', async () => {
    await registry.publish('v2', tag)
    const cached = await status()
    assert.equal(cached.image.update?.state, 'up-to-date', 'a fresh answer is used as it is')
    assert.equal(await exists(files.claim), false, 'a fresh answer started a refresh')
    await age()
    const stale = await status()
    assert.equal(stale.image.update?.state, 'up-to-date', 'the stale answer is shown while it is refreshed')
    const cache = await refreshed(stale.image.update?.checkedAt ?? undefined)
    assert.equal(cache.remoteDigest, registry.digests.v2)
    const view = await status()
    assert.deepEqual({remote: view.image.update?.remoteDigest, state: view.image.update?.state}, {remote: registry.digests.v2, state: 'available'})
    const text = await sandbox.occ(['status'])
    expectExit(text, 0)
    assert.match(out(text), /Image digest:\s+sha256:[0-9a-f]{64}\n/)
    assert.match(out(text), /Image update:\s+a newer image is available \(checked \d+s ago\): occ update container\n/)
  })

  it('once: not asked again for the same image however old the answer; asked once after occ update container', async () => {
    expectExit(await sandbox.occ(['config', 'set', 'update_check', 'once']), 0)
    await age()
    const before = await readCache()
    const view = await status()
    assert.equal(view.image.update?.check, 'once')
    assert.equal(view.image.update?.state, 'available')
    assert.equal(await exists(files.claim), false, 'once asked the registry again for the same image')
    assert.deepEqual(await readCache(), before)

    expectExit(await sandbox.occ(['update', 'container']), 0)
    const updated = await status()
    assert.equal(updated.image.digest, registry.digests.v2)
    assert.equal(updated.image.update?.state, 'up-to-date')
    const cache = await refreshed(before?.checkedAt)
    assert.equal(cache.localDigest, registry.digests.v2, 'the check for the new image')
    await age()
    await status()
    assert.equal(await exists(files.claim), false, 'once asked twice for the same image')
  })

  it('a registry that cannot be reached: status still answers, and then says the check failed', async () => {
    expectExit(await sandbox.occ(['config', 'set', 'update_check', 'always']), 0)
    await fs.rm(files.cache)
    await registry.stop()
    const first = await status()
    assert.equal(first.image.update?.state, 'unknown')
    const cache = await refreshed(undefined)
    assert.equal(cache.remoteDigest, null)
    assert.match(cache.error ?? '', /cannot be reached|unreachable|connection refused/i)
    const view = await status()
    assert.equal(view.image.update?.state, 'unknown')
    assert.match(view.image.update?.detail ?? '', /^the last check failed: /)
    await registry.start()
  })

  it('never: not checked, nothing cached, no refresh', async () => {
    expectExit(await sandbox.occ(['config', 'set', 'update_check', 'never']), 0)
    await fs.rm(files.cache)
    const view = await status()
    assert.equal(view.image.digest, registry.digests.v2)
    assert.deepEqual({check: view.image.update?.check, state: view.image.update?.state}, {check: 'never', state: 'disabled'})
    assert.equal(await exists(files.claim), false)
    assert.equal(await exists(files.cache), false)
    assert.match(out(await sandbox.occ(['status'])), /Image update:\s+not checked \(update_check is never\)\n/)
  })
})
