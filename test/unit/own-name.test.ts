import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

import {listsPlugins, ownNames} from '../../src/cli/own-name.js'

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

describe("occ's own name: what a plugin's import of 'opencode-cloud' means", () => {
  it('maps the name and each subpath of package.json "exports" to the files under the running root', async () => {
    const pkg = JSON.parse(await fs.readFile(path.join(REPO_ROOT, 'package.json'), 'utf8'))
    const own = ownNames(REPO_ROOT, pkg.name, pkg.exports)
    assert.equal(own.get('opencode-cloud'), pathToFileURL(path.join(REPO_ROOT, 'lib/index.js')).href)
    assert.equal(own.get('opencode-cloud/internal'), pathToFileURL(path.join(REPO_ROOT, 'lib/internal.js')).href)
    // Not a module: left to Node (a plugin reading occ's package.json gets the real file).
    assert.equal(own.has('opencode-cloud/package.json'), false)
    assert.deepEqual([...own.keys()].sort(), ['opencode-cloud', 'opencode-cloud/internal'])
  })

  it('takes a root with or without its trailing slash, string targets, and skips patterns', () => {
    const exports = {'.': './lib/index.js', './extra/*': './lib/extra/*.js', './types': {types: './lib/t.d.ts'}}
    for (const root of ['/opt/occ', '/opt/occ/']) {
      assert.deepEqual([...ownNames(root, 'x', exports)], [['x', 'file:///opt/occ/lib/index.js']])
    }
  })
})

describe('whether the data dir lists plugins (the hook is installed only then)', () => {
  let dir: string
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-own-name-'))
  })
  afterEach(async () => {
    await fs.rm(dir, {force: true, recursive: true})
  })

  const write = (text: string): Promise<void> => fs.writeFile(path.join(dir, 'package.json'), text)

  it('no data dir, or no plugins in it: no', async () => {
    assert.equal(await listsPlugins(path.join(dir, 'missing')), false)
    await write(JSON.stringify({name: 'opencode-cloud', oclif: {plugins: [], schema: 1}, private: true}))
    assert.equal(await listsPlugins(dir), false)
  })

  it('an installed or a linked plugin: yes', async () => {
    for (const type of ['user', 'link']) {
      await write(JSON.stringify({oclif: {plugins: [{name: 'p', type}], schema: 1}}))
      assert.equal(await listsPlugins(dir), true, type)
    }
  })

  it('a file oclif may read differently (bad JSON, no plugins list, a directory): assume yes', async () => {
    await write('{"oclif": {"plugins": [')
    assert.equal(await listsPlugins(dir), true)
    await write(JSON.stringify({oclif: {}}))
    assert.equal(await listsPlugins(dir), true)
    await fs.rm(path.join(dir, 'package.json'))
    await fs.mkdir(path.join(dir, 'package.json'))
    assert.equal(await listsPlugins(dir), true)
  })
})
