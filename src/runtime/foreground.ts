import {setTimeout as delay} from 'node:timers/promises'

import type {Hook} from '@oclif/core'

import type {OccConfig} from '../config/schema.js'
import type {OccPaths} from '../config/paths.js'
import type {ForegroundContext} from './hooks.js'
import {handleInterrupts} from './interrupts.js'
import type {StopVerdict} from './stop-events.js'
import {findStateMount} from '../config/mounts.js'
import {bindMountSpecs, type HostRuntime} from './host-runtime.js'
import {isOwnNotice, liveRecreateNotice} from './recreate-notice.js'
import {SUCCESSOR_POLL_MS, SwapGate} from './successor.js'
import {abortable} from './update/health-wait.js'
import {repairAtStart} from './lifecycle.js'
import {updateOpencodeWith} from './update-entry.js'

export type ForegroundEnd = 'container-died' | 'container-stopped' | 'engine-lost' | 'hook-failed' | 'recreate-failed' | 'signal' | 'state-mount-changed'

/** What the foreground needs of the host runtime. */
export type ForegroundHost = Pick<HostRuntime, 'awaitSuccessor' | 'containerState' | 'lifecycleFree' | 'lifecycleHolds' | 'waitForStop'>

export interface ForegroundOptions {
  host: ForegroundHost
  /** Runs the foreground hooks with the signal; resolves when they have all finished. `fail` ends the loop non-zero at once. */
  runHooks: (signal: AbortSignal, fail: (error: Error) => void) => Promise<void>
  log: (message: string) => void
  /** For tests: where signals come from. */
  processLike?: Pick<NodeJS.Process, 'exit' | 'off' | 'on'>
  /** Closed while the container is being replaced (the watcher closes and opens it). */
  gate?: SwapGate
}

export interface ForegroundResult {
  end: ForegroundEnd
  exitCode: number
  containerExitCode?: number
}

/**
 * `occ start --no-daemon`: stay in the foreground while the container runs, with the
 * foreground hooks (the update listener) working. SIGINT/SIGTERM and `occ stop` end it
 * cleanly (exit 0); an unexpected container death or a lost engine ends it with exit 1, so a
 * service manager restarts it. Hooks always get to finish (their signal aborts first).
 */
export async function runForeground(options: ForegroundOptions): Promise<ForegroundResult> {
  const processLike = options.processLike ?? process
  const controller = new AbortController()
  let end: ForegroundEnd | undefined
  let containerExitCode: number | undefined
  const finish = (why: ForegroundEnd): void => {
    if (end) return
    end = why
    controller.abort(new Error(why))
  }

  const dispose = handleInterrupts((name) => {
    options.log(`Received ${name}; finishing the current work, then stopping (send it again to exit at once).`)
    finish('signal')
  }, processLike)
  const aborted = new Promise<void>((resolve) => controller.signal.addEventListener('abort', () => resolve(), {once: true}))
  const watcher = watchContainer(options.host, controller.signal, options.log, options.gate).then(
    (stop) => {
      if (controller.signal.aborted) return
      if (!stop) {
        options.log('Lost the connection to the Docker engine.')
        finish('engine-lost')
        return
      }

      containerExitCode = stop.exitCode
      if (stop.end) {
        finish(stop.end)
        return
      }

      options.log(
        stop.expected
          ? stop.departure === 'removed'
            ? 'The container was removed.'
            : stop.departure === 'renamed'
              ? 'The container was renamed and nothing took its name.'
              : 'The container was stopped.'
          : `The container died unexpectedly (exit ${stop.exitCode ?? '?'}).`,
      )
      finish(stop.expected ? 'container-stopped' : 'container-died')
    },
    (error: unknown) => {
      options.log(`Watching the container failed: ${(error as Error).message}`)
      finish('engine-lost')
    },
  )

  try {
    const fail = (error: Error): void => {
      if (!end) options.log(`A foreground hook failed: ${error.message}`)
      finish('hook-failed')
    }

    // A hook that throws must not leave the container watch open forever.
    const hooks = options.runHooks(controller.signal, fail).catch((error: unknown) => fail(error as Error))
    await Promise.all([hooks, aborted])
    await watcher
  } finally {
    dispose()
  }

  const why = end ?? 'signal'
  return {containerExitCode, end: why, exitCode: why === 'container-stopped' || why === 'signal' ? 0 : 1}
}

/** How the watch ended: a stop verdict, or (end) a reason of its own that the caller ends with. */
export type WatchEnd = StopVerdict & {end?: 'recreate-failed' | 'state-mount-changed'}

/**
 * Waits until the container stops for good. A stop while the runtime's life cycle is held (an
 * update of this process restarts the container, or brings it back after the new release
 * crashed) is not the end: once the hold is released, a running container is watched again.
 * Nor is a container replaced under our name (`occ start --recreate`, `occ update container`):
 * while the recreate runs, the gate is closed (work that needs the container waits), and the
 * new container is watched from then on, with the gate open again. A successor whose state
 * mount is elsewhere ends the watch: the listener must start again on the new directory.
 */
export async function watchContainer(host: ForegroundHost, signal: AbortSignal, log: (message: string) => void, gate?: SwapGate): Promise<undefined | WatchEnd> {
  for (;;) {
    const stop = await host.waitForStop(signal)
    if (signal.aborted || !stop) return stop
    const holds = host.lifecycleHolds()
    if (holds.length > 0) {
      log(`The container stopped during a planned restart (${holds.join('; ')}); waiting for it to finish.`)
      const free = host.lifecycleFree()
      const aborted = await abortable(free, signal)
      if (aborted === 'aborted') return undefined
      const state = await host.containerState()
      if (state.running) continue
      stop.exitCode = state.exitCode ?? stop.exitCode
    }

    gate?.close()
    const successor = await host.awaitSuccessor(stop.containerId, signal)
    switch (successor.kind) {
      case 'aborted': {
        return undefined
      }

      case 'none': {
        return stop
      }

      case 'give-up': {
        log(`The container was being replaced, but ${successor.why}; ending (the service manager starts occ again).`)
        return {...stop, end: 'recreate-failed'}
      }

      case 'attach': {
        const state = await host.containerState()
        const stateMount = findStateMount(bindMountSpecs(state.mounts))?.host
        if (stop.stateMount !== undefined && stateMount !== stop.stateMount) {
          log(`The new container's state mount is ${stateMount ?? 'missing'} (it was ${stop.stateMount}); ending so that the listener starts again on it.`)
          return {...stop, end: 'state-mount-changed'}
        }

        if (successor.containerId !== stop.containerId) log(`The container was recreated; following the new one (${successor.containerId.slice(0, 12)}).`)
        gate?.open()
      }
    }
  }
}

/** A recreate is announced, or an `occ update container` holds the instance's update lock. */
async function containerBeingReplaced(host: HostRuntime): Promise<boolean> {
  // Not its own planned restart (holdLifecycle writes the note too): that is the lifecycle hold's business.
  const notice = await liveRecreateNotice(host.paths, host.names)
  if (notice && !isOwnNotice(notice)) return true
  const {liveHostLockHolder} = await import('./update-lock.js')
  return (await liveHostLockHolder(host.paths, host.names))?.kind === 'update container'
}

export interface ServeOptions {
  host: HostRuntime
  config: OccConfig
  paths: OccPaths
  version: string
  /** Fires the `occ:foreground` hooks (oclif's runHook) with the context. */
  fireHooks: (context: ForegroundContext) => Promise<Hook.Result<void>>
  log?: (message: string) => void
}

/**
 * Service mode: the foreground hooks (the update listener, third-party plugins) get the runtime,
 * the config, the shared update plan and a signal; a hook that fails ends the loop non-zero, so
 * a service manager restarts occ rather than leaving it running without a listener.
 */
export async function serveInForeground(options: ServeOptions): Promise<ForegroundResult> {
  const log = options.log ?? ((message: string) => process.stderr.write(`${message}\n`))
  log('Running in the foreground (Ctrl+C to stop).')
  const gate = new SwapGate()
  const {host} = options
  /**
   * Work that needs the container (an update, the release repair) asked for while it is being
   * replaced starts once the new one runs and is ours to watch: the gate is closed from the
   * departure to the re-attach; the recreate note covers the moment before the watcher has seen
   * the old container go, and a running `occ update container` (its lock) the pull before its
   * swap and the clean-up after it, so the request waits rather than being refused as busy.
   */
  const afterSwap = async (signal: AbortSignal | undefined): Promise<void> => {
    let said = false
    for (;;) {
      const replacing = gate.isClosed || (await containerBeingReplaced(host))
      if (!replacing) return
      if (!said) log('The container is being replaced; the update starts once the new one runs.')
      said = true
      if (gate.isClosed) await gate.pass(signal)
      else await delay(SUCCESSOR_POLL_MS, undefined, {signal})
    }
  }

  return runForeground({
    gate,
    host: options.host,
    log,
    async runHooks(signal, fail) {
      const outcome = await options.fireHooks({
        config: options.config,
        fail,
        log,
        paths: options.paths,
        runtime: options.host,
        signal,
        async repairRelease({onProgress, signal}) {
          await afterSwap(signal)
          return repairAtStart(host, onProgress ?? log, signal)
        },
        async updateOpencode(request, progress) {
          await afterSwap(progress.signal)
          return updateOpencodeWith(host, options.config, request, progress)
        },
        version: options.version,
      })
      if (outcome.failures.length > 0) {
        const names = outcome.failures.map((failure) => `${failure.plugin.name}: ${failure.error.message}`)
        throw new Error(`foreground hook failed (${names.join('; ')})`)
      }
    },
  })
}
