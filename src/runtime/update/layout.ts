/**
 * Where an update puts things inside the sandbox, and the pure parsing/decisions around it.
 *
 * Release layout (created by the first update; the image ships the plain layout):
 *
 *   /opt/opencode/releases/<sha>/   one complete build per commit (bin/, ui/, whatever the recipe makes)
 *   /opt/opencode/current           -> releases/<sha>   (swapped by rename: the one atomic switch)
 *   /opt/opencode/bin               -> current/bin      (and ui, and every other top-level entry of a release)
 *   /opt/opencode/COMMIT            the active commit, written after the switch (tmp + rename)
 *   /opt/opencode/.staging/<id>/    source checkout and build output of a running update
 *   /opt/opencode/.update-lock/     held while an update runs (owner + heartbeat)
 *
 * Everything stays root-owned; the agent's user can read and run opencode, never replace it.
 */
import type {HealthProbe} from '../runtime.js'

export const OPENCODE_ROOT = '/opt/opencode'
export const RELEASES_DIR = `${OPENCODE_ROOT}/releases`
export const CURRENT_LINK = `${OPENCODE_ROOT}/current`
export const COMMIT_FILE = `${OPENCODE_ROOT}/COMMIT`
export const STAGING_DIR = `${OPENCODE_ROOT}/.staging`
export const LOCK_DIR = `${OPENCODE_ROOT}/.update-lock`
/** The image's own build recipe (the fixture has one; the published image does not, yet). */
export const IMAGE_RECIPE = '/usr/local/bin/opencode-build'
/** The user opencode runs as; builds of the built-in recipe run as this user too. */
export const OPENCODE_USER = 'opencoder'
export const DEFAULT_BRANCH = 'dev'

const FULL_SHA = /^[0-9a-f]{40}$/

export function isFullSha(value: string | undefined): value is string {
  return typeof value === 'string' && FULL_SHA.test(value)
}

export function shortSha(sha: string | undefined): string {
  return sha ? sha.slice(0, 7) : 'unknown'
}

export type BuildRecipe = 'builtin' | 'image' | 'none'

/** What the inspect script found in the sandbox. */
export interface InstalledState {
  /** The COMMIT file's first line, when it holds a full SHA. */
  recordedCommit?: string
  /** The release `current` points at (its directory name), when the release layout is in place. */
  currentRelease?: string
  /** What is really active: the current release's commit, else COMMIT. */
  activeCommit?: string
  /** `opencode --version` of the active build (first line). */
  version?: string
  recipe: BuildRecipe
  /** Whether the inspect ran as root (an update must). */
  root: boolean
  /** /opt/opencode exists at all. */
  present: boolean
  /** Directory names under releases/ (no temp entries). */
  releases: string[]
}

/**
 * Parses the inspect script's `key=value` lines. `current` is the truth about what is active
 * (COMMIT is only a record of it), so after a crash between the switch and the COMMIT write the
 * next update still knows what runs.
 */
export function parseInstalledState(stdout: string): InstalledState {
  const values = new Map<string, string[]>()
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=')
    if (eq <= 0) continue
    const key = line.slice(0, eq)
    const list = values.get(key) ?? []
    list.push(line.slice(eq + 1).trim())
    values.set(key, list)
  }

  const first = (key: string): string | undefined => values.get(key)?.[0] || undefined
  const commit = first('commit')?.toLowerCase()
  const recordedCommit = isFullSha(commit) ? commit : undefined
  const currentTarget = first('current')
  const currentRelease = currentTarget ? currentTarget.replace(/\/+$/, '').split('/').pop() : undefined
  const activeCommit = isFullSha(currentRelease) ? currentRelease : recordedCommit
  const recipe = first('recipe')
  return {
    activeCommit,
    currentRelease,
    present: first('present') === '1',
    recipe: recipe === 'image' || recipe === 'builtin' ? recipe : 'none',
    recordedCommit,
    releases: (values.get('release') ?? []).filter((name) => name && !name.startsWith('.')),
    root: first('uid') === '0',
    version: first('version'),
  }
}

/**
 * The commit of exactly `refs/heads/<branch>` in `git ls-remote` output. ls-remote matches
 * patterns by their tail, so `dev` could also list refs/heads/x/dev or refs/tags/dev: only the
 * exact ref counts.
 */
export function parseLsRemote(stdout: string, branch: string): string | undefined {
  const wanted = `refs/heads/${branch}`
  for (const line of stdout.split('\n')) {
    const [sha, ref] = line.trim().split(/\s+/)
    if (ref === wanted && isFullSha(sha?.toLowerCase())) return sha.toLowerCase()
  }

  return undefined
}

/** The release directory name for the plain layout the image ships (before any update). */
export function imageReleaseName(recordedCommit: string | undefined): string {
  return recordedCommit ?? 'image'
}

export interface HealthVerdict {
  healthy: boolean
  /** For people: what the last answer was. */
  detail: string
}

/**
 * Healthy = HTTP 2xx with `{healthy: true}` and, when we know which version we started, that
 * version. An answer from the wrong version means the old process still serves: not yet.
 */
export function judgeHealth(probe: HealthProbe, expectedVersion?: string): HealthVerdict {
  switch (probe.kind) {
    case 'refused': {
      return {detail: 'connection refused', healthy: false}
    }

    case 'timeout': {
      return {detail: 'no answer (timeout)', healthy: false}
    }

    case 'failed': {
      return {detail: `probe failed: ${probe.error}`, healthy: false}
    }

    case 'http': {
      const body = (probe.body ?? {}) as {healthy?: unknown; version?: unknown}
      const version = typeof body.version === 'string' ? body.version.trim() : undefined
      if (probe.status < 200 || probe.status >= 300) {
        return {detail: `HTTP ${probe.status}${version ? ` from version ${version}` : ''}`, healthy: false}
      }

      if (body.healthy !== true) return {detail: `HTTP ${probe.status} but not healthy: ${clipJson(probe.body)}`, healthy: false}
      if (expectedVersion && version !== undefined && version !== expectedVersion.trim()) {
        return {detail: `healthy, but version ${version} answers (expected ${expectedVersion})`, healthy: false}
      }

      return {detail: `healthy${version ? ` (version ${version})` : ''}`, healthy: true}
    }
  }
}

function clipJson(value: unknown): string {
  let text: string
  try {
    text = JSON.stringify(value) ?? String(value)
  } catch {
    text = String(value)
  }

  return text.length > 120 ? `${text.slice(0, 120)}…` : text
}

/** The first line of some output, trimmed and cut to a sane length (versions, git errors). */
export function firstLine(text: string, max = 200): string {
  const line = text.split('\n').find((candidate) => candidate.trim().length > 0)?.trim() ?? ''
  return line.length > max ? `${line.slice(0, max)}…` : line
}

/** The last few non-empty lines of some output, for error messages. */
export function tail(text: string, lines = 5): string {
  return text
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line.length > 0)
    .slice(-lines)
    .join('\n')
}

/**
 * `opencode_repo` reaches git as one argv element after `--`, but it is still checked: no
 * control characters (it is written into a git config file for safe.directory) and no
 * leading '-'.
 */
export function checkRepo(repo: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (!repo || /[\u0000-\u001F\u007F]/.test(repo)) return 'the repository URL contains control characters'
  if (repo.startsWith('-')) return "the repository URL cannot start with '-'"
  return undefined
}

/** For a local repository path, the directory git's safe.directory check needs to trust. */
export function localRepoPath(repo: string): string | undefined {
  if (repo.startsWith('/')) return repo.replace(/\/+$/, '') || '/'
  if (repo.startsWith('file://')) return localRepoPath(decodeURIComponent(repo.slice('file://'.length)))
  return undefined
}
