import {setTimeout as delay} from 'node:timers/promises'

import type Docker from 'dockerode'

import {DEFAULT_IMAGE, DOCKER_HUB_IMAGE} from '../config/schema.js'
import {OccError, errorMessage, type OccErrorCode} from '../errors.js'
import {isConnectionError, isNotFound} from './connection.js'

/** One event of the Engine's pull stream (only the fields occ reads). */
export interface PullEvent {
  id?: string
  status?: string
  progressDetail?: {current?: number; total?: number}
  error?: string
}

export interface PullOptions {
  /** Every event of the pull stream, for progress (see PullTracker). */
  onEvent?: (event: PullEvent) => void
  /** A line for people: which source is pulled, a retry. */
  onNote?: (message: string) => void
  /** Tries for a transient failure (registry unreachable, a 5xx); default 3. */
  attempts?: number
  /** Wait before the n-th retry: n × retryDelayMs (default 1000). */
  retryDelayMs?: number
  signal?: AbortSignal
}

export type PullFailure = 'not-found' | 'other' | 'unauthorized' | 'unreachable'

/**
 * Why a pull (or a registry query) failed, from the Engine's message. The Engine passes on the
 * registry's words: "manifest unknown", "unauthorized: authentication required", "dial tcp …:
 * connect: connection refused", …
 */
export function classifyPullError(message: string, statusCode?: number): PullFailure {
  if (/repository does not exist|manifest unknown|manifest for .* not found|name unknown|not found: manifest|no such image/i.test(message)) return 'not-found'
  if (
    /connection refused|no such host|i\/o timeout|timeout|network is unreachable|connection reset|\bEOF\b|TLS handshake|server gave HTTP response to HTTPS client|dial tcp|no route to host|temporary failure|\b50[234]\b/i.test(
      message,
    )
  ) {
    return 'unreachable'
  }

  if (/unauthorized|authentication required|no basic auth credentials|denied|forbidden|\b40[13]\b/i.test(message)) return 'unauthorized'
  if (statusCode === 404) return 'not-found'
  if (statusCode === 401 || statusCode === 403) return 'unauthorized'
  return 'other'
}

const FAILURE_CODES: Record<PullFailure, OccErrorCode> = {
  'not-found': 'IMAGE_NOT_FOUND',
  other: 'IMAGE_UNAVAILABLE',
  unauthorized: 'REGISTRY_UNAUTHORIZED',
  unreachable: 'REGISTRY_UNREACHABLE',
}

/** The registry part of a reference ("docker.io" when it names none). */
export function registryOf(ref: string): string {
  const first = ref.split('/')[0]
  return ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : 'docker.io'
}

/** A failed pull or registry query as the error occ reports: why, in words, with what to do. */
export function pullError(ref: string, error: unknown, what = 'pull'): OccError {
  const message = errorMessage(error)
  const kind = classifyPullError(message, (error as {statusCode?: number})?.statusCode)
  const registry = registryOf(ref)
  const text: Record<PullFailure, string> = {
    'not-found': `The registry ${registry} has no image ${ref}.`,
    other: `Could not ${what} the sandbox image ${ref}.`,
    unauthorized: `The registry ${registry} refused access to ${ref} (unauthorized).`,
    unreachable: `The registry ${registry} cannot be reached, so the image ${ref} could not be checked or pulled.`,
  }
  const actions: Record<PullFailure, string[]> = {
    'not-found': ['Check the image name and tag: occ config get image', 'Change it: occ config set image <ref>'],
    other: ['Check the image: occ config get image', 'Try again: occ start'],
    unauthorized: [`Log in to the registry on this machine (docker login ${registry}), then try again.`, 'Check the image: occ config get image'],
    unreachable: ['Check that this machine can reach the registry (network, proxy, the registry itself), then try again.', 'Or use an image present locally: occ config set image <ref>'],
  }
  return new OccError(FAILURE_CODES[kind], `${text[kind]}\nThe engine said: ${message.trim().slice(0, 500)}`, {actions: actions[kind], cause: error})
}

export async function imageExists(docker: Docker, ref: string): Promise<boolean> {
  return (await inspectImage(docker, ref)) !== undefined
}

export async function inspectImage(docker: Docker, ref: string): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    return await docker.getImage(ref).inspect()
  } catch (error) {
    if (isNotFound(error)) return undefined
    throw error
  }
}

/**
 * Uses the image when it is present, else pulls it. The published image falls back to Docker
 * Hub and is then tagged with its ghcr name, so the container is created from the name we asked for.
 * A failure says why (IMAGE_NOT_FOUND, REGISTRY_UNAUTHORIZED, REGISTRY_UNREACHABLE) and leaves
 * no tag behind.
 */
export async function ensureImage(docker: Docker, ref: string, options: PullOptions = {}): Promise<'present' | 'pulled'> {
  if (await imageExists(docker, ref)) return 'present'
  await pullWithFallback(docker, ref, options)
  return 'pulled'
}

/** Pulls `ref` (the published image: ghcr, then Docker Hub), with retries; throws pullError's error. */
export async function pullWithFallback(docker: Docker, ref: string, options: PullOptions = {}): Promise<void> {
  const sources = ref === DEFAULT_IMAGE ? [DEFAULT_IMAGE, DOCKER_HUB_IMAGE] : [ref]
  let first: OccError | undefined
  for (const source of sources) {
    try {
      await pullImage(docker, source, options)
      if (source !== ref) await docker.getImage(source).tag(splitRef(ref))
      return
    } catch (error) {
      if (error instanceof OccError && !first) first = error
      else if (!(error instanceof OccError)) throw error
      if (sources.length > 1) options.onNote?.(`Could not pull ${source}: ${error.message.split('\n')[0]}`)
    }
  }

  throw first ?? new OccError('IMAGE_UNAVAILABLE', `Could not pull ${ref}.`)
}

/** One image pulled, retried on transient failures (unreachable registry, 5xx). */
export async function pullImage(docker: Docker, ref: string, options: PullOptions = {}): Promise<void> {
  const attempts = options.attempts ?? 3
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted()
    try {
      options.onNote?.(attempt === 1 ? `Pulling ${ref}` : `Pulling ${ref} (try ${attempt} of ${attempts})`)
      await pullOnce(docker, ref, options)
      return
    } catch (error) {
      if (isConnectionError(error)) throw error
      const failure = pullError(ref, error)
      const transient = failure.code === 'REGISTRY_UNREACHABLE' || failure.code === 'IMAGE_UNAVAILABLE'
      if (!transient || attempt >= attempts) throw failure
      options.onNote?.(`Pull failed (${errorMessage(error).trim().split('\n')[0].slice(0, 200)}); trying again`)
      await delay(attempt * (options.retryDelayMs ?? 1000), undefined, {signal: options.signal})
    }
  }
}

async function pullOnce(docker: Docker, ref: string, options: PullOptions): Promise<void> {
  // An empty auth header: the engine then uses what `docker login` stored for public/anonymous access.
  const stream = (await docker.pull(ref, {})) as NodeJS.ReadableStream
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null, output: PullEvent[]) => {
        const failed = output?.find((event) => event.error)
        if (error || failed) reject(error ?? new Error(failed?.error))
        else resolve()
      },
      (event: PullEvent) => options.onEvent?.(event),
    )
  })
}

/**
 * The digest the registry serves for `ref` now (the Engine's distribution endpoint), retried
 * like a pull when the registry cannot be reached.
 */
export async function registryDigest(docker: Docker, ref: string, options: Pick<PullOptions, 'attempts' | 'onNote' | 'retryDelayMs' | 'signal'> = {}): Promise<string> {
  const attempts = options.attempts ?? 3
  for (let attempt = 1; ; attempt++) {
    try {
      const info = await docker.getImage(ref).distribution({})
      const digest = info?.Descriptor?.digest
      if (typeof digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`the registry answered no digest for ${ref}`)
      return digest
    } catch (error) {
      if (isConnectionError(error)) throw error
      const failure = pullError(ref, error, 'check')
      if (failure.code !== 'REGISTRY_UNREACHABLE' || attempt >= attempts) throw failure
      options.onNote?.(`The registry did not answer (${errorMessage(error).trim().split('\n')[0].slice(0, 200)}); trying again`)
      await delay(attempt * (options.retryDelayMs ?? 1000), undefined, {signal: options.signal})
    }
  }
}

/** The repository of a reference, without tag or digest ("127.0.0.1:5000/x/y"). */
export function repositoryOf(ref: string): string {
  const at = ref.indexOf('@')
  const base = at === -1 ? ref : ref.slice(0, at)
  return splitRef(base).repo
}

/** The digests (sha256:…) the registry knows this image by, for `repository`. */
export function repoDigestsFor(image: Docker.ImageInspectInfo | undefined, repository: string): string[] {
  return (image?.RepoDigests ?? [])
    .filter((entry) => repositoryOf(entry) === repository || normalizeRepository(repositoryOf(entry)) === normalizeRepository(repository))
    .map((entry) => entry.slice(entry.indexOf('@') + 1))
}

/** Docker Hub names: "debian" and "docker.io/library/debian" are one repository. */
function normalizeRepository(repository: string): string {
  let name = repository
  if (name.startsWith('docker.io/')) name = name.slice('docker.io/'.length)
  if (name.startsWith('library/')) name = name.slice('library/'.length)
  return name
}

export function splitRef(ref: string): {repo: string; tag: string} {
  const slash = ref.lastIndexOf('/')
  const colon = ref.lastIndexOf(':')
  if (colon > slash) return {repo: ref.slice(0, colon), tag: ref.slice(colon + 1)}
  return {repo: ref, tag: 'latest'}
}

/**
 * Removes the dangling images (no tag left) of one repository: what an update of ours left.
 * Images of other repositories, tagged images and images a container uses are never touched.
 */
export async function pruneDanglingOf(docker: Docker, repository: string, keep: ReadonlySet<string> = new Set()): Promise<string[]> {
  const removed: string[] = []
  const images = await docker.listImages({filters: {dangling: ['true']}})
  for (const image of images) {
    const digests = image.RepoDigests ?? []
    if (keep.has(image.Id) || digests.length === 0) continue
    if (!digests.every((entry) => repositoryOf(entry) === repository)) continue
    if ((image.RepoTags ?? []).some((tag) => tag !== '<none>:<none>')) continue
    try {
      // Not forced: an image a container (even a stopped one) still uses is left alone.
      await docker.getImage(image.Id).remove()
      removed.push(image.Id)
    } catch {
      // In use, or already gone.
    }
  }

  return removed
}
