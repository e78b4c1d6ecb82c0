import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {DirChangedError, isDirChangedError, OpenDir} from '../../../src/protocol/safe-dir.js'
import {claimByRename, disposeEntry, readUntrustedEntry, writeFileNoFollow} from '../../../src/protocol/safe-fs.js'

describe('protocol/safe-dir: a directory the sandbox can swap under us', () => {
  let root: string
  let dir: string
  let outside: string
  let opened: OpenDir | undefined
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-safe-dir-'))
    outside = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-outside-'))
    dir = path.join(root, 'commands')
    await fs.mkdir(dir)
  })
  afterEach(async () => {
    await opened?.close()
    opened = undefined
    await fs.rm(root, {force: true, recursive: true})
    await fs.rm(outside, {force: true, recursive: true})
  })

  /** What the sandbox does: move the real dir away and put a symlink to a host dir in its place. */
  async function swapForSymlink(): Promise<string> {
    const moved = path.join(root, 'moved')
    await fs.rename(dir, moved)
    await fs.symlink(outside, dir)
    return moved
  }

  it('refuses to open a symlink or a non-directory', async () => {
    await fs.symlink(outside, path.join(root, 'link'))
    await assert.rejects(OpenDir.open(path.join(root, 'link')), /is a symlink; refusing to follow it/)
    await fs.writeFile(path.join(root, 'file'), '')
    await assert.rejects(OpenDir.open(path.join(root, 'file')), /is not a directory/)
  })

  if (process.platform === 'linux') {
    it('on Linux, every operation goes through /proc/self/fd: a swapped path cannot redirect it', async () => {
      opened = await OpenDir.open(dir)
      assert.equal(opened.mode, 'proc')
      await fs.writeFile(path.join(dir, 'request'), '{"from":"sandbox"}')
      const moved = await swapForSymlink()
      assert.match((await opened.problem()) ?? '', /replaced by a symlink/)
      // Write, claim, read, dispose: all in the directory that was opened, none in the host dir.
      await writeFileNoFollow(opened, 'result.json', 'answer', {clearDirectory: true})
      assert.equal(await claimByRename(opened, 'request', 'claimed'), true)
      const read = await readUntrustedEntry(opened, 'claimed')
      assert.equal(read.kind, 'ok')
      assert.equal(await disposeEntry(opened, 'claimed'), 'removed')
      assert.deepEqual(await fs.readdir(outside), [])
      assert.deepEqual(await fs.readdir(moved), ['result.json'])
      assert.equal(await fs.readFile(path.join(moved, 'result.json'), 'utf8'), 'answer')
      assert.deepEqual(await fs.readdir(await opened.self()), ['result.json'])
    })

    it('chmods through the handle, not the path', async () => {
      opened = await OpenDir.open(dir)
      await fs.chmod(outside, 0o755)
      await swapForSymlink()
      await opened.chmod(0o1777)
      assert.equal((await fs.stat(outside)).mode & 0o7777, 0o755)
      assert.equal((await opened.stat()).mode & 0o7777, 0o1777)
    })
  }

  it('without /proc, checks the dir before each operation and refuses once it was swapped', async () => {
    opened = await OpenDir.open(dir, {proc: false})
    assert.equal(opened.mode, 'checked')
    await writeFileNoFollow(opened, 'before.json', 'ok')
    assert.equal(await fs.readFile(path.join(dir, 'before.json'), 'utf8'), 'ok')
    await swapForSymlink()
    await assert.rejects(writeFileNoFollow(opened, 'result.json', 'answer'), (error) => isDirChangedError(error) && error instanceof DirChangedError)
    await assert.rejects(claimByRename(opened, 'before.json', 'x'), DirChangedError)
    await assert.rejects(disposeEntry(opened, 'before.json'), DirChangedError)
    assert.deepEqual(await fs.readdir(outside), [])
  })

  it('notices a dir that was replaced by another dir, or deleted', async () => {
    opened = await OpenDir.open(dir)
    assert.equal(await opened.problem(), undefined)
    await fs.rename(dir, path.join(root, 'moved'))
    await fs.mkdir(dir)
    assert.match((await opened.problem()) ?? '', /replaced or moved/)
    await fs.rmdir(path.join(root, 'moved'))
    assert.match((await opened.problem()) ?? '', /was deleted/)
  })

  it('refuses entry names that are not one plain component', async () => {
    opened = await OpenDir.open(dir)
    for (const name of ['', '.', '..', 'a/b', '../x', 'a\0b']) await assert.rejects(opened.entry(name), /not a plain file name/)
  })
})
