/**
 * `occ update container` and `--rollback`: the sandbox recreated on another image, health-checked,
 * with the old container kept until the new one is ready.
 *
 * The swap: the old container is stopped and renamed `<name>_previous` (an underscore: no
 * instance name can have one, so it never collides with another instance's container); the new
 * one is created under the real name with everything the old one had (replacementSpec), started,
 * its login users restored, and waited on until opencode and the broker are ready. Ready → the
 * kept container is removed and the image it ran becomes this instance's rollback tag
 * (`<repository>:previous`, or `:instance-<id>-previous`). Not ready → the new container is
 * removed, the kept one renamed back, started and verified, and the update fails saying so.
 *
 * Crash anywhere: a kept `<name>_previous` container is the evidence. The next `occ start` or
 * `occ update container` repairs it first (repairInterruptedSwap): no container under the real
 * name → the kept one is renamed back; a new one that becomes ready → the swap is finished; one
 * that does not → rolled back to the kept one.
 */
import {performance} from 'node:perf_hooks'
import {setTimeout as delay} from 'node:timers/promises'

import type Docker from 'dockerode'

import type {ResourceNames} from '../config/instance.js'
import {isNotFound} from '../docker/connection.js'
import {replacementSpec} from '../docker/container-spec.js'
import {inspectImage, pruneDanglingOf, pullImage, registryDigest, repoDigestsFor, repositoryOf, splitRef, type PullEvent} from '../docker/image.js'
import {ContainerMissingError, OccError, errorMessage} from '../errors.js'
import type {HostRuntime} from './host-runtime.js'
import {recentLogLines, restoreUsers} from './lifecycle.js'
import {waitUntilReady, type Readiness} from './readiness.js'
import {liveRecreateNotice, withRecreateNotice} from './recreate-notice.js'
import {acquireHostUpdateLock} from './update-lock.js'
import {UpdateBusyError} from './update/errors.js'

export function keptContainerName(names: ResourceNames): string {
  return names.keptContainer
}

/** This instance's rollback tag for `image` (the Rust occ's `previous` / `instance-<id>-previous`). */
export function rollbackTag(image: string, names: ResourceNames): string {
  return `${repositoryOf(image)}:${names.instance ? `instance-${names.instance}-previous` : 'previous'}`
}

export interface ContainerUpdateOptions {
  rollback?: boolean
  /** How long the new container gets to be ready (opencode healthy, broker ready); default 60 s. */
  healthTimeoutMs?: number
  onProgress?: (message: string) => void
  onPullEvent?: (event: PullEvent) => void
}

export interface ImageFacts {
  id: string
  /** The registry digest of the image, when it came from a registry. */
  digest: string | null
  /** Its org.opencode-cloud.version label. */
  version: string | null
}

/** What `occ update container --json` prints (schemas/update-container-result.schema.json). */
export interface ContainerUpdateResult {
  action: 'rollback' | 'update'
  changed: boolean
  rolledBack: boolean
  message: string
  image: string
  rollbackImage: string
  from: ImageFacts
  to: ImageFacts
  container: string
  containerId: string
  /** What a repair of an interrupted earlier swap did, when there was one. */
  repair?: string
  /** Dangling images of this repository removed after the update. */
  pruned: string[]
  readiness?: Readiness
  durationMs: number
}

/** A container update that failed; rolledBack says the sandbox runs its previous container again. */
export class ContainerUpdateError extends OccError {
  readonly rolledBack: boolean

  constructor(code: 'CONTAINER_ROLLBACK_FAILED' | 'CONTAINER_UPDATE_FAILED' | 'CONTAINER_UPDATE_ROLLED_BACK', message: string, options: {actions?: string[]; cause?: unknown; rolledBack: boolean}) {
    super(code, message, options)
    this.name = 'ContainerUpdateError'
    this.rolledBack = options.rolledBack
  }

  override toJSON(): ReturnType<OccError['toJSON']> & {rolledBack: boolean} {
    return {...super.toJSON(), rolledBack: this.rolledBack}
  }
}

function facts(image: Docker.ImageInspectInfo | undefined, repository: string): ImageFacts {
  return {
    digest: repoDigestsFor(image, repository)[0] ?? null,
    id: image?.Id ?? '',
    version: image?.Config?.Labels?.['org.opencode-cloud.version'] ?? null,
  }
}

async function inspectContainer(docker: Docker, name: string): Promise<Docker.ContainerInspectInfo | undefined> {
  try {
    return await docker.getContainer(name).inspect()
  } catch (error) {
    if (isNotFound(error)) return undefined
    throw error
  }
}

async function tagAs(docker: Docker, imageId: string, ref: string): Promise<void> {
  await docker.getImage(imageId).tag(splitRef(ref))
}

async function stopQuietly(container: Docker.Container): Promise<void> {
  try {
    await container.stop({t: 30})
  } catch (error) {
    const code = (error as {statusCode?: number}).statusCode
    if (code !== 304 && code !== 404) throw error
  }
}

/**
 * Updates the sandbox to the image the registry serves for `image` now, or (rollback) to this
 * instance's rollback tag. Under the instance's update lock (shared with update opencode).
 */
export async function updateContainer(host: HostRuntime, options: ContainerUpdateOptions = {}): Promise<ContainerUpdateResult> {
  const started = performance.now()
  const progress = options.onProgress ?? (() => {})
  const lock = await acquireHostUpdateLock(host.paths, host.names, 'update container')
  try {
    const repair = await repairInterruptedSwap(host, {onProgress: progress})
    const info = await host.inspect()
    if (!info) throw new ContainerMissingError(host.names.container, {actions: ['Create it (from the newest image) with: occ start']})
    const image = host.config.image
    const repository = repositoryOf(image)
    const previousTag = rollbackTag(image, host.names)
    const current = await inspectImage(host.docker, info.Image)
    const base = {
      container: host.names.container,
      from: facts(current, repository),
      image,
      pruned: [] as string[],
      rollbackImage: previousTag,
      rolledBack: false,
      ...(repair.kind === 'none' ? {} : {repair: repair.message}),
    }
    const done = (result: Omit<ContainerUpdateResult, 'durationMs'>): ContainerUpdateResult => ({...result, durationMs: Math.round(performance.now() - started)})

    if (options.rollback) {
      const target = await inspectImage(host.docker, previousTag)
      if (!target) {
        throw new OccError('NO_PREVIOUS_IMAGE', `There is no previous image to roll back to (${previousTag} does not exist).`, {
          actions: ['Roll back is possible after an update: occ update container'],
        })
      }

      if (target.Id === info.Image) {
        return done({...base, action: 'rollback', changed: false, containerId: info.Id, message: `The sandbox already runs the previous image (${previousTag}).`, to: facts(target, repository)})
      }

      progress(`Rolling back to ${previousTag}${target.Config?.Labels?.['org.opencode-cloud.version'] ? ` (version ${target.Config.Labels['org.opencode-cloud.version']})` : ''}`)
      const swapped = await withRecreateNotice(host.paths, host.names, 'occ update container --rollback', info.Id, () => swapContainer(host, info, current, target.Id, options))
      // Symmetric: the image we left is the rollback target now (a second --rollback goes back).
      if (current) await tagAs(host.docker, current.Id, previousTag)
      const pruned = await pruneDanglingOf(host.docker, repository)
      return done({
        ...base,
        action: 'rollback',
        changed: true,
        containerId: swapped.containerId,
        message: `Rolled back to the previous image; the sandbox is ready (in ${(swapped.readiness.elapsedMs / 1000).toFixed(1)} s).`,
        pruned,
        readiness: swapped.readiness,
        to: facts(target, repository),
      })
    }

    if (image.includes('@')) {
      return done({...base, action: 'update', changed: false, containerId: info.Id, message: `The image is pinned to a digest (${image}); there is nothing newer to update to.`, to: base.from})
    }

    progress(`Checking ${image} in its registry`)
    const remote = await registryDigest(host.docker, image, {onNote: progress})
    if (repoDigestsFor(current, repository).includes(remote)) {
      // The configured tag names what runs (a swap cut short may have left it on another image).
      const tagged = await inspectImage(host.docker, image)
      if (current && tagged?.Id !== current.Id) await tagAs(host.docker, current.Id, image)
      return done({...base, action: 'update', changed: false, containerId: info.Id, message: `Already up to date: the sandbox runs ${image} (${remote.slice(0, 19)}).`, to: base.from})
    }

    let target = await inspectImage(host.docker, image)
    if (!target || !repoDigestsFor(target, repository).includes(remote)) {
      // The old container keeps serving while the new image downloads.
      await pullImage(host.docker, image, {onEvent: options.onPullEvent, onNote: progress})
      target = await inspectImage(host.docker, image)
      if (!target) throw new OccError('IMAGE_UNAVAILABLE', `${image} was pulled but is not there.`)
    }

    // Service mode follows the swap (recreate-notice.ts) rather than ending when the old container goes.
    const swapped = await withRecreateNotice(host.paths, host.names, 'occ update container', info.Id, () => swapContainer(host, info, current, target.Id, options))
    if (current && current.Id !== target.Id) await tagAs(host.docker, current.Id, previousTag)
    const pruned = await pruneDanglingOf(host.docker, repository)
    const toFacts = facts(target, repository)
    return done({
      ...base,
      action: 'update',
      changed: true,
      containerId: swapped.containerId,
      message: `Updated the sandbox to ${image}${toFacts.version ? ` (version ${toFacts.version})` : ''}; ready in ${(swapped.readiness.elapsedMs / 1000).toFixed(1)} s. The image before is kept as ${previousTag}.`,
      pruned,
      readiness: swapped.readiness,
      to: toFacts,
    })
  } finally {
    await lock.release()
  }
}

/** Tests kill occ at a named step of the swap (as OCC_STORE_CRASH_AT does in the release store). */
function crashPoint(name: 'created' | 'renamed' | 'started' | 'stopped'): void {
  if (process.env.OCC_UPDATE_CONTAINER_CRASH_AT === name) process.kill(process.pid, 'SIGKILL')
}

/**
 * Replaces the container `info` by one on `targetImageId` (tagged as the config's image first),
 * keeping the old one stopped and renamed until the new one is ready; rolls back when it is not.
 */
async function swapContainer(
  host: HostRuntime,
  info: Docker.ContainerInspectInfo,
  oldImage: Docker.ImageInspectInfo | undefined,
  targetImageId: string,
  options: ContainerUpdateOptions,
): Promise<{containerId: string; readiness: Readiness}> {
  const progress = options.onProgress ?? (() => {})
  const {docker, names} = host
  const image = host.config.image
  if (info.State.Running) await refuseWhileSandboxUpdates(host)
  const spec = replacementSpec(info, oldImage, {config: host.config, image, names})
  const kept = keptContainerName(names)
  const restoreTag = async (): Promise<void> => {
    await tagAs(docker, info.Image, image).catch(() => {})
  }

  await tagAs(docker, targetImageId, image)
  progress(`Stopping ${names.container}; it is kept as ${kept} until the new container is ready`)
  await stopQuietly(docker.getContainer(info.Id))
  crashPoint('stopped')
  await docker.getContainer(info.Id).rename({name: kept})
  crashPoint('renamed')

  let created: Docker.Container
  try {
    progress(`Creating ${names.container} on the new image`)
    created = await docker.createContainer(spec)
  } catch (error) {
    // Nothing new exists: put the old one back as it was.
    await docker.getContainer(info.Id).rename({name: names.container})
    await restoreTag()
    await docker.getContainer(info.Id).start().catch(() => {})
    throw new ContainerUpdateError('CONTAINER_UPDATE_FAILED', `Could not create the new container: ${errorMessage(error)}. The sandbox runs its old container again.`, {
      cause: error,
      rolledBack: true,
    })
  }

  crashPoint('created')
  try {
    await created.start()
    crashPoint('started')
    progress('Waiting for opencode and the broker to be ready in the new container')
    const readiness = await waitUntilReady(host, {
      healthTimeoutMs: options.healthTimeoutMs ?? 60_000,
      onProgress: progress,
      recentLogs: () => recentLogLines(host, 20),
    })
    await restoreUsers(host, progress)
    await docker.getContainer(info.Id).remove({force: true, v: false})
    return {containerId: created.id, readiness}
  } catch (error) {
    progress(`The new container is not ready (${errorMessage(error).split('\n')[0]}); rolling back to the old one`)
    const reason = errorMessage(error)
    await restoreTag()
    try {
      await backToKept(host, info.Id, created.id)
    } catch (rollbackError) {
      throw new ContainerUpdateError(
        'CONTAINER_ROLLBACK_FAILED',
        `The new container was not ready (${reason.split('\n')[0]}), and rolling back failed too: ${errorMessage(rollbackError)}`,
        {cause: rollbackError, rolledBack: false},
      )
    }

    await pruneDanglingOf(docker, repositoryOf(image)).catch(() => [])
    throw new ContainerUpdateError('CONTAINER_UPDATE_ROLLED_BACK', `The new container was not ready, so occ rolled back: the sandbox runs its previous container again, ready.\nWhy: ${reason}`, {
      cause: error,
      rolledBack: true,
    })
  }
}

/**
 * An update opencode that runs inside the sandbox without the host lock (an older occ, or one
 * run in the container itself) holds the release store's lock: the container is not stopped
 * under it. A lock whose owner is gone, or whose heartbeat stopped (90 s), does not count.
 */
async function refuseWhileSandboxUpdates(host: HostRuntime): Promise<void> {
  const [{sandboxStore}, {lockOwnerGone, ownerChecks}] = await Promise.all([import('./update/plan.js'), import('./update/lock-owner.js')])
  const state = await sandboxStore(host)
    .inspect()
    .catch(() => undefined)
  const lock = state?.lock
  if (!lock || lock.ageSeconds > 90 || lockOwnerGone(lock, ownerChecks())) return
  throw new UpdateBusyError(`An opencode update is running inside the sandbox${lock.description ? ` (${lock.description})` : ''}; the container is not replaced under it.`, {
    actions: ['Wait for it to finish, then try again: occ update container'],
  })
}

/** Removes the container under the real name (if `newId` or any) and puts the kept one back, started and ready. */
async function backToKept(host: HostRuntime, keptId: string, newId?: string): Promise<Readiness> {
  const {docker, names} = host
  const main = await inspectContainer(docker, names.container)
  if (main && main.Id !== keptId) await docker.getContainer(main.Id).remove({force: true, v: false})
  else if (newId) await docker.getContainer(newId).remove({force: true, v: false}).catch(() => {})
  await docker.getContainer(keptId).rename({name: names.container})
  await docker.getContainer(keptId).start().catch((error: {statusCode?: number}) => {
    if (error.statusCode !== 304) throw error
  })
  const readiness = await waitUntilReady(host, {recentLogs: () => recentLogLines(host, 20)})
  await restoreUsers(host)
  return readiness
}

export type SwapRepair = {kind: 'finished' | 'restored' | 'rolled-back'; message: string} | {kind: 'none'}

/**
 * What an interrupted swap left (a kept `<name>_previous` container), set right: see the file
 * comment. The caller holds the update lock (or knows no update runs).
 */
export async function repairInterruptedSwap(host: HostRuntime, options: {onProgress?: (message: string) => void; healthTimeoutMs?: number} = {}): Promise<SwapRepair> {
  const {docker, names} = host
  const kept = await inspectContainer(docker, keptContainerName(names))
  if (!kept) return {kind: 'none'}
  const progress = options.onProgress ?? (() => {})
  const main = await inspectContainer(docker, names.container)
  if (!main) {
    progress(`An interrupted update left the old container as ${keptContainerName(names)}; putting it back`)
    await docker.getContainer(kept.Id).rename({name: names.container})
    return {kind: 'restored', message: 'An interrupted update had left the old container aside; it is back under its name.'}
  }

  if (main.State.Running) {
    progress('An interrupted update left a new container; checking whether it becomes ready')
    try {
      await waitUntilReady(host, {healthTimeoutMs: options.healthTimeoutMs ?? 60_000, onProgress: progress, recentLogs: () => recentLogLines(host, 20)})
      await restoreUsers(host, progress)
      await docker.getContainer(kept.Id).remove({force: true, v: false})
      await tagAs(docker, kept.Image, rollbackTag(host.config.image, names)).catch(() => {})
      await pruneDanglingOf(docker, repositoryOf(host.config.image)).catch(() => [])
      return {kind: 'finished', message: 'An interrupted update had left a new container; it is ready, so the update is finished (the old container is removed).'}
    } catch (error) {
      progress(`The new container is not ready (${errorMessage(error).split('\n')[0]}); going back to the old one`)
    }
  }

  await tagAs(docker, kept.Image, host.config.image).catch(() => {})
  await backToKept(host, kept.Id, main.Id)
  return {kind: 'rolled-back', message: 'An interrupted update had left a new container that was not ready; the sandbox runs its old container again.'}
}

/**
 * For occ start: repairs what an interrupted swap left, unless an update is running right now
 * (then it is that update's to finish, and start says so).
 */
export async function repairSwapAtStart(
  host: HostRuntime,
  progress: (message: string) => void,
  options: {waitMs?: number; pollMs?: number} = {},
): Promise<SwapRepair | {kind: 'busy'; message: string}> {
  if (!(await inspectContainer(host.docker, keptContainerName(host.names)))) return {kind: 'none'}
  // An update container is swapping right now: wait for it (the service's start comes back
  // while the old container is stopped), then set right whatever it left.
  const deadline = performance.now() + (options.waitMs ?? 300_000)
  let lock: Awaited<ReturnType<typeof acquireHostUpdateLock>> | undefined
  let said = false
  while (!lock) {
    try {
      lock = await acquireHostUpdateLock(host.paths, host.names, 'update container')
    } catch (error) {
      if (!(error instanceof UpdateBusyError)) throw error
      if (performance.now() > deadline) return {kind: 'busy', message: `${error.message} It keeps the old container as ${keptContainerName(host.names)} until it is done.`}
      if (!said) progress(`${error.message} Waiting for it to finish.`)
      said = true
      await delay(options.pollMs ?? 500)
    }
  }

  if (!(await inspectContainer(host.docker, keptContainerName(host.names)))) {
    await lock.release()
    return {kind: 'none'}
  }

  try {
    return await repairInterruptedSwap(host, {onProgress: progress})
  } finally {
    await lock.release()
  }
}

/**
 * For occ restart and occ stop: while another occ swaps the container (update container, or
 * start --recreate: its recreate note is live), waits for it instead of restarting or stopping
 * the container under it (the swap would take that for a failed start and roll back, or undo a
 * stop). Gives up after waitMs with UPDATE_BUSY.
 */
export async function waitForSwap(host: HostRuntime, progress: (message: string) => void, options: {waitMs?: number; pollMs?: number} = {}): Promise<void> {
  const deadline = performance.now() + (options.waitMs ?? 300_000)
  let said = false
  for (;;) {
    const notice = await liveRecreateNotice(host.paths, host.names)
    if (!notice) return
    const what = `${notice.why} (pid ${notice.pid}, since ${notice.since}) is replacing the sandbox container.`
    if (performance.now() > deadline) {
      throw new OccError('UPDATE_BUSY', `${what} It did not finish in time.`, {actions: ['Wait for it, then try again: occ status']})
    }

    if (!said) progress(`${what} Waiting for it to finish.`)
    said = true
    await delay(options.pollMs ?? 250)
  }
}
