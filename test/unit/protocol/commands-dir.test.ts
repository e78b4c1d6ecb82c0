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
    // occ status shows them through cleanText, which caps at 120 characters.
    assert.ok((listenerMountProblem([]) ?? '').length <= 120)
    assert.ok((listenerMountProblem([mount(true)]) ?? '').length <= 120)
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
    try {
      assert.equal(prepared.dir, path.join(root, 'opencode-cloud', 'commands'))
      assert.equal((await fs.stat(prepared.dir)).mode & 0o7777, 0o1777)
      assert.equal((await fs.stat(path.dirname(prepared.dir))).mode & 0o7777, 0o755)
      await fs.chmod(prepared.dir, 0o755)
      const again = await prepareCommandsDir(mount(), {containerUid: hostUid === 1000 ? 1001 : 1000})
      await again.handle.close()
      assert.equal((await fs.stat(prepared.dir)).mode & 0o7777, 0o1777)
      assert.equal(await commandsDirIntact(prepared), true)
    } finally {
      await prepared.handle.close()
    }
  })

  for (const proc of [undefined, false]) {
    it(`never chmods a symlink swapped in while it prepares the dir${proc === false ? ' (no /proc)' : ''}`, async () => {
      const elsewhere = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-elsewhere-'))
      try {
        await fs.chmod(elsewhere, 0o755)
        const commands = path.join(root, 'opencode-cloud', 'commands')
        // The sandbox wins the race: between occ's mkdir and its chmod, commands becomes a link.
        const racer = async () => {
          await fs.rename(commands, path.join(root, 'opencode-cloud', 'was-commands'))
          await fs.symlink(elsewhere, commands)
        }

        await assert.rejects(prepareCommandsDir(mount(), {beforeOpen: racer, containerUid: 4242, hostUid: process.getuid?.(), proc}), /symlink/)
        assert.equal((await fs.stat(elsewhere)).mode & 0o7777, 0o755, 'the host dir kept its mode')
      } finally {
        await fs.rm(elsewhere, {force: true, recursive: true})
      }
    })
  }

  it('refuses symlinks in its path, and notices when the dir is swapped later', async () => {
    const elsewhere = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-elsewhere-'))
    try {
      await fs.symlink(elsewhere, path.join(root, 'opencode-cloud'))
      await assert.rejects(prepareCommandsDir(mount()), /symlink/)
      await fs.rm(path.join(root, 'opencode-cloud'))
      await fs.mkdir(path.join(root, 'opencode-cloud'))
      await fs.symlink(elsewhere, path.join(root, 'opencode-cloud', 'commands'))
      await assert.rejects(prepareCommandsDir(mount()), /commands is a symlink/)
      await fs.rm(path.join(root, 'opencode-cloud', 'commands'))
      const prepared = await prepareCommandsDir(mount())
      try {
        await fs.rename(prepared.dir, path.join(root, 'moved'))
        await fs.mkdir(path.join(elsewhere, 'commands'))
        await fs.symlink(path.join(elsewhere, 'commands'), prepared.dir)
        assert.equal(await commandsDirIntact(prepared), false)
      } finally {
        await prepared.handle.close()
      }
    } finally {
      await fs.rm(elsewhere, {force: true, recursive: true})
    }
  })
})
