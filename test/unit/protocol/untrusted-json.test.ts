import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import fc from 'fast-check'

import {parseUntrustedJson, readUntrustedJson} from '../../../src/protocol/untrusted-json.js'

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

  describe('readUntrustedJson', () => {
    let root: string
    beforeEach(async () => {
      root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-untrusted-json-'))
    })
    afterEach(async () => {
      await fs.rm(root, {force: true, recursive: true})
    })

    it('parses a regular file within the cap; says why for a missing, linked, special, oversized or malformed one', async () => {
      const file = path.join(root, 'a.json')
      await fs.writeFile(file, '{"a":1}')
      assert.deepEqual(await readUntrustedJson(file, 7), {ok: true, value: {a: 1}})
      assert.deepEqual(await readUntrustedJson(file, 6), {error: 'the file is over 6 bytes', ok: false})
      assert.deepEqual(await readUntrustedJson(path.join(root, 'none.json'), 100), {error: 'the file is missing', ok: false})
      await fs.symlink(file, path.join(root, 'link.json'))
      assert.deepEqual(await readUntrustedJson(path.join(root, 'link.json'), 100), {error: 'the file is not a regular file (symlink)', ok: false})
      execFileSync('mkfifo', [path.join(root, 'fifo')])
      assert.deepEqual(await readUntrustedJson(path.join(root, 'fifo'), 100), {error: 'the file is not a regular file (fifo)', ok: false})
      await fs.writeFile(file, Buffer.from([0x7b, 0xff, 0x7d]))
      assert.deepEqual(await readUntrustedJson(file, 100), {error: 'the file is not UTF-8 text', ok: false})
    })
  })
})
