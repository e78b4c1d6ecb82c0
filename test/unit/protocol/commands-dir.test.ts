import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {MOUNT_STATE} from '../../../src/config/mounts.js'
import {commandsDirIntact, commandsDirMode, listenerMountProblem, prepareCommandsDir} from '../../../src/protocol/commands-dir.js'

describe('protocol/commands-dir', () => {
  let root: string
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-cmddir-'))
  })
  afterEach(() => fs.rm(root, {force: true, recursive: true}))
  const mount = (readOnly = false) => ({container: MOUNT_STATE, host: root, readOnly})

  it('needs a writable state mount', () => {
    assert.match(listenerMountProblem([]) ?? '', /no bind mount for \/home\/opencoder\/.local\/state\/opencode/)
    assert.match(listenerMountProblem([mount(true)]) ?? '', /read-only/)
    assert.equal(listenerMountProblem([{container: '/elsewhere', host: root, readOnly: false}, mount()]), undefined)
  })

  it('is private when occ runs as the sandbox uid, sticky and world-writable otherwise', () => {
    assert.equal(commandsDirMode(1000), 0o700)
    assert.equal(commandsDirMode(0), 0o1777)
    assert.equal(commandsDirMode(501), 0o1777)
  })

  it('creates <state>/opencode-cloud/commands with that mode, and fixes the mode of one it owns', async () => {
    const hostUid = process.getuid?.() ?? 0
    const prepared = await prepareCommandsDir(mount(), {containerUid: hostUid === 1000 ? 1001 : 1000})
    assert.equal(prepared.dir, path.join(root, 'opencode-cloud', 'commands'))
    assert.equal((await fs.stat(prepared.dir)).mode & 0o7777, 0o1777)
    await fs.chmod(prepared.dir, 0o755)
    await prepareCommandsDir(mount(), {containerUid: hostUid === 1000 ? 1001 : 1000})
    assert.equal((await fs.stat(prepared.dir)).mode & 0o7777, 0o1777)
    assert.equal(await commandsDirIntact(prepared), true)
  })

  it('refuses symlinks in its path, and notices when the dir is swapped later', async () => {
    const elsewhere = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-elsewhere-'))
    try {
      await fs.symlink(elsewhere, path.join(root, 'opencode-cloud'))
      await assert.rejects(prepareCommandsDir(mount()), /symlink/)
      await fs.rm(path.join(root, 'opencode-cloud'))
      const prepared = await prepareCommandsDir(mount())
      await fs.rename(prepared.dir, path.join(root, 'moved'))
      await fs.mkdir(path.join(elsewhere, 'commands'))
      await fs.symlink(path.join(elsewhere, 'commands'), prepared.dir)
      assert.equal(await commandsDirIntact(prepared), false)
    } finally {
      await fs.rm(elsewhere, {force: true, recursive: true})
    }
  })
})
