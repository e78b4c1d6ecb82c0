import fs from 'node:fs/promises'
import path from 'node:path'
import * as z from 'zod'

import {ConfigError} from '../errors.js'
import {writeFileNoFollow} from '../protocol/safe-fs.js'
import {stripJsonc} from './jsonc.js'
import {defaultMounts, parseMountSpec} from './mounts.js'
import type {OccPaths} from './paths.js'
import {
  CONFIG_KEY_ALIASES,
  CONFIG_KEYS,
  configSchema,
  DEFAULT_IMAGE,
  DEFAULT_OPENCODE_REPO,
  type OccConfig,
  type ParsedConfig,
} from './schema.js'

export interface LoadedConfig {
  config: OccConfig
  /** True when the file did not exist and was written with defaults. */
  created: boolean
  path: string
}

/** The file the Rust occ writes on first run: every field with its default. */
export function defaultConfigFile(paths: OccPaths): Record<string, unknown> {
  return {
    version: 1,
    opencode_web_port: 3000,
    bind: 'localhost',
    auto_restart: true,
    boot_mode: 'user',
    restart_retries: 3,
    restart_delay: 5,
    auth_username: null,
    auth_password: null,
    container_env: [],
    bind_address: '127.0.0.1',
    trust_proxy: false,
    rate_limit_attempts: 5,
    rate_limit_window_seconds: 60,
    allow_unauthenticated_network: false,
    users: [],
    cockpit_port: 9090,
    cockpit_enabled: false,
    image_source: 'prebuilt',
    update_check: 'always',
    mounts: defaultMounts(paths),
  }
}

/** Parses config text; every problem becomes one ConfigError naming field, problem and fix. */
export function parseConfigText(text: string, file: string, paths: OccPaths): OccConfig {
  let raw: unknown
  try {
    raw = JSON.parse(stripJsonc(text))
  } catch (error) {
    throw new ConfigError(`${file} is not valid JSON: ${(error as Error).message}`, {
      actions: [`Fix the syntax in ${file}, or move it away to get a fresh default config.`],
    })
  }

  if (raw && typeof raw === 'object' && !Array.isArray(raw) && 'opencode_commit' in raw) {
    // A legacy key the Rust occ also drops silently.
    delete (raw as Record<string, unknown>).opencode_commit
  }

  const result = configSchema.safeParse(raw)
  if (!result.success) throw configIssuesError(result.error, file)
  return withDefaults(result.data, paths)
}

function withDefaults(parsed: ParsedConfig, paths: OccPaths): OccConfig {
  return {
    ...parsed,
    image: parsed.image ?? DEFAULT_IMAGE,
    mounts: parsed.mounts ?? defaultMounts(paths),
    opencode_repo: parsed.opencode_repo ?? DEFAULT_OPENCODE_REPO,
  }
}

function configIssuesError(error: z.ZodError, file: string): ConfigError {
  const lines: string[] = []
  const actions: string[] = []
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        lines.push(`Field: ${key}\nProblem: unknown key (not an occ config field)`)
        actions.push(`Remove '${key}' from ${file}; known keys: ${CONFIG_KEYS.join(', ')}`)
      }

      continue
    }

    const field = issue.path.join('.') || '(root)'
    lines.push(`Field: ${field}\nProblem: ${issue.message}`)
    const key = String(issue.path[0] ?? '')
    actions.push(CONFIG_KEYS.includes(key as keyof OccConfig) ? `Fix it with: occ config set ${key} <value>` : `Edit ${file}`)
  }

  return new ConfigError(`Configuration invalid (${file}):\n${lines.join('\n')}`, {actions: [...new Set(actions)]})
}

/** Loads the config, creating it (and the default mount dirs) when it is missing. Never prompts. */
export async function loadConfig(paths: OccPaths): Promise<LoadedConfig> {
  let text: string
  let created = false
  try {
    text = await fs.readFile(paths.configFile, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError(`Cannot read ${paths.configFile}: ${(error as Error).message}`, {
        actions: ['Check the file permissions.'],
      })
    }

    const defaults = defaultConfigFile(paths)
    await writeFileAtomic(paths.configFile, `${JSON.stringify(defaults, null, 2)}\n`)
    created = true
    text = JSON.stringify(defaults)
  }

  const config = parseConfigText(text, paths.configFile, paths)
  await ensureDefaultMountDirs(config, paths)
  return {config, created, path: paths.configFile}
}

/** Creates the host dirs of configured mounts that are default mounts (as the Rust occ does). */
async function ensureDefaultMountDirs(config: OccConfig, paths: OccPaths): Promise<void> {
  const defaults = new Set(defaultMounts(paths))
  for (const spec of config.mounts) {
    if (!defaults.has(spec)) continue
    const {host} = parseMountSpec(spec)
    await fs.mkdir(host, {recursive: true})
    const stat = await fs.stat(host)
    if (!stat.isDirectory()) throw new ConfigError(`Default mount path is not a directory: ${host}`)
  }
}

/**
 * Saves atomically and keeps the previous file as config.json.bak. Our own fields are written
 * only when they differ from their defaults, so the Rust occ can keep reading the file.
 */
export async function saveConfig(paths: OccPaths, config: OccConfig): Promise<void> {
  const out: Record<string, unknown> = {...config}
  if (config.image === DEFAULT_IMAGE) delete out.image
  if (config.opencode_repo === DEFAULT_OPENCODE_REPO) delete out.opencode_repo
  // Validate what we write with the same schema we read with.
  const check = configSchema.safeParse(out)
  if (!check.success) throw configIssuesError(check.error, paths.configFile)
  try {
    await fs.copyFile(paths.configFile, `${paths.configFile}.bak`)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }

  await writeFileAtomic(paths.configFile, `${JSON.stringify(out, null, 2)}\n`)
}

/**
 * Temp file (O_CREAT|O_EXCL|O_NOFOLLOW, random name) + fsync + rename + fsync of the directory:
 * occ's one atomic writer, writeFileNoFollow, with the parent directory created first.
 */
export async function writeFileAtomic(file: string, data: string, mode = 0o600): Promise<void> {
  const dir = path.dirname(file)
  await fs.mkdir(dir, {recursive: true})
  await writeFileNoFollow(dir, path.basename(file), data, {mode})
}

export function resolveConfigKey(key: string): keyof OccConfig {
  const normalized = key.trim().toLowerCase().replaceAll('-', '_')
  const resolved = CONFIG_KEY_ALIASES[normalized] ?? normalized
  if (!CONFIG_KEYS.includes(resolved as keyof OccConfig)) {
    throw new ConfigError(`Unknown config key '${key}'.`, {actions: [`Known keys: ${CONFIG_KEYS.join(', ')}`]})
  }

  return resolved as keyof OccConfig
}

const OPTIONAL_LIMITS = new Set<keyof OccConfig>(['cpu_limit', 'memory_limit', 'pids_limit'])
const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on'])
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off'])

/** Turns the text of `occ config set KEY VALUE` into a typed value, checked by the schema. */
export function applyConfigValue(config: OccConfig, key: keyof OccConfig, text: string): OccConfig {
  if (key === 'auth_password') {
    throw new ConfigError('auth_password is deprecated and is never set from the command line.', {
      actions: ['Create a login user in the sandbox instead (its password goes to the sandbox, never into config.json): occ user add <name> --generate, or --password-stdin'],
    })
  }

  if (key === 'version') throw new ConfigError('version is managed by occ and cannot be set.')
  const current = config[key]
  let value: unknown
  if (OPTIONAL_LIMITS.has(key) && text.trim() === '') {
    // An empty value unsets a limit (back to the default; the field leaves the file).
    const next = {...config}
    delete next[key]
    return next
  }

  if (key === 'cpu_limit') {
    if (!/^\d+(\.\d+)?$/.test(text.trim())) throw new ConfigError(`cpu_limit must be a number of CPUs, like 2 or 1.5 (got '${text}').`)
    value = Number(text.trim())
  } else if (key === 'pids_limit') {
    if (!/^\d+$/.test(text.trim())) throw new ConfigError(`pids_limit must be a whole number (got '${text}').`)
    value = Number(text.trim())
  } else if (key === 'memory_limit') {
    value = text.trim()
  } else if (typeof current === 'boolean') {
    const lower = text.trim().toLowerCase()
    if (TRUE_WORDS.has(lower)) value = true
    else if (FALSE_WORDS.has(lower)) value = false
    else throw new ConfigError(`${key} must be true or false (got '${text}').`)
  } else if (typeof current === 'number') {
    if (!/^-?\d+$/.test(text.trim())) throw new ConfigError(`${key} must be a whole number (got '${text}').`)
    value = Number(text.trim())
  } else if (Array.isArray(current)) {
    try {
      value = JSON.parse(text)
    } catch {
      value = text === '' ? [] : text.split(',').map((part) => part.trim())
    }
  } else if (key === 'auth_username') {
    value = text === '' ? null : text
  } else {
    value = text
  }

  const next = {...config, [key]: value}
  const check = configSchema.shape[key].safeParse(value)
  if (!check.success) {
    const problem = check.error.issues.map((issue) => issue.message).join('; ')
    throw new ConfigError(`Field: ${key}\nProblem: ${problem}`, {actions: [`Try again: occ config set ${key} <value>`]})
  }

  if (key === 'mounts') {
    for (const spec of next.mounts) {
      try {
        parseMountSpec(spec)
      } catch (error) {
        throw new ConfigError(`Field: mounts\nProblem: ${(error as Error).message}`, {
          actions: ['Each mount is /host/path:/container/path[:ro]; try again: occ config set mounts \'["/host:/container"]\''],
        })
      }
    }
  }

  return next
}
