/**
 * `update opencode`, written once against the Runtime interface: the command runs it, and the
 * update listener gets it through the foreground hook. DESIGN.md "Update opencode — the plan".
 *
 * The running opencode keeps serving while the source is fetched and built into a staging dir;
 * the switch is one rename of a symlink; COMMIT is written after it; a new version that does not
 * answer healthy in time is switched back. A failed fetch or build changes nothing installed.
 */
import {randomBytes} from 'node:crypto'
import os from 'node:os'
import {setTimeout as delay} from 'node:timers/promises'

import type {OccConfig} from '../../config/schema.js'
import {ContainerMissingError, ContainerNotRunningError, OccError, type OccErrorCode, errorMessage} from '../../errors.js'
import type {ExecOptions, ExecResult, RestartMethod, Runtime} from '../runtime.js'
import {UPDATE_STEPS, type StepTiming, type UpdateOutcome, type UpdateProgress, type UpdateRequest, type UpdateStep} from '../update-types.js'
import {UpdateBusyError, UpdateCancelledError, UpdateFailedError} from './errors.js'
import {
  checkRepo,
  firstLine,
  IMAGE_RECIPE,
  imageReleaseName,
  isFullSha,
  judgeHealth,
  localRepoPath,
  LOCK_DIR,
  OPENCODE_USER,
  parseInstalledState,
  parseLsRemote,
  shortSha,
  STAGING_DIR,
  tail,
  type InstalledState,
} from './layout.js'
import {
  ACTIVATE_SCRIPT,
  ADOPT_BUILD_SCRIPT,
  BUILTIN_RECIPE_SCRIPT,
  GROUP_WRAPPER,
  INSPECT_SCRIPT,
  KILL_GROUP_SCRIPT,
  LOCK_SCRIPT,
  PRUNE_SCRIPT,
  RELEASE_VERSION_SCRIPT,
  ROLLBACK_SCRIPT,
  STAGE_SCRIPT,
  UNLOCK_SCRIPT,
} from './scripts.js'
import {describeTarget, parseUpdateTarget, type UpdateTarget} from './target.js'
import {LineSplitter} from '../logs-spec.js'

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
  /** How long a killed build gets to end before occ lets go of it (default 15 s). */
  killGraceMs?: number
  /** Seconds without a heartbeat after which another update's lock counts as abandoned (default 90). */
  lockStaleSeconds?: number
  /** How often the lock's heartbeat is refreshed (default 20 s). */
  heartbeatMs?: number
  /** Who holds the lock, for the "busy" message (default: this process). */
  owner?: string
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
  killGraceMs: 15_000,
  lockStaleSeconds: 90,
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

class UpdateRun {
  private readonly opts: typeof DEFAULTS & UpdatePlanOptions
  private readonly now: () => number
  private readonly timings = new Map<UpdateStep, StepTiming>()
  /** Steps whose end was reported to progress.onStepDone (the rest are reported as skipped at the end). */
  private readonly reported = new Set<UpdateStep>()
  private readonly details = new Map<UpdateStep, string>()
  private readonly outcome: UpdateOutcome
  private readonly signal?: AbortSignal
  private state?: InstalledState
  private target?: UpdateTarget
  private targetCommit?: string
  private lockToken?: string
  private stagingDir?: string
  private heartbeat?: NodeJS.Timeout
  private fetched = false
  private releaseDir?: string
  private newVersion?: string

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
    this.now = options.now ?? Date.now
    this.signal = progress.signal
    this.outcome = {
      changed: false,
      message: '',
      ref: {},
      rolledBack: false,
      startedAt: new Date(this.now()).toISOString(),
      finishedAt: '',
      status: 'success',
      steps: [],
    }
  }

  async run(): Promise<UpdateOutcome> {
    const started = this.now()
    try {
      await this.execute()
    } catch (error) {
      // An exec cut short by the cancel signal rejects with the signal's reason.
      const known = this.signal?.aborted && !(error instanceof OccError) ? new UpdateCancelledError() : asOccError(error)
      this.outcome.status = 'error'
      this.outcome.message = known.message
      this.outcome.error = {actions: known.actions, code: known.code, exitCode: known.exitCode}
    } finally {
      await this.cleanup()
    }

    // toCommit is what is installed now: the target after a good update, else what was there.
    this.outcome.toCommit = this.outcome.changed || this.outcome.status === 'success' ? this.targetCommit : this.outcome.fromCommit

    this.outcome.finishedAt = new Date(this.now()).toISOString()
    this.outcome.durationMs = this.now() - started
    this.outcome.steps = UPDATE_STEPS.map((step) => this.timings.get(step) ?? {durationMs: 0, status: 'skipped', step})
    for (const timing of this.outcome.steps) {
      if (timing.status === 'skipped' && !this.reported.has(timing.step)) this.progress.onStepDone?.(timing)
    }

    return this.outcome
  }

  private async execute(): Promise<void> {
    await this.step('preflight', () => this.preflight())
    await this.step('resolve', () => this.resolve())
    const unchanged = await this.step('compare', () => this.compare())
    if (unchanged) return
    await this.step('fetch', () => this.fetch())
    await this.step('build', () => this.build())
    const previous = await this.step('activate', () => this.activate())
    let restartError: unknown
    try {
      await this.step('restart', () => this.restartAndVerify(this.newVersion, 'the new version'))
    } catch (error) {
      restartError = error
    }

    if (restartError) {
      await this.step('rollback', () => this.rollback(previous, restartError))
      throw new UpdateFailedError(
        'UPDATE_ROLLED_BACK',
        `Update to ${shortSha(this.targetCommit)} failed: ${errorMessage(restartError)}. Rolled back to ${shortSha(previous.commit ?? previous.release)}, which is serving again.`,
        {actions: ["Look at the new version's logs: occ logs", 'Try another commit: occ update opencode --commit <sha>']},
      )
    }

    this.outcome.changed = true
    this.outcome.toVersion = this.newVersion
    await this.step('prune', () => this.prune(previous.release))
    this.outcome.message = this.successMessage()
  }

  // --- steps ------------------------------------------------------------------------------

  private async preflight(): Promise<string> {
    // Refs are checked before anything reaches the sandbox.
    this.target = parseUpdateTarget(this.request)
    if (this.target.kind === 'branch') this.outcome.ref.branch = this.target.branch
    const repoProblem = checkRepo(this.repo)
    if (repoProblem) throw new OccError('CONFIG_INVALID', `opencode_repo: ${repoProblem}.`)

    const container = await this.runtime.containerState()
    if (!container.exists) throw new ContainerMissingError(container.name)
    if (!container.running) throw new ContainerNotRunningError(container.name)

    const inspect = await this.exec(['sh', '-c', INSPECT_SCRIPT, 'occ-update'], {timeoutMs: 30_000})
    this.state = parseInstalledState(inspect.stdout)
    this.outcome.fromCommit = this.state.activeCommit
    this.outcome.fromVersion = this.state.version
    if (!this.state.root) {
      throw new UpdateFailedError('UPDATE_NOT_ROOT', 'Updating opencode needs root in the sandbox, and exec as root was refused.', {
        actions: ['Run the update from the host: occ update opencode'],
      })
    }

    if (!this.state.present) {
      throw new UpdateFailedError('UPDATE_NOT_SUPPORTED', 'This sandbox has no /opt/opencode: it is not an opencode-cloud image.', {
        actions: ['Recreate the sandbox from the opencode-cloud image: occ start'],
      })
    }

    if (this.state.recipe === 'none') {
      throw new UpdateFailedError(
        'UPDATE_NOT_SUPPORTED',
        `This image cannot build opencode: it has neither ${IMAGE_RECIPE} nor bun for the ${OPENCODE_USER} user.`,
        {actions: ['Update the whole image instead: occ update container']},
      )
    }

    await this.lock()
    const buildAsUser = this.state.recipe === 'builtin' ? '1' : '0'
    await this.script(STAGE_SCRIPT, [this.stagingDir!, localRepoPath(this.repo) ?? '', buildAsUser], 'UPDATE_FAILED', 'Preparing the staging directory failed')
    return `${describeTarget(this.target)}; installed ${shortSha(this.state.activeCommit)}`
  }

  private async resolve(): Promise<string> {
    const target = this.target!
    if (target.kind === 'branch') {
      const result = await this.git(['ls-remote', '--', this.repo, `refs/heads/${target.branch}`])
      if (result.exitCode !== 0) throw this.gitError('Could not list the branches of', result)
      const sha = parseLsRemote(result.stdout, target.branch)
      if (!sha) {
        throw new UpdateFailedError('UNKNOWN_BRANCH', `Branch '${target.branch}' does not exist in ${this.repo}.`, {
          actions: ['Check the branch name, or pick a commit with --commit <sha>.'],
        })
      }

      this.targetCommit = sha
      this.outcome.ref = {branch: target.branch, commit: sha}
      return `${target.branch} → ${shortSha(sha)}`
    }

    if (isFullSha(target.commit)) {
      this.targetCommit = target.commit
    } else if (this.state?.activeCommit?.startsWith(target.commit)) {
      // The installed commit already has this prefix: no need to fetch the whole history to say so.
      this.targetCommit = this.state.activeCommit
    } else {
      // A short SHA can only be resolved against history: fetch the branches and tags.
      await this.initSource()
      await this.fetchAll()
      this.targetCommit = await this.revParse(target.commit)
      this.fetched = true
    }

    this.outcome.ref = {commit: this.targetCommit}
    return `${target.commit} → ${shortSha(this.targetCommit)}`
  }

  private async compare(): Promise<boolean | string> {
    const installed = this.state?.activeCommit
    if (installed && installed === this.targetCommit) {
      this.outcome.toVersion = this.state?.version
      this.outcome.message = `opencode is already at ${shortSha(installed)}${this.state?.version ? ` (version ${this.state.version})` : ''}; nothing to do.`
      this.setDetail('compare', `already at ${shortSha(installed)}`)
      return true
    }

    this.setDetail('compare', `${shortSha(installed)} → ${shortSha(this.targetCommit)}`)
    return false
  }

  private async fetch(): Promise<string> {
    const sha = this.targetCommit!
    if (!this.fetched) {
      await this.initSource()
      const direct = await this.git(['fetch', '--quiet', '--no-tags', '--depth', '1', '--', this.repo, sha], {cwd: 'src'})
      if (direct.exitCode !== 0) {
        // Some servers refuse fetching by SHA; then take the branch (or everything) instead.
        this.output(`fetch by commit was refused (${firstLine(direct.stderr)}); fetching refs instead`)
        const target = this.target!
        if (target.kind === 'branch') {
          const byRef = await this.git(['fetch', '--quiet', '--no-tags', '--', this.repo, `refs/heads/${target.branch}`], {cwd: 'src'})
          if (byRef.exitCode !== 0) throw this.gitError('Could not fetch from', byRef)
        } else {
          await this.fetchAll()
        }
      }
    }

    this.throwIfCancelled()
    const verify = await this.git(['rev-parse', '--verify', '--quiet', `${sha}^{commit}`], {cwd: 'src'})
    if (verify.exitCode !== 0) {
      throw new UpdateFailedError('FETCH_FAILED', `Commit ${sha} is not in what was fetched from ${this.repo} (did the branch move?).`, {
        actions: ['Try again.'],
      })
    }

    const checkout = await this.git(['checkout', '--quiet', '--force', '--detach', sha], {cwd: 'src'})
    if (checkout.exitCode !== 0) throw this.gitError('Could not check out the source from', checkout)
    return `${shortSha(sha)} checked out`
  }

  private async build(): Promise<string> {
    const staging = this.stagingDir!
    const recipe = this.state!.recipe
    const candidate = `${staging}/release`
    if (recipe === 'image') {
      await this.runBuild(
        ['setsid', '-w', 'sh', '-c', GROUP_WRAPPER, 'occ-build', `${staging}/build.pid`, IMAGE_RECIPE, `${staging}/src`, candidate],
        {pidFile: `${staging}/build.pid`, user: 'root'},
      )
    } else {
      const chown = await this.exec(['chown', '-R', `${OPENCODE_USER}:${OPENCODE_USER}`, `${staging}/src`])
      if (chown.exitCode !== 0) throw new UpdateFailedError('BUILD_FAILED', `Preparing the build failed: ${tail(chown.stderr)}`)
      await this.runBuild(
        ['setsid', '-w', 'bash', '-lc', BUILTIN_RECIPE_SCRIPT, 'occ-build', `${staging}/work/build.pid`, `${staging}/src`, `${staging}/work/out`],
        {pidFile: `${staging}/work/build.pid`, user: OPENCODE_USER},
      )
      await this.script(ADOPT_BUILD_SCRIPT, [`${staging}/work/out`, candidate], 'BUILD_FAILED', 'Collecting the build output failed')
    }

    this.releaseDir = candidate
    const version = await this.exec(['sh', '-c', RELEASE_VERSION_SCRIPT, 'occ-update', candidate], {timeoutMs: 30_000})
    this.newVersion = firstLine(version.stdout) || undefined
    return this.newVersion ? `version ${this.newVersion}` : 'built'
  }

  private async activate(): Promise<{release: string; commit?: string; version?: string}> {
    this.throwIfCancelled()
    const state = this.state!
    const result = await this.exec(
      ['sh', '-c', ACTIVATE_SCRIPT, 'occ-update', this.targetCommit!, this.releaseDir!, imageReleaseName(state.recordedCommit)],
      {timeoutMs: 120_000},
    )
    const previousRelease = /^previous=(.*)$/m.exec(result.stdout)?.[1]?.trim()
    const switched = /^switched=1$/m.test(result.stdout)
    if (result.exitCode !== 0) {
      if (switched && previousRelease) {
        // Switched but COMMIT could not be written: switch back (opencode was not restarted yet).
        await this.exec(['sh', '-c', ROLLBACK_SCRIPT, 'occ-update', previousRelease, state.recordedCommit ?? '', ''], {timeoutMs: 60_000})
      }

      throw new UpdateFailedError('ACTIVATE_FAILED', `Switching to the new release failed: ${tail(result.stderr) || `exit ${result.exitCode}`}. opencode still runs ${shortSha(state.activeCommit)}.`)
    }

    const previous = {
      commit: isFullSha(previousRelease) ? previousRelease : state.recordedCommit,
      release: previousRelease ?? imageReleaseName(state.recordedCommit),
      version: state.version,
    }
    this.setDetail('activate', `current → releases/${shortSha(this.targetCommit)} (previous: ${shortSha(previous.release)})`)
    return previous
  }

  /** Restarts opencode and waits until it answers healthy (with the expected version). */
  private async restartAndVerify(expectedVersion: string | undefined, what: string): Promise<string> {
    let method: RestartMethod
    try {
      method = await this.runtime.restartOpencode()
    } catch (error) {
      throw new UpdateFailedError('RESTART_FAILED', `Restarting opencode failed: ${errorMessage(error)}`, {cause: error})
    }

    this.outcome.restartMethod = method
    const verdict = await this.waitHealthy(expectedVersion)
    if (!verdict.healthy) {
      throw new UpdateFailedError('UNHEALTHY', `${what} did not answer healthy within ${formatSeconds(this.opts.healthTimeoutMs)} (last answer: ${verdict.detail})`)
    }

    return `restarted via ${method}; ${verdict.detail}`
  }

  private async rollback(previous: {release: string; commit?: string; version?: string}, cause: unknown): Promise<string> {
    const reason = errorMessage(cause)
    const to = shortSha(previous.commit ?? previous.release)
    const result = await this.exec(['sh', '-c', ROLLBACK_SCRIPT, 'occ-update', previous.release, previous.commit ?? '', this.targetCommit!], {
      timeoutMs: 60_000,
    })
    if (result.exitCode !== 0) {
      throw new UpdateFailedError(
        'ROLLBACK_FAILED',
        `opencode ${shortSha(this.targetCommit)} failed (${reason}), and switching back to ${to} failed too: ${tail(result.stderr)}`,
        {actions: ['Look at the sandbox: occ logs; recreate it if needed: occ start']},
      )
    }

    this.outcome.rolledBack = true
    this.outcome.toVersion = previous.version
    let verified: string
    try {
      verified = await this.restartAndVerify(previous.version, `the previous version (${to})`)
    } catch (error) {
      throw new UpdateFailedError(
        'ROLLBACK_UNHEALTHY',
        `Update to ${shortSha(this.targetCommit)} failed: ${reason}. Rolled back to ${to}, but it is not healthy either: ${errorMessage(error)}`,
        {actions: ['Look at the logs: occ logs', 'Restart the sandbox: occ restart']},
      )
    }

    return `back on ${to}; ${verified}`
  }

  private async prune(previousRelease: string): Promise<string> {
    const result = await this.exec(['sh', '-c', PRUNE_SCRIPT, 'occ-update', this.targetCommit!, previousRelease], {timeoutMs: 120_000})
    const pruned = [...result.stdout.matchAll(/^pruned=(.*)$/gm)].map((match) => match[1])
    // A failed prune leaves disk in use, nothing broken: report it, do not fail the update.
    if (result.exitCode !== 0) return `could not prune: ${tail(result.stderr, 1)}`
    return pruned.length > 0 ? `removed ${pruned.map((name) => shortSha(name)).join(', ')}` : 'nothing to remove'
  }

  // --- pieces ---------------------------------------------------------------------------

  private async lock(): Promise<void> {
    const token = randomBytes(12).toString('hex')
    const owner = this.opts.owner ?? `occ pid ${process.pid} on ${os.hostname()} since ${new Date(this.now()).toISOString()}`
    const result = await this.exec(['sh', '-c', LOCK_SCRIPT, 'occ-update', token, owner, String(this.opts.lockStaleSeconds)], {
      timeoutMs: 30_000,
    })
    if (result.exitCode === 75) {
      const holder = /^owner=(.*)$/m.exec(result.stdout)?.[1]?.trim()
      throw new UpdateBusyError(`Another opencode update is running${holder ? ` (${holder})` : ''}.`, {
        actions: ['Wait for it to finish, then try again.'],
      })
    }

    if (result.exitCode !== 0) throw new UpdateFailedError('UPDATE_FAILED', `Could not take the update lock: ${tail(result.stderr) || `exit ${result.exitCode}`}`)
    this.lockToken = token
    this.stagingDir = `${STAGING_DIR}/${token}`
    this.heartbeat = setInterval(() => {
      this.runtime.exec(['touch', `${LOCK_DIR}/heartbeat`], {timeoutMs: 10_000, user: 'root'}).catch(() => undefined)
    }, this.opts.heartbeatMs)
    this.heartbeat.unref()
  }

  private async initSource(): Promise<void> {
    if (this.fetched) return
    const init = await this.git(['init', '--quiet', 'src'])
    if (init.exitCode !== 0) throw this.gitError('Could not prepare a checkout for', init)
  }

  private async fetchAll(): Promise<void> {
    const result = await this.git(
      ['fetch', '--quiet', '--', this.repo, '+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*'],
      {cwd: 'src'},
    )
    if (result.exitCode !== 0) throw this.gitError('Could not fetch from', result)
  }

  private async revParse(commit: string): Promise<string> {
    const result = await this.git(['rev-parse', '--verify', '--quiet', `${commit}^{commit}`], {cwd: 'src'})
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

  private async runBuild(argv: string[], how: {pidFile: string; user: string}): Promise<void> {
    this.throwIfCancelled()
    const stop = new AbortController()
    const timeout = setTimeout(() => stop.abort(new Error('timeout')), this.opts.buildTimeoutMs)
    const onAbort = (): void => stop.abort(new Error('cancelled'))
    this.signal?.addEventListener('abort', onAbort, {once: true})
    // A cancel kills the build's whole process group (an exec cannot be killed through the
    // Docker API, and killing only its first process would leave the compiler running); the
    // exec's own signal only lets go of the stream if the group outlives the kill.
    const release = new AbortController()
    const running = this.exec(argv, {onOutput: 'all', signal: release.signal, user: how.user})
    running.catch(() => undefined)
    const stopped = new Promise<'stopped'>((resolve) => {
      stop.signal.addEventListener('abort', () => resolve('stopped'), {once: true})
    })
    try {
      const first = await Promise.race([running, stopped])
      if (first === 'stopped') {
        const kill = await this.exec(['sh', '-c', KILL_GROUP_SCRIPT, 'occ-kill', how.pidFile], {timeoutMs: 10_000}).catch(
          (error: unknown): ExecResult => ({exitCode: -1, stderr: errorMessage(error), stdout: ''}),
        )
        if (kill.exitCode !== 0) this.output(`could not stop the build: ${tail(kill.stderr, 1) || `exit ${kill.exitCode}`}`)
        const ended = await Promise.race([running.then(() => true, () => true), delay(this.opts.killGraceMs, false, {ref: false})])
        if (!ended) release.abort(new Error('the build outlived its kill'))
        if (this.signal?.aborted) throw new UpdateCancelledError()
        throw new UpdateFailedError('BUILD_FAILED', `The build did not finish within ${formatSeconds(this.opts.buildTimeoutMs)}; nothing was changed.`)
      }

      if (first.exitCode !== 0) {
        const why = tail(first.stderr, 3) || tail(first.stdout, 3) || `exit ${first.exitCode}`
        throw new UpdateFailedError('BUILD_FAILED', `The build failed (exit ${first.exitCode}): ${why}. Nothing was changed; opencode still runs ${shortSha(this.state?.activeCommit)}.`, {
          actions: ['Fix the source, or pick another commit: occ update opencode --commit <sha>'],
        })
      }
    } finally {
      clearTimeout(timeout)
      this.signal?.removeEventListener('abort', onAbort)
    }
  }

  private async waitHealthy(expectedVersion: string | undefined): Promise<{healthy: boolean; detail: string}> {
    const deadline = this.now() + this.opts.healthTimeoutMs
    let streak = 0
    let detail = 'no answer yet'
    for (;;) {
      const remaining = deadline - this.now()
      if (remaining <= 0) return {detail, healthy: false}
      const probe = await this.runtime.probeHealth(Math.max(100, Math.min(2000, remaining))).catch(
        (error): {kind: 'failed'; error: string} => ({error: errorMessage(error), kind: 'failed'}),
      )
      const verdict = judgeHealth(probe, expectedVersion)
      detail = verdict.detail
      streak = verdict.healthy ? streak + 1 : 0
      if (streak >= this.opts.healthyAnswers) return verdict
      await delay(this.opts.healthIntervalMs)
    }
  }

  private async cleanup(): Promise<void> {
    clearInterval(this.heartbeat)
    if (!this.lockToken) return
    await this.exec(['sh', '-c', UNLOCK_SCRIPT, 'occ-update', this.lockToken, this.stagingDir ?? ''], {timeoutMs: 60_000}).catch(() => undefined)
  }

  private successMessage(): string {
    const from = this.outcome.fromVersion
    const to = this.newVersion
    const versions = from && to && from !== to ? ` (version ${from} → ${to})` : to ? ` (version ${to})` : ''
    return `Updated opencode from ${shortSha(this.outcome.fromCommit)} to ${shortSha(this.targetCommit)}${versions}; restarted via ${this.outcome.restartMethod}.`
  }

  // --- plumbing -------------------------------------------------------------------------

  private setDetail(step: UpdateStep, detail: string): void {
    this.details.set(step, detail)
  }

  /** Runs one step: reports its start and end, times it, and records failures against it. */
  private async step<T>(name: UpdateStep, body: () => Promise<T>): Promise<T> {
    if (name !== 'rollback' && name !== 'restart' && name !== 'prune') this.throwIfCancelled()
    this.progress.onStep?.(name)
    const started = this.now()
    const finish = (status: StepTiming['status'], detail?: string): void => {
      const timing: StepTiming = {durationMs: this.now() - started, status, step: name}
      const text = this.details.get(name) ?? detail
      if (text) timing.detail = text
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

  private output(text: string): void {
    if (!this.progress.onOutput) return
    for (const line of text.split('\n')) if (line.trim()) this.progress.onOutput(line.trimEnd())
  }

  /** exec as root, with output streamed as progress lines when asked. */
  private exec(argv: string[], options: Omit<ExecOptions, 'onOutput'> & {onOutput?: 'all' | 'stderr'} = {}): Promise<ExecResult> {
    const {onOutput, ...rest} = options
    // Build output is the sandbox's text: whole lines, each capped (LineSplitter), never an unbounded buffer.
    const lines = new LineSplitter('stdout', false)
    const stream = onOutput
      ? (chunk: string, from: 'stderr' | 'stdout') => {
          if (onOutput === 'stderr' && from !== 'stderr') return
          for (const line of lines.push(chunk)) this.output(line.text)
        }
      : undefined
    return this.runtime.exec(argv, {user: 'root', ...rest, ...(stream ? {onOutput: stream} : {})}).finally(() => {
      for (const line of lines.flush()) this.output(line.text)
    })
  }

  private async script(script: string, args: string[], code: OccErrorCode, what: string): Promise<void> {
    const result = await this.exec(['sh', '-c', script, 'occ-update', ...args], {timeoutMs: 120_000})
    if (result.exitCode !== 0) throw new UpdateFailedError(code, `${what}: ${tail(result.stderr) || `exit ${result.exitCode}`}`)
  }

  /** git as argv, with a private config (safe.directory for a local repo) and no prompts. */
  private git(args: string[], options: {cwd?: 'src'} = {}): Promise<ExecResult> {
    const staging = this.stagingDir!
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

  private gitError(what: string, result: ExecResult): UpdateFailedError {
    const resolving = !this.timings.has('resolve')
    return new UpdateFailedError(resolving ? 'RESOLVE_FAILED' : 'FETCH_FAILED', `${what} ${this.repo}: ${tail(result.stderr, 3) || tail(result.stdout, 3) || `git exit ${result.exitCode}`}`, {
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
