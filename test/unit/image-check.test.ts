import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {
  IMAGE_CHECK_ERROR_TTL_MS,
  IMAGE_CHECK_TTL_MS,
  imageUpdateView,
  readImageCheck,
  REFRESH_CLAIM_MS,
  startImageCheckRefresh,
  type ImageCheckInput,
  type ImageCheckRecord,
} from '../../src/runtime/image-check.js'
import {describeImageUpdate} from '../../src/runtime/status.js'

const A = `sha256:${'a'.repeat(64)}`
const B = `sha256:${'b'.repeat(64)}`
const NOW = Date.parse('2026-12-02T02:00:00Z')
const IMAGE = '127.0.0.1:5000/sandbox:latest'
const ago = (ms: number): string => new Date(NOW - ms).toISOString()
const record = (fields: Partial<ImageCheckRecord> = {}): ImageCheckRecord => ({checkedAt: ago(60_000), error: null, image: IMAGE, localDigest: A, remoteDigest: A, ...fields})
const input = (fields: Partial<ImageCheckInput> = {}): ImageCheckInput => ({cache: record(), image: IMAGE, localDigests: [A], mode: 'always', nowMs: NOW, ...fields})

describe('imageUpdateView (occ status: is a newer image available?)', () => {
  it('never: not checked, no refresh, whatever the cache says', () => {
    const {refresh, view} = imageUpdateView(input({cache: record({remoteDigest: B}), mode: 'never'}))
    assert.equal(refresh, false)
    assert.equal(view.state, 'disabled')
    assert.equal(describeImageUpdate(view, NOW), 'not checked (update_check is never)')
  })

  it('no cache: unknown, and a refresh is started (always and once)', () => {
    for (const mode of ['always', 'once'] as const) {
      const {refresh, view} = imageUpdateView(input({cache: undefined, mode}))
      assert.deepEqual({refresh, state: view.state}, {refresh: true, state: 'unknown'})
    }
  })

  it('the registry serves what runs: up to date; another digest: available, with the command to run', () => {
    assert.equal(imageUpdateView(input()).view.state, 'up-to-date')
    const {view} = imageUpdateView(input({cache: record({remoteDigest: B})}))
    assert.equal(view.state, 'available')
    assert.equal(view.remoteDigest, B)
    assert.equal(describeImageUpdate(view, NOW), 'a newer image is available (checked 1m ago): occ update container')
  })

  it('always: asked again once the answer is older than the TTL (the stale answer is still shown)', () => {
    assert.equal(imageUpdateView(input({cache: record({checkedAt: ago(IMAGE_CHECK_TTL_MS - 1000)})})).refresh, false)
    const stale = imageUpdateView(input({cache: record({checkedAt: ago(IMAGE_CHECK_TTL_MS), remoteDigest: B})}))
    assert.deepEqual({refresh: stale.refresh, state: stale.view.state}, {refresh: true, state: 'available'})
  })

  it('once: never asked again for the same local image, however old the answer; asked once more after the image changed', () => {
    assert.equal(imageUpdateView(input({cache: record({checkedAt: ago(30 * 86_400_000)}), mode: 'once'})).refresh, false)
    // occ update container moved the sandbox to B: the old answer (B served) says up to date, and one check follows.
    const updated = imageUpdateView(input({cache: record({localDigest: A, remoteDigest: B}), localDigests: [B], mode: 'once'}))
    assert.deepEqual({refresh: updated.refresh, state: updated.view.state}, {refresh: true, state: 'up-to-date'})
  })

  it('a failed check: unknown with why, tried again after the error TTL (also under once)', () => {
    for (const mode of ['always', 'once'] as const) {
      const fresh = imageUpdateView(input({cache: record({error: 'The registry 127.0.0.1:5000 cannot be reached', remoteDigest: null}), mode}))
      assert.equal(fresh.refresh, false)
      assert.equal(fresh.view.state, 'unknown')
      assert.match(describeImageUpdate(fresh.view, NOW), /^unknown: the last check failed: The registry 127\.0\.0\.1:5000 cannot be reached \(checked 1m ago\)$/)
      assert.equal(imageUpdateView(input({cache: record({checkedAt: ago(IMAGE_CHECK_ERROR_TTL_MS), error: 'x', remoteDigest: null}), mode})).refresh, true)
    }
  })

  it('an answer from the future (the clock went back) is due, not fresh for ever', () => {
    assert.equal(imageUpdateView(input({cache: record({checkedAt: new Date(NOW + 86_400_000).toISOString()})})).refresh, true)
  })

  it('a cache for another image reference counts as none', () => {
    const {refresh, view} = imageUpdateView(input({cache: record({image: 'other:latest', remoteDigest: B})}))
    assert.deepEqual({refresh, state: view.state}, {refresh: true, state: 'unknown'})
  })

  it('an image pinned by digest, or one with no registry digest (built locally): nothing to ask', () => {
    assert.deepEqual(imageUpdateView(input({image: `${IMAGE.split(':')[0]}@${A}`})).view.state, 'pinned')
    const local = imageUpdateView(input({cache: undefined, localDigests: []}))
    assert.deepEqual({refresh: local.refresh, state: local.view.state}, {refresh: false, state: 'unknown'})
  })
})

describe('the image check cache and its refresh claim', () => {
  let root: string
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-imgcheck-'))
  })
  afterEach(async () => {
    await fs.rm(root, {force: true, recursive: true})
  })

  it('reads a valid record; not through a symlink; junk, extra fields, a bad digest or an oversized file are none', async () => {
    const file = path.join(root, 'c.json')
    await fs.writeFile(file, JSON.stringify(record()))
    assert.deepEqual(await readImageCheck(file), record())
    for (const body of ['{', JSON.stringify({...record(), extra: 1}), JSON.stringify(record({remoteDigest: 'sha256:zz'})), JSON.stringify(record({error: 'x'.repeat(5000)}))]) {
      await fs.writeFile(file, body)
      assert.equal(await readImageCheck(file), undefined, body.slice(0, 30))
    }

    const link = path.join(root, 'link.json')
    await fs.writeFile(file, JSON.stringify(record()))
    await fs.symlink(file, link)
    assert.equal(await readImageCheck(link), undefined)
  })

  it('a fresh claim keeps a second refresh from starting; a claim older than REFRESH_CLAIM_MS is taken over', async () => {
    const files = {cache: path.join(root, 'c.json'), claim: path.join(root, 'dir', 'c.refreshing')}
    const launched: string[] = []
    const launch = (argument: string): void => {
      launched.push(argument)
    }

    assert.equal(await startImageCheckRefresh(files, IMAGE, A, {launch}), true, 'no refresh without a claim')
    assert.equal(await startImageCheckRefresh(files, IMAGE, A, {launch}), false, 'started while another refresh runs')
    assert.deepEqual(launched.map((argument) => JSON.parse(argument)), [{cache: files.cache, claim: files.claim, image: IMAGE, localDigest: A}])
    const old = new Date(Date.now() - REFRESH_CLAIM_MS - 1000)
    await fs.utimes(files.claim, old, old)
    assert.equal(await startImageCheckRefresh(files, IMAGE, A, {launch}), true, 'a dead refresher\'s claim was not taken over')
    assert.equal(launched.length, 2)
  })

  it('a claim whose mtime is a fraction of a millisecond (or a little) ahead of the clock is fresh: no second refresh', async () => {
    // The claim's mtime has sub-millisecond precision, Date.now() does not: a second call in the
    // same millisecond saw a negative age and took the claim over (the flake under load).
    const files = {cache: path.join(root, 'c.json'), claim: path.join(root, 'c.refreshing')}
    const launched: string[] = []
    const launch = (argument: string): void => {
      launched.push(argument)
    }

    await fs.writeFile(files.claim, '')
    for (const aheadMs of [0.4, 900]) {
      const at = (NOW + aheadMs) / 1000
      await fs.utimes(files.claim, at, at)
      assert.ok((await fs.stat(files.claim)).mtimeMs > NOW, 'the mtime was not set ahead')
      assert.equal(await startImageCheckRefresh(files, IMAGE, A, {launch, nowMs: NOW}), false, `a claim ${aheadMs} ms ahead was taken over`)
    }

    const future = (NOW + REFRESH_CLAIM_MS * 10) / 1000
    await fs.utimes(files.claim, future, future)
    assert.equal(await startImageCheckRefresh(files, IMAGE, A, {launch, nowMs: NOW}), true, 'a claim far in the future (the clock went back) was not taken over')
    assert.equal(launched.length, 1)
  })
})
