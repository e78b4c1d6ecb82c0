// Writes oclif.manifest.json from the compiled commands (what `oclif manifest` does, without
// the oclif dev tool and its dependency tree). oclif reads it instead of importing every
// command file, which keeps `occ --version` and `occ --help` fast.
import {writeFileSync} from 'node:fs'
import {Config} from '@oclif/core'

const root = new URL('..', import.meta.url)
const config = await Config.load({ignoreManifest: true, root: root.pathname})
const plugin = config.getPluginsList().find((p) => p.isRoot)
const manifest = {commands: plugin.manifest.commands, version: config.version}
writeFileSync(new URL('oclif.manifest.json', root), `${JSON.stringify(manifest, null, 2)}\n`)
console.log(`oclif.manifest.json: ${Object.keys(manifest.commands).length} commands`)
