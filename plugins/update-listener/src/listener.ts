/**
 * The host side of the web UI's update button. It watches the commands dir (fs.watch, with a
 * periodic poll as a safety net because events are only hints), claims a request by renaming it,
 * runs the update plan, and answers with a result file. listener.json is its heartbeat.
 * Maildir's discipline: the writer renames into place, the reader claims by rename, so a request
 * is never lost and never handled twice.
 */
import {type FSWatcher, watch} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {
  claimByRename,
  claimFileName,
  commandsDirIntact,
  CONTAINER_COMMANDS_DIR,
  errorMessage,
  type ForegroundContext,
  isPidAlive,
  LISTENER_FILE,
  type ListenerStatusFile,
  parseClaimFileName,
  type PreparedDir,
  readUntrustedFile,
  removeEntry,
  REQUEST_FILE,
  RESULT_FILE,
  type ResultErrorCode,
  type UpdateCommand,
  type UpdateOutcome,
  type UpdateResult,
  updateResultSchema,
  type UpdateStep,
  writeFileNoFollow,
} from 'opencode-cloud'

import {alreadyAnswered, decideClaim, isDeadClaim, isoNow, nextStartAt, parseJson, requestIdOf, waitBeforeClaim} from './decisions.js'

export interface ListenerOptions {
  /** The prepared commands dir (see prepareCommandsDir). */
  dir: PreparedDir
  updateOpencode: ForegroundContext['updateOpencode']
  /** One line to stderr (the service's journal). */
  log: (message: string) => void
  version: string
  /** At most one request started per interval (the seed's 5 s). */
  rateLimitMs?: number
  /** How long a request that is not valid JSON yet is given before it is rejected (the seed's 2 s). */
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
  private readonly options: Required<Omit<ListenerOptions, 'onEvent'>> & Pick<ListenerOptions, 'onEvent'>
  private readonly startedAt: number
  private lastStartedAt: number | undefined
  private busy: Busy | undefined
  private disabledReason: string | undefined
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
    this.startedAt = this.options.clock()
  }

  /** Answers requests until `signal` aborts; then finishes (or safely stops) the update in progress. */
  async run(signal: AbortSignal): Promise<void> {
    await this.recoverClaims()
    await this.writeStatus()
    this.options.log(`Listening for update requests in ${this.dir} (in the sandbox: ${CONTAINER_COMMANDS_DIR})`)
    const heartbeat = setInterval(() => void this.writeStatus(), this.options.heartbeatMs)
    const poll = setInterval(() => {
      if (this.options.watch && !this.watcher) this.startWatching(signal)
      this.wake()
    }, this.options.pollMs)
    const onAbort = (): void => this.wake()
    signal.addEventListener('abort', onAbort, {once: true})
    if (this.options.watch) this.startWatching(signal)
    try {
      while (!signal.aborted) {
        let waitMs: number | undefined
        try {
          waitMs = await this.step(signal)
        } catch (error) {
          // Our own I/O failed (permissions, disk full): say so, keep going on the poll.
          this.warnOnce(`Update listener: ${errorMessage(error)}`)
          waitMs = this.options.pollMs
        }

        if (!signal.aborted) await this.sleep(waitMs)
      }
    } finally {
      clearInterval(heartbeat)
      clearInterval(poll)
      signal.removeEventListener('abort', onAbort)
      this.watcher?.close()
      this.watcher = undefined
      await this.statusChain
      await this.removeStatus()
      this.options.log('Update listener stopped.')
    }
  }

  /** Disabled (missing or read-only state mount): keep a heartbeat that says why, until `signal`. */
  async runDisabled(signal: AbortSignal, reason: string): Promise<void> {
    this.disabledReason = reason
    await this.writeStatus()
    const heartbeat = setInterval(() => void this.writeStatus(), this.options.heartbeatMs)
    try {
      if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), {once: true}))
    } finally {
      clearInterval(heartbeat)
      await this.statusChain
      await this.removeStatus()
    }
  }

  /** One round: handle the waiting request if the rate limit allows. Returns how long to sleep. */
  private async step(signal: AbortSignal): Promise<number | undefined> {
    const requestPath = path.join(this.dir, REQUEST_FILE)
    let stat
    try {
      stat = await fs.lstat(requestPath)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }

    // Only when there is something to touch: an idle poll stays one lstat.
    if (!(await commandsDirIntact(this.options.dir))) {
      this.warnOnce(`${this.dir} is no longer the directory it was (replaced or removed); not touching it.`)
      return this.options.pollMs
    }

    const now = this.options.clock()
    const allowedAt = nextStartAt(this.lastStartedAt, this.options.rateLimitMs)
    if (now < allowedAt) {
      this.options.onEvent?.({type: 'waiting', until: allowedAt})
      return allowedAt - now
    }

    if (signal.aborted) return undefined
    if (this.firstSeen?.ino !== stat.ino) this.firstSeen = {at: now, ino: stat.ino}
    const wait = waitBeforeClaim(await readUntrustedFile(requestPath), {firstSeenAt: this.firstSeen.at, graceMs: this.options.graceMs, now})
    if (wait > 0) return wait
    const claim = claimFileName(this.options.pid)
    if (!(await claimByRename(this.dir, REQUEST_FILE, claim))) return 0
    const claimedAt = this.options.clock()
    this.options.onEvent?.({at: claimedAt, claim, type: 'claimed'})
    await this.handleClaim(claim, claimedAt, signal)
    return 0
  }

  private async handleClaim(claim: string, claimedAt: number, signal: AbortSignal): Promise<void> {
    const file = path.join(this.dir, claim)
    for (;;) {
      const read = await readUntrustedFile(file)
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
    this.lastStartedAt = startedAt
    this.busy = {requestId: request.requestId, startedAt}
    const target = request.commit ? `commit ${request.commit}` : request.branch ? `branch ${request.branch}` : 'the default branch'
    this.options.log(`Updating opencode to ${target}${describeId(request.requestId)}…`)
    void this.writeStatus()

    const updateRequest = {...(request.branch ? {branch: request.branch} : {}), ...(request.commit ? {commit: request.commit} : {})}
    const update = Promise.resolve()
      .then(() =>
        this.options.updateOpencode(updateRequest, {
          onStep: (step) => {
            if (!this.busy) return
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
      const code: ResultErrorCode = signal.aborted ? 'interrupted' : 'update_failed'
      result = {...base, error_code: code, finished_at: isoNow(this.options.clock()), message: errorMessage(settled.error), status: 'error'}
    } else {
      const {outcome} = settled
      result = {
        ...base,
        changed: outcome.changed,
        finished_at: isoNow(this.options.clock()),
        message: outcome.message,
        status: outcome.status,
        ...(outcome.fromCommit ? {from_commit: outcome.fromCommit} : {}),
        ...(outcome.toCommit ? {to_commit: outcome.toCommit} : {}),
        ...(outcome.status === 'error' ? {error_code: signal.aborted ? ('interrupted' as const) : ('update_failed' as const)} : {}),
      }
    }

    this.busy = undefined
    this.options.log(`Update${describeId(request.requestId)} finished: ${result.status}: ${result.message}`)
    await this.answer(claim, result)
  }

  /** Writes the result (temp + rename), then drops the claim, then refreshes listener.json. */
  private async answer(claim: string, result: UpdateResult): Promise<void> {
    const clean = updateResultSchema.parse(dropUndefined(result))
    await writeFileNoFollow(this.dir, RESULT_FILE, `${JSON.stringify(clean, null, 2)}\n`)
    await removeEntry(this.dir, claim).catch((error: unknown) => {
      this.options.log(`Could not remove ${claim}: ${errorMessage(error)}`)
    })
    this.options.onEvent?.({result: clean, type: 'result'})
    void this.writeStatus()
  }

  /**
   * At start: claims left by a listener that was killed get an "interrupted" answer (unless the
   * result file already answers them), so the web UI does not wait forever.
   */
  private async recoverClaims(): Promise<void> {
    const entries = await fs.readdir(this.dir)
    const claims: Array<{name: string; ctimeMs: number}> = []
    for (const name of entries) {
      const parsed = parseClaimFileName(name)
      if (!parsed || !isDeadClaim(parsed.pid, this.options.pid, this.options.isAlive)) continue
      try {
        claims.push({ctimeMs: (await fs.lstat(path.join(this.dir, name))).ctimeMs, name})
      } catch {
        // Gone meanwhile.
      }
    }

    claims.sort((a, b) => a.ctimeMs - b.ctimeMs)
    for (const {ctimeMs, name} of claims) {
      const read = await readUntrustedFile(path.join(this.dir, name))
      if (read.kind !== 'ok') {
        // Not a request we could have started (and it was answered when claimed): just clear it.
        await removeEntry(this.dir, name).catch(() => {})
        continue
      }

      const requestId = requestIdOf(read)
      if (alreadyAnswered(await this.currentResult(), {claimedAtMs: ctimeMs, requestId})) {
        await removeEntry(this.dir, name).catch(() => {})
        this.options.onEvent?.({answered: true, claim: name, type: 'recovered'})
        continue
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
  }

  private async currentResult(): Promise<UpdateResult | undefined> {
    const read = await readUntrustedFile(path.join(this.dir, RESULT_FILE))
    if (read.kind !== 'ok') return undefined
    const parsed = parseJson(read.data)
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
      status.next_command_at = isoNow(Math.max(now, nextStartAt(this.lastStartedAt, this.options.rateLimitMs)))
    }

    return status
  }

  /** listener.json, serialised so two writes never race; failures are reported once, not thrown. */
  private writeStatus(): Promise<void> {
    this.statusChain = this.statusChain.then(async () => {
      try {
        if (!(await commandsDirIntact(this.options.dir))) return
        await writeFileNoFollow(this.dir, LISTENER_FILE, `${JSON.stringify(this.statusSnapshot(), null, 2)}\n`, {fsync: false})
        this.statusWritten = true
      } catch (error) {
        this.warnOnce(`Could not write ${LISTENER_FILE}: ${errorMessage(error)}`)
      }
    })
    return this.statusChain
  }

  /** On exit listener.json goes away (absent = nobody answers), if it is still ours. */
  private async removeStatus(): Promise<void> {
    if (!this.statusWritten || !(await commandsDirIntact(this.options.dir))) return
    const read = await readUntrustedFile(path.join(this.dir, LISTENER_FILE)).catch(() => undefined)
    if (read?.kind !== 'ok') return
    const parsed = parseJson(read.data)
    if (parsed.ok && (parsed.value as {pid?: unknown}).pid === this.options.pid) {
      await removeEntry(this.dir, LISTENER_FILE).catch(() => {})
    }
  }

  private startWatching(signal: AbortSignal): void {
    try {
      this.watcher = watch(this.dir, {persistent: false}, (_event, filename) => {
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

function delay(ms: number, signal: AbortSignal): Promise<void> {
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
