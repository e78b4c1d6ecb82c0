/**
 * The package on its own: `npm pack` (prepack builds it), install the tarball into an empty
 * project, import it by name on Node and on Bun. Nothing from this repository is reachable there.
 */
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'

import {BUN, NODE20} from './runtimes.js'

const run = promisify(execFile)
const here = path.dirname(fileURLToPath(import.meta.url))
const packageDir = path.resolve(here, '..')

const PROBE = `
import {requestUpdate, readListenerStatus, waitForResult, UpdateClientError, DEFAULT_COMMANDS_DIR} from '@opencode-cloud/update-client'
const dir = process.argv[process.argv.length - 1]
const missing = await readListenerStatus({dir})
const error = await requestUpdate({dir, listenerGraceMs: 100, pollMs: 50}).catch((e) => e)
console.log(JSON.stringify({code: error.code, dir: DEFAULT_COMMANDS_DIR, isError: error instanceof UpdateClientError, missing, types: [typeof requestUpdate, typeof waitForResult]}))
`

describe('update client: packs and installs on its own', function () {
  this.timeout(120_000)
  let root: string

  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-update-client-pack-'))
  })
  after(async () => {
    await fs.rm(root, {force: true, recursive: true})
  })

  it('npm pack → npm install → import by name works on Node (this one and 20) and Bun', async () => {
    const {stdout} = await run('npm', ['pack', '--json', '--pack-destination', root], {cwd: packageDir})
    const [packed] = JSON.parse(stdout) as Array<{filename: string; files: Array<{path: string}>}>
    const files = packed!.files.map((file) => file.path).sort()
    for (const expected of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/schemas.generated.js']) assert.ok(files.includes(expected), `${expected} not in ${files.join(', ')}`)
    assert.ok(!files.some((file) => file.startsWith('src/') || file.startsWith('test/')), files.join(', '))

    const project = path.join(root, 'app')
    await fs.mkdir(project)
    await fs.writeFile(path.join(project, 'package.json'), JSON.stringify({name: 'app', private: true, type: 'module'}))
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(root, packed!.filename)], {cwd: project})
    const installed = JSON.parse(await fs.readFile(path.join(project, 'node_modules/@opencode-cloud/update-client/package.json'), 'utf8'))
    assert.equal(installed.dependencies, undefined, 'zero runtime dependencies')
    const modules = (await fs.readdir(path.join(project, 'node_modules'))).filter((name) => !name.startsWith('.'))
    assert.deepEqual(modules, ['@opencode-cloud'])
    await fs.writeFile(path.join(project, 'probe.mjs'), PROBE)
    const empty = await fs.mkdtemp(path.join(root, 'commands-'))
    const {stdout: oldest} = await run(NODE20, ['--version'])
    assert.match(oldest, /^v20\./, `${NODE20} is the Node 20 the package is tested on (set OCC_NODE20)`)
    for (const runtime of [process.execPath, NODE20, BUN]) {
      const probe = await run(runtime, ['probe.mjs', empty], {cwd: project})
      assert.deepEqual(JSON.parse(probe.stdout), {
        code: 'no_listener',
        dir: '/home/opencoder/.local/state/opencode/opencode-cloud/commands',
        isError: true,
        missing: null,
        types: ['function', 'function'],
      }, runtime)
    }
  })
})
