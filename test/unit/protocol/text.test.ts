import assert from 'node:assert/strict'

import fc from 'fast-check'

import {capText, cleanLine, MAX_RESULT_MESSAGE_BYTES, resultMessage, sanitizeText} from '../../../src/protocol/text.js'

// eslint-disable-next-line no-control-regex
const ANY_CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/

describe('protocol/text: sandbox text on its way out', () => {
  it('removes CSI, OSC (title), DCS and C1 sequences, keeps the words', () => {
    const hostile = '\u001B]0;pwned title\u0007\u001B[2J\u001B[31mred\u001B[0m \u001BPq#0;2\u001B\\ok\u009B31m \u001B]8;;http://x\u001B\\link\u001B]8;;\u001B\\'
    assert.equal(sanitizeText(hostile), 'red ok link')
  })

  it('keeps newlines and tabs in messages, flattens them in one-line output; strips bidi overrides', () => {
    assert.equal(sanitizeText('a\r\nb\tc\u0000\u202Ed'), 'a\nb\tcd')
    assert.equal(cleanLine('a\nb\tc\rd'), 'a b cd')
  })

  it('caps at a UTF-8 byte budget, never inside a character, and says how much was cut', () => {
    const text = 'é'.repeat(5000)
    const capped = capText(text, 4096)
    assert.ok(Buffer.byteLength(capped) <= 4096)
    const match = /… \((\d+) bytes cut\)$/.exec(capped)
    assert.ok(match, capped.slice(-40))
    const kept = capped.slice(0, capped.length - match[0].length)
    assert.equal(Buffer.byteLength(kept) + Number(match[1]), Buffer.byteLength(text))
    assert.ok(!kept.includes('\uFFFD'))
    assert.equal(capText('short', 4096), 'short')
  })

  it('property: any text becomes clean and at most 4 KiB as a result message', () => {
    fc.assert(
      fc.property(fc.string({maxLength: 20_000, unit: 'binary'}), (text) => {
        const message = resultMessage(text)
        assert.ok(Buffer.byteLength(message) <= MAX_RESULT_MESSAGE_BYTES)
        assert.ok(!ANY_CONTROL.test(message))
        assert.ok(!message.includes('\u001B'))
      }),
      {numRuns: 300},
    )
  })

  it('a 4 MiB line of escapes becomes one short clean line', () => {
    const line = '\u001B]2;title\u0007'.repeat(100) + `\u001B[1m${'x'.repeat(4 * 1024 * 1024)}`
    const clean = cleanLine(line)
    assert.ok(Buffer.byteLength(clean) <= 4096)
    assert.match(clean, /^x+… \(\d+ bytes cut\)$/)
  })
})
