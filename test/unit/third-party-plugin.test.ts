import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {Config} from '@oclif/core'
import {captureOutput} from '@oclif/test'

import {resourceNames} from '../../src/config/instance.js'
import {MOUNT_STATE} from '../../src/config/mounts.js'
import {resolvePaths} from '../../src/config/paths.js'
import type {ForegroundContext, OccHooks} from '../../src/runtime/hooks.js'
import {containerCommands} from '../../src/runtime/runtime-command.js'
import type {HostRuntimeApi} from '../../src/runtime/runtime.js'
import {copyThirdPartyPlugin} from '../integration/listener-helpers/third-party-plugin.js'

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

describe('a third-party plugin (docs/plugins.md), linked with occ plugins link', () => {
  let root: string
  const saved = {...process.env}
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-third-party-'))
    process.env.XDG_DATA_HOME = path.join(root, 'data')
    process.env.OCC_TEST_FOREGROUND_MARKER = path.join(root, 'marker.json')
    process.env.OCLIF_DISABLE_LINKED_ESM_WARNING = '1'
    // As @oclif/test does: plugins load from src/ (tsx), not from a possibly stale lib/.
    process.env.NODE_ENV = 'test'
    const plugin = await copyThirdPartyPlugin(path.join(root, 'plugin'))
    const occ = await Config.load({root: REPO_ROOT})
    const linked = await captureOutput(() => occ.runCommand('plugins:link', ['--no-install', plugin]))
    assert.equal(linked.error, undefined, linked.stderr)
  })
  afterEach(async () => {
    process.env = {...saved}
    await fs.rm(root, {force: true, recursive: true})
  })

  it('adds its command, which counts among the commands that work inside the sandbox', async () => {
    const config = await Config.load({root: REPO_ROOT})
    const health = config.findCommand('health')
    assert.equal(health?.pluginName, 'occ-fixture-third-party-plugin')
    const inside = containerCommands(config)
    for (const command of ['health', 'logs', 'status', 'update opencode']) assert.ok(inside.includes(command), inside.join(', '))
    for (const command of ['start', 'stop', 'config show']) assert.ok(!inside.includes(command), inside.join(', '))
    const Health = await health!.load()
    assert.equal(Object.getPrototypeOf(Health).name, 'RuntimeCommand')
  })

  it('hooks occ:foreground: runs next to the update listener, gets the context and the signal', async () => {
    const config = await Config.load({root: REPO_ROOT})
    const names = [...config.plugins.keys()]
    assert.ok(names.includes('@opencode-cloud/update-listener'), names.join(', '))
    assert.ok(names.includes('occ-fixture-third-party-plugin'), names.join(', '))

    const logs: string[] = []
    const controller = new AbortController()
    const runtime = {
      async bindMounts() {
        return [{container: MOUNT_STATE, host: path.join(root, 'state'), readOnly: true}]
      },
      kind: 'host',
      names: resourceNames('third-party'),
    } as unknown as HostRuntimeApi
    await fs.mkdir(path.join(root, 'state'))
    const context: ForegroundContext = {
      config: {} as ForegroundContext['config'],
      fail(error) {
        throw error
      },
      log: (line) => logs.push(line),
      paths: resolvePaths(),
      runtime,
      signal: controller.signal,
      async updateOpencode() {
        throw new Error('not in this test')
      },
      version: '9.9.9',
    }
    const running = config.runHook<'occ:foreground', OccHooks>('occ:foreground', context)
    const marker = process.env.OCC_TEST_FOREGROUND_MARKER!
    await waitFor(async () => JSON.parse(await fs.readFile(marker, 'utf8')).state === 'started')
    // Both hooks run side by side: let the listener say what it does before the signal ends it.
    await waitFor(async () => logs.some((line) => line.startsWith('Update listener disabled')))
    assert.deepEqual(JSON.parse(await fs.readFile(marker, 'utf8')), {
      container: 'opencode-cloud-sandbox-third-party',
      hasUpdateOpencode: true,
      pid: process.pid,
      state: 'started',
      version: '9.9.9',
    })
    controller.abort()
    const outcome = await running
    assert.deepEqual(outcome.failures, [])
    assert.deepEqual(outcome.successes.map((success) => success.plugin.name).sort(), [
      '@opencode-cloud/update-listener',
      'occ-fixture-third-party-plugin',
    ])
    assert.equal(JSON.parse(await fs.readFile(marker, 'utf8')).state, 'stopped')
    assert.ok(logs.includes('third-party foreground hook started'), logs.join('\n'))
    assert.ok(logs.some((line) => /Update listener disabled: .*read-only/.test(line)), logs.join('\n'))
  })
})

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {
      // not yet
    }

    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
