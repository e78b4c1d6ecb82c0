import * as z from 'zod'

/** The published sandbox image (the Rust occ's default). */
export const DEFAULT_IMAGE = 'ghcr.io/prizz/opencode-cloud-sandbox:latest'
/** Docker Hub mirror of the published image, tried when ghcr.io fails. */
export const DOCKER_HUB_IMAGE = 'prizz/opencode-cloud-sandbox:latest'
/** The opencode fork the published image builds from. */
export const DEFAULT_OPENCODE_REPO = 'https://github.com/pRizz/opencode.git'

const ipLike = z.string().refine(
  (value) => {
    if (value.toLowerCase() === 'localhost') return true
    const bare = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value
    return z.ipv4().safeParse(bare).success || z.ipv6().safeParse(bare).success
  },
  {error: 'must be an IP address (127.0.0.1, ::1, 0.0.0.0, ::) or localhost'},
)

const positiveInt = z.number().int().positive()

/** Docker-style sizes: 512m, 4g, 1.5g, 2048k, or plain bytes. Parsed with parseMemoryLimit. */
const MEMORY_LIMIT = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i
const MEMORY_UNITS: Record<string, number> = {'': 1, g: 1024 ** 3, k: 1024, m: 1024 ** 2, t: 1024 ** 4}
/** Docker refuses less than 6 MiB for a container. */
export const MIN_MEMORY_BYTES = 6 * 1024 * 1024

/** Bytes for a memory_limit value (undefined when it does not parse). */
export function parseMemoryLimit(text: string): number | undefined {
  const match = MEMORY_LIMIT.exec(text.trim())
  if (!match) return undefined
  const bytes = Math.floor(Number(match[1]) * MEMORY_UNITS[match[2].toLowerCase()])
  return Number.isSafeInteger(bytes) ? bytes : undefined
}

/** Default pids limit when pids_limit is not set: room for builds and language servers, not for a fork bomb. */
export const DEFAULT_PIDS_LIMIT = 4096

/**
 * The config file. Field names and defaults are the Rust occ's (reference §9), so the same
 * config.json works with both. Unknown keys are errors. `image`, `opencode_repo` and the
 * resource limits (`memory_limit`, `cpu_limit`, `pids_limit`) are ours; they are optional so a
 * Rust-written file loads unchanged, and they are written only when set.
 */
export const configSchema = z.strictObject({
  version: z.number().int().nonnegative(),
  opencode_web_port: z.number().int().min(1024, {error: 'must be >= 1024 (non-privileged)'}).max(65_535).default(3000),
  bind: z.string().default('localhost'),
  auto_restart: z.boolean().default(true),
  boot_mode: z.enum(['user', 'system']).default('user'),
  restart_retries: z.number().int().nonnegative().default(3),
  restart_delay: z.number().int().nonnegative().default(5),
  auth_username: z.string().nullable().optional(),
  auth_password: z.string().nullable().optional(),
  container_env: z
    .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*=/, {error: 'each entry must look like KEY=value'}))
    .default([]),
  bind_address: ipLike.default('127.0.0.1'),
  trust_proxy: z.boolean().default(false),
  rate_limit_attempts: positiveInt.default(5),
  rate_limit_window_seconds: positiveInt.default(60),
  allow_unauthenticated_network: z.boolean().default(false),
  users: z.array(z.string()).default([]),
  cockpit_port: z.number().int().min(1).max(65_535).default(9090),
  cockpit_enabled: z.boolean().default(false),
  image_source: z.enum(['prebuilt', 'build']).default('prebuilt'),
  update_check: z.enum(['always', 'once', 'never']).default('always'),
  mounts: z.array(z.string()).optional(),
  image: z.string().min(1).optional(),
  opencode_repo: z.string().min(1).optional(),
  memory_limit: z
    .string()
    .refine((value) => (parseMemoryLimit(value) ?? 0) >= MIN_MEMORY_BYTES, {error: 'must be a size of at least 6m, like 512m, 4g or 1.5g'})
    .optional(),
  cpu_limit: z.number().positive().max(1024).optional(),
  pids_limit: z.number().int().min(64, {error: 'must be >= 64 (opencode and its tools need processes)'}).max(4_194_304).optional(),
})

export type ConfigFile = z.input<typeof configSchema>
export type ParsedConfig = z.output<typeof configSchema>

/** The config as the rest of occ sees it: every default filled in. */
export interface OccConfig extends Omit<ParsedConfig, 'image' | 'mounts' | 'opencode_repo'> {
  // memory_limit, cpu_limit and pids_limit stay optional: unset means Docker's default (memory,
  // CPU) or DEFAULT_PIDS_LIMIT.
  image: string
  mounts: string[]
  opencode_repo: string
}

/** Keys `occ config get/set` understand, with the Rust occ's aliases. */
export const CONFIG_KEY_ALIASES: Record<string, keyof OccConfig> = {
  allow_unauth: 'allow_unauthenticated_network',
  cockpit: 'cockpit_enabled',
  env: 'container_env',
  host: 'bind_address',
  hostname: 'bind',
  password: 'auth_password',
  port: 'opencode_web_port',
  proxy: 'trust_proxy',
  rate_attempts: 'rate_limit_attempts',
  rate_limit_window: 'rate_limit_window_seconds',
  rate_window: 'rate_limit_window_seconds',
  repo: 'opencode_repo',
  unauth_network: 'allow_unauthenticated_network',
  cpus: 'cpu_limit',
  memory: 'memory_limit',
  pids: 'pids_limit',
  username: 'auth_username',
}

export const CONFIG_KEYS = Object.keys(configSchema.shape) as Array<keyof OccConfig>
