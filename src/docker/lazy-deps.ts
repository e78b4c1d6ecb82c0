import {createRequire, Module} from 'node:module'

/**
 * dockerode loads gRPC + protobuf (for BuildKit sessions) and docker-modem loads ssh2 (for
 * ssh:// engines) when they are imported, although occ needs them only for image builds and
 * SSH engines: ~50 ms of every `occ status`. Both internal modules export one function, so we
 * pre-seed the require cache with a stand-in that loads the real module on its first call.
 * If the libraries change their layout, nothing matches and everything loads as before.
 */
export function deferHeavyDockerDeps(): void {
  const require = createRequire(import.meta.url)
  let targets: string[]
  try {
    const dockerode = require.resolve('dockerode')
    targets = [require.resolve('dockerode/lib/session.js'), require.resolve('docker-modem/lib/ssh.js', {paths: [dockerode]})]
  } catch {
    return
  }

  for (const file of targets) {
    if (require.cache[file]) continue
    let real: ((...args: unknown[]) => unknown) | undefined
    const standIn = function (this: unknown, ...args: unknown[]): unknown {
      if (!real) {
        delete require.cache[file]
        real = require(file) as (...args: unknown[]) => unknown
      }

      return real.apply(this, args)
    }

    const module = new Module(file)
    module.filename = file
    module.loaded = true
    module.exports = standIn
    require.cache[file] = module
  }
}
