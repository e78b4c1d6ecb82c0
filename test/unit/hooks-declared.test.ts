import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {Config, ModuleLoader, Plugin} from '@oclif/core'
import {tsPath} from '@oclif/core/config'

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

type HookEntry = string | {identifier: string; target: string}

/** Every package.json in the repo that can declare oclif hooks: the CLI, its plugins, test fixtures. */
async function packageRoots(): Promise<string[]> {
  const roots = [REPO_ROOT]
  for (const parent of ['plugins', 'test/fixtures']) {
    for (const name of await fs.readdir(path.join(REPO_ROOT, parent))) {
      const dir = path.join(REPO_ROOT, parent, name)
      if (await fs.access(path.join(dir, 'package.json')).then(() => true, () => false)) roots.push(dir)
    }
  }

  return roots
}

function entries(value: HookEntry | HookEntry[]): Array<{identifier: string; target: string}> {
  return (Array.isArray(value) ? value : [value]).map((entry) =>
    typeof entry === 'string' ? {identifier: 'default', target: entry} : entry,
  )
}

/** The function oclif would call (Config.runHook's lookup: the identifier, else the first function). */
function hookFunction(module: Record<string, unknown>, identifier: string): unknown {
  if (typeof module === 'function') return module
  if (module[identifier] !== undefined) return module[identifier]
  if (identifier !== 'default') return undefined
  return Object.values(module).find((value) => typeof value === 'function')
}

describe('every hook declared in a package.json resolves to a function', () => {
  const savedEnv = process.env.NODE_ENV
  // As @oclif/test does: hooks resolve to src/*.ts through tsconfig, not to a possibly stale lib/.
  before(() => {
    process.env.NODE_ENV = 'test'
  })
  after(() => {
    process.env.NODE_ENV = savedEnv
  })

  it('finds the declarations (the listener plugin and the third-party fixture at least)', async () => {
    const declared: string[] = []
    for (const root of await packageRoots()) {
      const pjson = JSON.parse(await fs.readFile(path.join(root, 'package.json'), 'utf8'))
      for (const event of Object.keys(pjson.oclif?.hooks ?? {})) declared.push(`${pjson.name}:${event}`)
    }

    assert.ok(declared.includes('@opencode-cloud/update-listener:occ:foreground'), declared.join(', '))
    assert.ok(declared.includes('occ-fixture-third-party-plugin:occ:foreground'), declared.join(', '))
  })

  it('loads each one the way oclif does and finds a function', async () => {
    const config = await Config.load({root: REPO_ROOT})
    for (const root of await packageRoots()) {
      const pjson = JSON.parse(await fs.readFile(path.join(root, 'package.json'), 'utf8'))
      const hooks: Record<string, HookEntry | HookEntry[]> = pjson.oclif?.hooks ?? {}
      if (Object.keys(hooks).length === 0) continue
      const plugin = config.plugins.get(pjson.name) ?? new Plugin({isRoot: root === REPO_ROOT, root, type: 'core'})
      if (!config.plugins.has(pjson.name)) await plugin.load()
      for (const [event, value] of Object.entries(hooks)) {
        for (const {identifier, target} of entries(value)) {
          const where = `${pjson.name} ${event} → ${target}`
          const file = await tsPath(plugin.root, target, plugin)
          const {module} = await ModuleLoader.loadWithData(plugin, file).catch((error: Error) => {
            throw new Error(`${where}: cannot load (${error.message})`)
          })
          assert.equal(typeof hookFunction(module, identifier), 'function', `${where}: no function '${identifier}'`)
        }
      }
    }
  })

  it('the listener plugin is a core plugin of occ (a path in oclif.plugins would be ignored silently)', async () => {
    const config = await Config.load({root: REPO_ROOT})
    const plugin = config.plugins.get('@opencode-cloud/update-listener')
    assert.ok(plugin, [...config.plugins.keys()].join(', '))
    assert.equal(plugin.type, 'core')
    assert.ok(plugin.hooks['occ:foreground']?.length, 'occ:foreground is declared')
  })
})
