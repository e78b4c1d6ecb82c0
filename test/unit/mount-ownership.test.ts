import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {
  applyOwnership,
  firstTarFile,
  mountDirFacts,
  parsePasswdUser,
  planMountOwnership,
  type MountDirFacts,
} from '../../src/runtime/mount-ownership.js'

const user = {gid: 1000, uid: 1000}
const dir = (host: string, stat: Partial<NonNullable<MountDirFacts['stat']>>, isDefault = true, readOnly = false): MountDirFacts => ({
  isDefault,
  mount: {container: '/home/opencoder/x', host, readOnly},
  stat: {gid: 0, isDirectory: true, isSymbolicLink: false, mode: 0o40755, uid: 0, ...stat},
})

describe('bind-mount dirs the sandbox user must write', () => {
  it('hands a root-owned default dir to the sandbox user when occ runs as root', () => {
    const plan = planMountOwnership([dir('/root/.cache/opencode', {})], 0, user)
    assert.deepEqual(plan, {chown: ['/root/.cache/opencode'], warnings: []})
  })

  it('never changes a dir the user gave: warns with the command that fixes it', () => {
    const plan = planMountOwnership([dir('/srv/code', {}, false)], 0, user)
    assert.deepEqual(plan.chown, [])
    assert.equal(plan.warnings.length, 1)
    assert.match(plan.warnings[0], /cannot write \/srv\/code/)
    assert.match(plan.warnings[0], /chown 1000:1000 \/srv\/code/)
  })

  it('leaves dirs the sandbox can already write, read-only mounts, symlinks and missing dirs alone', () => {
    const plan = planMountOwnership(
      [
        dir('/a', {gid: 1000, uid: 1000}),
        dir('/b', {mode: 0o41777}),
        dir('/c', {gid: 1000, mode: 0o40775, uid: 5}),
        dir('/d', {}, true, true),
        dir('/e', {isSymbolicLink: true}),
        {isDefault: true, mount: {container: '/x', host: '/f', readOnly: false}},
      ],
      0,
      user,
    )
    assert.deepEqual(plan, {chown: [], warnings: []})
  })

  it('does not chown when occ is not root (it could not), nor a default dir some other user owns', () => {
    assert.deepEqual(planMountOwnership([dir('/h/.cache/opencode', {gid: 1001, uid: 1001})], 1001, user).chown, [])
    assert.equal(planMountOwnership([dir('/h/.cache/opencode', {gid: 1001, uid: 1001})], 1001, user).warnings.length, 1)
    assert.deepEqual(planMountOwnership([dir('/h/.cache/opencode', {gid: 7, uid: 7})], 0, user).chown, [])
  })

  it('uses the image user ids, not a hard-coded 1000', () => {
    const plan = planMountOwnership([dir('/srv/x', {gid: 1000, uid: 1000})], 0, {gid: 1001, uid: 1001})
    assert.match(plan.warnings[0], /chown 1001:1001/)
  })

  it('reads the facts of a real dir and applies the plan to it', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-owner-'))
    try {
      const target = path.join(root, 'cache')
      await fs.mkdir(target)
      const me = {gid: process.getgid!(), uid: process.getuid!()}
      const facts = await mountDirFacts([{container: '/home/opencoder/.cache/opencode', host: target, readOnly: false}], new Set([`${target}:/home/opencoder/.cache/opencode`]))
      assert.equal(facts[0].isDefault, true)
      assert.equal(facts[0].stat?.isDirectory, true)
      const failed = await applyOwnership({chown: [target], warnings: []}, me)
      assert.deepEqual(failed, [])
      assert.equal((await fs.stat(target)).uid, me.uid)
    } finally {
      await fs.rm(root, {force: true, recursive: true})
    }
  })
})

describe('reading the sandbox user from the image', () => {
  it('parses passwd strictly', () => {
    const passwd = 'root:x:0:0:root:/root:/bin/bash\nopencoder:x:1001:1002::/home/opencoder:/bin/bash\n'
    assert.deepEqual(parsePasswdUser(passwd, 'opencoder'), {gid: 1002, uid: 1001})
    assert.equal(parsePasswdUser(passwd, 'nobody'), undefined)
    assert.equal(parsePasswdUser('opencoder:x:-1:0::/:/bin/sh\n', 'opencoder'), undefined)
    assert.equal(parsePasswdUser('opencoder:x:1000\n', 'opencoder'), undefined)
  })

  it('takes the first file of a tar stream and refuses truncated or oversized ones', () => {
    const body = Buffer.from('opencoder:x:1000:1000::/home/opencoder:/bin/sh\n')
    const header = Buffer.alloc(512)
    header.write('passwd', 0)
    header.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124)
    header.write('0', 156)
    const tar = Buffer.concat([header, body, Buffer.alloc(512 - body.length), Buffer.alloc(1024)])
    assert.equal(firstTarFile(tar, 1024)?.toString(), body.toString())
    assert.equal(firstTarFile(tar, 10), undefined)
    assert.equal(firstTarFile(tar.subarray(0, 520), 1024), undefined)
    const link = Buffer.from(tar)
    link.write('2', 156)
    assert.equal(firstTarFile(link, 1024), undefined)
  })
})
