/**
 * Repairing an unverified release: a switched-in release the journal still calls "activated,
 * not verified" (an update was killed, or the container restarted, before the new version
 * answered healthy). It is re-verified — healthy from its own version: now it is installed —
 * else rolled back (files first, then opencode restarted when the previous version does not
 * serve). The next update, occ start, occ restart and the listener's start run this before
 * anything else.
 */
import {randomBytes} from 'node:crypto'
import os from 'node:os'
import {performance} from 'node:perf_hooks'
import {setTimeout as delay} from 'node:timers/promises'

import {errorMessage} from '../../errors.js'
import type {RestartMethod, Runtime} from '../runtime.js'
import {UpdateBusyError} from './errors.js'
import {containerStopped, waitHealthy} from './health-wait.js'
import {shortSha} from './layout.js'
import {heldLockTokens, lockOwner, lockOwnerGone, ownerChecks, type OwnerChecks} from './lock-owner.js'
import type {Journal, LockAttempt, LockRecord, ReleaseStore, StoreState} from './release-store.js'

export type RepairReport =
  | {kind: 'busy'; message: string}
  | {kind: 'none'}
  | {kind: 'rolled-back'; failed: string; to: string; healthy: boolean; restartMethod?: RestartMethod; message: string}
  | {kind: 'verified'; release: string; message: string}

export interface RepairOptions {
  /** How long the unverified release gets to answer healthy from its version (default 15 s). */
  verifyTimeoutMs?: number
  /** After a rollback and restart: how long the previous version gets (default 60 s). */
  healthTimeoutMs?: number
  healthIntervalMs?: number
  lockStaleSeconds?: number
  signal?: AbortSignal
  onProgress?: (message: string) => void
  /** Who takes the lock, for the "busy" message of others. */
  description?: string
  checks?: OwnerChecks
}

export interface LockTaken {
  token: string
  tookOver?: string
}

/**
 * Takes the update lock for this process. A held lock whose owner is provably gone (dead on
 * this host, or this very process with no update running) is taken over at once; one whose
 * owner may live is busy, until its heartbeat is older than staleSeconds.
 */
export async function takeUpdateLock(
  store: ReleaseStore,
  options: {staleSeconds: number; description?: string; checks?: OwnerChecks},
): Promise<{kind: 'busy'; owner: LockRecord} | ({kind: 'taken'} & LockTaken)> {
  const token = randomBytes(12).toString('hex')
  const description = options.description ?? `occ pid ${process.pid} on ${os.hostname()} since ${new Date().toISOString()}`
  const owner = lockOwner(token, description)
  const checks = options.checks ?? ownerChecks()
  let attempt: LockAttempt = await store.lock(owner, options.staleSeconds)
  let why: string | undefined
  if (attempt.kind === 'busy') {
    why = lockOwnerGone(attempt.owner, checks)
    if (why && attempt.owner.token) attempt = await store.lock(owner, options.staleSeconds, attempt.owner.token)
  }

  if (attempt.kind === 'busy') return attempt
  heldLockTokens.add(token)
  const tookOver = attempt.tookOver === 'stale' ? 'its heartbeat had stopped' : attempt.tookOver ? why : undefined
  return {kind: 'taken', token, ...(tookOver ? {tookOver} : {})}
}

/** Releases the lock (no longer held by this process, whatever the store says). True when the store removed it. */
export async function releaseUpdateLock(store: ReleaseStore, token: string): Promise<boolean> {
  heldLockTokens.delete(token)
  return store.unlock(token).then(
    () => true,
    () => false,
  )
}

export interface ReleaseWhenBackOptions {
  /** Whether the container runs now (an exec can reach it). */
  isRunning: () => Promise<boolean>
  /** occ is stopping: give up at once (the lock is taken over at the next start). */
  signal?: AbortSignal
  timeoutMs?: number
  pollMs?: number
}

/**
 * Releases the lock. When the unlock fails because the container is not running (a docker
 * restart under the update cut its execs), waits for the container to run again and removes
 * the lock then: left in place, it would make every other occ process (a second listener, `occ
 * update opencode` from the host) wait for its heartbeat to go stale, while its owner lives on
 * idle. Gives up at the deadline or when the signal aborts. True when the lock was removed.
 */
export async function releaseUpdateLockWhenBack(store: ReleaseStore, token: string, options: ReleaseWhenBackOptions): Promise<boolean> {
  if (await releaseUpdateLock(store, token)) return true
  const deadline = performance.now() + (options.timeoutMs ?? 30_000)
  const pollMs = options.pollMs ?? 500
  for (;;) {
    if (options.signal?.aborted) return false
    const running = await options.isRunning().catch(() => false)
    // Running, yet the unlock failed: not a restart; one more try, then leave it to the rules.
    if (running) return releaseUpdateLock(store, token)
    if (performance.now() + pollMs > deadline) return false
    const slept = await delay(pollMs, undefined, {signal: options.signal}).then(
      () => true,
      () => false,
    )
    if (!slept) return false
  }
}

export function busyError(owner: LockRecord): UpdateBusyError {
  const who = owner.description ? ` (${owner.description})` : ''
  return new UpdateBusyError(`Another opencode update is running${who}.`, {actions: ['Wait for it to finish, then try again.']})
}

/** Inspects, and when a release is unverified takes the lock and repairs it. */
export async function repairRelease(runtime: Runtime, store: ReleaseStore, options: RepairOptions = {}): Promise<RepairReport> {
  const state = await store.inspect()
  if (!state.journal) return {kind: 'none'}
  const lock = await takeUpdateLock(store, {checks: options.checks, description: options.description, staleSeconds: options.lockStaleSeconds ?? 90})
  if (lock.kind === 'busy') return {kind: 'busy', message: busyError(lock.owner).message}
  try {
    const again = await store.inspect()
    return await repairUnderLock(runtime, store, again, options)
  } finally {
    await releaseUpdateLock(store, lock.token)
  }
}

/** The repair itself; the caller holds the lock and has just inspected. */
export async function repairUnderLock(runtime: Runtime, store: ReleaseStore, state: StoreState, options: RepairOptions = {}): Promise<RepairReport> {
  const journal = state.journal
  if (!journal) return {kind: 'none'}
  const progress = options.onProgress ?? (() => {})
  const name = (release: string): string => shortSha(release)
  let reason = 'current does not point at it'
  if (journal.release && state.currentRelease === journal.release) {
    progress(`Release ${name(journal.release)} was switched in but never verified; checking its health`)
    const verdict = await waitHealthy(runtime, journal.version, {
      intervalMs: options.healthIntervalMs,
      otherVersionAnswers: 2,
      signal: options.signal,
      timeoutMs: options.verifyTimeoutMs ?? 15_000,
    })
    if (verdict.healthy) {
      await store.verify()
      return {kind: 'verified', message: `Release ${name(journal.release)} (switched in by an update that did not finish) answers healthy: it is installed now.`, release: journal.release}
    }

    reason = verdict.detail
  }

  return rollBackJournal(runtime, store, journal, reason, options)
}

async function rollBackJournal(runtime: Runtime, store: ReleaseStore, journal: Journal, reason: string, options: RepairOptions): Promise<RepairReport> {
  const progress = options.onProgress ?? (() => {})
  progress(`Rolling back the unverified release ${shortSha(journal.release)} (${reason}) to ${shortSha(journal.previous)}`)
  await store.rollback(true)
  const after = await store.inspect()
  // The previous version may already serve (the new one was never started): then no restart.
  const stopped = containerStopped(runtime)
  let verdict = await waitHealthy(runtime, after.version, {healthyAnswers: 2, intervalMs: options.healthIntervalMs, stopped, timeoutMs: 3000})
  let restartMethod: RestartMethod | undefined
  if (!verdict.healthy) {
    // Without a supervisor this restarts the container: a watcher of this process must not take it for the end.
    const release = runtime.holdLifecycle(`repair of the unverified release ${shortSha(journal.release)}`)
    try {
      restartMethod = await runtime.restartOpencode()
      verdict = await waitHealthy(runtime, after.version, {intervalMs: options.healthIntervalMs, signal: options.signal, stopped, timeoutMs: options.healthTimeoutMs ?? 60_000})
    } catch (error) {
      verdict = {detail: `restarting opencode failed: ${errorMessage(error)}`, healthy: false}
    } finally {
      release()
    }
  }

  const to = shortSha(journal.previous)
  const message = verdict.healthy
    ? `Rolled back the unverified release ${shortSha(journal.release)} (${reason}); ${to} serves again${restartMethod ? ` (restarted via ${restartMethod})` : ''}.`
    : `Rolled back the unverified release ${shortSha(journal.release)} (${reason}) to ${to}, but it does not answer healthy either: ${verdict.detail}.`
  return {failed: journal.release, healthy: verdict.healthy, kind: 'rolled-back', message, to: journal.previous, ...(restartMethod ? {restartMethod} : {})}
}
