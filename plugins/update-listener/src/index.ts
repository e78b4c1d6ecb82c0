/**
 * @opencode-cloud/update-listener: answers the web UI's update requests while
 * `occ start --no-daemon` runs (the command-file contract in docs/update-flow.md).
 */
import {
  errorMessage,
  findStateMount,
  type ForegroundContext,
  hostCommandsDir,
  listenerMountProblem,
  type MountSpec,
  prepareCommandsDir,
  type PreparedDir,
} from 'opencode-cloud'

import {type ListenerOptions, UpdateListener} from './listener.js'

export {DEFAULTS, type ListenerEvent, type ListenerOptions, UpdateListener} from './listener.js'
export * from './decisions.js'

export type ListenerOverrides = Partial<Omit<ListenerOptions, 'dir' | 'log' | 'updateOpencode' | 'version'>>

/**
 * Runs the listener for one foreground session until ctx.signal aborts. With no usable state
 * mount it disables itself, says why on stderr, and (when it has a dir to write in) keeps a
 * listener.json that says "disabled" and why, for `occ status` and the web UI.
 */
export async function runUpdateListener(ctx: ForegroundContext, overrides: ListenerOverrides = {}): Promise<void> {
  let mounts: MountSpec[]
  try {
    mounts = await ctx.runtime.bindMounts()
  } catch (error) {
    ctx.log(`Update listener disabled: cannot read the container's mounts (${errorMessage(error)}).`)
    return
  }

  let problem = listenerMountProblem(mounts)
  const stateMount = findStateMount(mounts)
  let prepared: PreparedDir | undefined
  if (stateMount) {
    try {
      prepared = await prepareCommandsDir(stateMount)
    } catch (error) {
      problem ??= `cannot use ${hostCommandsDir(stateMount)} (${errorMessage(error)})`
    }
  }

  const make = (dir: PreparedDir): UpdateListener =>
    new UpdateListener({...overrides, dir, log: ctx.log, updateOpencode: ctx.updateOpencode, version: ctx.version})
  if (problem || !prepared) {
    ctx.log(`Update listener disabled: ${problem}. The web UI's update requests will get no answer.`)
    if (prepared) await make(prepared).runDisabled(ctx.signal, problem ?? 'unknown')
    return
  }

  try {
    await make(prepared).run(ctx.signal)
  } catch (error) {
    ctx.log(`Update listener failed: ${errorMessage(error)}`)
  }
}
