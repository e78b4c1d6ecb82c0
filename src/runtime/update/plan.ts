/**
 * `update opencode`, written once against the Runtime interface: the command runs it, and the
 * update listener gets it through the foreground hook. DESIGN.md "Update opencode — the plan".
 *
 * The running opencode keeps serving while the source is fetched and built into a staging dir;
 * the switch is one rename of a symlink, journalled as "activated, not verified"; only a
 * healthy answer from the new version marks it installed (COMMIT). A new version that does not
 * answer healthy in time is switched back. A failed fetch or build changes nothing installed.
 * What runs inside the sandbox is the release store (release-store.sh behind ReleaseStore);
 * git runs as argv. Every interval here is on the monotonic clock.
 */
import {performance} from 'node:perf_hooks'

import type {OccConfig} from '../../config/schema.js'
import {ContainerMissingError, ContainerNotRunningError, OccError, TimeoutError, errorMessage} from '../../errors.js'
import {cleanLine, resultMessage} from '../../protocol/text.js'
import type {ExecOptions, ExecResult, RestartMethod, Runtime} from '../runtime.js'
import {UPDATE_STEPS, type StepTiming, type UpdateOutcome, type UpdateProgress, type UpdateRequest, type UpdateStep} from '../update-types.js'
import {UpdateCancelledError, UpdateFailedError} from './errors.js'
import {symlinkTar} from '../../docker/tar.js'
import {containerStopped, type HealthWaitVerdict, waitHealthy} from './health-wait.js'
import {checkRepo, firstLine, IMAGE_RECIPE, imageReleaseName, isFullSha, localRepoPath, OPENCODE_ROOT, OPENCODE_USER, parseLsRemote, shortSha, tail} from './layout.js'
import {LineSplitter} from '../logs-spec.js'
import {ScriptReleaseStore, type ReleaseStore, type StoreState} from './release-store.js'
import {busyError, releaseUpdateLockWhenBack, repairUnderLock, takeUpdateLock, type RepairReport} from './repair.js'
import type {OwnerChecks} from './lock-owner.js'
import {describeTarget, parseUpdateTarget, type UpdateTarget} from './target.js'

export interface UpdatePlanOptions {
  /** How long the new version gets to answer healthy before it is rolled back (default 60 s). */
  healthTimeoutMs?: number
  /** Consecutive healthy answers needed (default 2). */
  healthyAnswers?: number
  /** Between health probes (default 250 ms). */
  healthIntervalMs?: number
  /** Cap on the build (default 60 min) and on each git command (default 10 min). */
  buildTimeoutMs?: number
  gitTimeoutMs?: number
  /** Seconds without a heartbeat after which a lock held from another host counts as abandoned (default 90). */
  lockStaleSeconds?: number
  /** How often the lock's heartbeat is refreshed (default 20 s). */
  heartbeatMs?: number
  /** Who holds the lock, for the "busy" message (default: this process). */
  owner?: string
  /** The release store (default: release-store.sh in the runtime's sandbox). */
  store?: ReleaseStore
  /** How lock owners are judged (tests). */
  ownerChecks?: OwnerChecks
  /** An unverified release's re-verification window (default 15 s). */
  repairVerifyTimeoutMs?: number
  /** How long the lock's release waits for a container that restarted under the update (default 30 s). */
  unlockWaitMs?: number
  /** The monotonic clock in ms (default performance.now). */
  now?: () => number
}

export type UpdateProgressWithSignal = UpdateProgress & {signal?: AbortSignal}

const DEFAULTS = {
  buildTimeoutMs: 60 * 60_000,
  gitTimeoutMs: 10 * 60_000,
  healthIntervalMs: 250,
  healthTimeoutMs: 60_000,
  healthyAnswers: 2,
  heartbeatMs: 20_000,
  lockStaleSeconds: 90,
  unlockWaitMs: 30_000,
}

/** The release store of a runtime's sandbox. */
export function sandboxStore(runtime: Runtime): ReleaseStore {
  return new ScriptReleaseStore((argv, options) => runtime.exec(argv, options))
}

/** The one entry point (src/runtime/update-entry.ts and the listener call it). Never throws. */
export async function runUpdatePlan(
  runtime: Runtime,
  config: Pick<OccConfig, 'opencode_repo'>,
  request: UpdateRequest,
  progress: UpdateProgressWithSignal = {},
  options: UpdatePlanOptions = {},
): Promise<UpdateOutcome> {
  return new UpdateRun(runtime, config.opencode_repo, request, progress, options).run()
}

/** What preflight hands on: the sandbox as found (after any repair), the lock, the staging dir. */
interface Prepared {
  state: StoreState
  target: UpdateTarget
  token: string
  staging: string
}

interface Resolved {
  commit: string
  /** The whole history was fetched (to resolve a short SHA). */
  fetchedAll: boolean
}

interface Built {
  version?: string
}

interface Activated {
  previous: string
  previousCommit?: string
  /** The version the previous release runs (what a rollback must answer with). */
  previousVersion?: string
}

class UpdateRun {
  private readonly opts: typeof DEFAULTS & UpdatePlanOptions
  private readonly now: () => number
  private readonly timings = new Map<UpdateStep, StepTiming>()
  /** Steps whose end was reported to progress.onStepDone (the rest are reported as skipped at the end). */
  private readonly reported = new Set<UpdateStep>()
  private readonly details = new Map<UpdateStep, string>()
  private readonly outcome: UpdateOutcome
  private readonly signal?: AbortSignal
  private readonly store: ReleaseStore
  /** Set while the lock is held: released (with the staging dir) whatever happens. */
  private lockToken?: string
  private heartbeat?: NodeJS.Timeout
  /** What the repair of an unverified release left by an earlier update did (when one ran). */
  private repaired?: RepairReport

  private readonly runtime: Runtime
  private readonly repo: string
  private readonly request: UpdateRequest
  private readonly progress: UpdateProgressWithSignal

  constructor(runtime: Runtime, repo: string, request: UpdateRequest, progress: UpdateProgressWithSignal, options: UpdatePlanOptions) {
    this.runtime = runtime
    this.repo = repo
    this.request = request
    this.progress = progress
    this.opts = {...DEFAULTS, ...options}
    this.now = options.now ?? (() => performance.now())
    this.signal = progress.signal
    this.store = options.store ?? sandboxStore(runtime)
    this.outcome = {
      changed: false,
      message: '',
      ref: {},
      rolledBack: false,
      startedAt: new Date().toISOString(),
      finishedAt: '',
      status: 'success',
      steps: [],
    }
  }

  async run(): Promise<UpdateOutcome> {
    const started = this.now()
    let installed: string | undefined
    try {
      installed = await this.execute()
    } catch (error) {
      // An exec cut short by the cancel signal rejects with the signal's reason.
      const known = this.signal?.aborted && !(error instanceof OccError) ? new UpdateCancelledError() : asOccError(error)
      this.outcome.status = 'error'
      this.outcome.message = known.message
      this.outcome.error = {actions: known.actions, code: known.code, exitCode: known.exitCode}
      installed = (error as {installed?: string}).installed ?? this.outcome.fromCommit
    } finally {
      await this.cleanup()
    }

    // The message carries sandbox text (git, the build, opencode's answers): clean and bounded.
    this.outcome.message = resultMessage(this.outcome.message)
    // toCommit is what is installed now: the target after a good update, else what was there.
    if (installed) this.outcome.toCommit = installed
    this.outcome.finishedAt = new Date().toISOString()
    this.outcome.durationMs = Math.max(0, Math.round(this.now() - started))
    this.outcome.steps = UPDATE_STEPS.map((step) => this.timings.get(step) ?? {durationMs: 0, status: 'skipped', step})
    for (const timing of this.outcome.steps) {
      if (timing.status === 'skipped' && !this.reported.has(timing.step)) this.progress.onStepDone?.(timing)
    }

    return this.outcome
  }

  /** The plan, each step handing its result to the next. Returns the commit installed at the end. */
  private async execute(): Promise<string | undefined> {
    let prepared = await this.step('preflight', () => this.preflight())
    if (prepared.state.journal) {
      const state = prepared.state
      prepared = {...prepared, state: await this.step('repair', () => this.repair(state))}
    }

    const resolved = await this.step('resolve', () => this.resolve(prepared))
    if (await this.step('compare', () => this.compare(prepared.state, resolved.commit))) return resolved.commit
    await this.step('fetch', () => this.fetch(prepared, resolved))
    const built = await this.step('build', () => this.build(prepared))
    const activated = await this.step('activate', () => this.activate(prepared, resolved.commit, built))
    let restartError: unknown
    // Without a supervisor the container itself restarts, and a new release that crashes stops
    // it: a service's lifecycle watch must not take either for the end of the sandbox.
    const release = this.runtime.holdLifecycle(`update to ${shortSha(resolved.commit)}`)
    try {
      try {
        await this.step('restart', () => this.restartAndVerify(built.version))
      } catch (error) {
        restartError = error
      }

      if (restartError) await this.step('rollback', () => this.rollback(activated, resolved.commit, restartError))
    } finally {
      release()
    }

    if (restartError) {
      const interrupted = restartError instanceof UpdateCancelledError
      const error = new UpdateFailedError(
        interrupted ? 'UPDATE_INTERRUPTED' : 'UPDATE_ROLLED_BACK',
        interrupted
          ? `occ was stopped while checking ${shortSha(resolved.commit)}, so it rolled back to ${shortSha(activated.previousCommit ?? activated.previous)}, which is serving again. Retry the update once occ runs again.`
          : `Update to ${shortSha(resolved.commit)} failed: ${errorMessage(restartError)}. Rolled back to ${shortSha(activated.previousCommit ?? activated.previous)}, which is serving again.`,
        {actions: interrupted ? ['Retry: occ update opencode'] : ["Look at the new version's logs: occ logs", 'Try another commit: occ update opencode --commit <sha>']},
      )
      throw Object.assign(error, {installed: activated.previousCommit})
    }

    this.outcome.changed = true
    this.outcome.toVersion = built.version
    await this.step('prune', () => this.prune(resolved.commit, activated.previous))
    this.outcome.message = this.successMessage(resolved.commit, built.version)
    return resolved.commit
  }

  // --- steps ------------------------------------------------------------------------------

  private async preflight(): Promise<Prepared> {
    // Refs are checked before anything reaches the sandbox.
    const target = parseUpdateTarget(this.request)
    if (target.kind === 'branch') this.outcome.ref.branch = target.branch
    const repoProblem = checkRepo(this.repo)
    if (repoProblem) throw new OccError('CONFIG_INVALID', `opencode_repo: ${repoProblem}.`)

    const container = await this.runtime.containerState()
    if (!container.exists) throw new ContainerMissingError(container.name)
    if (!container.running) throw new ContainerNotRunningError(container.name)

    const state = await this.store.inspect()
    this.noteInstalled(state)
    if (!state.root) {
      throw new UpdateFailedError('UPDATE_NOT_ROOT', 'Updating opencode needs root in the sandbox, and exec as root was refused.', {
        actions: ['Run the update from the host: occ update opencode'],
      })
    }

    if (!state.present) {
      throw new UpdateFailedError('UPDATE_NOT_SUPPORTED', 'This sandbox has no /opt/opencode: it is not an opencode-cloud image.', {
        actions: ['Recreate the sandbox from the opencode-cloud image: occ start'],
      })
    }

    if (state.recipe === 'none') {
      throw new UpdateFailedError(
        'UPDATE_NOT_SUPPORTED',
        `This image cannot build opencode: it has neither ${IMAGE_RECIPE} nor bun for the ${OPENCODE_USER} user.`,
        {actions: ['Use a sandbox image that can build opencode (with an opencode-build recipe, or bun): occ config set image <image>, then occ start --recreate']},
      )
    }

    const lock = await takeUpdateLock(this.store, {checks: this.opts.ownerChecks, description: this.opts.owner, staleSeconds: this.opts.lockStaleSeconds})
    if (lock.kind === 'busy') throw busyError(lock.owner)
    this.lockToken = lock.token
    this.heartbeat = setInterval(() => void this.store.heartbeat(lock.token).catch(() => false), this.opts.heartbeatMs)
    this.heartbeat.unref()
    // Inspect again under the lock: what an owner that was just taken over left is what counts.
    const locked = await this.store.inspect()
    this.noteInstalled(locked)
    const staging = await this.store.stage(lock.token, localRepoPath(this.repo), locked.recipe === 'builtin')
    const took = lock.tookOver ? `; took over the update lock (${lock.tookOver})` : ''
    this.setDetail('preflight', `${describeTarget(target)}; installed ${shortSha(locked.activeCommit)}${locked.journal ? `; unverified release ${shortSha(locked.journal.release)}` : ''}${took}`)
    return {staging, state: locked, target, token: lock.token}
  }

  /** An earlier update left a release unverified: re-verify it, else roll it back, before anything else. */
  private async repair(state: StoreState): Promise<StoreState> {
    const report: RepairReport = await repairUnderLock(this.runtime, this.store, state, {
      healthIntervalMs: this.opts.healthIntervalMs,
      healthTimeoutMs: this.opts.healthTimeoutMs,
      onProgress: (line) => this.output(line),
      signal: this.signal,
      verifyTimeoutMs: this.opts.repairVerifyTimeoutMs,
    })
    if (report.kind !== 'none' && report.kind !== 'busy') this.setDetail('repair', report.message)
    this.repaired = report
    const after = await this.store.inspect()
    if (after.journal) throw new UpdateFailedError('REPAIR_FAILED', `An earlier update left release ${shortSha(after.journal.release)} unverified, and it could not be repaired.`)
    if (report.kind === 'rolled-back' && !report.healthy) {
      throw new UpdateFailedError('ROLLBACK_UNHEALTHY', report.message, {actions: ['Look at the logs: occ logs', 'Restart the sandbox: occ restart']})
    }

    this.noteInstalled(after)
    return after
  }

  private async resolve(prepared: Prepared): Promise<Resolved> {
    const {state, target} = prepared
    if (target.kind === 'branch') {
      const result = await this.git(prepared, ['ls-remote', '--', this.repo, `refs/heads/${target.branch}`])
      if (result.exitCode !== 0) throw this.gitError('Could not list the branches of', result, true)
      const sha = parseLsRemote(result.stdout, target.branch)
      if (!sha) {
        throw new UpdateFailedError('UNKNOWN_BRANCH', `Branch '${target.branch}' does not exist in ${this.repo}.`, {
          actions: ['Check the branch name, or pick a commit with --commit <sha>.'],
        })
      }

      this.outcome.ref = {branch: target.branch, commit: sha}
      this.setDetail('resolve', `${target.branch} → ${shortSha(sha)}`)
      return {commit: sha, fetchedAll: false}
    }

    let commit: string
    let fetchedAll = false
    if (isFullSha(target.commit)) {
      commit = target.commit
    } else if (state.activeCommit?.startsWith(target.commit)) {
      // The installed commit already has this prefix: no need to fetch the whole history to say so.
      commit = state.activeCommit
    } else {
      // A short SHA can only be resolved against history: fetch the branches and tags.
      await this.initSource(prepared)
      await this.fetchAll(prepared, true)
      commit = await this.revParse(prepared, target.commit)
      fetchedAll = true
    }

    this.outcome.ref = {commit}
    this.setDetail('resolve', `${target.commit} → ${shortSha(commit)}`)
    return {commit, fetchedAll}
  }

  /** true: the target is installed and verified, nothing to do. */
  private async compare(state: StoreState, commit: string): Promise<boolean> {
    const installed = state.activeCommit
    if (installed && installed === commit && !state.journal) {
      this.outcome.toVersion = state.version
      const version = state.version ? ` (version ${state.version})` : ''
      // The release was unverified when this run began: the repair installed it; say so, not "nothing to do".
      this.outcome.message =
        this.repaired?.kind === 'verified'
          ? `Release ${shortSha(installed)}${version}, left unverified by an interrupted update, answered healthy and is installed now; it is the requested commit.`
          : `opencode is already at ${shortSha(installed)}${version}; nothing to do.`
      if (this.repaired?.kind === 'verified') this.outcome.changed = true
      this.setDetail('compare', `already at ${shortSha(installed)}`)
      return true
    }

    this.setDetail('compare', `${shortSha(installed)} → ${shortSha(commit)}`)
    return false
  }

  private async fetch(prepared: Prepared, resolved: Resolved): Promise<string> {
    const sha = resolved.commit
    if (!resolved.fetchedAll) {
      await this.initSource(prepared)
      const direct = await this.git(prepared, ['fetch', '--quiet', '--no-tags', '--depth', '1', '--', this.repo, sha], {cwd: 'src'})
      if (direct.exitCode !== 0) {
        // Some servers refuse fetching by SHA; then take the branch (or everything) instead.
        this.output(`fetch by commit was refused (${firstLine(direct.stderr)}); fetching refs instead`)
        if (prepared.target.kind === 'branch') {
          const byRef = await this.git(prepared, ['fetch', '--quiet', '--no-tags', '--', this.repo, `refs/heads/${prepared.target.branch}`], {cwd: 'src'})
          if (byRef.exitCode !== 0) throw this.gitError('Could not fetch from', byRef)
        } else {
          await this.fetchAll(prepared)
        }
      }
    }

    this.throwIfCancelled()
    const verify = await this.git(prepared, ['rev-parse', '--verify', '--quiet', `${sha}^{commit}`], {cwd: 'src'})
    if (verify.exitCode !== 0) {
      throw new UpdateFailedError('FETCH_FAILED', `Commit ${sha} is not in what was fetched from ${this.repo} (did the branch move?).`, {
        actions: ['Try again.'],
      })
    }

    const checkout = await this.git(prepared, ['checkout', '--quiet', '--force', '--detach', sha], {cwd: 'src'})
    if (checkout.exitCode !== 0) throw this.gitError('Could not check out the source from', checkout)
    return `${shortSha(sha)} checked out`
  }

  private async build(prepared: Prepared): Promise<Built> {
    const recipe = prepared.state.recipe === 'builtin' ? 'builtin' : 'image'
    if (recipe === 'builtin') {
      const chown = await this.exec(['chown', '-R', `${OPENCODE_USER}:${OPENCODE_USER}`, `${prepared.staging}/src`])
      if (chown.exitCode !== 0) throw new UpdateFailedError('BUILD_FAILED', `Preparing the build failed: ${tail(chown.stderr)}`)
    }

    await this.runBuild(prepared, recipe)
    const {version} = await this.store.built(prepared.token, recipe)
    this.setDetail('build', version ? `version ${version}` : 'built')
    return {version}
  }

  private async activate(prepared: Prepared, commit: string, built: Built): Promise<Activated> {
    this.throwIfCancelled()
    const {state} = prepared
    let switched: {previous: string; previousCommit?: string}
    try {
      switched = await this.store.activate(prepared.token, commit, imageReleaseName(state.recordedCommit), built.version)
    } catch (error) {
      // A switch that got as far as the journal is undone on the files (opencode was not restarted).
      const after = await this.store.inspect().catch(() => undefined)
      if (after?.journal) await this.store.rollback(true).catch(() => undefined)
      throw new UpdateFailedError('ACTIVATE_FAILED', `Switching to the new release failed: ${errorMessage(error)}. opencode still runs ${shortSha(state.activeCommit)}.`, {cause: error})
    }

    this.setDetail('activate', `current → releases/${shortSha(commit)} (previous: ${shortSha(switched.previous)}; not verified yet)`)
    return {...switched, previousCommit: switched.previousCommit ?? state.recordedCommit, previousVersion: state.version}
  }

  /** Restarts opencode, waits until it answers healthy from the new version, then marks it installed. */
  private async restartAndVerify(expectedVersion: string | undefined): Promise<string> {
    const method = await this.restartOpencode()
    const verdict = await waitHealthy(this.runtime, expectedVersion, {
      healthyAnswers: this.opts.healthyAnswers,
      intervalMs: this.opts.healthIntervalMs,
      now: this.now,
      signal: this.signal,
      stopped: containerStopped(this.runtime),
      timeoutMs: this.opts.healthTimeoutMs,
    })
    if (verdict.aborted) throw new UpdateCancelledError(`occ was stopped while checking the new version (${verdict.detail}).`)
    if (verdict.stopped) throw new UpdateFailedError('UNHEALTHY', `the new version did not come up: ${verdict.detail}${await this.lastLogLines()}`)
    if (!verdict.healthy) {
      throw new UpdateFailedError('UNHEALTHY', `the new version did not answer healthy within ${formatSeconds(this.opts.healthTimeoutMs)} (last answer: ${verdict.detail})`)
    }

    await this.store.verify()
    return `restarted via ${method}; ${verdict.detail}; verified`
  }

  private async restartOpencode(): Promise<RestartMethod> {
    try {
      const method = await this.runtime.restartOpencode()
      this.outcome.restartMethod = method
      return method
    } catch (error) {
      throw new UpdateFailedError('RESTART_FAILED', `Restarting opencode failed: ${errorMessage(error)}`, {cause: error})
    }
  }

  private async rollback(activated: Activated, commit: string, cause: unknown): Promise<string> {
    const reason = errorMessage(cause)
    const to = shortSha(activated.previousCommit ?? activated.previous)
    const container = await this.runtime.containerState().catch(() => undefined)
    if (container?.exists && !container.running) return this.rollbackStopped(activated, commit, reason)
    try {
      await this.store.rollback(true)
    } catch (error) {
      throw new UpdateFailedError('ROLLBACK_FAILED', `opencode ${shortSha(commit)} failed (${reason}), and switching back to ${to} failed too: ${errorMessage(error)}`, {
        actions: ['Look at the sandbox: occ logs; occ restart repairs it (the journal still names the unverified release)'],
      })
    }

    this.outcome.rolledBack = true
    this.outcome.toVersion = activated.previousVersion
    let verdict
    let method: RestartMethod
    try {
      method = await this.restartOpencode()
      verdict = await this.waitRolledBackHealthy(activated)
    } catch (error) {
      verdict = {detail: errorMessage(error), healthy: false}
      method = this.outcome.restartMethod ?? 'container'
    }

    if (!verdict.healthy) {
      throw Object.assign(
        new UpdateFailedError(
          'ROLLBACK_UNHEALTHY',
          `Update to ${shortSha(commit)} failed: ${reason}. Rolled back to ${to}, but it is not healthy either: ${verdict.detail}`,
          {actions: ['Look at the logs: occ logs', 'Restart the sandbox: occ restart']},
        ),
        {installed: activated.previousCommit},
      )
    }

    return `back on ${to}; restarted via ${method}; ${verdict.detail}`
  }

  /**
   * The new release stopped the container (no supervisor: opencode's exit is the container's).
   * Nothing can run in a stopped container, so `current` is pointed back at the previous
   * release through the Engine API's archive endpoint (a tar holding that one symlink; the
   * extraction replaces the link). Then the container is started on the previous release and
   * must answer healthy from its version; only then does the store finish the rollback on the
   * files (COMMIT, links, the journal, the failed release). Killed anywhere in between, the
   * journal still names the failed release and the next start repairs it.
   */
  private async rollbackStopped(activated: Activated, commit: string, reason: string): Promise<string> {
    const to = shortSha(activated.previousCommit ?? activated.previous)
    try {
      await this.runtime.putArchive(OPENCODE_ROOT, symlinkTar('current', `releases/${activated.previous}`))
    } catch (error) {
      throw new UpdateFailedError(
        'ROLLBACK_FAILED',
        `opencode ${shortSha(commit)} failed (${reason}), and pointing the stopped container back at ${to} failed too: ${errorMessage(error)}`,
        {actions: ['Start the sandbox, which repairs the unverified release first: occ start', 'Look at the sandbox: occ logs']},
      )
    }

    this.outcome.rolledBack = true
    this.outcome.toVersion = activated.previousVersion
    this.outcome.restartMethod = 'container'
    let verdict
    try {
      await this.runtime.startContainer()
      verdict = await this.waitRolledBackHealthy(activated)
    } catch (error) {
      verdict = {detail: `starting the container failed: ${errorMessage(error)}`, healthy: false}
    }

    if (!verdict.healthy) {
      throw Object.assign(
        new UpdateFailedError(
          'ROLLBACK_UNHEALTHY',
          `Update to ${shortSha(commit)} failed: ${reason}. Switched the stopped container back to ${to} and started it, but it is not healthy either: ${verdict.detail}`,
          {actions: ['Look at the logs: occ logs', 'Restart the sandbox: occ restart']},
        ),
        {installed: activated.previousCommit},
      )
    }

    // Running again: the rest of the rollback (COMMIT, links, journal, the failed release) as usual.
    try {
      await this.store.rollback(true)
    } catch (error) {
      throw Object.assign(
        new UpdateFailedError('ROLLBACK_FAILED', `Update to ${shortSha(commit)} failed: ${reason}. ${to} serves again, but clearing the failed release's journal failed: ${errorMessage(error)}`, {
          actions: ['Restart the sandbox, which finishes the repair: occ restart'],
        }),
        {installed: activated.previousCommit},
      )
    }

    return `the container had stopped; current pointed back at ${to} through the archive endpoint, container started; ${verdict.detail}`
  }

  /**
   * Waits until the previous version, brought back by a rollback, answers healthy. Not cut short
   * by SIGTERM (no signal): the previous version is being brought back, and this says whether it serves.
   */
  private async waitRolledBackHealthy(activated: Activated): Promise<HealthWaitVerdict> {
    return waitHealthy(this.runtime, activated.previousVersion, {
      healthyAnswers: this.opts.healthyAnswers,
      intervalMs: this.opts.healthIntervalMs,
      now: this.now,
      stopped: containerStopped(this.runtime),
      timeoutMs: this.opts.healthTimeoutMs,
    })
  }

  /** The stopped container's last log lines, for the message ('' when there are none, or after 3 s). */
  private async lastLogLines(count = 4): Promise<string> {
    const stop = new AbortController()
    const timer = setTimeout(() => stop.abort(), 3000)
    const lines: string[] = []
    try {
      for await (const line of this.runtime.logs({broker: false, follow: false, lines: count, timestamps: false}, stop.signal)) {
        const text = cleanLine(line.text, 300).trim()
        if (text) lines.push(text)
      }
    } catch {
      // The logs are a courtesy: the failure is already known.
    } finally {
      clearTimeout(timer)
    }

    const last = lines.slice(-count)
    return last.length > 0 ? ` (its last log lines: ${last.map((line) => `"${line}"`).join(' | ')})` : ''
  }

  private async prune(commit: string, previous: string): Promise<string> {
    try {
      const pruned = await this.store.prune([commit, previous])
      return pruned.length > 0 ? `removed ${pruned.map((name) => shortSha(name)).join(', ')}` : 'nothing to remove'
    } catch (error) {
      // A failed prune leaves disk in use, nothing broken: report it, do not fail the update.
      return `could not prune: ${errorMessage(error)}`
    }
  }

  // --- pieces ---------------------------------------------------------------------------

  private noteInstalled(state: StoreState): void {
    // With a journal, what current points at is not installed yet: the verified commit is COMMIT.
    this.outcome.fromCommit = state.journal ? state.recordedCommit : state.activeCommit
    this.outcome.fromVersion = state.journal ? undefined : state.version
  }

  private async initSource(prepared: Prepared): Promise<void> {
    const init = await this.git(prepared, ['init', '--quiet', 'src'])
    if (init.exitCode !== 0) throw this.gitError('Could not prepare a checkout for', init)
  }

  private async fetchAll(prepared: Prepared, resolving = false): Promise<void> {
    const result = await this.git(
      prepared,
      ['fetch', '--quiet', '--', this.repo, '+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*'],
      {cwd: 'src'},
    )
    if (result.exitCode !== 0) throw this.gitError('Could not fetch from', result, resolving)
  }

  private async revParse(prepared: Prepared, commit: string): Promise<string> {
    const result = await this.git(prepared, ['rev-parse', '--verify', '--quiet', `${commit}^{commit}`], {cwd: 'src'})
    const sha = result.stdout.trim().toLowerCase()
    if (result.exitCode === 0 && isFullSha(sha)) return sha
    const ambiguous = /ambiguous/i.test(result.stderr)
    throw new UpdateFailedError(
      ambiguous ? 'AMBIGUOUS_COMMIT' : 'UNKNOWN_COMMIT',
      ambiguous
        ? `Commit ${commit} is ambiguous in ${this.repo}; give more digits.`
        : `Commit ${commit} is not on any branch or tag of ${this.repo}.`,
      {actions: ['Check the SHA; a commit that is on no branch or tag needs all 40 digits.']},
    )
  }

  /**
   * The build, cut short by a cancel or its time limit: the exec's signal makes the runtime kill
   * everything the exec started inside the sandbox, and the store ends the build's process group
   * too. Output is streamed line by line, sanitised.
   */
  private async runBuild(prepared: Prepared, recipe: 'builtin' | 'image'): Promise<void> {
    this.throwIfCancelled()
    const stop = new AbortController()
    const timeout = setTimeout(() => stop.abort(new TimeoutError('build time limit')), this.opts.buildTimeoutMs)
    const onAbort = (): void => stop.abort(new UpdateCancelledError())
    this.signal?.addEventListener('abort', onAbort, {once: true})
    const lines = new LineSplitter('stdout', false)
    let result: ExecResult | undefined
    try {
      result = await this.store.build(prepared.token, {
        onOutput: (chunk) => {
          for (const line of lines.push(chunk)) this.output(line.text)
        },
        recipe,
        signal: stop.signal,
      })
    } catch (error) {
      if (!stop.signal.aborted) throw error
    } finally {
      clearTimeout(timeout)
      this.signal?.removeEventListener('abort', onAbort)
      for (const line of lines.flush()) this.output(line.text)
    }

    if (stop.signal.aborted) {
      await this.store.killBuild(prepared.token).catch(() => [])
      if (this.signal?.aborted) throw new UpdateCancelledError()
      throw new UpdateFailedError('BUILD_FAILED', `The build did not finish within ${formatSeconds(this.opts.buildTimeoutMs)}; nothing was changed.`)
    }

    if (result && result.exitCode !== 0) {
      const why = cleanLine(tail(result.stderr, 3) || tail(result.stdout, 3), 1000) || `exit ${result.exitCode}`
      throw new UpdateFailedError('BUILD_FAILED', `The build failed (exit ${result.exitCode}): ${why}. Nothing was changed; opencode still runs ${shortSha(prepared.state.activeCommit)}.`, {
        actions: ['Fix the source, or pick another commit: occ update opencode --commit <sha>'],
      })
    }
  }

  private async cleanup(): Promise<void> {
    clearInterval(this.heartbeat)
    if (!this.lockToken) return
    await releaseUpdateLockWhenBack(this.store, this.lockToken, {
      isRunning: async () => (await this.runtime.containerState()).running,
      signal: this.signal,
      timeoutMs: this.opts.unlockWaitMs,
    })
  }

  private successMessage(commit: string, version: string | undefined): string {
    const from = this.outcome.fromVersion
    const versions = from && version && from !== version ? ` (version ${from} → ${version})` : version ? ` (version ${version})` : ''
    return `Updated opencode from ${shortSha(this.outcome.fromCommit)} to ${shortSha(commit)}${versions}; restarted via ${this.outcome.restartMethod}.`
  }

  // --- plumbing -------------------------------------------------------------------------

  private setDetail(step: UpdateStep, detail: string): void {
    this.details.set(step, detail)
  }

  /** Runs one step: reports its start and end, times it, and records failures against it. */
  private async step<T>(name: UpdateStep, body: () => Promise<T>): Promise<T> {
    if (name !== 'rollback' && name !== 'restart' && name !== 'prune' && name !== 'repair') this.throwIfCancelled()
    this.progress.onStep?.(name)
    const started = this.now()
    const finish = (status: StepTiming['status'], detail?: string): void => {
      const timing: StepTiming = {durationMs: Math.max(0, Math.round(this.now() - started)), status, step: name}
      const text = this.details.get(name) ?? detail
      if (text) timing.detail = cleanLine(text, 1000)
      this.timings.set(name, timing)
      this.reported.add(name)
      this.progress.onStepDone?.(timing)
    }

    try {
      const result = await body()
      finish('done', typeof result === 'string' ? result : undefined)
      return result
    } catch (error) {
      finish('failed', errorMessage(error))
      throw error
    }
  }

  private throwIfCancelled(): void {
    if (this.signal?.aborted) throw new UpdateCancelledError()
  }

  /** One line of sandbox output for people: control characters and escapes removed, capped. */
  private output(text: string): void {
    if (!this.progress.onOutput) return
    for (const line of text.split('\n')) {
      const clean = cleanLine(line)
      if (clean.trim()) this.progress.onOutput(clean.trimEnd())
    }
  }

  /** exec as root, with stderr streamed as progress lines when asked. */
  private exec(argv: string[], options: Omit<ExecOptions, 'onOutput'> & {onOutput?: 'stderr'} = {}): Promise<ExecResult> {
    const {onOutput, ...rest} = options
    // The sandbox's text: whole lines, each capped (LineSplitter), never an unbounded buffer.
    const lines = new LineSplitter('stdout', false)
    const stream = onOutput
      ? (chunk: string, from: 'stderr' | 'stdout') => {
          if (from !== 'stderr') return
          for (const line of lines.push(chunk)) this.output(line.text)
        }
      : undefined
    return this.runtime.exec(argv, {user: 'root', ...rest, ...(stream ? {onOutput: stream} : {})}).finally(() => {
      for (const line of lines.flush()) this.output(line.text)
    })
  }

  /** git as argv, with a private config (safe.directory for a local repo) and no prompts. */
  private git(prepared: Prepared, args: string[], options: {cwd?: 'src'} = {}): Promise<ExecResult> {
    const staging = prepared.staging
    return this.exec(['git', ...args], {
      env: {
        GIT_CONFIG_GLOBAL: `${staging}/home/gitconfig`,
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_TERMINAL_PROMPT: '0',
        HOME: `${staging}/home`,
        LC_ALL: 'C',
      },
      onOutput: 'stderr',
      signal: this.signal,
      timeoutMs: this.opts.gitTimeoutMs,
      workdir: options.cwd ? `${staging}/${options.cwd}` : staging,
    })
  }

  private gitError(what: string, result: ExecResult, resolving = false): UpdateFailedError {
    const said = cleanLine(tail(result.stderr, 3) || tail(result.stdout, 3), 1000) || `git exit ${result.exitCode}`
    return new UpdateFailedError(resolving ? 'RESOLVE_FAILED' : 'FETCH_FAILED', `${what} ${this.repo}: ${said}`, {
      actions: ['Check opencode_repo (occ config get opencode_repo) and the network of the sandbox.'],
    })
  }
}

export function formatSeconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`
}

function asOccError(error: unknown): OccError {
  if (error instanceof OccError) return error
  return new UpdateFailedError('UPDATE_FAILED', `The update failed: ${errorMessage(error)}`, {cause: error})
}
