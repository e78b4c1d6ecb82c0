import fs from 'node:fs/promises'
import {performance} from 'node:perf_hooks'

import type Docker from 'dockerode'

import {buildContainerSpec, DROPPED_CAPABILITIES} from '../docker/container-spec.js'
import {ensureImage, type PullEvent} from '../docker/image.js'
import {seccompSecurityOpt} from '../docker/seccomp.js'
import {dedupeMounts, defaultMounts, formatMountSpec, parseMountSpec, type MountSpec} from '../config/mounts.js'
import {isNotFound} from '../docker/connection.js'
import {ConfigError, OccError, UsageError, errorMessage} from '../errors.js'
import {bindMountSpecs, type HostRuntime} from './host-runtime.js'
import {applyOwnership, mountDirFacts, planMountOwnership} from './mount-ownership.js'
import {waitUntilReady, type Readiness, type ReadinessOptions} from './readiness.js'
import {announceRecreate} from './recreate-notice.js'
import {firstLogin, userStoreFor, type FirstLogin} from './users/host-users.js'
import type {RestoreReport} from './users/store.js'
import {mapBrokerHealth, mapOpencodeHealth, parseSandboxFacts, SANDBOX_FACTS_SCRIPT} from './status.js'

export interface StartOptions {
  /** Host port; defaults to the config's opencode_web_port. */
  port?: number
  /** Extra `--mount` specs for this start. */
  mounts?: string[]
  /** Ignore the config's mounts. */
  noMounts?: boolean
  /** Remove an existing container first (volumes kept) so port, mounts, image and env apply. */
  recreate?: boolean
  onProgress?: (message: string) => void
  /** The Engine's pull events when the image is pulled (the command renders them: createPullView). */
  onPullEvent?: (event: PullEvent) => void
  /** Called for each warning as it is found (so it is seen even when the start then fails). */
  onWarning?: (message: string) => void
  readiness?: Omit<ReadinessOptions, 'onProgress' | 'recentLogs'>
  env?: NodeJS.ProcessEnv
  /**
   * 'ready' (default): wait until opencode is healthy and the broker ready. 'running': only until
   * the container runs, then report health as it is (start --no-daemon: the listener must come up
   * whatever opencode's health — fixing an unhealthy opencode is what updates are for).
   */
  waitFor?: 'ready' | 'running'
  /** Repair a release an interrupted update left unverified before waiting (default true). */
  repair?: boolean
}

export interface StartResult {
  container: string
  containerId: string
  /** True when the container was already running: nothing was created or started. */
  alreadyRunning: boolean
  created: boolean
  /** True when an existing container was removed and created again (--recreate, or --port changed). */
  recreated: boolean
  image: string
  imagePulled: boolean
  port: number
  url: string | null
  readiness: Readiness
  /** What the repair of an unverified release did, when there was one. */
  repair?: {kind: string; message: string}
  warnings: string[]
  /** The login users put back from their records (and config.users brought in line). */
  users: RestoreReport
  /** Set when nobody can log in yet: the initial one-time password, or why there is none. */
  firstLogin: FirstLogin | null
}

/** The bind mounts for a new container: config (unless --no-mounts) then --mount, last per target wins. */
export async function resolveBindMounts(configMounts: string[], extra: string[], noMounts: boolean): Promise<{mounts: MountSpec[]; warnings: string[]}> {
  const specs = [...(noMounts ? [] : configMounts), ...extra]
  const parsed = specs.map((spec) => {
    try {
      return parseMountSpec(spec)
    } catch (error) {
      throw new ConfigError(errorMessage(error), {actions: ['Fix the mount with: occ config set mounts \'["/host:/container"]\''] })
    }
  })
  const {dropped, mounts} = dedupeMounts(parsed)
  const warnings = dropped.map((mount) => `Mount ${formatMountSpec(mount)} is overridden by a later mount on the same target.`)
  for (const mount of mounts) {
    if (mount.container === '/opt/opencode' || mount.container.startsWith('/opt/opencode/')) {
      throw new ConfigError(`Mount target ${mount.container} would hide opencode itself.`, {actions: ['Choose another container path.']})
    }

    const stat = await fs.stat(mount.host).catch(() => undefined)
    if (!stat?.isDirectory()) {
      throw new ConfigError(`Mount path ${mount.host} ${stat ? 'is not a directory' : 'does not exist'}.`, {
        actions: [`Create it (mkdir -p ${mount.host}) or drop the mount from the config.`],
      })
    }
  }

  return {mounts, warnings}
}

function bindMountsMatch(a: MountSpec[], b: MountSpec[]): boolean {
  const key = (mount: MountSpec): string => formatMountSpec(mount)
  const left = new Set(a.map(key))
  return a.length === b.length && b.every((mount) => left.has(key(mount)))
}

/** Why an existing container does not match what a new one would be (empty: it matches). */
async function containerDrift(host: HostRuntime, info: Docker.ContainerInspectInfo, port: number, mounts: MountSpec[]): Promise<string[]> {
  const drift: string[] = []
  const state = await host.containerState()
  if (state.hostPort !== port) drift.push(`it publishes port ${state.hostPort ?? 'none'}, not ${port}`)
  if (!bindMountsMatch(bindMountSpecs(state.mounts), mounts)) drift.push('it has other bind mounts than the config')
  if (info.Config?.Image !== host.config.image) drift.push(`it runs the image ${info.Config?.Image ?? 'unknown'}, not ${host.config.image}`)
  const env = new Set(info.Config?.Env ?? [])
  if (host.config.container_env.some((entry) => !env.has(entry))) drift.push('its environment lacks entries of container_env')
  // Created by an older occ: without the seccomp profile, root in it can make setuid files in the
  // bind mounts; with an earlier version of it, it refuses them but differs otherwise.
  const securityOpt: string[] = info.HostConfig?.SecurityOpt ?? []
  if (!securityOpt.includes(seccompSecurityOpt())) {
    drift.push(securityOpt.some((option) => option.startsWith('seccomp=')) ? 'it has an earlier version of occ\'s seccomp profile' : 'it lacks occ\'s current seccomp profile (setuid/setgid bits are not refused)')
  }

  // Created by an older occ that kept a capability occ now drops (FSETID: root's writes keep setuid bits).
  const capDrop = new Set<string>(info.HostConfig?.CapDrop ?? [])
  const kept = DROPPED_CAPABILITIES.filter((cap) => !capDrop.has(cap) && !capDrop.has(`CAP_${cap}`))
  if (kept.length > 0) drift.push(`it keeps capabilities the sandbox no longer gets (${kept.join(', ')})`)
  return drift
}

/**
 * Makes sure the sandbox runs and is ready: image (present, else pulled), volumes, container
 * (created when missing), started, then opencode healthy and the broker ready. A container that
 * already runs is left as it is; differences from the config are reported as warnings, unless
 * --recreate (or an explicit --port that differs) asks to create it again (volumes are kept).
 * A container this call created and could not start is removed again.
 */
export async function startSandbox(host: HostRuntime, options: StartOptions = {}): Promise<StartResult> {
  // A recreate announces itself (service mode follows the new container rather than ending) and
  // withdraws the note once the new container is ready, or this start failed.
  const notice: RecreateNoticeHolder = {}
  try {
    return await startOrRecreate(host, options, notice)
  } finally {
    await notice.withdraw?.()
  }
}

interface RecreateNoticeHolder {
  withdraw?: () => Promise<void>
}

async function startOrRecreate(host: HostRuntime, options: StartOptions, notice: RecreateNoticeHolder): Promise<StartResult> {
  const progress = options.onProgress ?? (() => {})
  const {config, names} = host
  const port = options.port ?? config.opencode_web_port
  if (port < 1 || port > 65_535) throw new UsageError(`Port ${port} is out of range.`)
  const warnings: string[] = []
  const warn = (...messages: string[]): void => {
    for (const message of messages) {
      warnings.push(message)
      options.onWarning?.(message)
    }
  }

  const {mounts, warnings: mountWarnings} = await resolveBindMounts(config.mounts, options.mounts ?? [], options.noMounts ?? false)
  warn(...mountWarnings)

  // An update container killed mid-swap left the old container aside: set that right first.
  const {repairSwapAtStart} = await import('./container-update.js')
  const swap = await repairSwapAtStart(host, progress)
  if (swap.kind === 'busy') throw new OccError('UPDATE_BUSY', swap.message)
  if (swap.kind !== 'none') warn(swap.message)

  let info = await host.inspect()
  let created = false
  let recreated = false
  let imagePulled = false
  if (info) {
    const drift = await containerDrift(host, info, port, mounts)
    const portChanged = options.port !== undefined && drift.some((reason) => reason.startsWith('it publishes port'))
    if (options.recreate || portChanged) {
      // The image first: a pull that fails must leave the container as it was.
      progress(`Checking the image ${config.image}`)
      imagePulled = (await ensureImage(host.docker, config.image, {onEvent: options.onPullEvent, onNote: progress})) === 'pulled'
      progress(`Recreating container ${names.container} (volumes are kept)${drift.length > 0 ? `: ${drift.join('; ')}` : ''}`)
      notice.withdraw = await announceRecreate(host.paths, names, 'occ start --recreate', info.Id)
      await stopSandbox(host, {remove: true, timeoutSeconds: 30, waitForSwap: false})
      info = undefined
      recreated = true
    } else if (drift.length > 0) {
      warn(`The existing container differs from the config (${drift.join('; ')}). To apply the config: occ start --recreate`)
    }
  }

  const alreadyRunning = Boolean(info?.State.Running)
  if (!info) {
    if (!recreated) {
      progress(`Checking the image ${config.image}`)
      imagePulled = (await ensureImage(host.docker, config.image, {onEvent: options.onPullEvent, onNote: progress})) === 'pulled'
    }

    for (const volume of Object.values(names.volumes)) {
      await host.docker.createVolume({Driver: 'local', Labels: names.labels, Name: volume})
    }

    progress(`Creating container ${names.container}`)
    const env = options.env ?? process.env
    const spec = buildContainerSpec({bindMounts: mounts, cloudEnv: env.OPENCODE_CLOUD_ENV || undefined, config, image: config.image, names, port})
    try {
      await host.docker.createContainer(spec)
      created = true
    } catch (error) {
      if ((error as {statusCode?: number}).statusCode === 409) {
        // Another occ created it between our inspect and create: use theirs.
      } else {
        throw mapCreateError(error, port)
      }
    }

    info = await host.inspect()
  }

  if (!info) throw new OccError('CONTAINER_CREATE_FAILED', `Container ${names.container} vanished right after it was created.`)
  if (!info.State.Running) {
    warn(...(await prepareMountDirs(host, bindMountSpecs((await host.containerState()).mounts))))
    if (!created) {
      const undone = await undoUnverifiedBeforeStart(host)
      if (undone.warning) warn(undone.warning)
      if (undone.message) progress(undone.message)
    }

    progress(`Starting container ${names.container}`)
    try {
      await host.container().start()
    } catch (error) {
      // 304: already started (a concurrent start won the race).
      if ((error as {statusCode?: number}).statusCode !== 304) {
        // A container we created and could not start would keep its (wrong) port binding and
        // make the next start fail: remove it. One that existed before is left for the user.
        if (created) await host.container().remove({force: true}).catch(() => {})
        throw mapCreateError(error, port)
      }
    }
  }

  const repair = options.repair === false ? undefined : await repairAtStart(host, progress)
  if (repair?.kind === 'busy' || repair?.kind === 'failed') warn(repair.message)
  let readiness: Readiness
  if (options.waitFor === 'running') {
    readiness = await readinessSnapshot(host)
  } else {
    progress('Waiting for opencode and the broker to be ready')
    try {
      readiness = await waitUntilReady(host, {
        ...options.readiness,
        onProgress: progress,
        recentLogs: () => recentLogLines(host, 20),
      })
    } catch (error) {
      // What occ warned about (a mount the sandbox cannot write, …) is the likely cause: say it first.
      if (error instanceof OccError && warnings.length > 0) error.actions.unshift(...warnings)
      throw error
    }
  }

  // In service mode opencode may not be up yet: a user that cannot be restored now is a warning
  // (the next start retries), never a reason to leave the web UI without its listener.
  const users =
    options.waitFor === 'running'
      ? await restoreUsers(host, progress).catch((error: unknown): RestoreReport => {
          warnings.push(`Could not restore the login users yet: ${errorMessage(error)}`)
          return {migrated: [], relocked: [], restored: [], skipped: [], users: []}
        })
      : await restoreUsers(host, progress)
  const state = await host.containerState()
  return {
    ...(repair && repair.kind !== 'none' ? {repair} : {}),
    alreadyRunning,
    firstLogin: await firstLogin(host, config),
    container: names.container,
    containerId: state.id ?? info.Id,
    created,
    image: config.image,
    imagePulled,
    port: state.hostPort ?? port,
    readiness,
    recreated,
    url: (await host.opencodeUrl()) ?? null,
    users,
    warnings,
  }
}

/**
 * Restores the login users from their records (every start and restart; also for a recreated
 * container) and mirrors them into config.users. Runs after readiness, when the image's own
 * entrypoint restore is done. A user that cannot be restored fails the start, naming it.
 */
export async function restoreUsers(host: HostRuntime, progress: (message: string) => void = () => {}): Promise<RestoreReport> {
  const report = await userStoreFor(host, host).restore()
  if (report.restored.length > 0) progress(`Restored login users: ${report.restored.join(', ')}`)
  if (report.migrated.length > 0) progress(`Recorded existing login users: ${report.migrated.join(', ')}`)
  for (const skipped of report.skipped) progress(`Skipped a user record: ${skipped}`)
  return report
}

/**
 * An update that was killed (or a container restarted) between the switch and the health check
 * left a release "activated, not verified": re-verify it, else roll back, before anything waits
 * on opencode's health. Never fails the start: a problem becomes a warning.
 */
export async function repairAtStart(
  host: HostRuntime,
  progress: (message: string) => void,
  signal?: AbortSignal,
): Promise<{kind: 'busy' | 'failed' | 'none' | 'rolled-back' | 'verified'; message: string}> {
  try {
    const {repairRelease} = await import('./update/repair.js')
    const {sandboxStore} = await import('./update/plan.js')
    const report = await repairRelease(host, sandboxStore(host), {onProgress: progress, signal})
    if (report.kind !== 'none') progress(report.message)
    return report.kind === 'none' ? {kind: 'none', message: ''} : {kind: report.kind, message: report.message}
  } catch (error) {
    return {kind: 'failed', message: `Could not check for a release left unverified by an interrupted update: ${errorMessage(error)}`}
  }
}

/**
 * A stopped sandbox left on a release an update never verified starts on the previous release
 * (the release may be what stopped it; see update/stopped-sandbox.ts). A failure to check is a
 * warning: the start goes on, and the repair after it still runs.
 */
async function undoUnverifiedBeforeStart(host: HostRuntime): Promise<{message?: string; warning?: string}> {
  try {
    const {undoUnverifiedOnStopped} = await import('./update/stopped-sandbox.js')
    const message = await undoUnverifiedOnStopped(host)
    return message ? {message} : {}
  } catch (error) {
    return {warning: `Could not check the stopped sandbox for a release an interrupted update left unverified: ${errorMessage(error)}`}
  }
}

/** Health as it is right now (no waiting): what start --no-daemon reports. */
async function readinessSnapshot(host: HostRuntime): Promise<Readiness> {
  const started = performance.now()
  const probe = await host.probeHealth(2000)
  const facts = await host
    .exec(['sh', '-c', SANDBOX_FACTS_SCRIPT], {timeoutMs: 5000, user: 'root'})
    .then((result) => parseSandboxFacts(result.stdout))
    .catch(() => undefined)
  return {
    broker: mapBrokerHealth(facts?.brokerProcess, facts?.brokerSocket),
    elapsedMs: Math.round(performance.now() - started),
    opencode: mapOpencodeHealth(probe),
  }
}

/**
 * Before the container starts: default mount dirs occ made as root are handed to the image's
 * sandbox user; any other dir the sandbox cannot write gets a warning (never a chown).
 */
async function prepareMountDirs(host: HostRuntime, mounts: MountSpec[]): Promise<string[]> {
  if (mounts.length === 0) return []
  const defaults = new Set(defaultMounts(host.paths))
  const facts = await mountDirFacts(mounts, defaults)
  const occUid = process.getuid?.() ?? -1
  const user = await host.sandboxUser()
  const plan = planMountOwnership(facts, occUid, user)
  return [...plan.warnings, ...(await applyOwnership(plan, user))]
}

function mapCreateError(error: unknown, port: number): OccError {
  const message = errorMessage(error)
  if (/port is already allocated|address already in use/i.test(message)) {
    return new OccError('PORT_IN_USE', `Port ${port} is already in use.`, {
      actions: [`Stop what uses port ${port}, or pick another: occ start --port <port> (to keep it: occ config set port <port>, then occ start --recreate)`],
      cause: error,
    })
  }

  if (isNotFound(error)) return new OccError('IMAGE_UNAVAILABLE', message, {actions: ['Check the image: occ config get image'], cause: error})
  return new OccError('DOCKER_ERROR', `Docker refused: ${message}`, {cause: error})
}

export async function recentLogLines(host: HostRuntime, count: number): Promise<string[]> {
  const lines: string[] = []
  for await (const line of host.logs({broker: false, follow: false, lines: count, timestamps: false})) lines.push(line.text)
  return lines
}

export interface StopResult {
  container: string
  existed: boolean
  wasRunning: boolean
  removed: boolean
  /** The old container an interrupted update had kept aside (<name>_previous), removed with --remove. */
  removedKept?: string
  durationMs: number
}

/** Graceful stop; a stopped or missing container is success. --remove also removes it (volumes kept). */
export async function stopSandbox(
  host: HostRuntime,
  options: {timeoutSeconds: number; remove: boolean; onProgress?: (message: string) => void; waitForSwap?: boolean},
): Promise<StopResult> {
  const started = performance.now()
  // Not under a swap another occ is doing (it would start its old container again); the
  // recreate inside occ start passes waitForSwap: false (its own note is written).
  if (options.waitForSwap !== false) {
    const {waitForSwap} = await import('./container-update.js')
    await waitForSwap(host, options.onProgress ?? (() => {}))
  }

  const info = await host.inspect()
  const result: StopResult = {container: host.names.container, durationMs: 0, existed: Boolean(info), removed: false, wasRunning: Boolean(info?.State.Running)}
  if (options.remove) {
    // The old container an interrupted update kept aside goes too: a later start would put it back.
    const kept = host.docker.getContainer(host.names.keptContainer)
    try {
      await kept.remove({force: true, v: false})
      result.removedKept = host.names.keptContainer
    } catch (error) {
      if (!isNotFound(error)) throw error
    }
  }

  if (info?.State.Running) {
    try {
      await host.container().stop({t: options.timeoutSeconds})
    } catch (error) {
      const code = (error as {statusCode?: number}).statusCode
      if (code !== 304 && code !== 404) throw error
    }
  }

  if (info && options.remove) {
    try {
      await host.container().remove({force: true})
      result.removed = true
    } catch (error) {
      if (!isNotFound(error)) throw error
    }
  }

  result.durationMs = Math.round(performance.now() - started)
  return result
}

export interface RestartResult {
  container: string
  port: number
  url: string | null
  readiness: Readiness
  durationMs: number
  users: RestoreReport
  /** What the repair of an unverified release did, when there was one. */
  repair?: {kind: string; message: string}
}

/**
 * Restart = stop, start, wait until ready, on the port the container actually publishes
 * (not the config's, which may have changed since it was created).
 */
export async function restartSandbox(host: HostRuntime, options: {timeoutSeconds: number; onProgress?: (message: string) => void}): Promise<RestartResult> {
  const started = performance.now()
  // A swap in progress (update container, start --recreate) first: then what an interrupted one left.
  const {repairSwapAtStart, waitForSwap} = await import('./container-update.js')
  await waitForSwap(host, options.onProgress ?? (() => {}))
  const swap = await repairSwapAtStart(host, options.onProgress ?? (() => {}))
  if (swap.kind === 'busy') throw new OccError('UPDATE_BUSY', swap.message)
  if (swap.kind !== 'none') options.onProgress?.(swap.message)
  const info = await host.inspect()
  if (!info) {
    const result = await startSandbox(host, {onProgress: options.onProgress})
    return {
      container: result.container,
      durationMs: Math.round(performance.now() - started),
      port: result.port,
      readiness: result.readiness,
      url: result.url,
      users: result.users,
    }
  }

  if (!info.State.Running) {
    const undone = await undoUnverifiedBeforeStart(host)
    const note = undone.message ?? undone.warning
    if (note) options.onProgress?.(note)
  }

  options.onProgress?.(`Restarting container ${host.names.container}`)
  // A service (another process) waits for this restart instead of taking a slow one for a crash.
  const release = host.holdLifecycle('occ restart')
  let repair: Awaited<ReturnType<typeof repairAtStart>>
  let readiness: Readiness
  try {
    await host.container().restart({t: options.timeoutSeconds})
    repair = await repairAtStart(host, options.onProgress ?? (() => {}))
    readiness = await waitUntilReady(host, {onProgress: options.onProgress, recentLogs: () => recentLogLines(host, 20)})
  } finally {
    release()
  }

  const users = await restoreUsers(host, options.onProgress)
  const state = await host.containerState()
  return {
    ...(repair.kind === 'none' ? {} : {repair}),
    container: host.names.container,
    durationMs: Math.round(performance.now() - started),
    port: state.hostPort ?? host.config.opencode_web_port,
    readiness,
    url: (await host.opencodeUrl()) ?? null,
    users,
  }
}

/**
 * After a plain start or restart: an installed service that `occ stop` left stopped is started
 * again, so its listener answers the web UI. Never fails the start itself.
 */
export async function resumeInstalledService(host: HostRuntime): Promise<{note?: string; warning?: string}> {
  const {resumeService} = await import('../service/service.js')
  const resumed = await resumeService({instance: host.names.instance, paths: host.paths}).catch(() => undefined)
  if (resumed?.action === 'started') return {note: `Started the service ${resumed.name} too, so the web UI's update requests are answered.`}
  if (resumed?.action === 'failed') return {warning: `The service ${resumed.name} is installed but did not start: ${resumed.detail}`}
  return {}
}
