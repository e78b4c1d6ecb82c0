import assert from 'node:assert/strict'

import fc from 'fast-check'

import {outcomeToResult, resultToOutcome} from '../../../src/protocol/result-mapping.js'
import {updateResultSchema} from '../../../src/protocol/schemas.js'
import {updateOutcomeSchema} from '../../../src/runtime/update/outcome-schema.js'
import type {UpdateOutcome} from '../../../src/runtime/update-types.js'

const sha = fc.stringMatching(/^[0-9a-f]{40}$/)
const iso = fc.integer({max: 4_000_000_000_000, min: 0}).map((ms) => new Date(ms).toISOString())
const code = fc.constantFrom('UPDATE_ROLLED_BACK', 'BUILD_FAILED', 'UNKNOWN_BRANCH', 'UPDATE_BUSY', 'UPDATE_CANCELLED', 'ROLLBACK_UNHEALTHY')
// eslint-disable-next-line no-control-regex
const cleanMessage = fc.string({maxLength: 300}).map((text) => text.replaceAll(/[\u0000-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]/g, ''))

const outcomeArb: fc.Arbitrary<UpdateOutcome> = fc
  .record({
    changed: fc.boolean(),
    error: fc.option(code, {nil: undefined}),
    finishedAt: iso,
    fromCommit: fc.option(sha, {nil: undefined}),
    message: cleanMessage,
    rolledBack: fc.boolean(),
    startedAt: iso,
    status: fc.constantFrom('success' as const, 'error' as const),
    toCommit: fc.option(sha, {nil: undefined}),
  })
  .map(({error, fromCommit, toCommit, ...rest}) => {
    const outcome: UpdateOutcome = {...rest, ref: {branch: 'dev'}, steps: []}
    if (fromCommit) outcome.fromCommit = fromCommit
    if (toCommit) outcome.toCommit = toCommit
    if (rest.status === 'error') outcome.error = {actions: [], code: error ?? 'UPDATE_FAILED', exitCode: error === 'UPDATE_BUSY' ? 9 : 8}
    else outcome.rolledBack = false
    return outcome
  })

describe('protocol/result-mapping: outcome ↔ result', () => {
  it('property: outcome → result → outcome keeps everything a result carries', () => {
    fc.assert(
      fc.property(outcomeArb, fc.option(fc.string({maxLength: 50}), {nil: undefined}), (outcome, requestId) => {
        const result = outcomeToResult(outcome, {requestId})
        assert.ok(updateResultSchema.safeParse(result).success, JSON.stringify(result))
        assert.equal(result.request_id, requestId)
        const back = resultToOutcome(result, {})
        assert.ok(updateOutcomeSchema.safeParse(back).success)
        for (const key of ['status', 'changed', 'message', 'fromCommit', 'toCommit', 'rolledBack', 'startedAt', 'finishedAt'] as const) {
          assert.deepEqual(back[key], outcome[key], key)
        }

        assert.equal(back.error?.code, outcome.error?.code)
        assert.equal(back.error?.exitCode, outcome.error?.exitCode)
        // And the other way round: the result read back maps to the same result.
        assert.deepEqual(outcomeToResult(back, {requestId}), result)
      }),
      {numRuns: 500},
    )
  })

  it('an interrupted update is error_code interrupted and keeps its own code; busy maps to exit 9', () => {
    const outcome: UpdateOutcome = {
      changed: false,
      error: {actions: [], code: 'UPDATE_ROLLED_BACK', exitCode: 8},
      finishedAt: '2026-01-01T00:00:01.000Z',
      message: 'rolled back',
      ref: {},
      rolledBack: true,
      startedAt: '2026-01-01T00:00:00.000Z',
      status: 'error',
      steps: [],
    }
    const result = outcomeToResult(outcome, {interrupted: true})
    assert.equal(result.error_code, 'interrupted')
    assert.equal(result.code, 'UPDATE_ROLLED_BACK')
    assert.equal(result.rolled_back, true)
    const busy = resultToOutcome({error_code: 'busy', finished_at: outcome.finishedAt, message: 'busy: 8 requests waiting', started_at: outcome.startedAt, status: 'error'}, {})
    assert.equal(busy.error?.exitCode, 9)
    assert.equal(busy.error?.code, 'UPDATE_BUSY')
  })

  it('caps and cleans the message of a hostile outcome', () => {
    const outcome: UpdateOutcome = {
      changed: false,
      finishedAt: '2026-01-01T00:00:01.000Z',
      message: `\u001B]0;owned\u0007${'y'.repeat(8 * 1024 * 1024)}`,
      ref: {},
      rolledBack: false,
      startedAt: '2026-01-01T00:00:00.000Z',
      status: 'error',
      steps: [],
    }
    const result = outcomeToResult(outcome)
    assert.ok(Buffer.byteLength(result.message) <= 4096)
    assert.ok(!result.message.includes('\u001B'))
    assert.match(result.message, /bytes cut\)$/)
    assert.ok(updateResultSchema.safeParse(result).success)
  })
})
