/**
 * The typed interface over release-store.sh, the in-sandbox half of an update. The script is
 * sent to the container's shell on stdin (`sh -s -- <subcommand> <arg>...`); every call prints
 * one JSON object, parsed here strictly (it came from the sandbox). Timeouts, exit codes and
 * errors are owned here; the plan (plan.ts) orchestrates these calls.
 */
import {existsSync, readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import * as z from 'zod'

import {OccError, type OccErrorCode} from '../../errors.js'
import {parseUntrustedJson} from '../../protocol/untrusted-json.js'
import {cleanLine} from '../../protocol/text.js'
import type {ExecOptions, ExecResult} from '../runtime.js'
import {IMAGE_RECIPE, isFullSha, OPENCODE_USER, tail, type BuildRecipe} from './layout.js'

/** Runs argv in the sandbox (as root), with the script on stdin. */
export type StoreRunner = (argv: string[], options: ExecOptions) => Promise<ExecResult>

export interface Journal {
  /** The release switched in and not verified yet. */
  release: string
  /** The release it replaced (where a rollback goes). */
  previous: string
  previousCommit?: string
  /** The version the new release must answer with to count as verified. */
  version?: string
  /** When it was switched in (seconds since the epoch, the sandbox's clock). */
  since?: number
}

export interface LockRecord {
  token?: string
  bootId?: string
  pid?: number
  pidStart?: string
  description?: string
  ageSeconds: number
}

export interface StoreState {
  /** The inspect ran as root (an update must). */
  root: boolean
  present: boolean
  /**
   * The verified, installed commit: COMMIT's first line (a full SHA), or under a journal the
   * commit the journal recorded before the switch.
   */
  recordedCommit?: string
  /** The release `current` points at. */
  currentRelease?: string
  /** What runs from current: the current release's commit, else COMMIT. */
  activeCommit?: string
  releases: string[]
  recipe: BuildRecipe
  /**
   * The active release's version: its VERSION file, else the store's cache of an earlier
   * `opencode --version` of the same commit, release and binary, else that command (run once).
   */
  version?: string
  /** Where the version came from. */
  versionSource?: 'binary' | 'cache' | 'file'
  /** Set while a switched-in release is not verified (a crashed or interrupted update). */
  journal?: Journal
  lock?: LockRecord
}

export interface LockOwner {
  token: string
  bootId: string
  pid: number
  pidStart: string
  description: string
}

export type LockAttempt =
  | {kind: 'busy'; owner: LockRecord}
  | {kind: 'taken'; tookOver?: 'owner-gone' | 'stale'; endedBuilds: number[]}

export interface BuildOptions {
  recipe: Exclude<BuildRecipe, 'none'>
  onOutput?: (chunk: string, stream: 'stderr' | 'stdout') => void
  signal?: AbortSignal
  timeoutMs?: number
}

/** The release store, as the plan and the repair see it. A fake implements this in unit tests. */
export interface ReleaseStore {
  inspect(): Promise<StoreState>
  lock(owner: LockOwner, staleSeconds: number, takeoverToken?: string): Promise<LockAttempt>
  /** false: the lock is no longer ours. */
  heartbeat(token: string): Promise<boolean>
  unlock(token: string): Promise<void>
  /** Makes the staging dir; returns its path (the source checkout goes to <dir>/src). */
  stage(token: string, repoPath: string | undefined, buildAsUser: boolean): Promise<string>
  /** Runs the build; resolves with its exit status and output (a cancel ends it). */
  build(token: string, options: BuildOptions): Promise<ExecResult>
  killBuild(token: string): Promise<number[]>
  /** The built candidate's version (the builtin recipe's output is adopted first). */
  built(token: string, recipe: Exclude<BuildRecipe, 'none'>): Promise<{version?: string}>
  activate(token: string, commit: string, imageName: string, version: string | undefined): Promise<{previous: string; previousCommit?: string}>
  verify(): Promise<{commit?: string}>
  rollback(deleteFailed: boolean): Promise<{rolledBack: boolean; release?: string; failed?: string}>
  prune(keep: string[]): Promise<string[]>
}

/** A release store call that failed: the script's own error, or an exit it did not explain. */
export class StoreError extends OccError {
  readonly subcommand: string

  constructor(subcommand: string, message: string, options: {code?: OccErrorCode} = {}) {
    super(options.code ?? 'UPDATE_FAILED', message)
    this.name = 'StoreError'
    this.subcommand = subcommand
  }
}

// --- the script file --------------------------------------------------------------------------

let scriptCache: {builtin?: string; store?: string} = {}

/**
 * The script's text. It ships in the package beside the sources (src/runtime/update/*.sh);
 * from lib/ it is found relative to the compiled module.
 */
export function releaseStoreScript(): string {
  scriptCache.store ??= readShipped('release-store.sh')
  return scriptCache.store
}

export function builtinRecipeScript(): string {
  scriptCache.builtin ??= readShipped('builtin-recipe.sh')
  return scriptCache.builtin
}

/** For tests: forget the cached script text. */
export function resetScriptCache(): void {
  scriptCache = {}
}

function readShipped(name: string): string {
  const candidates = [new URL(`./${name}`, import.meta.url), new URL(`../../../src/runtime/update/${name}`, import.meta.url)]
  for (const url of candidates) {
    const file = fileURLToPath(url)
    if (existsSync(file)) return readFileSync(file, 'utf8')
  }

  throw new OccError('INSTALL_BROKEN', `occ's ${name} is missing from its package (looked in ${candidates.map((url) => fileURLToPath(url)).join(', ')}).`, {
    actions: ['Reinstall occ.'],
  })
}

// --- parsing ------------------------------------------------------------------------------------

const opt = z
  .string()
  .nullable()
  .optional()
  .transform((value) => (value === null || value === '' ? undefined : value))

const journalSchema = z.object({
  previous: opt,
  previous_commit: opt,
  release: opt,
  since: opt,
  version: opt,
})

const lockSchema = z.object({
  age_seconds: z.number(),
  boot_id: opt,
  description: opt,
  pid: opt,
  pid_start: opt,
  token: opt,
})

const inspectSchema = z.object({
  commit: opt,
  current: opt,
  journal: journalSchema.nullable(),
  lock: lockSchema.nullable(),
  ok: z.literal(true),
  present: z.boolean(),
  recipe: z.enum(['image', 'builtin', 'none']),
  releases: z.array(z.string()).max(10_000),
  uid: z.number(),
  version: opt,
  version_source: z.enum(['file', 'cache', 'binary']).nullable().optional(),
})

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/
/** What the script's cache may hold (its clean_version); anything else from it is not a version. */
const CACHED_VERSION = /^[A-Za-z0-9_+~][A-Za-z0-9._+~-]{0,99}$/

/** The version an inspect reported, and its source, as far as they can be trusted. */
function toVersion(raw: z.output<typeof inspectSchema>): Pick<StoreState, 'version' | 'versionSource'> {
  if (raw.version === undefined || !raw.version_source) return {}
  // The cache is a file in the sandbox: only the strict shape its writer produces counts.
  if (raw.version_source === 'cache' && !CACHED_VERSION.test(raw.version)) return {}
  const version = cleanLine(raw.version, 200)
  return version ? {version, versionSource: raw.version_source} : {}
}

function toLock(raw: z.output<typeof lockSchema>): LockRecord {
  const pid = raw.pid !== undefined && /^\d{1,10}$/.test(raw.pid) ? Number(raw.pid) : undefined
  return {
    ageSeconds: raw.age_seconds,
    bootId: raw.boot_id,
    description: raw.description === undefined ? undefined : cleanLine(raw.description, 200),
    pid,
    pidStart: raw.pid_start,
    token: raw.token,
  }
}

export function parseInspect(data: unknown): StoreState {
  const raw = inspectSchema.parse(data)
  let recordedCommit = isFullSha(raw.commit?.toLowerCase()) ? raw.commit?.toLowerCase() : undefined
  const currentRelease = raw.current !== undefined && NAME.test(raw.current) ? raw.current : undefined
  const state: StoreState = {
    activeCommit: isFullSha(currentRelease) ? currentRelease : recordedCommit,
    currentRelease,
    present: raw.present,
    recipe: raw.recipe,
    recordedCommit,
    releases: raw.releases.filter((name) => NAME.test(name)),
    root: raw.uid === 0,
    ...toVersion(raw),
  }
  if (raw.journal?.release && NAME.test(raw.journal.release) && raw.journal.previous && NAME.test(raw.journal.previous)) {
    state.journal = {previous: raw.journal.previous, release: raw.journal.release}
    if (isFullSha(raw.journal.previous_commit)) state.journal.previousCommit = raw.journal.previous_commit
    if (raw.journal.version) state.journal.version = cleanLine(raw.journal.version, 200)
    if (raw.journal.since && /^\d{1,12}$/.test(raw.journal.since)) state.journal.since = Number(raw.journal.since)
  } else if (raw.journal) {
    // A journal we cannot act on is still a journal: never call the release verified.
    state.journal = {previous: raw.journal.previous ?? '', release: raw.journal.release ?? ''}
  }

  // Under a journal the installed (verified) commit is the one the journal recorded before the
  // switch: COMMIT may already name the new release (verify killed between its two writes).
  if (state.journal) {
    recordedCommit = state.journal.previousCommit
    state.recordedCommit = recordedCommit
    if (!isFullSha(currentRelease)) state.activeCommit = recordedCommit
  }

  if (raw.lock) state.lock = toLock(raw.lock)
  return state
}

/** The JSON object of a store call: the last line of stdout that is one (capped, strict). */
export function parseStoreOutput(stdout: string): Record<string, unknown> | undefined {
  const lines = stdout.slice(-256 * 1024).split('\n')
  for (let index = lines.length - 1; index >= 0; index--) {
    const line = lines[index].trim()
    if (!line.startsWith('{')) continue
    const parsed = parseUntrustedJson(Buffer.from(line))
    if (parsed.ok && parsed.value !== null && typeof parsed.value === 'object' && !Array.isArray(parsed.value)) {
      return parsed.value as Record<string, unknown>
    }
  }

  return undefined
}

// --- the script-backed store ----------------------------------------------------------------------

export interface ScriptStoreOptions {
  /** The store's root in the sandbox (default /opt/opencode). */
  root?: string
  /** The user opencode runs as (and builds as, for the builtin recipe). */
  user?: string
  recipePath?: string
  /** Per call (default 60 s; activate/prune/rollback 120 s). */
  timeoutMs?: number
}

/** The release store in a sandbox, through release-store.sh. */
export class ScriptReleaseStore implements ReleaseStore {
  private readonly run: StoreRunner
  private readonly root?: string
  private readonly user: string
  private readonly recipePath: string
  private readonly timeoutMs: number

  constructor(run: StoreRunner, options: ScriptStoreOptions = {}) {
    this.run = run
    this.root = options.root
    this.user = options.user ?? OPENCODE_USER
    this.recipePath = options.recipePath ?? IMAGE_RECIPE
    this.timeoutMs = options.timeoutMs ?? 60_000
  }

  async inspect(): Promise<StoreState> {
    const out = await this.call('inspect', [this.user, this.recipePath])
    try {
      return parseInspect(out)
    } catch (error) {
      throw new StoreError('inspect', `The release store's inspect answered something unexpected: ${(error as Error).message.slice(0, 200)}`)
    }
  }

  async lock(owner: LockOwner, staleSeconds: number, takeoverToken?: string): Promise<LockAttempt> {
    const args = [owner.token, owner.bootId, String(owner.pid), owner.pidStart, owner.description, String(Math.max(0, Math.round(staleSeconds)))]
    if (takeoverToken) args.push(takeoverToken)
    const {exitCode, json} = await this.raw('lock', args)
    if (exitCode === 75 && json?.busy === true) {
      const owner = lockSchema.safeParse(json.owner)
      return {kind: 'busy', owner: owner.success ? toLock(owner.data) : {ageSeconds: 0}}
    }

    const done = this.expectOk('lock', exitCode, json)
    const tookOver = done.took_over === 'owner-gone' || done.took_over === 'stale' ? done.took_over : undefined
    const ended = Array.isArray(done.ended_builds) ? done.ended_builds.filter((pid): pid is number => Number.isSafeInteger(pid)) : []
    return {endedBuilds: ended, kind: 'taken', ...(tookOver ? {tookOver} : {})}
  }

  async heartbeat(token: string): Promise<boolean> {
    const {exitCode, json} = await this.raw('heartbeat', [token], 15_000)
    return exitCode === 0 && json?.ok === true
  }

  async unlock(token: string): Promise<void> {
    await this.call('unlock', [token])
  }

  async stage(token: string, repoPath: string | undefined, buildAsUser: boolean): Promise<string> {
    const out = await this.call('stage', [token, repoPath ?? '', buildAsUser ? '1' : '0', this.user])
    if (typeof out.dir !== 'string') throw new StoreError('stage', 'The release store did not say where it staged the update.')
    return out.dir
  }

  build(token: string, options: BuildOptions): Promise<ExecResult> {
    const exec: ExecOptions = {signal: options.signal, timeoutMs: options.timeoutMs}
    if (options.onOutput) exec.onOutput = options.onOutput
    if (options.recipe === 'image') {
      return this.run(['setsid', '-w', 'sh', '-s', '--', 'build', token, this.recipePath], {...exec, env: this.env(), stdin: releaseStoreScript(), user: 'root'})
    }

    const dir = `${this.root ?? '/opt/opencode'}/.staging/${token}`
    return this.run(['setsid', '-w', 'bash', '-l', '-s', '--', `${dir}/work/build.pid`, `${dir}/src`, `${dir}/work/out`], {
      ...exec,
      env: {OCC_STAGING: dir},
      stdin: builtinRecipeScript(),
      user: this.user,
    })
  }

  async killBuild(token: string): Promise<number[]> {
    const out = await this.call('kill-build', [token], 15_000)
    return Array.isArray(out.ended_builds) ? out.ended_builds.filter((pid): pid is number => Number.isSafeInteger(pid)) : []
  }

  async built(token: string, recipe: Exclude<BuildRecipe, 'none'>): Promise<{version?: string}> {
    if (recipe === 'builtin') await this.call('adopt', [token], 300_000)
    const out = await this.call('built', [token, this.user])
    return typeof out.version === 'string' && out.version ? {version: cleanLine(out.version, 200)} : {}
  }

  async activate(token: string, commit: string, imageName: string, version: string | undefined): Promise<{previous: string; previousCommit?: string}> {
    const out = await this.call('activate', [token, commit, imageName, version ?? ''], 300_000)
    if (typeof out.previous !== 'string' || !NAME.test(out.previous)) throw new StoreError('activate', 'The release store did not name the previous release.')
    return {previous: out.previous, ...(isFullSha(out.previous_commit as string) ? {previousCommit: out.previous_commit as string} : {})}
  }

  async verify(): Promise<{commit?: string}> {
    const out = await this.call('verify', [])
    return typeof out.commit === 'string' ? {commit: out.commit} : {}
  }

  async rollback(deleteFailed: boolean): Promise<{rolledBack: boolean; release?: string; failed?: string}> {
    const out = await this.call('rollback', [deleteFailed ? '1' : '0'], 300_000)
    const result: {rolledBack: boolean; release?: string; failed?: string} = {rolledBack: out.rolled_back === true}
    if (typeof out.release === 'string') result.release = out.release
    if (typeof out.failed === 'string') result.failed = out.failed
    return result
  }

  async prune(keep: string[]): Promise<string[]> {
    const out = await this.call('prune', keep, 300_000)
    return Array.isArray(out.pruned) ? out.pruned.filter((name): name is string => typeof name === 'string').map((name) => cleanLine(name, 100)) : []
  }

  private env(): Record<string, string> {
    const env: Record<string, string> = this.root ? {OCC_STORE_ROOT: this.root} : {}
    // Tests hold the script at a named step (release-store.sh, crash_point); unset in production.
    const pause = process.env.OCC_STORE_PAUSE_AT
    if (pause && /^[a-z][a-z-]{0,39}$/.test(pause)) env.OCC_STORE_PAUSE_AT = pause
    return env
  }

  private async raw(subcommand: string, args: string[], timeoutMs?: number): Promise<{exitCode: number; json?: Record<string, unknown>; stderr: string}> {
    const result = await this.run(['sh', '-s', '--', subcommand, ...args], {
      env: this.env(),
      stdin: releaseStoreScript(),
      timeoutMs: timeoutMs ?? this.timeoutMs,
      user: 'root',
    })
    return {exitCode: result.exitCode, json: parseStoreOutput(result.stdout), stderr: result.stderr}
  }

  private async call(subcommand: string, args: string[], timeoutMs?: number): Promise<Record<string, unknown>> {
    const {exitCode, json, stderr} = await this.raw(subcommand, args, timeoutMs)
    return this.expectOk(subcommand, exitCode, json, stderr)
  }

  private expectOk(subcommand: string, exitCode: number, json: Record<string, unknown> | undefined, stderr = ''): Record<string, unknown> {
    if (exitCode === 0 && json?.ok === true) return json
    const said = typeof json?.error === 'string' ? cleanLine(json.error, 500) : cleanLine(tail(stderr, 3), 500)
    throw new StoreError(subcommand, `release store ${subcommand} failed: ${said || `exit ${exitCode}`}`)
  }
}
