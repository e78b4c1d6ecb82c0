import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
export const THIRD_PARTY_PLUGIN = path.join(REPO_ROOT, 'test/fixtures/third-party-plugin')

/**
 * Links the fixture plugin the way `occ plugins link` would: an entry in <data dir>/package.json
 * (oclif's user plugins, loaded by the built CLI as well). Its hook writes a marker file named by
 * OCC_TEST_FOREGROUND_MARKER.
 */
export async function linkThirdPartyPlugin(xdgDataHome: string): Promise<void> {
  const dataDir = path.join(xdgDataHome, 'opencode-cloud')
  await fs.mkdir(dataDir, {recursive: true})
  const pjson = {
    oclif: {plugins: [{name: 'occ-fixture-third-party-plugin', root: THIRD_PARTY_PLUGIN, type: 'link'}], schema: 1},
    private: true,
  }
  await fs.writeFile(path.join(dataDir, 'package.json'), JSON.stringify(pjson, null, 2))
}
