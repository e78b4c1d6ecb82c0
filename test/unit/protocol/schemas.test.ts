import assert from 'node:assert/strict'

import fc from 'fast-check'

import {checkUpdateCommand, updateCommandSchema, updateResultSchema} from '../../../src/protocol/schemas.js'

describe('protocol/schemas: checkUpdateCommand', () => {
  it('accepts the request fields of docs/update-flow.md, with null meaning absent', () => {
    assert.deepEqual(checkUpdateCommand({command: 'update_opencode'}), {ok: true, request: {command: 'update_opencode'}})
    assert.deepEqual(checkUpdateCommand({branch: 'dev', command: 'update_opencode', request_id: 'r1'}), {
      ok: true,
      request: {branch: 'dev', command: 'update_opencode', requestId: 'r1'},
    })
    assert.deepEqual(checkUpdateCommand({branch: null, command: 'update_opencode', commit: 'abcdef0', request_id: null}), {
      ok: true,
      request: {command: 'update_opencode', commit: 'abcdef0'},
    })
  })

  it('names an unknown field, and echoes the request_id on errors', () => {
    const check = checkUpdateCommand({command: 'update_opencode', extra: 1, request_id: 'r9'})
    assert.equal(check.ok, false)
    if (check.ok) return
    assert.equal(check.code, 'invalid_request')
    assert.match(check.message, /Unknown field 'extra'/)
    assert.equal(check.requestId, 'r9')
    const many = checkUpdateCommand({a: 1, b: 2, command: 'update_opencode'})
    assert.match((many as {message: string}).message, /Unknown fields 'a', 'b'/)
  })

  it('says the words docs/update-flow.md (and the Rust occ) use for an unsupported command and for branch + commit', () => {
    const unsupported = checkUpdateCommand({command: 'rm -rf', request_id: 'x'})
    assert.deepEqual(unsupported, {
      code: 'unsupported_command',
      message: "Unsupported command 'rm -rf'. Expected: update_opencode",
      ok: false,
      requestId: 'x',
    })
    const both = checkUpdateCommand({branch: 'dev', command: 'update_opencode', commit: 'abcdef0'})
    assert.equal((both as {code: string}).code, 'conflicting_target')
    assert.equal((both as {message: string}).message, 'Specify only one of branch or commit.')
  })

  it('rejects non-objects, a missing command, wrong types, bad refs and an overlong request_id', () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [[], 'invalid_request', /JSON object \(got an array\)/],
      ['x', 'invalid_request', /got a string/],
      [null, 'invalid_request', /got null/],
      [{}, 'invalid_request', /Missing field 'command'/],
      [{command: 5}, 'unsupported_command', /Unsupported command 'number 5'/],
      [{branch: 5, command: 'update_opencode'}, 'invalid_request', /'branch' must be a string/],
      [{command: 'update_opencode', request_id: 1}, 'invalid_request', /'request_id' must be a string/],
      [{command: 'update_opencode', request_id: 'x'.repeat(201)}, 'invalid_request', /longer than 200/],
      [{branch: '--upload-pack=x', command: 'update_opencode'}, 'invalid_ref', /Invalid branch/],
      [{branch: 'a..b', command: 'update_opencode'}, 'invalid_ref', /'\.\.'/],
      [{command: 'update_opencode', commit: 'zzzzzzz'}, 'invalid_ref', /Invalid commit/],
    ]
    for (const [raw, code, message] of cases) {
      const check = checkUpdateCommand(raw)
      assert.equal(check.ok, false, JSON.stringify(raw))
      if (check.ok) continue
      assert.equal(check.code, code, JSON.stringify(raw))
      assert.match(check.message, message)
    }
  })

  it('keeps control characters and long input out of messages', () => {
    const check = checkUpdateCommand({command: `x\u001B[31m${'y'.repeat(500)}`})
    assert.equal(check.ok, false)
    if (check.ok) return
    assert.ok(!check.message.includes('\u001B'))
    assert.ok(check.message.length < 200)
  })

  it('agrees with the zod schema on any JSON value, and never throws (property)', () => {
    const field = fc.oneof(fc.constant('update_opencode'), fc.string({maxLength: 12}), fc.constant(null), fc.integer())
    const requestLike = fc.record(
      {
        branch: fc.oneof(fc.constantFrom('dev', 'a..b', 'feature/x', '-x'), field),
        command: field,
        commit: fc.oneof(fc.constantFrom('abcdef0', 'xyz'), field),
        extra: fc.jsonValue(),
        request_id: field,
      },
      {requiredKeys: []},
    )
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), requestLike), (value) => {
        const check = checkUpdateCommand(value)
        assert.equal(check.ok, updateCommandSchema.safeParse(value).success, JSON.stringify(value))
      }),
      {numRuns: 2000},
    )
  })
})

describe('protocol/schemas: result', () => {
  it('wants UTC timestamps ending in Z', () => {
    const base = {message: 'ok', started_at: '2026-02-01T22:48:00Z', status: 'success'}
    assert.ok(updateResultSchema.safeParse({...base, finished_at: '2026-02-01T22:48:12.123Z'}).success)
    assert.ok(!updateResultSchema.safeParse({...base, finished_at: '2026-02-01T22:48:12+00:00'}).success)
  })
})
