/**
 * A stand-in for occ's host listener, in the same process, over a real temp dir: it keeps a
 * heartbeat in listener.json, claims update-command.json by rename, and answers as told. Plain
 * node:fs only, so the same cases run on Node and on Bun.
 */
import {randomUUID} from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

export interface Claimed {
  body: Record<string, unknown>
  claimedAt: number
}

export interface FakeListenerOptions {
  heartbeatMs?: number
  /** Claim requests (default true). */
  claim?: boolean
  /** What to answer a claimed request with; undefined: never answer. */
  answer?: (request: Record<string, unknown>) => Promise<Record<string, unknown> | undefined> | Record<string, unknown> | undefined
  /** Steps shown in listener.json while "updating", each for stepMs. */
  steps?: string[]
  stepMs?: number
}

export async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'occ-update-client-'))
}

export function iso(ms = Date.now()): string {
  return new Date(ms).toISOString()
}

export function listenerJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    heartbeat_at: iso(),
    heartbeat_interval_ms: 1000,
    pid: 4242,
    started_at: iso(Date.now() - 60_000),
    state: 'idle',
    version: '0.1.0',
    ...overrides,
  }
}

export async function writeAtomic(dir: string, name: string, text: string): Promise<void> {
  const tmp = path.join(dir, `.${name}.${randomUUID()}.tmp`)
  await fs.writeFile(tmp, text)
  await fs.rename(tmp, path.join(dir, name))
}

export function result(requestId: string | undefined, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    finished_at: iso(),
    message: 'Updated opencode.',
    started_at: iso(Date.now() - 1000),
    status: 'success',
    ...(requestId === undefined ? {} : {request_id: requestId}),
    ...overrides,
  }
}

export class FakeListener {
  readonly claimed: Claimed[] = []
  /** What went wrong in the fake itself while it ran (a case can assert there was nothing). */
  readonly errors: unknown[] = []
  private timer: ReturnType<typeof setInterval> | undefined
  private state: Record<string, unknown> = {state: 'idle'}
  private stopped = false
  private busy = false
  /** The tick in progress, so stop() waits for a beat that is mid-write (its temp file). */
  private inflight: Promise<void> = Promise.resolve()
  private readonly options: Required<Pick<FakeListenerOptions, 'claim' | 'heartbeatMs' | 'stepMs' | 'steps'>> & FakeListenerOptions

  readonly dir: string

  constructor(dir: string, options: FakeListenerOptions = {}) {
    this.dir = dir
    this.options = {claim: true, heartbeatMs: 1000, stepMs: 150, steps: ['fetch', 'build'], ...options}
  }

  async start(): Promise<this> {
    await this.beat()
    this.timer = setInterval(() => {
      // After stop() the dir may be gone: a late tick's failure is not the case's business.
      this.inflight = this.tick().catch((error: unknown) => {
        if (!this.stopped) this.errors.push(error)
      })
    }, 50)
    return this
  }

  /** Stops the heartbeat (listener.json stays, and goes stale). */
  freeze(): void {
    this.stopped = true
    clearInterval(this.timer)
  }

  /** Stops and removes listener.json, as occ does on a clean exit. */
  async stop(): Promise<void> {
    this.freeze()
    // A beat that began before the freeze finishes its rename first: no temp file is left behind.
    await this.inflight
    await fs.rm(path.join(this.dir, 'listener.json'), {force: true})
  }

  setClaiming(claim: boolean): void {
    this.options.claim = claim
  }

  private lastBeat = 0

  private async beat(): Promise<void> {
    if (this.stopped) return
    this.lastBeat = Date.now()
    await writeAtomic(this.dir, 'listener.json', JSON.stringify(listenerJson({heartbeat_interval_ms: this.options.heartbeatMs, ...this.state})))
  }

  private async tick(): Promise<void> {
    if (this.stopped) return
    if (Date.now() - this.lastBeat >= Math.min(200, this.options.heartbeatMs / 3)) await this.beat()
    if (!this.options.claim || this.busy) return
    const claim = path.join(this.dir, `update-command.claimed.4242-${randomUUID().slice(0, 8)}.json`)
    try {
      await fs.rename(path.join(this.dir, 'update-command.json'), claim)
    } catch {
      return
    }

    this.busy = true
    const body = JSON.parse(await fs.readFile(claim, 'utf8')) as Record<string, unknown>
    this.claimed.push({body, claimedAt: Date.now()})
    for (const step of this.options.steps) {
      this.state = {request_id: body.request_id, state: 'updating', step, step_started_at: iso(), update_started_at: iso()}
      await this.beat()
      await new Promise((resolve) => setTimeout(resolve, this.options.stepMs))
    }

    const answer = await this.options.answer?.(body)
    if (answer !== undefined && !this.stopped) {
      await writeAtomic(this.dir, 'update-command.result.json', JSON.stringify(answer))
      await fs.rm(claim, {force: true})
      this.state = {next_command_at: iso(Date.now() + 5000), state: 'idle'}
      this.busy = false
      await this.beat()
    }
  }
}
