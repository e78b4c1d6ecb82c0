import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import type {Result} from 'execa'

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
export const THIRD_PARTY_PLUGIN = path.join(REPO_ROOT, 'test/fixtures/third-party-plugin')

/**
 * A plugin author's checkout of the fixture plugin (docs/plugins.md) in `dir`: its files only.
 * Nothing next to it provides 'opencode-cloud'; the occ that loads it resolves that name to itself.
 */
export async function copyThirdPartyPlugin(dir: string): Promise<string> {
  await fs.cp(THIRD_PARTY_PLUGIN, dir, {recursive: true})
  return dir
}

/**
 * Links the fixture plugin the ordinary way, `occ plugins link --no-install <dir>`, run by `occ`
 * in a world whose XDG_DATA_HOME holds oclif's user plugins. Its command is `occ health`; its
 * occ:foreground hook writes a marker file named by OCC_TEST_FOREGROUND_MARKER.
 */
export async function linkThirdPartyPlugin(world: {root: string; occ(args: string[]): Promise<Result>}): Promise<string> {
  const dir = await copyThirdPartyPlugin(path.join(world.root, 'occ-fixture-third-party-plugin'))
  const result = await world.occ(['plugins', 'link', '--no-install', dir])
  if (result.exitCode !== 0) throw new Error(`occ plugins link failed (exit ${result.exitCode}): ${String(result.stderr)}`)
  return dir
}
