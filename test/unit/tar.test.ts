import assert from 'node:assert/strict'

import {execa} from 'execa'
import fc from 'fast-check'

import {plainTarPath, readTar, symlinkTar} from '../../src/docker/tar.js'

describe('tar: one symlink for the archive endpoint', () => {
  it('GNU tar reads it as exactly one symlink current -> releases/<name>, owned by root', async () => {
    const tar = symlinkTar('current', 'releases/4f1c0ffee', 1_700_000_000)
    assert.equal(tar.length, 3 * 512, 'one header and the two zero blocks that end an archive')
    const listed = await execa('tar', ['--numeric-owner', '-tvf', '-'], {input: tar})
    const lines = listed.stdout.trim().split('\n')
    assert.equal(lines.length, 1, listed.stdout)
    assert.match(lines[0], /^lrwxrwxrwx 0\/0 +0 2023-11-1\d \d\d:\d\d current -> releases\/4f1c0ffee$/)
    assert.equal(listed.stderr, '', 'tar warned about the archive')
  })

  it('reads back what it wrote (name, target, type, owner, mode), and refuses a damaged header', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$/),
        fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$/),
        (name, release) => {
          const tar = symlinkTar(name, `releases/${release}`)
          const [entry, ...rest] = readTar(tar)
          assert.deepEqual(rest, [])
          assert.equal(entry.name, name)
          assert.equal(entry.type, '2')
          assert.equal(entry.linkName, `releases/${release}`)
          assert.equal(entry.size, 0)
          assert.deepEqual([entry.uid, entry.gid, entry.mode], [0, 0, 0o777])
        },
      ),
    )
    const damaged = Buffer.from(symlinkTar('current', 'releases/a'))
    damaged[160] ^= 1
    assert.throws(() => readTar(damaged), /checksum/)
    assert.throws(() => readTar(symlinkTar('current', 'releases/a').subarray(0, 512)), /end marker/)
  })

  it('takes only plain relative paths: no absolute, no .., nothing that needs more than a ustar field', () => {
    for (const bad of ['', '/etc/passwd', '../x', 'releases/../../x', 'a'.repeat(101), 'x y', 'caf\u00e9', 'a\nb', 'a\u0000b']) {
      assert.equal(plainTarPath(bad), false, JSON.stringify(bad))
      assert.throws(() => symlinkTar('current', bad), TypeError)
      assert.throws(() => symlinkTar(bad, 'releases/a'), TypeError)
    }

    assert.equal(plainTarPath('releases/0123abc'), true)
  })
})
