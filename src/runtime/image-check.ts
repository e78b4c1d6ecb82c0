/**
 * "Is a newer sandbox image available?" for `occ status`, per the config's `update_check`:
 * - `always`: the registry is asked again once the last answer is older than IMAGE_CHECK_TTL_MS;
 * - `once`: asked once per local image (again only after the image changed, e.g. after
 *   `occ update container`); the Rust occ treats `once` as `always`;
 * - `never`: never asked.
 * Status never waits for the registry: it shows the cached answer (with when it was got) and,
 * when that is missing or due, starts a detached refresher (image-check-refresh.ts) that asks
 * the registry (the Engine's distribution endpoint, registryDigest) and writes the cache for the
 * next status. The cache lives in occ's own state dir on the host, never under a bind mount.
 */
import {spawn} from 'node:child_process'
import {constants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import * as z from 'zod'

import type {ResourceNames} from '../config/instance.js'
import type {OccPaths} from '../config/paths.js'
import type {OccConfig} from '../config/schema.js'
import {readUntrustedJson} from '../protocol/untrusted-json.js'

export type UpdateCheckMode = OccConfig['update_check']

/** How old an answer may be before `always` asks again. */
export const IMAGE_CHECK_TTL_MS = 60 * 60_000
/** How soon a failed check is tried again (any mode but never). */
export const IMAGE_CHECK_ERROR_TTL_MS = 5 * 60_000
/** A refresher started less than this long ago is not started again; older, it is taken for dead. */
export const REFRESH_CLAIM_MS = 60_000
/** How far a claim's mtime may be ahead of Date.now() and still count as fresh. */
const CLAIM_CLOCK_SLACK_MS = 2000
/** The refresher gives up (and records the failure) after this long. */
export const REFRESH_TIMEOUT_MS = 30_000

const MAX_CACHE_BYTES = 4096
const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/)

export const imageCheckRecordSchema = z.strictObject({
  image: z.string().min(1).max(512),
  /** The local image's registry digest when the registry was asked (null: it had none). */
  localDigest: digest.nullable(),
  remoteDigest: digest.nullable(),
  checkedAt: z.iso.datetime(),
  error: z.string().max(500).nullable(),
})

export type ImageCheckRecord = z.output<typeof imageCheckRecordSchema>

export interface ImageUpdateView {
  check: UpdateCheckMode
  state: 'available' | 'disabled' | 'pinned' | 'unknown' | 'up-to-date'
  /** What the registry served for the image's tag at checkedAt. */
  remoteDigest: string | null
  checkedAt: string | null
  detail: string | null
}

export interface ImageCheckInput {
  mode: UpdateCheckMode
  /** The configured image reference. */
  image: string
  /** The running container's image's registry digests for that repository. */
  localDigests: string[]
  cache?: ImageCheckRecord
  nowMs: number
}

/** What status shows, and whether a refresh should be started. Pure. */
export function imageUpdateView(input: ImageCheckInput): {view: ImageUpdateView; refresh: boolean} {
  const {mode} = input
  const none = {checkedAt: null, remoteDigest: null}
  if (mode === 'never') return {refresh: false, view: {...none, check: mode, detail: 'not checked (update_check is never)', state: 'disabled'}}
  if (input.image.includes('@')) return {refresh: false, view: {...none, check: mode, detail: 'the image is pinned to a digest', state: 'pinned'}}
  if (input.localDigests.length === 0) {
    return {refresh: false, view: {...none, check: mode, detail: 'the image did not come from a registry (it has no registry digest)', state: 'unknown'}}
  }

  const cache = input.cache?.image === input.image ? input.cache : undefined
  if (!cache) return {refresh: true, view: {...none, check: mode, detail: 'not checked yet; checking in the background', state: 'unknown'}}
  const ageMs = input.nowMs - Date.parse(cache.checkedAt)
  // A clock that went back makes an answer "from the future": due, not fresh for ever.
  const older = (limitMs: number): boolean => ageMs < 0 || ageMs >= limitMs
  if (cache.error !== null || cache.remoteDigest === null) {
    return {
      refresh: older(IMAGE_CHECK_ERROR_TTL_MS),
      view: {check: mode, checkedAt: cache.checkedAt, detail: `the last check failed: ${cache.error ?? 'no digest'}`, remoteDigest: null, state: 'unknown'},
    }
  }

  const current = input.localDigests.includes(cache.remoteDigest)
  const checkedThisImage = cache.localDigest !== null && input.localDigests.includes(cache.localDigest)
  const refresh = mode === 'once' ? !checkedThisImage : older(IMAGE_CHECK_TTL_MS)
  return {
    refresh,
    view: {
      check: mode,
      checkedAt: cache.checkedAt,
      detail: current ? null : 'a newer image is available: occ update container',
      remoteDigest: cache.remoteDigest,
      state: current ? 'up-to-date' : 'available',
    },
  }
}

export function imageCheckDir(paths: OccPaths): string {
  return path.join(paths.xdgState, 'opencode-cloud', 'image-check')
}

export function imageCheckFiles(paths: OccPaths, names: ResourceNames): {cache: string; claim: string} {
  const dir = imageCheckDir(paths)
  return {cache: path.join(dir, `${names.container}.json`), claim: path.join(dir, `${names.container}.refreshing`)}
}

/** The cached answer, when there is one that parses (no symlink followed, size capped). */
export async function readImageCheck(file: string): Promise<ImageCheckRecord | undefined> {
  const json = await readUntrustedJson(file, MAX_CACHE_BYTES)
  return json.ok ? imageCheckRecordSchema.safeParse(json.value).data : undefined
}

/**
 * Claims the refresh (an exclusive create of the claim file; a claim older than REFRESH_CLAIM_MS
 * is taken over) and starts the detached refresher. Returns whether one was started. Never throws:
 * status goes on without a refresh.
 */
export async function startImageCheckRefresh(
  files: {cache: string; claim: string},
  image: string,
  localDigest: string | null,
  options: {nowMs?: number; launch?: (argument: string) => void} = {},
): Promise<boolean> {
  try {
    await fs.mkdir(path.dirname(files.claim), {mode: 0o700, recursive: true})
    if (!(await claim(files.claim, options.nowMs ?? Date.now()))) return false
    ;(options.launch ?? launchRefresher)(JSON.stringify({cache: files.cache, claim: files.claim, image, localDigest}))
    return true
  } catch {
    return false
  }
}

/** Starts image-check-refresh.js detached (status exits without waiting for it). */
function launchRefresher(argument: string): void {
  const script = fileURLToPath(new URL('image-check-refresh.js', import.meta.url))
  const child = spawn(process.execPath, [script, argument], {detached: true, env: process.env, stdio: 'ignore'})
  child.on('error', () => {})
  child.unref()
}

async function claim(file: string, nowMs: number): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
      await handle.close()
      return true
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return false
    }

    const stat = await fs.lstat(file).catch(() => undefined)
    const ageMs = stat ? nowMs - stat.mtimeMs : Number.POSITIVE_INFINITY
    // Slightly ahead is fresh: the mtime has sub-millisecond precision and the kernel's clock,
    // nowMs neither. Far ahead (the clock went back) is taken over, or it would block for good.
    if (ageMs > -CLAIM_CLOCK_SLACK_MS && ageMs < REFRESH_CLAIM_MS) return false
    await fs.rm(file, {force: true})
  }

  return false
}
