import {randomBytes} from 'node:crypto'
import path from 'node:path'

/** The contract's names (docs/update-flow.md, kept from the Rust occ), plus the listener's own files, all in the commands dir. */
export const REQUEST_FILE = 'update-command.json'
export const RESULT_FILE = 'update-command.result.json'
export const LISTENER_FILE = 'listener.json'

/** Cap on anything read from the sandbox-writable directory. */
export const MAX_REQUEST_BYTES = 64 * 1024

/** `<host path of the state mount>/opencode-cloud/commands` (docs/update-flow.md; relative to the mount). */
export const COMMANDS_SUBDIR = path.join('opencode-cloud', 'commands')

/**
 * A claimed request: `update-command.claimed.<pid>-<random>.json`. The pid says which listener
 * holds it (so a restarted listener can tell a dead claim from a live one); the random part makes
 * every claim name unique, so two listeners renaming the same request can never both win.
 */
const CLAIM_PATTERN = /^update-command\.claimed\.(\d{1,10})-([0-9a-f]{8,32})\.json$/

export function claimFileName(pid: number, random = randomBytes(8).toString('hex')): string {
  return `update-command.claimed.${pid}-${random}.json`
}

export function parseClaimFileName(name: string): {pid: number} | undefined {
  const match = CLAIM_PATTERN.exec(name)
  if (!match) return undefined
  const pid = Number(match[1])
  return Number.isSafeInteger(pid) && pid > 0 ? {pid} : undefined
}

/**
 * Where the listener sets aside an entry it will not read or delete: a non-empty directory (or
 * anything that keeps changing its kind) found at the request, claim, result or listener.json
 * path. The host never walks into a tree the sandbox can still change, so such an entry is
 * renamed to `.rejected.<random>` and left for the sandbox to clean up; the listener ignores
 * these names.
 */
export const QUARANTINE_PREFIX = '.rejected.'

export function quarantineName(random = randomBytes(8).toString('hex')): string {
  return `${QUARANTINE_PREFIX}${random}`
}

export function isQuarantineName(name: string): boolean {
  return name.startsWith(QUARANTINE_PREFIX)
}
