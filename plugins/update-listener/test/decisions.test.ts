import assert from 'node:assert/strict'

import fc from 'fast-check'
import {parseUntrustedJson, type UntrustedRead} from 'opencode-cloud/internal'

import {alreadyAnswered, decideClaim, isDeadClaim, nextStartAt, waitBeforeClaim} from '../src/decisions.js'

const ok = (text: string | Buffer, mtimeMs = 1000): UntrustedRead => ({data: Buffer.from(text), kind: 'ok', mtimeMs})
const timing = {claimedAt: 1000, graceMs: 2000, now: 1000}

describe('listener decisions', () => {
  describe('decideClaim', () => {
    it('runs a valid request', () => {
      assert.deepEqual(decideClaim(ok('{"command":"update_opencode","branch":"dev"}'), timing), {
        kind: 'run',
        request: {branch: 'dev', command: 'update_opencode'},
      })
    })

    it('retries invalid JSON inside the grace window, then rejects it', () => {
      assert.deepEqual(decideClaim(ok('{"comm'), timing), {afterMs: 100, kind: 'retry'})
      assert.deepEqual(decideClaim(ok('{"comm'), {...timing, now: 2950}), {afterMs: 50, kind: 'retry'})
      const late = decideClaim(ok('{"comm'), {...timing, now: 3000})
      assert.equal(late.kind, 'reject')
      assert.equal((late as {code: string}).code, 'invalid_json')
      // Stopping: no more waiting.
      assert.equal(decideClaim(ok('{"comm'), {...timing, final: true}).kind, 'reject')
    })

    it('counts the grace window from the mtime, but never from the future', () => {
      assert.equal(decideClaim(ok('{', -5000), timing).kind, 'reject')
      assert.equal(decideClaim(ok('{', 9e12), timing).kind, 'retry')
      assert.equal(decideClaim(ok('{', 9e12), {...timing, now: 3000}).kind, 'reject')
    })

    it('rejects non-regular files and oversize requests at once; drops a vanished claim', () => {
      assert.equal((decideClaim({fileKind: 'fifo', kind: 'not-regular'}, timing) as {code: string}).code, 'not_regular_file')
      assert.equal((decideClaim({kind: 'too-large', size: 1e6}, timing) as {code: string}).code, 'too_large')
      assert.deepEqual(decideClaim({kind: 'missing'}, timing), {kind: 'drop'})
      assert.equal(decideClaim({kind: 'changed'}, timing).kind, 'retry')
      assert.equal(decideClaim({error: 'EACCES', kind: 'unreadable'}, {...timing, now: 5000}).kind, 'reject')
    })

    it('never throws, and only runs what checks out (property)', () => {
      const read: fc.Arbitrary<UntrustedRead> = fc.oneof(
        fc.record({data: fc.uint8Array({maxLength: 200}).map((bytes) => Buffer.from(bytes)), kind: fc.constant('ok' as const), mtimeMs: fc.integer()}),
        fc.record({data: fc.jsonValue().map((value) => Buffer.from(JSON.stringify(value) ?? '')), kind: fc.constant('ok' as const), mtimeMs: fc.integer()}),
        fc.constant({kind: 'missing'} as const),
        fc.constant({kind: 'changed'} as const),
        fc.record({fileKind: fc.constantFrom('fifo', 'socket', 'directory', 'symlink'), kind: fc.constant('not-regular' as const)}),
        fc.record({kind: fc.constant('too-large' as const), size: fc.nat()}),
      ) as fc.Arbitrary<UntrustedRead>
      fc.assert(
        fc.property(read, fc.integer({max: 10_000, min: 0}), fc.boolean(), (input, elapsed, final) => {
          const decision = decideClaim(input, {claimedAt: 1000, final, graceMs: 2000, now: 1000 + elapsed})
          if (decision.kind === 'retry') {
            assert.ok(!final && elapsed < 2000 && decision.afterMs > 0 && decision.afterMs <= 100)
          }

          if (decision.kind === 'run') {
            assert.equal(input.kind, 'ok')
            const parsed = parseUntrustedJson((input as {data: Buffer}).data)
            assert.ok(parsed.ok && (parsed.value as {command: string}).command === 'update_opencode')
          }

          if (decision.kind === 'reject') assert.ok(decision.message.length > 0 && decision.message.length < 400)
        }),
        {numRuns: 3000},
      )
    })
  })

  it('waits before claiming only young invalid JSON', () => {
    const at = {firstSeenAt: 1000, graceMs: 2000, now: 1500}
    assert.equal(waitBeforeClaim(ok('{"command":"update_opencode"}'), at), 0)
    assert.equal(waitBeforeClaim(ok('{', 1000), at), 100)
    assert.equal(waitBeforeClaim(ok('{', 1000), {...at, now: 3000}), 0)
    assert.equal(waitBeforeClaim({fileKind: 'fifo', kind: 'not-regular'}, at), 0)
  })

  it('rate-limits from the last answer', () => {
    assert.equal(nextStartAt(undefined, 5000), 0)
    assert.equal(nextStartAt(10_000, 5000), 15_000)
  })

  it('tells dead claims (gone pid, or our own pid from an earlier process) from live ones', () => {
    assert.equal(isDeadClaim(10, 99, () => false), true)
    assert.equal(isDeadClaim(10, 99, () => true), false)
    assert.equal(isDeadClaim(99, 99, () => true), true)
  })

  it('knows when a dead claim was already answered', () => {
    const result = {finished_at: '2026-01-01T00:00:10.000Z', message: 'm', request_id: 'r', started_at: '2026-01-01T00:00:00.000Z', status: 'success' as const}
    const claimedAtMs = Date.parse('2026-01-01T00:00:05.000Z')
    assert.equal(alreadyAnswered(result, {claimedAtMs, requestId: 'r'}), true)
    assert.equal(alreadyAnswered(result, {claimedAtMs, requestId: 'other'}), false)
    assert.equal(alreadyAnswered(result, {claimedAtMs: Date.parse('2026-01-01T00:01:00.000Z'), requestId: 'r'}), false)
    assert.equal(alreadyAnswered(undefined, {claimedAtMs, requestId: 'r'}), false)
  })
})
