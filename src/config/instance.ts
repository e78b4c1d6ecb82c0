import {createHash} from 'node:crypto'

import {UsageError} from '../errors.js'

/** Docker resource names for one sandbox instance (reference §0: suffixes when an instance is set). */
export interface ResourceNames {
  instance: string | undefined
  container: string
  /**
   * Where update container keeps the old container while the new one proves itself
   * (`<container>_previous`: an underscore, which no instance name has).
   */
  keptContainer: string
  hostname: string
  volumes: Record<VolumeKey, string>
  imageStateFile: string
  labels: Record<string, string>
}

export const VOLUME_KEYS = ['data', 'state', 'cache', 'workspace', 'config', 'users', 'ssh'] as const
export type VolumeKey = (typeof VOLUME_KEYS)[number]

const BASE_VOLUME_NAMES: Record<VolumeKey, string> = {
  cache: 'opencode-cache',
  config: 'opencode-config',
  data: 'opencode-data',
  ssh: 'opencode-ssh',
  state: 'opencode-state',
  users: 'opencode-users',
  workspace: 'opencode-workspace',
}

export const MANAGED_BY_LABEL = 'managed-by'
export const MANAGED_BY_VALUE = 'opencode-cloud'
export const INSTANCE_LABEL = 'opencode-cloud.instance'
const INSTANCE_PATTERN = /^[a-z0-9][a-z0-9-]{0,31}$/

/**
 * Normalises a --sandbox-instance value. `auto` derives a stable id from a directory (the git
 * top level or the cwd), so each worktree gets its own sandbox.
 */
export function normalizeInstance(raw: string | undefined, autoBase?: () => string): string | undefined {
  if (raw === undefined) return undefined
  const value = raw.trim().toLowerCase()
  if (value === '') throw new UsageError("--sandbox-instance cannot be empty; use a-z, 0-9, and '-' only")
  if (value === 'auto') {
    const base = autoBase ? autoBase() : process.cwd()
    return `wt-${fnv1a64(base).padStart(12, '0')}`
  }

  if (!INSTANCE_PATTERN.test(value)) {
    throw new UsageError(`Invalid sandbox instance '${raw}'. Expected [a-z0-9][a-z0-9-]{0,31}`)
  }

  return value
}

export function resourceNames(instance: string | undefined): ResourceNames {
  const suffix = instance ? `-${instance}` : ''
  const container = `opencode-cloud-sandbox${suffix}`
  const volumes = Object.fromEntries(VOLUME_KEYS.map((key) => [key, `${BASE_VOLUME_NAMES[key]}${suffix}`])) as Record<
    VolumeKey,
    string
  >
  const labels: Record<string, string> = {[MANAGED_BY_LABEL]: MANAGED_BY_VALUE}
  if (instance) labels[INSTANCE_LABEL] = instance
  return {
    container,
    hostname: container,
    imageStateFile: instance ? `image-state-${instance}.json` : 'image-state.json',
    instance,
    keptContainer: `${container}_previous`,
    labels,
    volumes,
  }
}

function fnv1a64(text: string): string {
  let hash = 0xcbf29ce484222325n
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= BigInt(byte)
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn
  }

  return hash.toString(16)
}

/** A short, stable hash used where a name must be derived from arbitrary text. */
export function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12)
}
