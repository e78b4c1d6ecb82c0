import assert from 'node:assert/strict'

import fc from 'fast-check'

import {parseUntrustedJson} from '../../../src/protocol/untrusted-json.js'

describe('protocol/untrusted-json', () => {
  it('parses UTF-8 JSON; one leading BOM is allowed, a second is not', () => {
    assert.deepEqual(parseUntrustedJson(Buffer.from('{"a":"é"}')), {ok: true, value: {a: 'é'}})
    assert.deepEqual(parseUntrustedJson(Buffer.from('\uFEFF{"a":1}')), {ok: true, value: {a: 1}})
    assert.equal(parseUntrustedJson(Buffer.from('\uFEFF\uFEFF{"a":1}')).ok, false)
  })

  it('refuses malformed UTF-8 instead of reading U+FFFD, and calls blank input empty', () => {
    assert.deepEqual(parseUntrustedJson(Buffer.from([0x7b, 0xff, 0x7d])), {error: 'the file is not UTF-8 text', ok: false})
    assert.deepEqual(parseUntrustedJson(Buffer.alloc(0)), {error: 'the file is empty', ok: false})
    assert.deepEqual(parseUntrustedJson(Buffer.from('  \n\t')), {error: 'the file is empty', ok: false})
  })

  it('keeps its error message short and on one line', () => {
    const result = parseUntrustedJson(Buffer.from(`{"key\n": ${'x'.repeat(500)}`))
    assert.equal(result.ok, false)
    const {error} = result as {error: string}
    assert.ok(error.length <= 161)
    assert.doesNotMatch(error, /\n/)
  })

  it('never throws, and agrees with JSON.parse on valid UTF-8 (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({maxLength: 200}), fc.jsonValue().map((value) => new TextEncoder().encode(JSON.stringify(value)))), (bytes) => {
        const result = parseUntrustedJson(bytes)
        if (result.ok) assert.deepEqual(result.value, JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(bytes)))
      }),
      {numRuns: 2000},
    )
  })
})
