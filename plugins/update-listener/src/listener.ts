/**
 * The host side of the web UI's update button. It watches the commands dir (fs.watch, with a
 * periodic poll as a safety net because events are only hints), claims a request by renaming it,
 * runs the update plan, and answers with a result file. listener.json is its heartbeat.
 * Maildir's discipline: the writer renames into place, the reader claims by rename, so a request
 * is never lost and never handled twice.
 */
import {type FSWatcher, type Stats, watch} from 'node:fs'
import fs from 'node:fs/promises'

import {
  claimByRename,
  claimFileName,
  CONTAINER_COMMANDS_DIR,
  DirChangedError,
  disposeEntry,
  errorMessage,
  fileKind,
  type ForegroundContext,
  isPidAlive,
  LISTENER_FILE,
  type ListenerStatusFile,
  lstatEntry,
  OCC_CODE_PATTERN,
  outcomeToResult,
  resultMessage,
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
  clock?: () => number
  /** Observes what the listener does (tests, the benchmark). */
  onEvent?: (event: ListenerEvent) => void
}

export type ListenerEvent =
  | {type: 'claimed'; claim: string; at: number}
  | {type: 'recovered'; claim: string; answered: boolean}
  | {type: 'result'; result: UpdateResult}
  | {type: 'waiting'; until: number}

export const DEFAULTS = {
  graceMs: 2000,
  heartbeatMs: 5000,
  pollMs: 2000,
  rateLimitMs: 5000,
  shutdownGraceMs: 60_000,
} as const

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
  private readonly options: Required<Omit<ListenerOptions, 'onEvent'>> & Pick<ListenerOptions, 'onEvent'>
  private readonly startedAt: number
  /** When the last result was written: the rate limit counts from there. */
  private lastAnsweredAt: number | undefined
  private busy: Busy | undefined
  private disabledReason: string | undefined
  /** Dead claims found at start, answered one per interval before new requests. */
  private recovery: Array<{name: string; ctimeMs: number}> = []
  /** Set when the listener cannot go on (the commands dir was replaced): run() throws it. */
  private fatal: Error | undefined
  private stopped = false
  private statusChain: Promise<void> = Promise.resolve()
  private statusWritten = false
  private wakeUp: (() => void) | undefined
  private woken = false
  private watcher: FSWatcher | undefined
  private lastWarning = ''
  /** When the file now at the request path (by inode) was first seen: the grace window's start. */
  private firstSeen: {ino: number; at: number} | undefined

  constructor(options: ListenerOptions) {
    this.options = {
      clock: Date.now,
      graceMs: DEFAULTS.graceMs,
      heartbeatMs: DEFAULTS.heartbeatMs,
      isAlive: isPidAlive,
      pid: process.pid,
      pollMs: DEFAULTS.pollMs,
      rateLimitMs: DEFAULTS.rateLimitMs,
      shutdownGraceMs: DEFAULTS.shutdownGraceMs,
      watch: true,
      ...options,
    }
    if (this.options.heartbeatMs > 10_000) throw new Error('heartbeatMs must be at most 10 s')
    this.dir = options.dir.dir
    this.ref = options.dir.handle
    this.startedAt = this.options.clock()
  }

  /**
   * Answers requests until `signal` aborts; then finishes (or safely stops) the update in
   * progress. Rejects when it cannot go on (the commands dir was replaced or removed, or cannot
   * be listed at start), so that occ start --no-daemon fails and the service manager restarts it.
   */
  async run(signal: AbortSignal): Promise<void> {
    const watchPath = await this.ref.self()
    this.recovery = await this.findDeadClaims()
    await this.writeStatus()
    this.throwIfFatal()
    this.options.log(`Listening for update requests in ${this.dir} (in the sandbox: ${CONTAINER_COMMANDS_DIR})`)
    const heartbeat = setInterval(() => void this.writeStatus(), this.options.heartbeatMs)
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

  /** One round: answer a dead claim or the waiting request if the rate limit allows. Returns how long to sleep. */
  private async step(signal: AbortSignal): Promise<number | undefined> {
    if (this.recovery.length > 0) {
      const wait = this.rateLimitWait()
      if (wait > 0) return wait
      await this.recoverClaim(this.recovery.shift()!)
      return 0
    }

    // Only an lstat while idle; the rest only when there is something to handle.
    const stat = await lstatEntry(this.ref, REQUEST_FILE)
    if (!stat) return undefined
    const problem = await this.ref.problem()
    if (problem) throw new DirChangedError(problem)
    const wait = this.rateLimitWait()
    if (wait > 0) return wait
    if (signal.aborted) return undefined
    if (!stat.isFile()) {
      await this.rejectNonRegular(stat, signal)
      return 0
    }

    const now = this.options.clock()
    if (this.firstSeen?.ino !== stat.ino) this.firstSeen = {at: now, ino: stat.ino}
    const firstSeenAt = this.firstSeen.at
    const read = await readUntrustedEntry(this.ref, REQUEST_FILE)
    const graceWait = waitBeforeClaim(read, {firstSeenAt, graceMs: this.options.graceMs, now})
    if (graceWait > 0) return graceWait
    const claim = claimFileName(this.options.pid)
    if (!(await claimByRename(this.ref, REQUEST_FILE, claim))) return 0
    const claimedAt = this.options.clock()
    this.options.onEvent?.({at: claimedAt, claim, type: 'claimed'})
    await this.handleClaim(claim, claimedAt, signal)
    return 0
  }

  /** How long until the next command may be handled (0: now); emits 'waiting' when > 0. */
  private rateLimitWait(): number {
    const now = this.options.clock()
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
  private async rejectNonRegular(stat: Stats, signal: AbortSignal): Promise<void> {
    const aside = quarantineName()
    if (!(await claimByRename(this.ref, REQUEST_FILE, aside))) return
    const claimedAt = this.options.clock()
    this.options.onEvent?.({at: claimedAt, claim: aside, type: 'claimed'})
    const now = await lstatEntry(this.ref, aside).catch(() => undefined)
    if (now?.isFile()) {
      // A regular file was renamed into place between our lstat and our rename: a request after all.
      const claim = claimFileName(this.options.pid)
      if (await claimByRename(this.ref, aside, claim)) await this.handleClaim(claim, claimedAt, signal)
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
      finished_at: isoNow(this.options.clock()),
      message: decision.message,
      started_at: isoNow(claimedAt),
      status: 'error',
    })
  }

  private async handleClaim(claim: string, claimedAt: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      const read = await readUntrustedEntry(this.ref, claim)
      const decision = decideClaim(read, {claimedAt, final: signal.aborted, graceMs: this.options.graceMs, now: this.options.clock()})
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
          const now = isoNow(this.options.clock())
          await this.answer(claim, {
            changed: false,
            error_code: decision.code,
            finished_at: now,
            message: decision.message,
            request_id: decision.requestId,
            started_at: isoNow(claimedAt),
            status: 'error',
          })
          return
        }

        case 'run': {
          if (signal.aborted) {
            // Claimed just as occ began to stop: answer rather than start an update now.
            this.options.log(`Not starting the update request${describeId(decision.request.requestId)}: occ is stopping.`)
            const now = isoNow(this.options.clock())
            await this.answer(claim, {
              changed: false,
              error_code: 'interrupted',
              finished_at: now,
              message: 'occ was stopping, so the update was not started. Retry once it runs again.',
              request_id: decision.request.requestId,
              started_at: isoNow(claimedAt),
              status: 'error',
            })
            return
          }

          await this.runUpdate(claim, decision.request, signal)
          return
        }
      }
    }
  }

  private async runUpdate(claim: string, request: UpdateCommand, signal: AbortSignal): Promise<void> {
    const startedAt = this.options.clock()
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
            this.busy.stepStartedAt = this.options.clock()
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

    const base = {request_id: request.requestId, started_at: isoNow(startedAt)}
    let result: UpdateResult
    if (settled === 'deadline') {
      const step = this.busy?.step ? ` (step ${this.busy.step})` : ''
      result = {
        ...base,
        error_code: 'interrupted',
        finished_at: isoNow(this.options.clock()),
        message: `occ stopped while the update was still running${step}; it did not finish in ${Math.round(this.options.shutdownGraceMs / 1000)} s. Check opencode and retry.`,
        status: 'error',
      }
    } else if ('error' in settled) {
      const code = (settled.error as {code?: unknown}).code
      result = {
        ...base,
        error_code: signal.aborted ? 'interrupted' : 'update_failed',
        finished_at: isoNow(this.options.clock()),
        message: resultMessage(errorMessage(settled.error)),
        status: 'error',
        ...(typeof code === 'string' && OCC_CODE_PATTERN.test(code) ? {code} : {}),
      }
    } else {
      result = outcomeToResult(settled.outcome, {interrupted: signal.aborted, requestId: request.requestId})
    }

    this.busy = undefined
    this.options.log(`Update${describeId(request.requestId)} finished: ${result.status}: ${result.message}`)
    await this.answer(claim, result)
  }

  /**
   * Writes the result (temp + rename), then drops the claim (unlink; a directory swapped in is
   * removed only if empty, else set aside), then refreshes listener.json. Every answer, success
   * or error, starts the rate-limit interval.
   */
  private async answer(claim: string | undefined, result: UpdateResult): Promise<void> {
    const clean = updateResultSchema.parse(dropUndefined(result))
    try {
      await writeFileNoFollow(this.ref, RESULT_FILE, `${JSON.stringify(clean, null, 2)}\n`, {clearDirectory: true})
    } finally {
      this.lastAnsweredAt = this.options.clock()
    }

    if (claim !== undefined) {
      await disposeEntry(this.ref, claim).catch((error: unknown) => {
        if (isDirChangedError(error)) throw error
        this.options.log(`Could not remove ${claim}: ${errorMessage(error)}`)
      })
    }

    this.options.onEvent?.({result: clean, type: 'result'})
    void this.writeStatus()
  }

  /** Claims left by a listener that is gone (killed, crashed, or us before a restart), oldest first. */
  private async findDeadClaims(): Promise<Array<{name: string; ctimeMs: number}>> {
    const entries = await fs.readdir(await this.ref.self())
    const claims: Array<{name: string; ctimeMs: number}> = []
    for (const name of entries) {
      const parsed = parseClaimFileName(name)
      if (!parsed || !isDeadClaim(parsed.pid, this.options.pid, this.options.isAlive)) continue
      const stat = await lstatEntry(this.ref, name)
      if (stat) claims.push({ctimeMs: stat.ctimeMs, name})
    }

    return claims.sort((a, b) => a.ctimeMs - b.ctimeMs)
  }

  /**
   * A dead claim gets an "interrupted" answer (unless the result file already answers it), so
   * the web UI does not wait forever. One that is not a readable request (a directory, a link)
   * is only disposed of, never walked into.
   */
  private async recoverClaim({ctimeMs, name}: {name: string; ctimeMs: number}): Promise<void> {
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
    const now = isoNow(this.options.clock())
    await this.answer(name, {
      error_code: 'interrupted',
      finished_at: now,
      message: 'The update was interrupted: occ stopped (killed or crashed) before it finished. Check opencode and retry.',
      request_id: requestId,
      started_at: isoNow(ctimeMs),
      status: 'error',
    })
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
    const now = this.options.clock()
    const status: ListenerStatusFile = {
      heartbeat_at: isoNow(now),
      heartbeat_interval_ms: this.options.heartbeatMs,
      pid: this.options.pid,
      started_at: isoNow(this.startedAt),
      state: this.disabledReason ? 'disabled' : this.busy ? 'updating' : 'idle',
      version: this.options.version,
    }
    if (this.disabledReason) status.disabled_reason = this.disabledReason
    if (this.busy) {
      if (this.busy.requestId !== undefined) status.request_id = this.busy.requestId
      status.update_started_at = isoNow(this.busy.startedAt)
      if (this.busy.step) status.step = this.busy.step
      if (this.busy.stepStartedAt !== undefined) status.step_started_at = isoNow(this.busy.stepStartedAt)
    } else if (!this.disabledReason) {
      status.next_command_at = isoNow(Math.max(now, nextStartAt(this.lastAnsweredAt, this.options.rateLimitMs)))
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
        await writeFileNoFollow(this.ref, LISTENER_FILE, text, {clearDirectory: true, fsync: false})
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

function describeId(requestId: string | undefined): string {
  return requestId === undefined ? '' : ` (request_id ${JSON.stringify(requestId)})`
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}
