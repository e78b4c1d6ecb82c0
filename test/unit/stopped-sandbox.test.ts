import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {execa} from 'execa'

import {readTar, symlinkTar} from '../../src/docker/tar.js'
import {parseJournal, undoUnverifiedOnStopped, type StoppedFiles} from '../../src/runtime/update/stopped-sandbox.js'

const NEW = 'a'.repeat(40)
const OLD = 'b'.repeat(40)

/** A tar of one regular file, made by GNU tar as the archive endpoint would answer (a real archive, not a hand-made one). */
async function fileTar(name: string, content: string): Promise<Buffer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-tar-'))
  try {
    await fs.writeFile(path.join(dir, name), content)
    const {stdout} = await execa('tar', ['--format=pax', '-C', dir, '-cf', '-', name], {encoding: 'buffer'})
    return Buffer.from(stdout)
  } finally {
    await fs.rm(dir, {force: true, recursive: true})
  }
}

/** A stopped container's /opt/opencode at the StoppedFiles interface. */
function stopped(files: Record<string, Buffer>, dirs: string[]) {
  const puts: Array<{directory: string; entries: ReturnType<typeof readTar>}> = []
  const api: StoppedFiles = {
    async exists(p) {
      return dirs.includes(p) || p in files
    },
    async getArchive(p) {
      return files[p]
    },
    async putArchive(directory, tar) {
      puts.push({directory, entries: readTar(tar)})
    },
  }
  return {api, puts}
}

describe('a stopped sandbox left on an unverified release', () => {
  it('points current back at the previous release through the archive (journal kept for the repair after the start)', async () => {
    const {api, puts} = stopped(
      {
        '/opt/opencode/.journal': await fileTar('.journal', `release=${NEW}\nprevious=${OLD}\nprevious_commit=${OLD}\nversion=0.0.0-crash\nsince=1\n`),
        '/opt/opencode/current': symlinkTar('current', `releases/${NEW}`),
      },
      [`/opt/opencode/releases/${OLD}`],
    )
    const message = await undoUnverifiedOnStopped(api)
    assert.match(message ?? '', /on release aaaaaaa, which an update switched in and never verified: starting it on the previous release bbbbbbb/)
    assert.equal(puts.length, 1)
    assert.equal(puts[0].directory, '/opt/opencode')
    assert.deepEqual(
      puts[0].entries.map((entry) => [entry.name, entry.type, entry.linkName]),
      [['current', '2', `releases/${OLD}`]],
    )
  })

  it('leaves alone: no journal, current already elsewhere, a missing previous release, a hostile journal', async () => {
    const link = symlinkTar('current', `releases/${NEW}`)
    const cases: Array<[string, Record<string, Buffer>, string[]]> = [
      ['no journal', {'/opt/opencode/current': link}, [`/opt/opencode/releases/${OLD}`]],
      ['current is the previous already', {'/opt/opencode/.journal': await fileTar('.journal', `release=${NEW}\nprevious=${OLD}\n`), '/opt/opencode/current': symlinkTar('current', `releases/${OLD}`)}, [`/opt/opencode/releases/${OLD}`]],
      ['previous missing', {'/opt/opencode/.journal': await fileTar('.journal', `release=${NEW}\nprevious=${OLD}\n`), '/opt/opencode/current': link}, []],
      ['hostile previous', {'/opt/opencode/.journal': await fileTar('.journal', `release=${NEW}\nprevious=../../etc\n`), '/opt/opencode/current': link}, ['/opt/opencode/releases/../../etc']],
      ['journal is a symlink', {'/opt/opencode/.journal': symlinkTar('.journal', 'elsewhere'), '/opt/opencode/current': link}, [`/opt/opencode/releases/${OLD}`]],
    ]
    for (const [what, files, dirs] of cases) {
      const {api, puts} = stopped(files, dirs)
      assert.equal(await undoUnverifiedOnStopped(api), undefined, what)
      assert.deepEqual(puts, [], what)
    }
  })

  it('parses the journal strictly: plain names only, the first key wins, release and previous differ', () => {
    assert.deepEqual(parseJournal(`release=${NEW}\nprevious=${OLD}\nrelease=${OLD}\n`), {previous: OLD, release: NEW})
    assert.equal(parseJournal(`release=${NEW}\n`), undefined)
    assert.equal(parseJournal(`release=${NEW}\nprevious=${NEW}\n`), undefined)
    assert.equal(parseJournal(`release=.hidden\nprevious=${OLD}\n`), undefined)
    assert.equal(parseJournal(`release=${NEW} x\nprevious=${OLD}\n`), undefined)
    assert.equal(parseJournal('\u0000\u0001garbage'), undefined)
  })
})
