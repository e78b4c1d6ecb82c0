import fs from 'node:fs/promises'
import {registerHooks} from 'node:module'
import path from 'node:path'
import {pathToFileURL} from 'node:url'

let registered: string | undefined

/** package.json "exports" as occ writes it: each subpath has a `default` file. */
type Exports = Record<string, Record<string, string> | string>

/**
 * Plugins import occ's API by name (`import {RuntimeCommand} from 'opencode-cloud'`), declared as
 * an optional peer. Node looks that name up in node_modules above the importing file, and a
 * plugin's file is not below this occ: one installed with `occ plugins install` lives in occ's
 * data dir, one linked with `occ plugins link` in its author's checkout. There the name would find
 * nothing, or a second copy of occ that npm fetched for the plugin (other classes, maybe another
 * version). So bin/run.js makes the name, and each of its subpaths in "exports", mean the occ that
 * is running, for every importer. Returns the map it installed (name → file URL).
 * A resolve hook slows every later import a little (~10 ms of `occ status`), so main.ts installs
 * it only when oclif's data dir lists plugins (installed or linked): occ's own listener finds
 * the name through node_modules wherever npm puts the two.
 */
export function resolveOwnName(root: string, name: string, exports: Exports): Map<string, string> {
  const own = ownNames(root, name, exports)
  if (registered === root) return own
  registered = root
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const url = own.get(specifier)
      return url ? {shortCircuit: true, url} : nextResolve(specifier, context)
    },
  })
  return own
}

/** The names `name` and `name/<subpath>` of "exports", as file URLs under `root`. */
export function ownNames(root: string, name: string, exports: Exports): Map<string, string> {
  const own = new Map<string, string>()
  const base = pathToFileURL(root.endsWith('/') ? root : `${root}/`)
  for (const [subpath, target] of Object.entries(exports)) {
    const file = typeof target === 'string' ? target : target.default
    if (!file || !file.endsWith('.js') || subpath.includes('*')) continue
    own.set(subpath === '.' ? name : `${name}${subpath.slice(1)}`, new URL(file, base).href)
  }

  return own
}

/**
 * Whether oclif's data dir lists user-installed or linked plugins (its package.json's
 * `oclif.plugins`). No file: none. A file oclif may fail to read as well: assume there are some.
 */
export async function listsPlugins(dataDir: string): Promise<boolean> {
  let text: string
  try {
    text = await fs.readFile(path.join(dataDir, 'package.json'), 'utf8')
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT'
  }

  try {
    const plugins = (JSON.parse(text) as {oclif?: {plugins?: unknown}})?.oclif?.plugins
    return !Array.isArray(plugins) || plugins.length > 0
  } catch {
    return true
  }
}
