import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

import fc from 'fast-check'

import {MAX_REQUEST_BYTES} from '../../../src/protocol/command-files.js'
import {isQuarantineName} from '../../../src/protocol/command-files.js'
import {claimByRename, disposeEntry, overwriteInPlace, readUntrustedFile, writeFileNoFollow} from '../../../src/protocol/safe-fs.js'

describe('protocol/safe-fs', () => {
  let dir: string
  let outside: string
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-safe-fs-'))
    outside = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-outside-'))
  })
  afterEach(async () => {
    await fs.rm(dir, {force: true, recursive: true})
    await fs.rm(outside, {force: true, recursive: true})
  })

  describe('readUntrustedFile', () => {
    it('reads a regular file and reports a missing one', async () => {
      await fs.writeFile(path.join(dir, 'a'), '{"x":1}')
      const read = await readUntrustedFile(path.join(dir, 'a'))
      assert.equal(read.kind, 'ok')
      assert.equal((read as {data: Buffer}).data.toString(), '{"x":1}')
      assert.deepEqual(await readUntrustedFile(path.join(dir, 'nope')), {kind: 'missing'})
      assert.deepEqual(await readUntrustedFile(path.join(dir, 'nope', 'deeper')), {kind: 'missing'})
    })

    it('never follows a symlink, even to a readable file', async () => {
      const secret = path.join(outside, 'secret')
      await fs.writeFile(secret, 'host secret')
      await fs.symlink(secret, path.join(dir, 'link'))
      assert.deepEqual(await readUntrustedFile(path.join(dir, 'link')), {fileKind: 'symlink', kind: 'not-regular'})
    })

    it('refuses a FIFO without blocking, a socket and a directory', async () => {
      execFileSync('mkfifo', [path.join(dir, 'fifo')])
      const started = Date.now()
      assert.deepEqual(await readUntrustedFile(path.join(dir, 'fifo')), {fileKind: 'fifo', kind: 'not-regular'})
      assert.ok(Date.now() - started < 1000)
      const server = net.createServer()
      await new Promise<void>((resolve) => server.listen(path.join(dir, 'sock'), resolve))
      try {
        assert.deepEqual(await readUntrustedFile(path.join(dir, 'sock')), {fileKind: 'socket', kind: 'not-regular'})
      } finally {
        server.close()
      }

      await fs.mkdir(path.join(dir, 'sub'))
      assert.deepEqual(await readUntrustedFile(path.join(dir, 'sub')), {fileKind: 'directory', kind: 'not-regular'})
    })

    it('caps the size at 64 KiB', async () => {
      await fs.writeFile(path.join(dir, 'max'), Buffer.alloc(MAX_REQUEST_BYTES, 0x20))
      await fs.writeFile(path.join(dir, 'over'), Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x20))
      const max = await readUntrustedFile(path.join(dir, 'max'))
      assert.equal(max.kind, 'ok')
      assert.equal((max as {data: Buffer}).data.length, MAX_REQUEST_BYTES)
      assert.deepEqual(await readUntrustedFile(path.join(dir, 'over')), {kind: 'too-large', size: MAX_REQUEST_BYTES + 1})
      // A sparse giant is refused from its size, without reading.
      const handle = await fs.open(path.join(dir, 'sparse'), 'w')
      await handle.truncate(10 * 1024 * 1024 * 1024)
      await handle.close()
      assert.equal((await readUntrustedFile(path.join(dir, 'sparse'))).kind, 'too-large')
    })

    it('returns whole content for any bytes and size up to the cap (property)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({maxLength: 3000}), async (bytes) => {
          await fs.writeFile(path.join(dir, 'p'), bytes)
          const read = await readUntrustedFile(path.join(dir, 'p'))
          assert.equal(read.kind, 'ok')
          assert.deepEqual(new Uint8Array((read as {data: Buffer}).data), bytes)
        }),
        {numRuns: 100},
      )
    })
  })

  describe('writeFileNoFollow', () => {
    it('writes a whole readable file and leaves no temp file', async () => {
      await writeFileNoFollow(dir, 'r.json', 'hello')
      assert.equal(await fs.readFile(path.join(dir, 'r.json'), 'utf8'), 'hello')
      assert.equal((await fs.stat(path.join(dir, 'r.json'))).mode & 0o777, 0o644)
      assert.deepEqual(await fs.readdir(dir), ['r.json'])
    })

    it('replaces a symlink planted at the target instead of writing through it', async () => {
      const victim = path.join(outside, 'victim')
      await fs.writeFile(victim, 'precious')
      await fs.symlink(victim, path.join(dir, 'r.json'))
      await writeFileNoFollow(dir, 'r.json', 'result')
      assert.equal(await fs.readFile(victim, 'utf8'), 'precious')
      assert.ok((await fs.lstat(path.join(dir, 'r.json'))).isFile())
      assert.equal(await fs.readFile(path.join(dir, 'r.json'), 'utf8'), 'result')
      // A dangling link too (it could point where a new file would be created).
      await fs.rm(path.join(dir, 'r.json'))
      await fs.symlink(path.join(outside, 'new-file'), path.join(dir, 'r.json'))
      await writeFileNoFollow(dir, 'r.json', 'again')
      await assert.rejects(fs.access(path.join(outside, 'new-file')))
    })

    it('fails on a directory planted at the target unless asked to clear it', async () => {
      await fs.mkdir(path.join(dir, 'r.json'))
      await assert.rejects(writeFileNoFollow(dir, 'r.json', 'x'), {code: 'EISDIR'})
      assert.ok((await fs.lstat(path.join(dir, 'r.json'))).isDirectory())
      assert.deepEqual(await fs.readdir(dir), ['r.json'], 'no temp file left behind')
    })

    it('clears a directory planted at the target without walking into it: removed if empty, else set aside whole', async () => {
      await fs.mkdir(path.join(dir, 'empty.json'))
      await writeFileNoFollow(dir, 'empty.json', 'e', {clearDirectory: true})
      assert.equal(await fs.readFile(path.join(dir, 'empty.json'), 'utf8'), 'e')

      await fs.mkdir(path.join(dir, 'r.json', 'deep'), {recursive: true})
      await fs.symlink(outside, path.join(dir, 'r.json', 'deep', 'escape'))
      await fs.writeFile(path.join(dir, 'r.json', 'deep', 'theirs'), 'sandbox data')
      await fs.writeFile(path.join(outside, 'keep'), 'keep')
      await writeFileNoFollow(dir, 'r.json', 'x', {clearDirectory: true})
      assert.equal(await fs.readFile(path.join(dir, 'r.json'), 'utf8'), 'x')
      assert.equal(await fs.readFile(path.join(outside, 'keep'), 'utf8'), 'keep')
      const aside = (await fs.readdir(dir)).filter((name) => isQuarantineName(name))
      assert.equal(aside.length, 1, 'the tree was renamed aside, not deleted')
      assert.equal(await fs.readFile(path.join(dir, aside[0], 'deep', 'theirs'), 'utf8'), 'sandbox data')
      assert.deepEqual((await fs.readdir(dir)).sort(), [aside[0], 'empty.json', 'r.json'].sort())
    })
  })

  describe('overwriteInPlace (listener.json on a full disk)', () => {
    it('writes over the same inode, padded with blanks to the old length so a reader never sees the old tail; JSON still parses', async () => {
      const file = path.join(dir, 'listener.json')
      await fs.writeFile(file, JSON.stringify({state: 'updating', step: 'build', padding: 'x'.repeat(200)}))
      const before = await fs.stat(file)
      assert.equal(await overwriteInPlace(dir, 'listener.json', '{"state":"idle"}\n'), true)
      const after = await fs.stat(file)
      assert.equal(after.ino, before.ino)
      assert.equal(after.size, before.size)
      assert.deepEqual(JSON.parse(await fs.readFile(file, 'utf8')), {state: 'idle'})
      // Longer text than before, still within the blocks the file has: written whole.
      const longer = JSON.stringify({state: 'idle', more: 'y'.repeat(300)})
      assert.equal(await overwriteInPlace(dir, 'listener.json', longer), true)
      assert.equal(await fs.readFile(file, 'utf8'), longer)
    })

    it('refuses what would need new space, a link, a hard-linked file, a FIFO, a directory and a missing file (nothing written anywhere)', async () => {
      await fs.writeFile(path.join(dir, 'small'), 'x')
      const blocks = (await fs.stat(path.join(dir, 'small'))).blocks * 512
      assert.equal(await overwriteInPlace(dir, 'small', 'y'.repeat(blocks + 1)), false)
      assert.equal(await fs.readFile(path.join(dir, 'small'), 'utf8'), 'x')

      const victim = path.join(outside, 'victim')
      await fs.writeFile(victim, 'precious'.repeat(100))
      await fs.symlink(victim, path.join(dir, 'link'))
      assert.equal(await overwriteInPlace(dir, 'link', '{}'), false)
      await fs.link(victim, path.join(dir, 'hard'))
      assert.equal(await overwriteInPlace(dir, 'hard', '{}'), false)
      assert.equal(await fs.readFile(victim, 'utf8'), 'precious'.repeat(100))

      execFileSync('mkfifo', [path.join(dir, 'fifo')])
      assert.equal(await overwriteInPlace(dir, 'fifo', '{}'), false)
      await fs.mkdir(path.join(dir, 'sub'))
      assert.equal(await overwriteInPlace(dir, 'sub', '{}'), false)
      assert.equal(await overwriteInPlace(dir, 'missing', '{}'), false)
      await assert.rejects(fs.access(path.join(dir, 'missing')))
    })

    it('cuts a planted oversized file down to the text (that frees space) instead of padding to it', async () => {
      const file = path.join(dir, 'listener.json')
      await fs.writeFile(file, ' '.repeat(MAX_REQUEST_BYTES * 2))
      assert.equal(await overwriteInPlace(dir, 'listener.json', '{"state":"idle"}'), true)
      assert.equal(await fs.readFile(file, 'utf8'), '{"state":"idle"}')
    })
  })

  describe('claimByRename and removeEntry', () => {
    it('lets exactly one of many racing claimers win (property)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({max: 12, min: 2}), async (claimers) => {
          await fs.writeFile(path.join(dir, 'req'), 'x')
          const wins = await Promise.all(Array.from({length: claimers}, (_, i) => claimByRename(dir, 'req', `claim-${i}`)))
          assert.equal(wins.filter(Boolean).length, 1)
          for (const name of await fs.readdir(dir)) await fs.rm(path.join(dir, name))
        }),
        {numRuns: 30},
      )
    })

    it('disposes of files, links, FIFOs and empty dirs, and sets a tree aside whole (never a recursive delete)', async () => {
      await fs.writeFile(path.join(outside, 'keep'), 'keep')
      await fs.writeFile(path.join(dir, 'file'), 'x')
      await fs.symlink(outside, path.join(dir, 'link'))
      execFileSync('mkfifo', [path.join(dir, 'fifo')])
      await fs.mkdir(path.join(dir, 'empty'))
      await fs.mkdir(path.join(dir, 'tree', 'sub'), {recursive: true})
      await fs.writeFile(path.join(dir, 'tree', 'sub', 'inner'), 'inner')
      await fs.symlink(outside, path.join(dir, 'tree', 'escape'))
      for (const name of ['file', 'link', 'fifo', 'empty']) assert.equal(await disposeEntry(dir, name), 'removed', name)
      assert.equal(await disposeEntry(dir, 'missing'), 'missing')
      assert.equal(await disposeEntry(dir, 'tree'), 'quarantined')
      const names = await fs.readdir(dir)
      assert.equal(names.length, 1)
      assert.ok(isQuarantineName(names[0]))
      // Set aside whole: the host did not descend into it.
      assert.equal(await fs.readFile(path.join(dir, names[0], 'sub', 'inner'), 'utf8'), 'inner')
      assert.equal(await fs.readFile(path.join(outside, 'keep'), 'utf8'), 'keep')
      // Already a quarantine name: left as it is.
      assert.equal(await disposeEntry(dir, names[0]), 'quarantined')
      assert.deepEqual(await fs.readdir(dir), names)
    })

    it('never empties a host dir while the sandbox swaps subdirectories for symlinks (race)', async () => {
      const victims = Array.from({length: 20}, (_, i) => `host-${i}`)
      for (const name of victims) await fs.writeFile(path.join(outside, name), 'host data')
      for (let round = 0; round < 5; round++) {
        const tree = path.join(dir, `tree-${round}`)
        for (let i = 0; i < 40; i++) {
          await fs.mkdir(path.join(tree, `d${i}`), {recursive: true})
          await fs.writeFile(path.join(tree, `d${i}`, 'f'), 'x')
        }

        // The attacker: wherever the tree went (it is renamed aside), swap each dN for a link.
        let racing = true
        const swapper = (async () => {
          while (racing) {
            for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
              for (let i = 0; i < 40 && racing; i++) {
                const sub = path.join(dir, name, `d${i}`)
                await fs
                  .rename(sub, `${sub}.old`)
                  .then(() => fs.symlink(outside, sub))
                  .catch(() => {})
              }
            }

            await new Promise((resolve) => setImmediate(resolve))
          }
        })()
        await disposeEntry(dir, `tree-${round}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
        racing = false
        await swapper
      }

      assert.deepEqual((await fs.readdir(outside)).sort(), [...victims].sort())
    })
  })
})
