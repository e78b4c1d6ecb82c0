import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

import {ownNames} from '../../src/cli/own-name.js'

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
