import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import fc from 'fast-check'
import {MAX_REQUEST_BYTES, REQUEST_FILE} from 'opencode-cloud'

import {exists, makeWorld, waitFor, type World} from './helpers.js'

/** Whatever can end up at the request path: bytes, JSON, request-like objects, other file kinds. */
type Entry =
  | {kind: 'bytes'; bytes: Uint8Array}
  | {kind: 'dir'; withFile: boolean}
  | {kind: 'fifo'}
  | {kind: 'json'; value: unknown}
  | {kind: 'request'; value: Record<string, unknown>}
  | {kind: 'size'; size: number}
  | {kind: 'symlink'; dangling: boolean}

const entry: fc.Arbitrary<Entry> = fc.oneof(
  fc.record({bytes: fc.uint8Array({maxLength: 300}), kind: fc.constant('bytes' as const)}),
  fc.record({kind: fc.constant('json' as const), value: fc.jsonValue({maxDepth: 3})}),
  fc.record({
    kind: fc.constant('request' as const),
    value: fc.record(
      {
        branch: fc.oneof(fc.constantFrom('dev', 'main', 'a..b', '-x', 'feature/x'), fc.string({maxLength: 10}), fc.constant(null)),
        command: fc.oneof(fc.constant('update_opencode'), fc.string({maxLength: 10})),
        commit: fc.oneof(fc.constantFrom('abcdef0', 'nothex!'), fc.constant(null)),
        request_id: fc.oneof(fc.string({maxLength: 20}), fc.integer()),
        unknown_field: fc.jsonValue({maxDepth: 1}),
      },
      {requiredKeys: ['command']},
    ),
  }),
  fc.record({kind: fc.constant('size' as const), size: fc.constantFrom(0, 1, MAX_REQUEST_BYTES - 1, MAX_REQUEST_BYTES, MAX_REQUEST_BYTES + 1, 200_000)}),
  fc.record({kind: fc.constant('fifo' as const)}),
  fc.record({dangling: fc.boolean(), kind: fc.constant('symlink' as const)}),
  fc.record({kind: fc.constant('dir' as const), withFile: fc.boolean()}),
)

/** Places the entry; for sized requests, says whether it should succeed. */
async function place(world: World, item: Entry, index: number): Promise<boolean | undefined> {
  let fitsAndParses: boolean | undefined
  const staging = path.join(world.root, `staging-${index}`)
  switch (item.kind) {
    case 'bytes': {
      await fs.writeFile(staging, item.bytes)
      break
    }

    case 'json':
    case 'request': {
      await fs.writeFile(staging, JSON.stringify(item.value) ?? 'undefined')
      break
    }

    case 'size': {
      // A valid request padded with spaces to the size (valid JSON up to the cap).
      const body = JSON.stringify({command: 'update_opencode', request_id: `sized-${index}`})
      await fs.writeFile(staging, item.size >= body.length ? body + ' '.repeat(item.size - body.length) : body.slice(0, item.size))
      fitsAndParses = item.size >= body.length && item.size <= MAX_REQUEST_BYTES
      break
    }

    case 'fifo': {
      execFileSync('mkfifo', [staging])
      break
    }

    case 'symlink': {
      const target = path.join(world.root, `target-${index}`)
      if (!item.dangling) await fs.writeFile(target, JSON.stringify({command: 'update_opencode', request_id: 'via-link'}))
      await fs.symlink(target, staging)
      break
    }

    case 'dir': {
      await fs.mkdir(staging)
      if (item.withFile) await fs.writeFile(path.join(staging, 'inside'), 'x')
      break
    }
  }

  // Staged outside, moved in by rename (the same file system), like the web UI.
  await fs.rename(staging, path.join(world.dir, REQUEST_FILE))
  return fitsAndParses
}

describe('update listener: any entry at the request path gets exactly one answer (property)', () => {
  let world: World
  before(async () => {
    world = await makeWorld()
  })
  after(() => world.cleanup())

  it('never crashes or hangs, answers each entry once, and leaves the path empty', async () => {
    let index = 0
    let updates = 0
    const running = world.start({
      graceMs: 30,
      updateOpencode: async () => {
        updates++
        return {changed: false, finishedAt: new Date().toISOString(), message: 'ok', ref: {}, rolledBack: false, startedAt: new Date().toISOString(), status: 'success', steps: []}
      },
    })
    let failed: unknown
    running.done.catch((error: unknown) => {
      failed = error
    })
    await fc.assert(
      fc.asyncProperty(entry, async (item) => {
        const before = world.results.length
        const updatesBefore = updates
        const fitsAndParses = await place(world, item, index++)
        await waitFor(() => world.results.length > before, 3000, () => `no result for ${JSON.stringify(item)}`)
        await waitFor(async () => !(await exists(path.join(world.dir, REQUEST_FILE))), 1000)
        assert.equal(world.results.length, before + 1, 'exactly one result')
        const result = world.results[before]
        if (result.status === 'success') {
          assert.equal(updates, updatesBefore + 1)
          assert.ok(item.kind !== 'fifo' && item.kind !== 'symlink' && item.kind !== 'dir')
        } else {
          assert.equal(updates, updatesBefore, 'an error result never ran the update')
        }

        if (item.kind === 'size') assert.equal(result.status === 'success', fitsAndParses, `size ${item.size}`)
        if (item.kind === 'symlink') assert.equal(result.error_code, 'not_regular_file')
      }),
      {numRuns: 150},
    )
    assert.equal(failed, undefined)
    const leftovers = (await fs.readdir(world.dir)).filter((name) => name.includes('claimed') || name === REQUEST_FILE)
    assert.deepEqual(leftovers, [])
  })
})
