/**
 * The web UI's side of the update button: hand a request to the host's update listener through
 * the command file, follow its progress in listener.json, and resolve with its answer. It rejects
 * only when no answer can come. The contract: docs/update-flow.md in the opencode-cloud repository.
 */
import {randomUUID} from 'node:crypto'
import {type FSWatcher, watch} from 'node:fs'
import fs from 'node:fs/promises'

import {UpdateClientError} from './errors.js'
import {
  DEFAULT_COMMANDS_DIR,
  LISTENER_FILE,
  placeRequest,
  readListenerFile,
  readResultFile,
  REQUEST_FILE,
  requestWaiting,
  RESULT_FILE,
  STALE_AFTER_INTERVALS,
  validateCommand,
  withdrawRequest,
  writeTempFile,
} from './files.js'
import type {ListenerStatus, UpdateCommand, UpdateResult, UpdateStep} from './types.js'

export interface UpdateProgress {
  /** The listener's state: idle (our request waits for the rate limit or its turn), updating, disabled. */
  state: ListenerStatus['state']
  /** While updating: the step of the update plan and since when. */
  step?: UpdateStep
  stepStartedAt?: string
  /** While idle: the earliest time the listener starts the next request. */
  nextCommandAt?: string
  /** The request the listener is working on (may be another tab's). */
  requestId?: string
  /** Whether the listener has taken our request (it is no longer waiting in update-command.json). */
  claimed: boolean
  /** Our place among the requests the listener has claimed and not started yet (1: next). */
  queuePosition?: number
  /** Our answer is decided but could not be written yet (e.g. the disk is full); the host retries. */
  pendingAnswer?: {status: 'error' | 'success'; reason: string; nextRetryAt: string}
}

export interface WaitOptions {
  /** The commands dir (default: the sandbox's, /home/opencoder/.local/state/opencode/opencode-cloud/commands). */
  dir?: string
  /** Give up after this long (default 60 min: a real build takes a while). */
  timeoutMs?: number
  signal?: AbortSignal
  onProgress?: (progress: UpdateProgress) => void
  /** The safety-net poll next to fs.watch (default 1000 ms). */
  pollMs?: number
  /** How long a missing listener.json is waited for before giving up (default 5000 ms; a restarting service). */
  listenerGraceMs?: number
}

export interface RequestUpdateOptions extends WaitOptions {
  /** Update to the tip of this branch (not together with commit). Default: the host's default (dev). */
  branch?: string
  /** Update to this commit (7-40 hex digits). */
  commit?: string
  /** Correlates request and result (default: a new random id). */
  requestId?: string
}

export interface ReadOptions {
  dir?: string
}

const DEFAULTS = {listenerGraceMs: 5000, pollMs: 1000, timeoutMs: 60 * 60_000}
const NOT_RUNNING_HINT = 'Run `occ install` on the host (or `occ start --no-daemon`); `occ status` on the host shows the listener.'

/**
 * Checks a request the way the host will, before anything is written: the same schema (branch
 * and commit rules, not both, request_id length). Returns the request body; throws
 * UpdateClientError 'invalid_request'.
 */
export function buildUpdateCommand(options: Pick<RequestUpdateOptions, 'branch' | 'commit' | 'requestId'> = {}): UpdateCommand {
  const command: UpdateCommand = {command: 'update_opencode', request_id: options.requestId ?? `ui-${randomUUID()}`}
  if (options.branch !== undefined) command.branch = options.branch
  if (options.commit !== undefined) command.commit = options.commit
  const check = validateCommand(command)
  if (!check.ok) {
    const field = check.path.split('/')[1]
    const message =
      field === undefined
        ? options.branch !== undefined && options.commit !== undefined
          ? 'Specify only one of branch or commit.'
          : `Invalid update request: ${check.message}.`
        : field === 'branch'
          ? `Invalid branch ${JSON.stringify(options.branch)}: a branch name uses A-Z a-z 0-9 . _ / - only, at most 200 characters, with no '..', '//', leading '-' or '/', trailing '/' or '.', no part starting with '.' or ending in '.lock', and not HEAD.`
          : field === 'commit'
            ? `Invalid commit ${JSON.stringify(options.commit)}: a commit is 7 to 40 hexadecimal digits.`
            : `Invalid ${field}: it ${check.message}.`
    throw new UpdateClientError('invalid_request', message, {requestId: options.requestId})
  }

  return command
}

/** listener.json, parsed and checked against its schema; null when there is none (or it is not valid). */
export async function readListenerStatus(options: ReadOptions = {}): Promise<ListenerStatus | null> {
  const read = await readListenerFile(options.dir ?? DEFAULT_COMMANDS_DIR)
  return read.kind === 'ok' ? read.value : null
}

/** The result file, parsed and checked; null when there is none (or it is not valid). */
export async function readResult(options: ReadOptions & {requestId?: string} = {}): Promise<UpdateResult | null> {
  const read = await readResultFile(options.dir ?? DEFAULT_COMMANDS_DIR)
  if (read.kind !== 'ok') return null
  if (options.requestId !== undefined && read.value.request_id !== options.requestId) return null
  return read.value
}

/** Whether a listener with this heartbeat is alive at `now` (its heartbeat is at most three intervals old). */
export function isListenerAlive(status: ListenerStatus, now: number = Date.now()): boolean {
  return now - Date.parse(status.heartbeat_at) <= STALE_AFTER_INTERVALS * status.heartbeat_interval_ms
}

/**
 * Asks the host to update opencode and resolves with its answer (status success or error). Rejects
 * with UpdateClientError only when no answer can come: invalid input (nothing written), no
 * listener or a stale one (reported within 15 s), the timeout, the signal.
 */
export async function requestUpdate(options: RequestUpdateOptions = {}): Promise<UpdateResult> {
  const command = buildUpdateCommand(options)
  const requestId = command.request_id as string
  const session = new Session(options, requestId)
  try {
    await session.ensureListener()
    await session.deliver(`${JSON.stringify(command)}\n`)
    return await session.waitForAnswer()
  } finally {
    session.close()
  }
}

/**
 * Waits for the answer to a request made earlier (e.g. by a process that has since restarted:
 * the update restarts opencode, and with it the web UI's backend). Same rules as requestUpdate.
 */
export async function waitForResult(requestId: string, options: WaitOptions = {}): Promise<UpdateResult> {
  const session = new Session(options, requestId)
  try {
    return await session.waitForAnswer()
  } finally {
    session.close()
  }
}

class Session {
  private readonly dir: string
  private readonly deadline: number
  private readonly options: Required<Pick<WaitOptions, 'listenerGraceMs' | 'pollMs' | 'timeoutMs'>> & WaitOptions
  private watcher: FSWatcher | undefined
  private wake: (() => void) | undefined
  private lastProgress = ''
  private listener: ListenerStatus | null = null
  private absentSince: number | undefined
  /** Monotonic time at which the heartbeat last changed (a stopped clock is noticed even if the wall clock jumps). */
  private heartbeatSeen: {at: string; since: number} | undefined
  private delivered = false
  private claimed = false
  private lastIgnored: string | undefined

  private readonly requestId: string

  constructor(options: WaitOptions, requestId: string) {
    this.requestId = requestId
    this.options = {...DEFAULTS, ...options}
    this.dir = options.dir ?? DEFAULT_COMMANDS_DIR
    this.deadline = performance.now() + this.options.timeoutMs
    this.startWatching()
  }

  close(): void {
    this.watcher?.close()
    this.watcher = undefined
  }

  /** Before writing anything: is there a listener to answer? Waits out a short absence. */
  async ensureListener(): Promise<void> {
    for (;;) {
      this.checkSignal()
      const problem = await this.listenerProblem()
      if (problem === undefined) return
      await this.sleep()
    }
  }

  /** Writes the request (temp file, then link into place); waits while another request holds the name. */
  async deliver(body: string): Promise<void> {
    let tmp: string
    try {
      tmp = await writeTempFile(this.dir, body)
    } catch (error) {
      throw this.ioError(`Could not write the update request in ${this.dir}`, error)
    }

    try {
      for (;;) {
        try {
          if (await placeRequest(this.dir, tmp)) break
        } catch (error) {
          throw this.ioError(`Could not put the update request in place as ${REQUEST_FILE}`, error)
        }

        // Another request waits for the listener: ours goes in once that one is claimed.
        this.checkSignal()
        this.checkDeadline()
        await this.listenerProblem()
        await this.sleep()
      }
    } finally {
      await fs.unlink(tmp).catch(() => {})
    }

    this.delivered = true
  }

  async waitForAnswer(): Promise<UpdateResult> {
    for (;;) {
      const result = await this.ourResult()
      if (result) return result
      if (!this.claimed && (!this.delivered || !(await requestWaiting(this.dir, this.requestId)))) this.claimed = true
      try {
        await this.checkOrWithdraw(async () => {
          this.checkSignal()
          this.checkDeadline()
          await this.listenerProblem()
        })
      } catch (error) {
        if (error instanceof LateAnswer) return error.result
        throw error
      }

      await this.sleep()
    }
  }

  private async ourResult(): Promise<UpdateResult | undefined> {
    const read = await readResultFile(this.dir)
    if (read.kind === 'ok') return read.value.request_id === this.requestId ? read.value : undefined
    if (read.kind === 'invalid') this.lastIgnored = read.reason
    return undefined
  }

  /** Runs a check; when it throws, takes our unclaimed request back (and says so) unless its answer just arrived. */
  private async checkOrWithdraw(check: () => Promise<void>): Promise<void> {
    try {
      await check()
    } catch (error) {
      if (!(error instanceof UpdateClientError)) throw error
      const late = await this.ourResult()
      if (late) throw new LateAnswer(late)
      const withdrawn = this.delivered && !this.claimed && (await withdrawRequest(this.dir, this.requestId).catch(() => false))
      const tail = withdrawn ? ' The request was withdrawn; nothing was changed.' : this.delivered ? ' The host may still act on the request.' : ''
      throw new UpdateClientError(error.code, `${error.message}${tail}`, {listener: this.listener, requestId: this.requestId, withdrawn})
    }
  }

  /** Reads listener.json, reports progress; throws when no answer can come from it. */
  private async listenerProblem(): Promise<'absent' | undefined> {
    const read = await readListenerFile(this.dir)
    const now = performance.now()
    if (read.kind !== 'ok') {
      this.listener = null
      this.heartbeatSeen = undefined
      this.absentSince ??= now
      if (now - this.absentSince >= this.options.listenerGraceMs) {
        const why = read.kind === 'missing' ? `there is no ${LISTENER_FILE} in ${this.dir}` : read.reason
        throw new UpdateClientError('no_listener', `The host service is not running: no update listener answers (${why}). ${NOT_RUNNING_HINT}`, {
          listener: null,
          requestId: this.requestId,
        })
      }

      return 'absent'
    }

    this.absentSince = undefined
    const status = read.value
    this.listener = status
    const queued = status.queue?.findIndex((entry) => entry.request_id === this.requestId) ?? -1
    const mine = (status.state === 'updating' && status.request_id === this.requestId) || queued >= 0 || status.pending_result?.request_id === this.requestId
    if (mine) this.claimed = true
    if (this.heartbeatSeen?.at !== status.heartbeat_at) this.heartbeatSeen = {at: status.heartbeat_at, since: now}
    const limit = STALE_AFTER_INTERVALS * status.heartbeat_interval_ms
    const wallAge = Date.now() - Date.parse(status.heartbeat_at)
    const unchangedFor = now - this.heartbeatSeen.since
    if (wallAge > limit || unchangedFor > limit) {
      const seconds = Math.round(Math.max(wallAge, unchangedFor) / 1000)
      throw new UpdateClientError(
        'listener_stale',
        `The host service is not running: the update listener's last heartbeat was ${seconds} s ago. ${NOT_RUNNING_HINT}`,
        {listener: status, requestId: this.requestId},
      )
    }

    if (status.state === 'disabled') {
      throw new UpdateClientError(
        'no_listener',
        `The host's update listener is disabled: ${status.disabled_reason ?? 'no reason given'}. Fix that on the host, then restart it (occ install --force, or occ start --no-daemon).`,
        {listener: status, requestId: this.requestId},
      )
    }

    this.report(status)
    return undefined
  }

  private report(status: ListenerStatus): void {
    if (!this.options.onProgress) return
    const progress: UpdateProgress = {claimed: this.claimed, state: status.state}
    if (status.step !== undefined) progress.step = status.step
    if (status.step_started_at !== undefined) progress.stepStartedAt = status.step_started_at
    if (status.next_command_at !== undefined) progress.nextCommandAt = status.next_command_at
    if (status.request_id !== undefined) progress.requestId = status.request_id
    const queued = status.queue?.findIndex((entry) => entry.request_id === this.requestId) ?? -1
    if (queued >= 0) progress.queuePosition = queued + 1
    const pending = status.pending_result
    if (pending?.request_id === this.requestId) progress.pendingAnswer = {nextRetryAt: pending.next_retry_at, reason: pending.reason, status: pending.status}
    const key = JSON.stringify(progress)
    if (key === this.lastProgress) return
    this.lastProgress = key
    this.options.onProgress(progress)
  }

  private checkSignal(): void {
    if (this.options.signal?.aborted) {
      throw new UpdateClientError('aborted', 'Stopped waiting for the update (aborted).', {cause: this.options.signal.reason, requestId: this.requestId})
    }
  }

  private checkDeadline(): void {
    if (performance.now() < this.deadline) return
    const ignored = this.lastIgnored ? ` (ignored: ${this.lastIgnored})` : ''
    throw new UpdateClientError('timeout', `No answer from the host within ${formatDuration(this.options.timeoutMs)}${ignored}.`, {
      listener: this.listener,
      requestId: this.requestId,
    })
  }

  private ioError(message: string, error: unknown): UpdateClientError {
    return new UpdateClientError('io', `${message}: ${(error as Error).message}`, {cause: error, requestId: this.requestId})
  }

  private startWatching(): void {
    try {
      this.watcher = watch(this.dir, {persistent: false}, (_event, name) => {
        if (name === null || name === RESULT_FILE || name === LISTENER_FILE || name === REQUEST_FILE) this.wake?.()
      })
      this.watcher.on('error', () => this.close())
    } catch {
      this.watcher = undefined // no such dir yet, or no inotify: the poll does it
    }
  }

  /** Until the next change in the dir, the poll interval, the deadline or the signal, whichever comes first. */
  private sleep(): Promise<void> {
    return new Promise((resolve) => {
      const wait = Math.max(0, Math.min(this.options.pollMs, this.deadline - performance.now()))
      const done = (): void => {
        clearTimeout(timer)
        this.options.signal?.removeEventListener('abort', done)
        this.wake = undefined
        resolve()
      }

      const timer = setTimeout(done, wait)
      this.options.signal?.addEventListener('abort', done, {once: true})
      this.wake = done
    })
  }
}

/** Internal: the answer arrived just as we were giving up. */
class LateAnswer extends Error {
  readonly result: UpdateResult
  constructor(result: UpdateResult) {
    super('late answer')
    this.result = result
  }
}

function formatDuration(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`
  return `${Math.round(ms / 60_000)} min`
}
