/**
 * The host side of the web UI's update button. It watches the commands dir (fs.watch, with a
 * periodic poll as a safety net because events are only hints), claims a request by renaming it,
 * runs the update plan, and answers with a result file. listener.json is its heartbeat.
 * Maildir's discipline: the writer renames into place, the reader claims by rename, so a request
 * is never lost and never handled twice.
 */
import {type FSWatcher, type Stats, watch} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import {performance} from 'node:perf_hooks'

import {
  claimByRename,
  claimFileName,
  CONTAINER_COMMANDS_DIR,
  DirChangedError,
  disposeEntry,
  errorMessage,
  fileKind,
  type ForegroundContext,
  type HealthProbe,
  isPidAlive,
  MAX_QUEUED_REQUESTS,
  LISTENER_FILE,
  type ListenerStatusFile,
  lstatEntry,
  OCC_CODE_PATTERN,
  outcomeToResult,
  resultMessage,
  cleanLine,
  MAX_REQUEST_BYTES,
  type UntrustedRead,
  isDirChangedError,
  type OpenedDir,
  parseClaimFileName,
  parseUntrustedJson,
  type PreparedDir,
  quarantineName,
  readUntrustedEntry,
  REQUEST_FILE,
  RESULT_FILE,
  type UpdateCommand,
  type UpdateOutcome,
  type UpdateResult,
  updateResultSchema,
  type UpdateStep,
  writeFileNoFollow,
} from 'opencode-cloud/internal'
import type {ReleaseRepair} from 'opencode-cloud'

import {alreadyAnswered, decideClaim, isDeadClaim, isoNow, nextStartAt, requestIdOf, waitBeforeClaim} from './decisions.js'

export interface ListenerOptions {
  /** The prepared commands dir (see prepareCommandsDir). */
  dir: PreparedDir
  updateOpencode: ForegroundContext['updateOpencode']
  /** One line to stderr (the service's journal). */
  log: (message: string) => void
  version: string
  /**
   * At most one command per interval (5 s, docs/update-flow.md), counted from when the previous answer
   * (success or error) was written.
   */
  rateLimitMs?: number
  /** How long a request that is not valid JSON yet is given before it is rejected (2 s, docs/update-flow.md). */
  graceMs?: number
  /** The safety-net poll, for file systems whose events get lost (Docker Desktop). */
  pollMs?: number
  /** listener.json refresh; readers call a listener stale after 3 intervals. At most 10 s. */
  heartbeatMs?: number
  /** On SIGINT/SIGTERM during an update: how long to let it finish or stop safely. */
  shutdownGraceMs?: number
  /** Use fs.watch (default); tests turn it off to prove the poll alone suffices. */
  watch?: boolean
  pid?: number
  isAlive?: (pid: number) => boolean
  /** The wall clock: only for the timestamps written out (results, listener.json). */
  clock?: () => number
  /**
   * The monotonic clock for every interval, deadline and rate limit (default performance.now;
   * when only `clock` is given, tests drive both with it).
   */
  monotonic?: () => number
  /** Observes what the listener does (tests, the benchmark). */
  onEvent?: (event: ListenerEvent) => void
  /** Run once at start, before any request: repairs a release an interrupted update left unverified. */
  repairRelease?: ForegroundContext['repairRelease']
  /** opencode's health, shown in listener.json (refreshed with the heartbeat). */
  probeHealth?: (timeoutMs: number) => Promise<HealthProbe>
  /**
   * A host directory (not the sandbox-writable one) where an answer that could not be written
   * (disk full, I/O error) is kept until it is, so even a restart does not turn it into
   * "interrupted".
   */
  pendingDir?: string
  /** Requests claimed and waiting (default 8); past it a request is answered "busy". */
  maxQueue?: number
  /** Dead claims answered at start (the newest; default 16); older ones are set aside unanswered. */
  maxRecovered?: number
  /** Writes a file in the commands dir (tests inject ENOSPC). */
  writeFile?: typeof writeFileNoFollow
}

export type ListenerEvent =
  | {type: 'claimed'; claim: string; at: number}
  | {type: 'pending'; reason: string; requestId?: string}
  | {type: 'repaired'; repair: ReleaseRepair}
  | {type: 'recovered'; claim: string; answered: boolean}
  | {type: 'result'; result: UpdateResult}
  | {type: 'waiting'; until: number}

export const DEFAULTS = {
  graceMs: 2000,
  heartbeatMs: 5000,
  pollMs: 2000,
  rateLimitMs: 5000,
  shutdownGraceMs: 60_000,
  maxQueue: MAX_QUEUED_REQUESTS,
  maxRecovered: 16,
  pendingRetryMs: 1000,
  pendingRetryMaxMs: 30_000,
} as const

/** A request claimed and waiting its turn. */
interface Queued {
  claim: string
  /** Monotonic ms: the grace window and the "started" of its answer count from here. */
  claimedAt: number
  claimedIso: string
  requestId?: string
}

/** An answer that could not be written yet. */
interface Pending {
  claim?: string
  result: UpdateResult
  since: string
  reason: string
  retryAt: number
  backoffMs: number
  /** Whether writing it starts the rate-limit interval (recovered claims do not). */
  charge: boolean
}

interface Busy {
  requestId?: string
  startedAt: number
  step?: UpdateStep
  stepStartedAt?: number
}

export class UpdateListener {
  private readonly dir: string
  /** The commands dir, opened once: every file operation goes through it. */
  private readonly ref: OpenedDir
  private readonly options: Required<Omit<ListenerOptions, 'onEvent' | 'pendingDir' | 'probeHealth' | 'repairRelease'>> &
    Pick<ListenerOptions, 'onEvent' | 'pendingDir' | 'probeHealth' | 'repairRelease'>
  private readonly mono: () => number
  private readonly startedAt: number
  /** When the last result was written (monotonic): the rate limit counts from there. */
  private lastAnsweredAt: number | undefined
  private busy: Busy | undefined
  private disabledReason: string | undefined
  /** Requests claimed and waiting, oldest first. */
  private queue: Queued[] = []
  /** The request (or repair) being worked on. */
  private working: Promise<void> | undefined
  /** Answers not written yet, in order (disk full): retried with backoff, never dropped. */
  private outbox: Pending[] = []
  private flushChain: Promise<void> = Promise.resolve()
  private health: ListenerStatusFile['opencode_health']
  private healthTimer: NodeJS.Timeout | undefined
  /** Set when the listener cannot go on (the commands dir was replaced): run() throws it. */
  private fatal: Error | undefined
  private stopped = false
  private statusChain: Promise<void> = Promise.resolve()
  private statusWritten = false
  private wakeUp: (() => void) | undefined
  private woken = false
  private watcher: FSWatcher | undefined
  private lastWarning = ''
  /** When the file now at the request path (by inode) was first seen (monotonic): the grace window's start. */
  private firstSeen: {ino: number; at: number} | undefined

  constructor(options: ListenerOptions) {
    this.options = {
      clock: Date.now,
      graceMs: DEFAULTS.graceMs,
      heartbeatMs: DEFAULTS.heartbeatMs,
      isAlive: isPidAlive,
      maxQueue: DEFAULTS.maxQueue,
      maxRecovered: DEFAULTS.maxRecovered,
      monotonic: options.monotonic ?? options.clock ?? (() => performance.now()),
      pid: process.pid,
      pollMs: DEFAULTS.pollMs,
      rateLimitMs: DEFAULTS.rateLimitMs,
      shutdownGraceMs: DEFAULTS.shutdownGraceMs,
      watch: true,
      writeFile: writeFileNoFollow,
      ...options,
    }
    if (this.options.heartbeatMs > 10_000) throw new Error('heartbeatMs must be at most 10 s')
    this.mono = this.options.monotonic
    this.dir = options.dir.dir
    this.ref = options.dir.handle
    this.startedAt = this.options.clock()
  }

  /** A wall-clock time (ms) as a timestamp; monotonic times are converted through "now". */
  private iso(monoTime?: number): string {
    if (monoTime === undefined) return isoNow(this.options.clock())
    return isoNow(this.options.clock() - (this.mono() - monoTime))
  }

  /**
   * Answers requests until `signal` aborts; then finishes (or safely stops) the update in
   * progress. Rejects when it cannot go on (the commands dir was replaced or removed, or cannot
   * be listed at start), so that occ start --no-daemon fails and the service manager restarts it.
   */
  async run(signal: AbortSignal): Promise<void> {
    const watchPath = await this.ref.self()
    await this.recoverDeadClaims()
    await this.writeStatus()
    this.throwIfFatal()
    this.options.log(`Listening for update requests in ${this.dir} (in the sandbox: ${CONTAINER_COMMANDS_DIR})`)
    if (this.options.repairRelease) this.startJob(this.repair(signal))
    void this.checkHealth()
    const heartbeat = setInterval(() => {
      void this.checkHealth()
      void this.writeStatus()
    }, this.options.heartbeatMs)
    const poll = setInterval(() => {
      if (this.options.watch && !this.watcher) this.startWatching(watchPath, signal)
      this.wake()
    }, this.options.pollMs)
    const onAbort = (): void => this.wake()
    signal.addEventListener('abort', onAbort, {once: true})
    if (this.options.watch) this.startWatching(watchPath, signal)
    try {
      while (!signal.aborted) {
        this.throwIfFatal()
        let waitMs: number | undefined
        try {
          waitMs = await this.step(signal)
        } catch (error) {
          if (isDirChangedError(error)) this.fail(error)
          this.throwIfFatal()
          // Our own I/O failed (permissions, disk full): say so, keep going on the poll.
          this.warnOnce(`Update listener: ${errorMessage(error)}`)
          waitMs = this.options.pollMs
        }

        if (!signal.aborted) await this.sleep(waitMs)
      }
    } finally {
      // The update in progress finishes or stops safely (bounded by the shutdown grace); what
      // waited in the queue is answered; answers not written yet get a last try.
      // Bounded: an update bounds itself by the shutdown grace; the repair at start is let go.
      if (this.working) {
        const letGo = new AbortController()
        await Promise.race([this.working, delay(this.options.shutdownGraceMs, letGo.signal).then(() => 'deadline')])
        letGo.abort() // clears the timer: nothing of ours may keep the process alive
      }

      if (!this.fatal) {
        await this.answerQueueOnStop().catch((error: unknown) => this.warnOnce(errorMessage(error)))
        await this.flushOutbox(true).catch((error: unknown) => this.warnOnce(errorMessage(error)))
      }

      // Nothing of ours may keep the process alive once the hook resolves (an update that outlived
      // the shutdown grace keeps running on its own, and its late progress is ignored).
      clearInterval(heartbeat)
      clearInterval(poll)
      signal.removeEventListener('abort', onAbort)
      this.watcher?.close()
      this.watcher = undefined
      this.wakeUp?.()
      await this.statusChain
      this.stopped = true
      await this.removeStatus()
      this.options.log('Update listener stopped.')
    }
  }

  /** Disabled (missing or read-only state mount): keep a heartbeat that says why, until `signal`. */
  async runDisabled(signal: AbortSignal, reason: string): Promise<void> {
    this.disabledReason = reason
    await this.writeStatus()
    const heartbeat = setInterval(() => void this.writeStatus(), this.options.heartbeatMs)
    let onAbort: (() => void) | undefined
    try {
      if (!signal.aborted) {
        await new Promise<void>((resolve) => {
          onAbort = () => resolve()
          signal.addEventListener('abort', onAbort, {once: true})
        })
      }
    } finally {
      clearInterval(heartbeat)
      if (onAbort) signal.removeEventListener('abort', onAbort)
      await this.statusChain
      this.stopped = true
      await this.removeStatus()
    }
  }

  /**
   * One round: retry answers not written yet, claim a new request into the queue (also while an
   * update runs), and start the next queued one when nothing runs and the rate limit allows.
   * Returns how long to sleep (undefined: until woken).
   */
  private async step(signal: AbortSignal): Promise<number | undefined> {
    const waits: number[] = []
    const outboxWait = await this.flushOutbox(false)
    if (outboxWait !== undefined) waits.push(outboxWait)
    const claimWait = await this.claimIncoming(signal)
    if (claimWait !== undefined) waits.push(claimWait)
    if (!this.working && this.outbox.length === 0 && this.queue.length > 0 && !signal.aborted) {
      const wait = this.rateLimitWait()
      if (wait > 0) waits.push(wait)
      else {
        const next = this.queue.shift()!
        void this.writeStatus()
        this.startJob(this.handleClaim(next, signal))
      }
    }

    return waits.length > 0 ? Math.min(...waits) : undefined
  }

  /** Runs one job (an update, a rejection, the repair) at a time; the loop is woken when it ends. */
  private startJob(job: Promise<void>): void {
    this.working = job
      .catch((error: unknown) => {
        if (isDirChangedError(error)) this.fail(error)
        else this.warnOnce(`Update listener: ${errorMessage(error)}`)
      })
      .finally(() => {
        this.working = undefined
        this.wake()
      })
  }

  /** Claims the request at the request path, if any, into the queue; past its cap, answers "busy". */
  private async claimIncoming(signal: AbortSignal): Promise<number | undefined> {
    // Only an lstat while idle; the rest only when there is something to handle.
    const stat = await lstatEntry(this.ref, REQUEST_FILE)
    if (!stat) return undefined
    const problem = await this.ref.problem()
    if (problem) throw new DirChangedError(problem)
    if (signal.aborted) return undefined
    if (!stat.isFile()) {
      await this.rejectNonRegular(stat)
      return 0
    }

    const now = this.mono()
    if (this.firstSeen?.ino !== stat.ino) this.firstSeen = {at: now, ino: stat.ino}
    const firstSeenAt = this.firstSeen.at
    const read = this.monoRead(await readUntrustedEntry(this.ref, REQUEST_FILE))
    const graceWait = waitBeforeClaim(read, {firstSeenAt, graceMs: this.options.graceMs, now})
    if (graceWait > 0) return graceWait
    const claim = claimFileName(this.options.pid)
    if (!(await claimByRename(this.ref, REQUEST_FILE, claim))) return 0
    const claimedAt = this.mono()
    const item: Queued = {claim, claimedAt, claimedIso: this.iso(claimedAt)}
    if (!this.working && this.outbox.length === 0 && this.queue.length === 0 && this.rateLimitWait() === 0) {
      // Nothing waits before it: handle it now.
      this.startJob(this.handleClaim(item, signal))
      this.options.onEvent?.({at: claimedAt, claim, type: 'claimed'})
      return 0
    }

    this.options.onEvent?.({at: claimedAt, claim, type: 'claimed'})
    const requestId = requestIdOf(await readUntrustedEntry(this.ref, claim))
    item.requestId = requestId
    const waiting = this.queue.length + (this.working ? 1 : 0)
    if (this.queue.length >= this.options.maxQueue) {
      const message = `busy: ${waiting} requests waiting; try again once they are answered.`
      this.options.log(`Rejected an update request${describeId(requestId)}: ${message}`)
      await this.answer(claim, {
        code: 'UPDATE_BUSY',
        error_code: 'busy',
        finished_at: this.iso(),
        message,
        request_id: requestId,
        started_at: this.iso(claimedAt),
        status: 'error',
      }, {charge: false})
      return 0
    }

    this.queue.push(item)
    if (this.working) this.options.log(`Queued an update request${describeId(requestId)} (${this.queue.length} waiting).`)
    void this.writeStatus()
    return 0
  }

  /** The file's mtime (wall clock) on the monotonic clock, for the grace window. */
  private monoRead(read: UntrustedRead): UntrustedRead {
    if (read.kind !== 'ok') return read
    return {...read, mtimeMs: this.mono() - (this.options.clock() - read.mtimeMs)}
  }

  /** How long until the next command may be handled (0: now); emits 'waiting' when > 0. */
  private rateLimitWait(): number {
    const now = this.mono()
    const allowedAt = nextStartAt(this.lastAnsweredAt, this.options.rateLimitMs)
    if (now >= allowedAt) return 0
    this.options.onEvent?.({type: 'waiting', until: allowedAt})
    return allowedAt - now
  }

  /**
   * A directory, symlink, FIFO, socket or device at the request path is never claimed or read:
   * it is renamed aside (atomic, so exactly one listener answers it), then unlinked when it is
   * not a directory, removed when it is an empty directory, and otherwise left under its
   * quarantine name for the sandbox to clean up. Never walked into, never followed.
   */
  private async rejectNonRegular(stat: Stats): Promise<void> {
    const aside = quarantineName()
    if (!(await claimByRename(this.ref, REQUEST_FILE, aside))) return
    const claimedAt = this.mono()
    this.options.onEvent?.({at: claimedAt, claim: aside, type: 'claimed'})
    const now = await lstatEntry(this.ref, aside).catch(() => undefined)
    if (now?.isFile()) {
      // A regular file was renamed into place between our lstat and our rename: a request after all.
      const claim = claimFileName(this.options.pid)
      if (await claimByRename(this.ref, aside, claim)) {
        this.queue.push({claim, claimedAt, claimedIso: this.iso(claimedAt), requestId: requestIdOf(await readUntrustedEntry(this.ref, claim))})
      }

      return
    }

    const kind = fileKind(now ?? stat)
    const disposal = await disposeEntry(this.ref, aside).catch((error: unknown) => {
      this.options.log(`Could not remove ${aside}: ${errorMessage(error)}`)
      return 'quarantined' as const
    })
    const decision = decideClaim({fileKind: kind, kind: 'not-regular'}, {claimedAt, graceMs: 0, now: claimedAt})
    if (decision.kind !== 'reject') return
    const left = disposal === 'quarantined' ? ` It was left as ${aside} for the sandbox to remove.` : ''
    this.options.log(`Rejected an update request: ${decision.message}${left}`)
    await this.answer(undefined, {
      changed: false,
      error_code: decision.code,
      finished_at: this.iso(),
      message: decision.message,
      started_at: this.iso(claimedAt),
      status: 'error',
    })
  }

  private async handleClaim(item: Queued, signal: AbortSignal): Promise<void> {
    const {claim, claimedAt} = item
    for (;;) {
      const read = this.monoRead(await readUntrustedEntry(this.ref, claim))
      const decision = decideClaim(read, {claimedAt, final: signal.aborted, graceMs: this.options.graceMs, now: this.mono()})
      switch (decision.kind) {
        case 'drop': {
          this.options.log('A claimed update request disappeared before it was read; nothing to answer.')
          return
        }

        case 'retry': {
          await delay(decision.afterMs, signal)
          continue
        }

        case 'reject': {
          this.options.log(`Rejected an update request${describeId(decision.requestId)}: ${decision.message}`)
          await this.answer(claim, {
            changed: false,
            error_code: decision.code,
            finished_at: this.iso(),
            message: decision.message,
            request_id: decision.requestId,
            started_at: item.claimedIso,
            status: 'error',
          })
          return
        }

        case 'run': {
          if (signal.aborted) {
            // Claimed just as occ began to stop: answer rather than start an update now.
            this.options.log(`Not starting the update request${describeId(decision.request.requestId)}: occ is stopping.`)
            await this.answerNotStarted(item, decision.request.requestId)
            return
          }

          await this.runUpdate(claim, decision.request, signal)
          return
        }
      }
    }
  }

  private async runUpdate(claim: string, request: UpdateCommand, signal: AbortSignal): Promise<void> {
    const startedAt = this.mono()
    this.busy = {requestId: request.requestId, startedAt}
    const target = request.commit ? `commit ${request.commit}` : request.branch ? `branch ${request.branch}` : 'the default branch'
    this.options.log(`Updating opencode to ${target}${describeId(request.requestId)}…`)
    void this.writeStatus()

    const updateRequest = {...(request.branch ? {branch: request.branch} : {}), ...(request.commit ? {commit: request.commit} : {})}
    const update = Promise.resolve()
      .then(() =>
        this.options.updateOpencode(updateRequest, {
          onStep: (step) => {
            if (!this.busy || this.stopped) return
            this.busy.step = step
            this.busy.stepStartedAt = this.mono()
            void this.writeStatus()
          },
          signal,
        }),
      )
      .then(
        (outcome): {outcome: UpdateOutcome} => ({outcome}),
        (error: unknown): {error: unknown} => ({error}),
      )
    const settled = await untilShutdownDeadline(update, signal, this.options.shutdownGraceMs)

    const base = {request_id: request.requestId, started_at: this.iso(startedAt)}
    let result: UpdateResult
    if (settled === 'deadline') {
      const step = this.busy?.step ? ` (step ${this.busy.step})` : ''
      result = {
        ...base,
        error_code: 'interrupted',
        code: 'UPDATE_INTERRUPTED',
        finished_at: this.iso(),
        message: `occ stopped while the update was still running${step}; it did not finish in ${Math.round(this.options.shutdownGraceMs / 1000)} s. occ start (or the service) checks and repairs it; then retry.`,
        status: 'error',
      }
    } else if ('error' in settled) {
      const code = (settled.error as {code?: unknown}).code
      result = {
        ...base,
        error_code: signal.aborted ? 'interrupted' : 'update_failed',
        finished_at: this.iso(),
        message: resultMessage(errorMessage(settled.error)),
        status: 'error',
        ...(typeof code === 'string' && OCC_CODE_PATTERN.test(code) ? {code} : {}),
      }
    } else {
      result = outcomeToResult(settled.outcome, {interrupted: signal.aborted, requestId: request.requestId})
    }

    this.busy = undefined
    this.options.log(`Update${describeId(request.requestId)} finished: ${result.status}: ${cleanLine(result.message, 1000)}`)
    await this.answer(claim, result)
  }

  /**
   * Writes the result (temp + rename), then drops the claim (unlink; a directory swapped in is
   * removed only if empty, else set aside), then refreshes listener.json. An answer that cannot
   * be written (ENOSPC, EIO) is kept — in memory, and in the host's pendingDir — with its claim,
   * retried with backoff, and written as soon as it can be; listener.json says why meanwhile.
   * Answers go out in order. An answer starts the rate-limit interval unless charge is false.
   */
  private async answer(claim: string | undefined, result: UpdateResult, options: {charge?: boolean} = {}): Promise<void> {
    const clean = updateResultSchema.parse(dropUndefined({...result, message: resultMessage(result.message)}))
    const pending: Pending = {backoffMs: DEFAULTS.pendingRetryMs, charge: options.charge ?? true, claim, reason: '', result: clean, retryAt: this.mono(), since: this.iso()}
    this.outbox.push(pending)
    await this.flushOutbox(false)
  }

  /** Writes what is in the outbox, in order, one writer at a time. Returns how long until the next retry (undefined: empty). */
  private flushOutbox(final: boolean): Promise<number | undefined> {
    const run = this.flushChain.then(() => this.flushOnce(final))
    this.flushChain = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  private async flushOnce(final: boolean): Promise<number | undefined> {
    while (this.outbox.length > 0) {
      const next = this.outbox[0]
      const wait = next.retryAt - this.mono()
      if (wait > 0 && !final) return wait
      try {
        await this.options.writeFile(this.ref, RESULT_FILE, `${JSON.stringify(next.result, null, 2)}\n`, {clearDirectory: true})
      } catch (error) {
        if (isDirChangedError(error)) throw error
        const reason = cleanLine(errorMessage(error), 400)
        const first = next.reason === ''
        next.reason = reason
        next.retryAt = this.mono() + next.backoffMs
        next.backoffMs = Math.min(next.backoffMs * 2, DEFAULTS.pendingRetryMaxMs)
        if (first) {
          this.options.log(`Could not write the answer${describeId(next.result.request_id)} (${reason}); keeping it and retrying.`)
          this.options.onEvent?.({reason, requestId: next.result.request_id, type: 'pending'})
          await this.persistPending(next)
          void this.writeStatus()
        }

        if (final) return undefined
        return next.retryAt - this.mono()
      }

      this.outbox.shift()
      if (next.charge) this.lastAnsweredAt = this.mono()
      if (next.reason) this.options.log(`Wrote the answer${describeId(next.result.request_id)} that had to wait (${next.reason}).`)
      if (next.claim !== undefined) {
        await this.forgetPending(next.claim)
        await disposeEntry(this.ref, next.claim).catch((error: unknown) => {
          if (isDirChangedError(error)) throw error
          this.options.log(`Could not remove ${next.claim}: ${errorMessage(error)}`)
        })
      }

      this.options.onEvent?.({result: next.result, type: 'result'})
      void this.writeStatus()
    }

    return undefined
  }

  /** Keeps an unwritten answer on the host (outside the sandbox's dir), keyed by its claim. */
  private async persistPending(pending: Pending): Promise<void> {
    if (!this.options.pendingDir || pending.claim === undefined) return
    try {
      await fs.mkdir(this.options.pendingDir, {mode: 0o700, recursive: true})
      const file = path.join(this.options.pendingDir, `${pending.claim}.result.json`)
      await fs.writeFile(`${file}.tmp`, JSON.stringify(pending.result))
      await fs.rename(`${file}.tmp`, file)
    } catch (error) {
      this.warnOnce(`Could not keep the pending answer in ${this.options.pendingDir}: ${errorMessage(error)}`)
    }
  }

  private async forgetPending(claim: string): Promise<void> {
    if (!this.options.pendingDir) return
    await fs.rm(path.join(this.options.pendingDir, `${claim}.result.json`), {force: true}).catch(() => undefined)
  }

  /** A pending answer an earlier listener kept for this claim, when there is a valid one. */
  private async pendingFor(claim: string): Promise<UpdateResult | undefined> {
    if (!this.options.pendingDir) return undefined
    try {
      const text = await fs.readFile(path.join(this.options.pendingDir, `${claim}.result.json`))
      if (text.length > MAX_REQUEST_BYTES) return undefined
      const parsed = parseUntrustedJson(text)
      const result = parsed.ok ? updateResultSchema.safeParse(parsed.value) : undefined
      return result?.success ? result.data : undefined
    } catch {
      return undefined
    }
  }

  /** Queued requests that never started when occ stops: answered, so nobody waits for them. */
  private async answerQueueOnStop(): Promise<void> {
    const left = this.queue.splice(0)
    for (const item of left) {
      this.options.log(`Not starting the update request${describeId(item.requestId)}: occ is stopping.`)
      await this.answerNotStarted(item, item.requestId).catch((error: unknown) => this.warnOnce(errorMessage(error)))
    }
  }

  private async answerNotStarted(item: Queued, requestId: string | undefined): Promise<void> {
    await this.answer(item.claim, {
      changed: false,
      code: 'UPDATE_INTERRUPTED',
      error_code: 'interrupted',
      finished_at: this.iso(),
      message: 'occ was stopping, so the update was not started. Retry once it runs again.',
      request_id: requestId,
      started_at: item.claimedIso,
      status: 'error',
    })
  }

  /** At start: repair a release an interrupted update left unverified, before any request. */
  private async repair(signal: AbortSignal): Promise<void> {
    if (!this.options.repairRelease) return
    this.busy = {startedAt: this.mono(), step: 'repair', stepStartedAt: this.mono()}
    void this.writeStatus()
    try {
      const report = await this.options.repairRelease({onProgress: (line) => this.options.log(`Repair: ${cleanLine(line, 500)}`), signal})
      if (report.kind !== 'none') this.options.log(`Update listener: ${cleanLine(report.message, 1000)}`)
      this.options.onEvent?.({repair: report, type: 'repaired'})
    } finally {
      this.busy = undefined
      void this.writeStatus()
    }
  }

  /** opencode's health for listener.json; an unhealthy opencode is reported, never a reason to stop. */
  private async checkHealth(): Promise<void> {
    if (!this.options.probeHealth || this.stopped) return
    let probe: HealthProbe
    try {
      probe = await this.options.probeHealth(2000)
    } catch (error) {
      probe = {error: errorMessage(error), kind: 'failed'}
    }

    this.health = {checked_at: this.iso(), ...describeHealth(probe)}
  }

  /**
   * Claims left by a listener that is gone (killed, crashed, or us before a restart). The newest
   * maxRecovered are answered at once — an answer an earlier listener could not write, else
   * "interrupted" — without charging the rate limit; older ones (a planted flood) are set aside
   * unanswered in one pass. So leftovers never delay a real request by more than a moment.
   */
  private async recoverDeadClaims(): Promise<void> {
    const entries = await fs.readdir(await this.ref.self())
    const claims: Array<{name: string; ctimeMs: number}> = []
    for (const name of entries) {
      const parsed = parseClaimFileName(name)
      if (!parsed || !isDeadClaim(parsed.pid, this.options.pid, this.options.isAlive)) continue
      const stat = await lstatEntry(this.ref, name)
      if (stat) claims.push({ctimeMs: stat.ctimeMs, name})
    }

    claims.sort((a, b) => a.ctimeMs - b.ctimeMs)
    const keep = claims.slice(-this.options.maxRecovered)
    const dropped = claims.slice(0, Math.max(0, claims.length - this.options.maxRecovered))
    for (const claim of dropped) {
      const pending = await this.pendingFor(claim.name)
      if (pending) keep.unshift(claim) // an answer that is owed is never dropped
      else await disposeEntry(this.ref, claim.name).catch(() => {})
    }

    if (dropped.length > 0) this.options.log(`Set aside ${dropped.length} older leftover claims without answering them (only the newest ${this.options.maxRecovered} are answered).`)
    for (const claim of keep) await this.recoverClaim(claim)
  }

  /**
   * A dead claim gets the answer an earlier listener could not write, else "interrupted"
   * (unless the result file already answers it), so the web UI does not wait forever. One that
   * is not a readable request (a directory, a link) is only disposed of, never walked into.
   */
  private async recoverClaim({ctimeMs, name}: {name: string; ctimeMs: number}): Promise<void> {
    const pending = await this.pendingFor(name)
    if (pending) {
      this.options.log(`Writing the answer${describeId(pending.request_id)} a previous listener could not write.`)
      await this.answer(name, pending, {charge: false})
      this.options.onEvent?.({answered: false, claim: name, type: 'recovered'})
      return
    }

    const read = await readUntrustedEntry(this.ref, name)
    if (read.kind !== 'ok') {
      // Not a request we could have started (and it was answered when claimed): just clear it.
      await disposeEntry(this.ref, name).catch(() => {})
      return
    }

    const requestId = requestIdOf(read)
    if (alreadyAnswered(await this.currentResult(), {claimedAtMs: ctimeMs, requestId})) {
      await disposeEntry(this.ref, name).catch(() => {})
      this.options.onEvent?.({answered: true, claim: name, type: 'recovered'})
      return
    }

    this.options.log(`Answering an update request${describeId(requestId)} that a previous listener left unfinished.`)
    await this.answer(name, {
      code: 'UPDATE_INTERRUPTED',
      error_code: 'interrupted',
      finished_at: this.iso(),
      message: 'The update was interrupted: occ stopped (killed or crashed) before it finished. occ checks and repairs what it left; retry the update.',
      request_id: requestId,
      started_at: isoNow(ctimeMs),
      status: 'error',
    }, {charge: false})
    this.options.onEvent?.({answered: false, claim: name, type: 'recovered'})
  }

  private async currentResult(): Promise<UpdateResult | undefined> {
    const read = await readUntrustedEntry(this.ref, RESULT_FILE)
    if (read.kind !== 'ok') return undefined
    const parsed = parseUntrustedJson(read.data)
    if (!parsed.ok) return undefined
    const result = updateResultSchema.safeParse(parsed.value)
    return result.success ? result.data : undefined
  }

  statusSnapshot(): ListenerStatusFile {
    const status: ListenerStatusFile = {
      heartbeat_at: this.iso(),
      heartbeat_interval_ms: this.options.heartbeatMs,
      pid: this.options.pid,
      started_at: isoNow(this.startedAt),
      state: this.disabledReason ? 'disabled' : this.busy ? 'updating' : 'idle',
      version: this.options.version,
    }
    if (this.disabledReason) status.disabled_reason = this.disabledReason
    if (this.busy) {
      if (this.busy.requestId !== undefined) status.request_id = this.busy.requestId
      status.update_started_at = this.iso(this.busy.startedAt)
      if (this.busy.step) status.step = this.busy.step
      if (this.busy.stepStartedAt !== undefined) status.step_started_at = this.iso(this.busy.stepStartedAt)
    } else if (!this.disabledReason) {
      status.next_command_at = this.iso(Math.max(this.mono(), nextStartAt(this.lastAnsweredAt, this.options.rateLimitMs)))
    }

    if (this.queue.length > 0) {
      status.queue = this.queue.slice(0, this.options.maxQueue).map((item) => ({
        claimed_at: item.claimedIso,
        ...(item.requestId === undefined ? {} : {request_id: item.requestId}),
      }))
    }

    if (this.health) status.opencode_health = this.health
    const pending = this.outbox.find((item) => item.reason !== '')
    if (pending) {
      status.pending_result = {
        next_retry_at: this.iso(pending.retryAt),
        reason: pending.reason,
        since: pending.since,
        status: pending.result.status,
        ...(pending.result.request_id === undefined ? {} : {request_id: pending.result.request_id}),
      }
    }

    return status
  }

  /**
   * listener.json, serialised so two writes never race; failures are reported once, not thrown.
   * Each write first checks that the commands dir is still the one we opened: when the sandbox
   * replaced or removed it, the web UI writes somewhere we do not look, so the listener stops
   * (run() throws) and the service manager restarts occ, which prepares the dir again.
   */
  private writeStatus(): Promise<void> {
    this.statusChain = this.statusChain.then(async () => {
      if (this.stopped) return
      try {
        const problem = await this.ref.problem()
        if (problem) {
          if (this.disabledReason) this.warnOnce(`Not writing ${LISTENER_FILE}: ${problem}`)
          else this.fail(new DirChangedError(problem))
          return
        }

        const text = `${JSON.stringify(this.statusSnapshot(), null, 2)}\n`
        // On a full disk (the sandbox can fill its own mount) listener.json is overwritten in
        // place, so it can still say why an answer is pending.
        await writeFileNoFollow(this.ref, LISTENER_FILE, text, {clearDirectory: true, fsync: false, inPlaceWhenFull: true})
        this.statusWritten = true
      } catch (error) {
        if (isDirChangedError(error) && !this.disabledReason) this.fail(error)
        else this.warnOnce(`Could not write ${LISTENER_FILE}: ${errorMessage(error)}`)
      }
    })
    return this.statusChain
  }

  /** On exit listener.json goes away (absent = nobody answers), if it is still ours. */
  private async removeStatus(): Promise<void> {
    if (!this.statusWritten) return
    const read = await readUntrustedEntry(this.ref, LISTENER_FILE).catch(() => undefined)
    if (read?.kind !== 'ok') return
    const parsed = parseUntrustedJson(read.data)
    if (parsed.ok && (parsed.value as {pid?: unknown}).pid === this.options.pid) {
      await disposeEntry(this.ref, LISTENER_FILE).catch(() => {})
    }
  }

  private startWatching(watchPath: string, signal: AbortSignal): void {
    try {
      // On Linux watchPath is /proc/self/fd/<fd>: inotify follows it to the opened dir itself.
      this.watcher = watch(watchPath, {persistent: false}, (_event, filename) => {
        // Our own writes (listener.json, results) raise events too: only the request matters.
        if (filename === null || filename === REQUEST_FILE) this.wake()
      })
      this.watcher.on('error', (error) => {
        this.warnOnce(`Watching ${this.dir} failed (${error.message}); relying on the ${this.options.pollMs} ms poll.`)
        this.watcher?.close()
        this.watcher = undefined
      })
    } catch (error) {
      if (!signal.aborted) this.warnOnce(`Cannot watch ${this.dir} (${errorMessage(error)}); relying on the ${this.options.pollMs} ms poll.`)
      this.watcher = undefined
    }
  }

  /** Records the first fatal error and wakes the loop, which throws it. */
  private fail(error: Error): void {
    if (this.fatal) return
    this.fatal = new DirChangedError(`Update listener stopped: ${error.message}. Restart occ start --no-daemon (the service does) to prepare the commands dir again.`)
    this.wake()
  }

  private throwIfFatal(): void {
    if (this.fatal) throw this.fatal
  }

  private wake(): void {
    this.woken = true
    this.wakeUp?.()
  }

  /** Sleeps until woken (watch event, poll, abort) or `ms` passes (undefined: until woken). */
  private async sleep(ms: number | undefined): Promise<void> {
    if (this.woken) {
      this.woken = false
      return
    }

    await new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(done, ms)
      function done(): void {
        clearTimeout(timer)
        resolve()
      }

      this.wakeUp = done
    })
    this.wakeUp = undefined
    this.woken = false
  }

  private warnOnce(message: string): void {
    if (message === this.lastWarning) return
    this.lastWarning = message
    this.options.log(message)
  }
}

/** Resolves with the update's settlement, or 'deadline' when it outlives shutdown by graceMs. */
async function untilShutdownDeadline<T>(work: Promise<T>, signal: AbortSignal, graceMs: number): Promise<'deadline' | T> {
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  const deadline = new Promise<'deadline'>((resolve) => {
    const arm = (): void => {
      timer = setTimeout(() => resolve('deadline'), graceMs)
    }

    if (signal.aborted) arm()
    else {
      onAbort = arm
      signal.addEventListener('abort', arm, {once: true})
    }
  })
  try {
    return await Promise.race([work, deadline])
  } finally {
    clearTimeout(timer)
    if (onAbort) signal.removeEventListener('abort', onAbort)
  }
}

/** Waits ms, or less when the signal aborts; never rejects. */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve()
      return
    }

    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }

    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, {once: true})
  })
}

/** opencode's health as listener.json says it. */
export function describeHealth(probe: HealthProbe): {state: 'healthy' | 'unhealthy' | 'unknown'; detail: string} {
  switch (probe.kind) {
    case 'http': {
      const body = probe.body as {healthy?: unknown} | undefined
      if (probe.status >= 200 && probe.status < 300 && body?.healthy === true) return {detail: `HTTP ${probe.status}`, state: 'healthy'}
      return {detail: `HTTP ${probe.status}${body?.healthy === false ? ' (reports unhealthy)' : ''}`, state: 'unhealthy'}
    }

    case 'refused': {
      return {detail: 'connection refused', state: 'unhealthy'}
    }

    case 'timeout': {
      return {detail: 'no answer (timeout)', state: 'unhealthy'}
    }

    case 'failed': {
      return {detail: cleanLine(`check failed: ${probe.error}`, 200), state: 'unknown'}
    }
  }
}

function describeId(requestId: string | undefined): string {
  return requestId === undefined ? '' : ` (request_id ${JSON.stringify(requestId)})`
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}
