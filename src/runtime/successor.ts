/**
 * Service mode across a recreate: when the container `occ start --no-daemon` watches is removed
 * or renamed, is another one coming under the same name (a recreate or a container update), or
 * is this the end? The decision is pure (decideSuccessor); awaitSuccessor polls the engine and
 * the recreate note (recreate-notice.ts) with it until it can answer.
 */
import {setTimeout as delay} from 'node:timers/promises'

/** Without a live recreate note, how long a container already created under our name gets to run. */
export const SUCCESSOR_WAIT_MS = 120_000
/** A live note keeps the wait going (its writer is working: a pull, a health wait, a rollback), up to this. */
export const NOTICE_WAIT_MAX_MS = 15 * 60_000
export const SUCCESSOR_POLL_MS = 250

/** What is under our name now, when its labels say it is this instance's. */
export interface Candidate {
  id: string
  running: boolean
}

export interface SuccessorFacts {
  /** The container that left (undefined: it was already gone when the watch began). */
  departedId?: string
  candidate?: Candidate
  /** A live recreate note: someone is replacing the container right now. */
  notice: boolean
  /** A note about the departed container whose writer is gone: its replacement was cut short. */
  interrupted?: boolean
  /** Whether a live note was seen at any point of this wait. */
  noticeSeen: boolean
  elapsedMs: number
  /** Since the note was last seen live (or since the departure, if it never was). */
  sinceNoticeMs: number
}

export type SuccessorDecision =
  | {kind: 'attach'; containerId: string}
  /** Nothing is coming: end service mode the way the departure alone would. */
  | {kind: 'none'}
  | {kind: 'wait'}
  /** A recreate was announced (or a successor created) and did not come up in time. */
  | {kind: 'give-up'; why: string}

export function decideSuccessor(facts: SuccessorFacts): SuccessorDecision {
  const {candidate} = facts
  // Killed mid-recreate: end non-zero, so the service manager starts occ again and that start
  // repairs what the recreate left (a kept old container, an unverified new one).
  if (facts.interrupted && !facts.notice) return {kind: 'give-up', why: 'the recreate was interrupted (its occ is gone)'}
  // Running, and whoever replaces it is done with it (a container update may still roll back).
  if (candidate?.running && !facts.notice) return {containerId: candidate.id, kind: 'attach'}
  if (facts.notice) {
    if (facts.elapsedMs < NOTICE_WAIT_MAX_MS) return {kind: 'wait'}
    return {kind: 'give-up', why: `the recreate announced ${Math.round(facts.elapsedMs / 1000)} s ago has not finished`}
  }

  if (candidate && candidate.id !== facts.departedId) {
    if (facts.sinceNoticeMs < SUCCESSOR_WAIT_MS) return {kind: 'wait'}
    return {kind: 'give-up', why: `the new container ${candidate.id.slice(0, 12)} did not start within ${SUCCESSOR_WAIT_MS / 1000} s`}
  }

  if (facts.noticeSeen) return {kind: 'give-up', why: 'the recreate ended without a running container'}
  return {kind: 'none'}
}

export interface SuccessorProbe {
  /** The container under our name, when its labels are this instance's. */
  candidate(): Promise<Candidate | undefined>
  /** The recreate note, judged for the departed container (recreateNoticeState). */
  notice(): Promise<'interrupted' | 'live' | 'none'>
  /** Monotonic ms. */
  now?: () => number
  pollMs?: number
}

export type SuccessorOutcome = SuccessorDecision | {kind: 'aborted'}

/** Polls until decideSuccessor says something other than "wait", or the signal aborts. */
export async function awaitSuccessor(probe: SuccessorProbe, departedId: string | undefined, signal: AbortSignal): Promise<SuccessorOutcome> {
  const now = probe.now ?? (() => performance.now())
  const started = now()
  let noticeAt = started
  let noticeSeen = false
  while (!signal.aborted) {
    // The note first: a recreate that withdraws it in between has its container running by then.
    const state = await probe.notice()
    const notice = state === 'live'
    const candidate = await probe.candidate()
    const at = now()
    if (notice) {
      noticeSeen = true
      noticeAt = at
    }

    const decision = decideSuccessor({candidate, departedId, elapsedMs: at - started, interrupted: state === 'interrupted', notice, noticeSeen, sinceNoticeMs: at - noticeAt})
    if (decision.kind !== 'wait') return decision
    try {
      await delay(probe.pollMs ?? SUCCESSOR_POLL_MS, undefined, {signal})
    } catch {
      break
    }
  }

  return {kind: 'aborted'}
}

/** Opens and closes around a swap; work that needs the container waits at pass() while it is closed. */
export class SwapGate {
  private closed: {promise: Promise<void>; open: () => void} | undefined

  get isClosed(): boolean {
    return this.closed !== undefined
  }

  close(): void {
    if (this.closed) return
    let open!: () => void
    const promise = new Promise<void>((resolve) => (open = resolve))
    this.closed = {open, promise}
  }

  open(): void {
    const closed = this.closed
    this.closed = undefined
    closed?.open()
  }

  /** Resolves at once when open, else when opened; rejects with the signal's reason when it aborts first. */
  async pass(signal?: AbortSignal): Promise<void> {
    const closed = this.closed
    if (!closed) return
    if (!signal) return closed.promise
    signal.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
      signal.addEventListener('abort', onAbort, {once: true})
      void closed.promise.then(() => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      })
    })
  }
}
