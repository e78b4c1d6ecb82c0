// Development only (run by `prepare`): the plugins in plugins/* import occ's public API as
// 'opencode-cloud', a peer dependency, the way a third-party plugin does. Where occ is
// installed, that name resolves to the occ the plugin is installed under; in this checkout it
// resolves through plugins/node_modules/opencode-cloud -> the repository root. npm manages
// neither that directory nor the link, and neither is packed.
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const plugins = path.join(root, 'plugins')
if (fs.existsSync(plugins)) {
  const link = path.join(plugins, 'node_modules', 'opencode-cloud')
  const target = path.relative(path.dirname(link), root)
  let current
  try {
    current = fs.readlinkSync(link)
  } catch {
    // no link yet
  }

  if (current !== target) {
    fs.mkdirSync(path.dirname(link), {recursive: true})
    fs.rmSync(link, {force: true, recursive: false})
    fs.symlinkSync(target, link, 'dir')
    console.log(`linked ${path.relative(root, link)} -> ${target}`)
  }
}
