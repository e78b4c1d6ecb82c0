/**
 * @opencode-cloud/update-listener: answers the web UI's update requests while
 * `occ start --no-daemon` runs (the command-file contract in docs/update-flow.md).
 */
import path from 'node:path'

import {
  errorMessage,
  findStateMount,
  type ForegroundContext,
  hostCommandsDir,
  listenerMountProblem,
  type MountSpec,
  prepareCommandsDir,
  type PreparedDir,
} from 'opencode-cloud/internal'

import {delay, type ListenerOptions, UpdateListener} from './listener.js'

export {DEFAULTS, type ListenerEvent, type ListenerOptions, UpdateListener} from './listener.js'
export * from './decisions.js'

export type ListenerOverrides = Partial<Omit<ListenerOptions, 'dir' | 'log' | 'updateOpencode' | 'version'>> & {
  /** Backoff while the container's mounts cannot be read: first wait, doubled up to maxMs. */
  mountRetry?: {firstMs: number; maxMs: number}
  /** Passed to prepareCommandsDir (tests force the no-/proc fallback). */
  proc?: boolean
}

const MOUNT_RETRY = {firstMs: 1000, maxMs: 30_000}

/**
 * Runs the listener for one foreground session until ctx.signal aborts. With no usable state
 * mount it disables itself, says why on stderr, and (when it has a dir to write in) keeps a
 * listener.json that says "disabled" and why, for `occ status` and the web UI. A failure to
 * read the container's mounts is retried (the engine may be restarting). An unexpected failure
 * of the listener is logged and thrown, so `occ start --no-daemon` fails and its service manager
 * restarts it.
 */
export async function runUpdateListener(ctx: ForegroundContext, overrides: ListenerOverrides = {}): Promise<void> {
  const {mountRetry = MOUNT_RETRY, proc, ...listenerOverrides} = overrides
  const mounts = await readMounts(ctx, mountRetry)
  if (!mounts) return // stopped while waiting for them

  let problem = listenerMountProblem(mounts)
  const stateMount = findStateMount(mounts)
  let prepared: PreparedDir | undefined
  if (stateMount) {
    try {
      prepared = await prepareCommandsDir(stateMount, {proc})
    } catch (error) {
      problem ??= `cannot use ${hostCommandsDir(stateMount)} (${errorMessage(error)})`
    }
  }

  try {
    const make = (dir: PreparedDir): UpdateListener =>
      new UpdateListener({
        pendingDir: path.join(ctx.paths.xdgState, 'opencode-cloud', 'pending-results'),
        probeHealth: (timeoutMs) => ctx.runtime.probeHealth(timeoutMs),
        repairRelease: ctx.repairRelease,
        ...listenerOverrides,
        dir,
        log: ctx.log,
        updateOpencode: ctx.updateOpencode,
        version: ctx.version,
      })
    if (problem || !prepared) {
      ctx.log(`Update listener disabled: ${problem}. The web UI's update requests will get no answer.`)
      if (prepared) await make(prepared).runDisabled(ctx.signal, problem ?? 'unknown')
      return
    }

    try {
      await make(prepared).run(ctx.signal)
    } catch (error) {
      ctx.log(`Update listener failed: ${errorMessage(error)}`)
      // End service mode now, not when every other plugin's hook has returned.
      ctx.fail?.(error instanceof Error ? error : new Error(String(error)))
      throw error
    }
  } finally {
    await prepared?.handle.close()
  }
}

/** The container's mounts, retried with backoff until they can be read; undefined once ctx.signal aborts. */
async function readMounts(ctx: ForegroundContext, retry: {firstMs: number; maxMs: number}): Promise<MountSpec[] | undefined> {
  let waitMs = retry.firstMs
  let failures = 0
  while (!ctx.signal.aborted) {
    try {
      const mounts = await ctx.runtime.bindMounts()
      if (failures > 0) ctx.log(`Update listener: read the container's mounts after ${failures + 1} attempts.`)
      return mounts
    } catch (error) {
      if (failures === 0) {
        ctx.log(`Update listener: cannot read the container's mounts (${errorMessage(error)}); retrying until it answers.`)
      }

      failures++
    }

    await delay(waitMs, ctx.signal)
    waitMs = Math.min(waitMs * 2, retry.maxMs)
  }

  return undefined
}
