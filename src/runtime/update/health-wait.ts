/**
 * Waiting for opencode to answer healthy, from a given version, on the monotonic clock (a wall
 * clock jump must not decide an update), stopped at once by a signal (SIGTERM), and ended at
 * once when the container stops (without a supervisor, a crashing opencode stops it: no answer
 * will ever come, so spinning on "connection refused" until the timeout tells nothing).
 */
import {performance} from 'node:perf_hooks'

import {errorMessage} from '../../errors.js'
import type {ContainerState, HealthProbe, Runtime} from '../runtime.js'
import {judgeHealth} from './layout.js'

export interface HealthWaitOptions {
  timeoutMs: number
  /** Consecutive healthy answers needed (default 2). */
  healthyAnswers?: number
  intervalMs?: number
  /** Stops the wait at once; the verdict then says `aborted`. */
  signal?: AbortSignal
  /**
   * Answers healthy from another version this many times in a row end the wait early: the
   * expected version is not the one running (nobody is restarting it). 0: never (default).
   */
  otherVersionAnswers?: number
  /** The monotonic clock in ms (tests pass their own). */
  now?: () => number
  /**
   * Asked after each answer that is not healthy: a reason when the container is not running
   * (it stopped: nothing will answer), and the wait ends at once with `stopped`.
   */
  stopped?: () => Promise<string | undefined>
}

export interface HealthWaitVerdict {
  healthy: boolean
  detail: string
  aborted?: boolean
  /** A healthy answer came, but from another version than expected. */
  otherVersion?: boolean
  /** The container stopped while waiting (`stopped` said so). */
  stopped?: boolean
}

export async function waitHealthy(
  probe: Pick<Runtime, 'probeHealth'>,
  expectedVersion: string | undefined,
  options: HealthWaitOptions,
): Promise<HealthWaitVerdict> {
  const now = options.now ?? (() => performance.now())
  const deadline = now() + options.timeoutMs
  const needed = options.healthyAnswers ?? 2
  let streak = 0
  let otherStreak = 0
  let detail = 'no answer yet'
  for (;;) {
    if (options.signal?.aborted) return {aborted: true, detail: `stopped while waiting (last answer: ${detail})`, healthy: false}
    const remaining = deadline - now()
    if (remaining <= 0) return {detail, healthy: false}
    const answer = await abortable(
      probe.probeHealth(Math.max(100, Math.min(2000, remaining))).catch((error): HealthProbe => ({error: errorMessage(error), kind: 'failed'})),
      options.signal,
    )
    if (answer === 'aborted') return {aborted: true, detail: `stopped while waiting (last answer: ${detail})`, healthy: false}
    const verdict = judgeHealth(answer, expectedVersion)
    detail = verdict.detail
    streak = verdict.healthy ? streak + 1 : 0
    const other = !verdict.healthy && /^healthy, but version/.test(verdict.detail)
    otherStreak = other ? otherStreak + 1 : 0
    if (streak >= needed) return {detail, healthy: true}
    if (options.otherVersionAnswers && otherStreak >= options.otherVersionAnswers) return {detail, healthy: false, otherVersion: true}
    if (!verdict.healthy && options.stopped) {
      const why = await abortable(options.stopped().catch(() => undefined), options.signal)
      if (why === 'aborted') return {aborted: true, detail: `stopped while waiting (last answer: ${detail})`, healthy: false}
      if (why) return {detail: why, healthy: false, stopped: true}
    }

    if ((await abortable(sleep(options.intervalMs ?? 250), options.signal)) === 'aborted') {
      return {aborted: true, detail: `stopped while waiting (last answer: ${detail})`, healthy: false}
    }
  }
}

/** A ref'd timer: the wait itself is what keeps occ alive while opencode restarts. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms)
  })
}

/** Resolves with the work, or 'aborted' as soon as the signal aborts. */
export async function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<'aborted' | T> {
  if (!signal) return work
  if (signal.aborted) return 'aborted'
  let onAbort: (() => void) | undefined
  const aborted = new Promise<'aborted'>((resolve) => {
    onAbort = () => resolve('aborted')
    signal.addEventListener('abort', onAbort, {once: true})
  })
  try {
    return await Promise.race([work, aborted])
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort)
  }
}

/** For `stopped`: the reason when the container is not running. */
export function containerStopped(runtime: Pick<Runtime, 'containerState'>): () => Promise<string | undefined> {
  return async () => stoppedReason(await runtime.containerState())
}

export function stoppedReason(state: ContainerState): string | undefined {
  if (!state.exists) return 'the container was removed'
  if (state.running) return undefined
  return `the container stopped (${state.status}${state.exitCode === undefined ? '' : `, exit ${state.exitCode}`})`
}
