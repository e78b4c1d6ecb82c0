import assert from 'node:assert/strict'

import fc from 'fast-check'

import {
  checkRepo,
  judgeHealth,
  localRepoPath,
  parseLsRemote,
  shortSha,
} from '../../src/runtime/update/layout.js'
import {parseUpdateTarget} from '../../src/runtime/update/target.js'
import {formatSeconds} from '../../src/runtime/update/plan.js'
import {parseInspect, releaseStoreScript} from '../../src/runtime/update/release-store.js'
import {UsageError} from '../../src/errors.js'

const A = 'a'.repeat(40)
const B = 'b'.repeat(40)
const C = 'c'.repeat(40)

describe('update: target', () => {
  it('defaults to the dev branch', () => {
    assert.deepEqual(parseUpdateTarget({}), {branch: 'dev', defaulted: true, kind: 'branch'})
  })

  it('takes a branch or a commit (lower-cased), never both', () => {
    assert.deepEqual(parseUpdateTarget({branch: 'feature/x-1.2'}), {branch: 'feature/x-1.2', defaulted: false, kind: 'branch'})
    assert.deepEqual(parseUpdateTarget({commit: 'ABCDEF1'}), {commit: 'abcdef1', kind: 'commit'})
    assert.throws(() => parseUpdateTarget({branch: 'dev', commit: 'abcdef1'}), (error: unknown) => {
      assert.ok(error instanceof UsageError)
      assert.equal(error.message, 'Specify only one of branch or commit.')
      return true
    })
  })

  it('treats an empty value as given (and invalid), not as absent', () => {
    assert.throws(() => parseUpdateTarget({branch: ''}), UsageError)
    assert.throws(() => parseUpdateTarget({commit: ''}), UsageError)
  })

  it('rejects commits that are not 7-40 hex digits', () => {
    for (const commit of ['abc123', 'g'.repeat(7), 'a'.repeat(41), ' abcdef1', 'abcdef1\n', '-abcdef1']) {
      assert.throws(() => parseUpdateTarget({commit}), UsageError, JSON.stringify(commit))
    }
  })

  it('rejects branch names a shell, git or a terminal could misread, and keeps the message on one line', () => {
    for (const branch of ['-x', 'a..b', 'a b', 'a\nb', '$(id)', '`id`', 'a;b', 'x/', '/x', 'a//b', '.x', 'x.lock', 'HEAD', 'x.', 'a\u001b[31m']) {
      assert.throws(
        () => parseUpdateTarget({branch}),
        (error: unknown) => error instanceof UsageError && !error.message.includes('\n') && !error.message.includes('\u001b'),
        JSON.stringify(branch),
      )
    }
  })

  it('accepts every name built from the safe charset that follows the ref rules', () => {
    const part = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_-]{0,10}$/)
    fc.assert(
      fc.property(fc.array(part, {maxLength: 4, minLength: 1}), (parts) => {
        const branch = parts.join('/')
        fc.pre(branch !== 'HEAD' && !parts.some((p) => p.endsWith('.lock')))
        assert.equal(parseUpdateTarget({branch}).kind, 'branch')
      }),
    )
  })
})

describe('update: ls-remote', () => {
  it('takes only the exact refs/heads/<branch>', () => {
    const out = [`${A}\trefs/heads/feature/dev`, `${B}\trefs/tags/dev`, `${C}\trefs/heads/dev`, ''].join('\n')
    assert.equal(parseLsRemote(out, 'dev'), C)
    assert.equal(parseLsRemote(out, 'feature/dev'), A)
    assert.equal(parseLsRemote(out, 'main'), undefined)
    assert.equal(parseLsRemote('', 'dev'), undefined)
  })

  it('ignores lines that are not a SHA and a ref', () => {
    assert.equal(parseLsRemote(`warning: something\nnot-a-sha\trefs/heads/dev\n`, 'dev'), undefined)
    assert.equal(parseLsRemote(`${A.toUpperCase()}\trefs/heads/dev\n`, 'dev'), A)
  })
})

describe('update: installed state (release-store.sh inspect, parsed)', () => {
  const pick = (state: {version?: string; versionSource?: string}) => ({
    ...(state.version === undefined ? {} : {version: state.version}),
    ...(state.versionSource === undefined ? {} : {versionSource: state.versionSource}),
  })
  const base = {commit: null, current: null, journal: null, lock: null, ok: true, present: true, recipe: 'image', releases: [], uid: 0, version: null}

  it('parses the plain layout the image ships', () => {
    const state = parseInspect({...base, commit: A, version: '1.0.0', version_source: 'file'})
    assert.deepEqual(state, {
      activeCommit: A,
      currentRelease: undefined,
      present: true,
      recipe: 'image',
      recordedCommit: A,
      releases: [],
      root: true,
      version: '1.0.0',
      versionSource: 'file',
    })
  })

  it('takes the active commit from the current link, not from COMMIT; reports the journal and the lock', () => {
    const state = parseInspect({
      ...base,
      commit: A,
      current: B,
      journal: {previous: A, previous_commit: A, release: B, since: '1700000000', version: '1.1.0'},
      lock: {age_seconds: 4, boot_id: 'b00t', description: 'occ pid 7', pid: '7', pid_start: '123', token: 'ab12'},
      recipe: 'builtin',
      releases: [A, B],
    })
    assert.equal(state.activeCommit, B)
    assert.equal(state.recordedCommit, A)
    assert.deepEqual(state.releases, [A, B])
    assert.equal(state.recipe, 'builtin')
    assert.deepEqual(state.journal, {previous: A, previousCommit: A, release: B, since: 1_700_000_000, version: '1.1.0'})
    assert.deepEqual(state.lock, {ageSeconds: 4, bootId: 'b00t', description: 'occ pid 7', pid: 7, pidStart: '123', token: 'ab12'})
  })

  it('does not trust a COMMIT that is not a SHA, a release name with a slash, or escapes in a version', () => {
    const state = parseInspect({...base, commit: 'cat: /opt/opencode/COMMIT: No such file', current: 'image', releases: ['../x', 'ok'], uid: 1000, version: '1.0\u001B]0;t\u0007', version_source: 'file'})
    assert.equal(state.recordedCommit, undefined)
    assert.equal(state.activeCommit, undefined)
    assert.equal(state.currentRelease, 'image')
    assert.deepEqual(state.releases, ['ok'])
    assert.equal(state.version, '1.0')
    assert.equal(state.root, false)
  })

  it('takes a cached version only in the strict shape the cache is written in; a version needs its source', () => {
    assert.deepEqual(pick(parseInspect({...base, version: '1.18.34', version_source: 'cache'})), {version: '1.18.34', versionSource: 'cache'})
    assert.deepEqual(pick(parseInspect({...base, version: '1.18.34', version_source: 'binary'})), {version: '1.18.34', versionSource: 'binary'})
    for (const hostile of ['1.0 (lies)', '-rf', '.hidden', `1.${'0'.repeat(200)}`, '1.0\u001B[31m', '1.0\nversion=2']) {
      assert.deepEqual(pick(parseInspect({...base, version: hostile, version_source: 'cache'})), {}, JSON.stringify(hostile))
    }

    assert.deepEqual(pick(parseInspect({...base, version: '1.0.0'})), {}, 'no source: not a version the script reported')
    assert.throws(() => parseInspect({...base, version: '1.0.0', version_source: 'guess'}))
  })

  it('never calls a half-written journal verified, and refuses an answer of the wrong shape', () => {
    assert.ok(parseInspect({...base, journal: {previous: null, previous_commit: null, release: B, since: null, version: null}}).journal)
    assert.throws(() => parseInspect({...base, recipe: 'weird'}))
    assert.throws(() => parseInspect({ok: false}))
  })
})

describe('update: health verdict', () => {
  it('needs 2xx, healthy: true and the expected version', () => {
    assert.deepEqual(judgeHealth({body: {healthy: true, version: '1.1.0'}, kind: 'http', status: 200}, '1.1.0'), {
      detail: 'healthy (version 1.1.0)',
      healthy: true,
    })
    assert.equal(judgeHealth({body: {healthy: true, version: '1.0.0'}, kind: 'http', status: 200}, '1.1.0').healthy, false)
    assert.equal(judgeHealth({body: {healthy: true, version: '1.0.0'}, kind: 'http', status: 200}).healthy, true)
    assert.equal(judgeHealth({body: {healthy: true}, kind: 'http', status: 200}, '1.1.0').healthy, true)
    assert.deepEqual(judgeHealth({body: {healthy: false, version: '1.3.0'}, kind: 'http', status: 503}, '1.3.0'), {
      detail: 'HTTP 503 from version 1.3.0',
      healthy: false,
    })
    assert.equal(judgeHealth({body: {healthy: 'yes'}, kind: 'http', status: 200}).healthy, false)
    assert.equal(judgeHealth({body: undefined, kind: 'http', status: 200}).healthy, false)
    assert.equal(judgeHealth({kind: 'refused'}).detail, 'connection refused')
    assert.equal(judgeHealth({kind: 'timeout'}).healthy, false)
    assert.equal(judgeHealth({error: 'EHOSTUNREACH', kind: 'failed'}).detail, 'probe failed: EHOSTUNREACH')
  })
})

describe('update: repository and formatting', () => {
  it('rejects a repository that git could read as an option or that breaks a config line', () => {
    assert.equal(checkRepo('https://github.com/pRizz/opencode.git'), undefined)
    assert.equal(checkRepo('/srv/opencode.git'), undefined)
    assert.match(checkRepo('--upload-pack=x') ?? '', /cannot start with '-'/)
    assert.match(checkRepo('/srv/x\n[core]') ?? '', /control characters/)
    assert.ok(checkRepo(''))
  })

  it('knows which repositories are local paths (for safe.directory)', () => {
    assert.equal(localRepoPath('/srv/opencode.git/'), '/srv/opencode.git')
    assert.equal(localRepoPath('file:///srv/my%20repo'), '/srv/my repo')
    assert.equal(localRepoPath('https://github.com/pRizz/opencode.git'), undefined)
    assert.equal(localRepoPath('git@github.com:pRizz/opencode.git'), undefined)
  })

  it('formats SHAs and durations', () => {
    assert.equal(shortSha(A), 'aaaaaaa')
    assert.equal(shortSha(undefined), 'unknown')
    assert.equal(formatSeconds(200), '0.2 s')
    assert.equal(formatSeconds(60_000), '60 s')
  })
})

describe('update: the release store script', () => {
  it('is plain ASCII without NUL bytes (it travels on an exec stdin, and shows in logs)', () => {
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(releaseStoreScript(), /[\u0000\u0080-\uFFFF]/)
  })
})
