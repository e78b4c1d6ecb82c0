import {registerHooks} from 'node:module'

/**
 * dockerode loads gRPC + protobuf (for BuildKit sessions) and docker-modem loads ssh2 (for
 * ssh:// engines) at import time, although occ only needs them for image builds and SSH
 * engines. That is ~50 ms of every `occ status`. This hook swaps those two internal modules
 * for thin wrappers that load the real module on first call (lazy/*.cts). If the
 * libraries change their layout the paths stop matching and everything loads as before.
 */
const LAZY: Array<{parent: RegExp; specifier: string; wrapper: string}> = [
  {parent: /[\\/]docker-modem[\\/]lib[\\/]modem\.js$/, specifier: './ssh', wrapper: 'ssh.cjs'},
  {parent: /[\\/]dockerode[\\/]lib[\\/]docker\.js$/, specifier: './session', wrapper: 'session.cjs'},
]

let registered = false

export function deferHeavyDockerDeps(): void {
  if (registered || typeof registerHooks !== 'function') return
  registered = true
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const parent = context.parentURL ?? ''
      for (const lazy of LAZY) {
        if (specifier === lazy.specifier && lazy.parent.test(parent)) {
          return {format: 'commonjs', shortCircuit: true, url: new URL(`lazy/${lazy.wrapper}`, import.meta.url).href}
        }
      }

      return nextResolve(specifier, context)
    },
  })
}
