import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'

import fc from 'fast-check'

import {isValidBranch, validateBranch, validateCommit} from '../../../src/protocol/refs.js'

function gitAccepts(branch: string): boolean {
  return spawnSync('git', ['check-ref-format', '--branch', branch], {encoding: 'utf8'}).status === 0
}

describe('protocol/refs', () => {
  it('accepts ordinary branch names', () => {
    for (const name of ['dev', 'main', 'feature/x', 'release-1.2', 'a_b', 'v1.0.0', 'user/topic/sub', 'x.y']) {
      assert.deepEqual(validateBranch(name), {ok: true}, name)
    }
  })

  it('rejects what git rejects, and what the conservative charset leaves out, with a reason', () => {
    const bad: Array<[string, RegExp]> = [
      ['', /empty/],
      ['-x', /start with '-'/],
      ['a..b', /'\.\.'/],
      ['a//b', /'\/\/'/],
      ['/a', /start or end with '\/'/],
      ['a/', /start or end with '\/'/],
      ['a.lock', /\.lock/],
      ['a/b.lock/c', /\.lock/],
      ['a.', /end with '\.'/],
      ['.a', /start with '\.'/],
      ['a/.b', /start with '\.'/],
      ['HEAD', /HEAD/],
      ['a b', /only contain/],
      ['a~1', /only contain/],
      ['a^', /only contain/],
      ['a:b', /only contain/],
      ['a@{1}', /only contain/],
      ['a\\b', /only contain/],
      ['$(reboot)', /only contain/],
      ['ü', /only contain/],
      ['x'.repeat(201), /at most 200/],
    ]
    for (const [name, reason] of bad) {
      const check = validateBranch(name)
      assert.equal(check.ok, false, name)
      assert.match((check as {reason: string}).reason, reason, name)
    }

    assert.equal(validateBranch('x'.repeat(200)).ok, true)
  })

  it('matches git check-ref-format --branch on names over the allowed charset (property)', () => {
    // Within [A-Za-z0-9._/-] (and 200 chars) our rules and git's must agree exactly.
    const piece = fc.constantFrom('a', 'B', '9', '-', '_', '.', '/', '..', '//', '.lock', 'HEAD', 'dev')
    fc.assert(
      fc.property(fc.string({maxLength: 8, minLength: 1, unit: piece}), (name) => {
        assert.equal(isValidBranch(name), gitAccepts(name), JSON.stringify(name))
      }),
      {numRuns: 300},
    )
  })

  it('never accepts a name outside the charset, whatever git says (property)', () => {
    fc.assert(
      fc.property(fc.string({maxLength: 12}), (name) => {
        if (!/^[A-Za-z0-9._/-]*$/.test(name)) assert.equal(isValidBranch(name), false, JSON.stringify(name))
      }),
      {numRuns: 1000},
    )
  })

  it('accepts 7 to 40 hex digits as a commit, nothing else', () => {
    for (const sha of ['abcdef0', 'ABCDEF0123', 'a'.repeat(40)]) assert.equal(validateCommit(sha).ok, true, sha)
    for (const sha of ['abcdef', 'a'.repeat(41), 'abcdefg', 'HEAD', '', 'abc def0', '0x12345678']) {
      assert.equal(validateCommit(sha).ok, false, sha)
    }
  })
})
