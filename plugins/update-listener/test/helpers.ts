import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {
  LISTENER_FILE,
  type ListenerStatusFile,
  listenerStatusSchema,
  MOUNT_STATE,
  prepareCommandsDir,
  type PreparedDir,
  REQUEST_FILE,
  RESULT_FILE,
  type UpdateOutcome,
  type UpdateProgress,
  type UpdateRequest,
  type UpdateResult,
  type UpdateStep,
} from 'opencode-cloud/internal'

import {type ListenerEvent, type ListenerOptions, UpdateListener} from '../src/listener.js'

export interface UpdateCall {
  request: UpdateRequest
  signal?: AbortSignal
}

/** A scripted stand-in for the update plan: steps with delays, then an outcome (or a throw). */
export function fakeUpdate(script: {
  steps?: Array<[UpdateStep, number]>
  outcome?: Partial<UpdateOutcome>
  throws?: string
  /** Respect the abort signal at step boundaries (like the real plan). */
  honourAbort?: boolean
} = {}) {
  const calls: UpdateCall[] = []
  const update = async (request: UpdateRequest, progress: UpdateProgress & {signal?: AbortSignal}): Promise<UpdateOutcome> => {
    calls.push({request, signal: progress.signal})
    const startedAt = new Date().toISOString()
    for (const [step, ms] of script.steps ?? []) {
      if (script.honourAbort !== false && progress.signal?.aborted) {
        return outcome({changed: false, message: `Update stopped before step ${step}: occ is shutting down.`, startedAt, status: 'error'})
      }

      progress.onStep?.(step)
      // Like the real plan, a step that honours the signal ends when it aborts (so a test that
      // stops mid-step does not depend on how long the step or the machine takes).
      const signal = script.honourAbort === false ? undefined : progress.signal
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, ms)
        function done(): void {
          clearTimeout(timer)
          signal?.removeEventListener('abort', done)
          resolve()
        }

        signal?.addEventListener('abort', done, {once: true})
      })
    }

    if (script.throws) throw new Error(script.throws)
    return outcome({startedAt, ...script.outcome})
  }

  return {calls, update}
}

function outcome(partial: Partial<UpdateOutcome>): UpdateOutcome {
  return {
    changed: true,
    finishedAt: new Date().toISOString(),
    fromCommit: 'a'.repeat(40),
    message: 'Update completed',
    ref: {branch: 'dev'},
    rolledBack: false,
    startedAt: new Date().toISOString(),
    status: 'success',
    steps: [],
    toCommit: 'b'.repeat(40),
    ...partial,
  }
}

export interface World {
  root: string
  prepared: PreparedDir
  dir: string
  logs: string[]
  events: ListenerEvent[]
  results: UpdateResult[]
  start(options?: Partial<ListenerOptions>): Running
  /** Writes a request the way the web UI does: temp file, then rename into place. */
  request(body: unknown, name?: string): Promise<number>
  readResult(): Promise<UpdateResult | undefined>
  waitForResults(count: number, timeoutMs?: number): Promise<UpdateResult[]>
  cleanup(): Promise<void>
}

export interface Running {
  listener: UpdateListener
  controller: AbortController
  done: Promise<void>
  stop(): Promise<void>
}

export async function makeWorld(options: {proc?: boolean} = {}): Promise<World> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-listener-'))
  const prepared = await prepareCommandsDir({container: MOUNT_STATE, host: root, readOnly: false}, {proc: options.proc})
  const logs: string[] = []
  const events: ListenerEvent[] = []
  const results: UpdateResult[] = []
  const running: Running[] = []
  let counter = 0
  const world: World = {
    async cleanup() {
      await Promise.all(running.map((entry) => entry.stop().catch(() => {})))
      await prepared.handle.close()
      await fs.rm(root, {force: true, recursive: true})
    },
    dir: prepared.dir,
    events,
    logs,
    prepared,
    async readResult() {
      try {
        return JSON.parse(await fs.readFile(path.join(prepared.dir, RESULT_FILE), 'utf8'))
      } catch {
        return undefined
      }
    },
    async request(body, name = REQUEST_FILE) {
      const tmp = path.join(prepared.dir, `.web-ui-${counter++}.tmp`)
      await fs.writeFile(tmp, typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body))
      const at = performance.now()
      await fs.rename(tmp, path.join(prepared.dir, name))
      return at
    },
    results,
    root,
    start(options = {}) {
      const {update} = fakeUpdate()
      const listener = new UpdateListener({
        dir: prepared,
        graceMs: 200,
        log: (line) => logs.push(line),
        onEvent: (event) => {
          events.push(event)
          if (event.type === 'result') results.push(event.result)
        },
        rateLimitMs: 0,
        updateOpencode: update,
        version: '0.0.0-test',
        ...options,
      })
      const controller = new AbortController()
      const done = listener.run(controller.signal)
      const entry: Running = {
        controller,
        done,
        listener,
        async stop() {
          controller.abort()
          await done
        },
      }
      running.push(entry)
      return entry
    },
    async waitForResults(count, timeoutMs = 5000) {
      await waitFor(() => results.length >= count, timeoutMs, () => `${results.length}/${count} results; logs:\n${logs.join('\n')}`)
      return results
    },
  }
  return world
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000, describe?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms${describe ? `: ${describe()}` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/**
 * listener.json as soon as it shows what `check` looks for (read every 5 ms, for at most
 * `timeoutMs`; the last one read is in the error). The listener writes it after what a test can
 * observe first (the claim is a rename, the answer an event), so a test waits for it.
 */
export async function waitForListenerJson(world: World, check: (status: ListenerStatusFile) => boolean, timeoutMs = 2000): Promise<ListenerStatusFile> {
  let last: ListenerStatusFile | undefined
  await waitFor(
    async () => {
      try {
        last = listenerStatusSchema.parse(JSON.parse(await fs.readFile(path.join(world.dir, LISTENER_FILE), 'utf8')))
      } catch {
        last = undefined
      }

      return last !== undefined && check(last)
    },
    timeoutMs,
    () => `listener.json never showed it: ${JSON.stringify(last)}`,
  )
  return last!
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export async function exists(file: string): Promise<boolean> {
  return fs.lstat(file).then(
    () => true,
    () => false,
  )
}

/**
 * The attack on a recursive delete: in every directory of `dir` that `pick` selects, flip each
 * subdirectory dN to a symlink to `target` and back, over and over, until stopped. A delete that
 * walks by path (lstat says directory, then readdir) lists and removes the target's files when
 * a flip lands between its two calls.
 */
export function flipSubdirsToSymlinks(dir: string, target: string, pick: (name: string) => boolean, subdirs: number): {stop(): Promise<void>} {
  let racing = true
  const flipping = (async () => {
    while (racing) {
      const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((name) => pick(name))
      await Promise.all(
        names.flatMap((name) =>
          Array.from({length: subdirs}, async (_, i) => {
            const sub = path.join(dir, name, `d${i}`)
            try {
              await fs.rename(sub, `${sub}.real`)
              await fs.symlink(target, sub)
              await new Promise((resolve) => setImmediate(resolve))
              await fs.unlink(sub)
              await fs.rename(`${sub}.real`, sub)
            } catch {
              // The tree moved or is gone: look again.
            }
          }),
        ),
      )
      await new Promise((resolve) => setImmediate(resolve))
    }
  })()
  return {
    async stop() {
      racing = false
      await flipping
    },
  }
}
