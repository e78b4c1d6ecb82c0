/**
 * The listener's decisions as plain functions: what to do with a claimed file, when the next
 * request may start, which leftover claims need an "interrupted" answer. No I/O here.
 */
import {
  checkUpdateCommand,
  MAX_REQUEST_BYTES,
  parseUntrustedJson,
  type ResultErrorCode,
  type UntrustedRead,
  type UpdateCommand,
  type UpdateResult,
} from 'opencode-cloud/internal'

export type ClaimDecision =
  /** The claimed file disappeared (the sandbox took it back): nothing to answer. */
  | {kind: 'drop'}
  | {kind: 'reject'; code: ResultErrorCode; message: string; requestId?: string}
  /** Not readable as a request yet; look again after a short wait, within the grace window. */
  | {kind: 'retry'; afterMs: number}
  | {kind: 'run'; request: UpdateCommand}

export interface ClaimTiming {
  now: number
  /** When the listener claimed the file. */
  claimedAt: number
  /** How long an unreadable or half-written request is given to become valid. */
  graceMs: number
  /** No more waiting (the listener is stopping): decide with what is there. */
  final?: boolean
}

const RETRY_STEP_MS = 100

/** What to do with the content of a claimed request file. */
export function decideClaim(read: UntrustedRead, timing: ClaimTiming): ClaimDecision {
  switch (read.kind) {
    case 'missing': {
      return {kind: 'drop'}
    }

    case 'not-regular': {
      return {
        code: 'not_regular_file',
        kind: 'reject',
        message: `update-command.json must be a regular file, not a ${read.fileKind.replace('-', ' ')}. Write it as a temp file, then rename it into place.`,
      }
    }

    case 'too-large': {
      return {
        code: 'too_large',
        kind: 'reject',
        message: `The update command is ${read.size} bytes; the limit is ${MAX_REQUEST_BYTES / 1024} KiB.`,
      }
    }

    case 'changed':
    case 'unreadable': {
      const wait = graceLeft(timing, timing.claimedAt)
      if (wait > 0) return {afterMs: Math.min(RETRY_STEP_MS, wait), kind: 'retry'}
      const why = read.kind === 'changed' ? 'it kept changing while being read' : `it cannot be read (${read.error})`
      return {code: 'invalid_request', kind: 'reject', message: `The update command was not accepted: ${why}.`}
    }

    case 'ok': {
      const parsed = parseUntrustedJson(read.data)
      if (!parsed.ok) {
        // A writer that does not rename into place may still be writing: wait until the file
        // is older than the grace window (counted from our claim if its mtime is in the future).
        const wait = graceLeft(timing, Math.min(timing.claimedAt, read.mtimeMs))
        if (wait > 0) return {afterMs: Math.min(RETRY_STEP_MS, wait), kind: 'retry'}
        return {code: 'invalid_json', kind: 'reject', message: `Invalid update command JSON: ${parsed.error}`}
      }

      const check = checkUpdateCommand(parsed.value)
      if (!check.ok) return {code: check.code, kind: 'reject', message: check.message, requestId: check.requestId}
      return {kind: 'run', request: check.request}
    }
  }
}

/**
 * Before claiming: a file that is not valid JSON yet and is younger than the grace window may
 * still be being written in place (the writer could even reopen it by name), so leave it there
 * and look again. Returns how long to wait, or 0 to claim now.
 */
export function waitBeforeClaim(read: UntrustedRead, timing: {now: number; firstSeenAt: number; graceMs: number}): number {
  if (read.kind !== 'ok' || parseUntrustedJson(read.data).ok) return 0
  const left = Math.min(timing.firstSeenAt, read.mtimeMs) + timing.graceMs - timing.now
  return left > 0 ? Math.min(RETRY_STEP_MS, left) : 0
}

function graceLeft(timing: ClaimTiming, since: number): number {
  if (timing.final) return 0
  return since + timing.graceMs - timing.now
}

/**
 * The rate limit: at most one command every `intervalMs`, counted from when the previous one was
 * answered (its result written), whether it succeeded or was rejected. So results are at least
 * an interval apart and a web UI polling for its request_id sees each one; the Rust occ, too,
 * waited until 5 s after the last command finished.
 */
export function nextStartAt(lastAnsweredAt: number | undefined, intervalMs: number): number {
  return lastAnsweredAt === undefined ? 0 : lastAnsweredAt + intervalMs
}

/** A claim left behind by a listener that is gone (killed, crashed, or us before a restart). */
export function isDeadClaim(claimPid: number, ownPid: number, isAlive: (pid: number) => boolean): boolean {
  // Our own pid on a claim we did not make in this run means an earlier process had our pid.
  return claimPid === ownPid || !isAlive(claimPid)
}

/**
 * Whether the result file already answers a dead claim: the listener can be killed after
 * writing the result and before removing the claim. Same request_id (or both absent), and
 * finished after the claim was made (its ctime: rename sets it).
 */
export function alreadyAnswered(result: UpdateResult | undefined, claim: {requestId?: string; claimedAtMs: number}): boolean {
  if (!result) return false
  if (result.request_id !== claim.requestId) return false
  return Date.parse(result.finished_at) >= claim.claimedAtMs - 1000
}

/** The request_id of a claim's content, when it can be read (for the "interrupted" answer). */
export function requestIdOf(read: UntrustedRead): string | undefined {
  if (read.kind !== 'ok') return undefined
  const parsed = parseUntrustedJson(read.data)
  if (!parsed.ok) return undefined
  const check = checkUpdateCommand(parsed.value)
  return check.ok ? check.request.requestId : check.requestId
}

export function isoNow(now: number): string {
  return new Date(now).toISOString()
}
