/**
 * The one mapping between an update's outcome (what `occ update opencode --json` prints) and
 * the result file the web UI reads, both ways: the listener writes results with
 * outcomeToResult, the in-sandbox hand-off reads them back with resultToOutcome.
 */
import {ExitCode} from '../errors.js'
import type {UpdateOutcome, UpdateRequest} from '../runtime/update-types.js'
import {OCC_CODE_PATTERN, type ResultErrorCode, type UpdateResult} from './schemas.js'
import {resultMessage} from './text.js'

/** Occ codes whose result category is not update_failed. */
const CATEGORY_OF_CODE: Record<string, ResultErrorCode> = {
  UPDATE_BUSY: 'busy',
  UPDATE_CANCELLED: 'interrupted',
  UPDATE_INTERRUPTED: 'interrupted',
}

/** The occ code a result category stands for when a result carries no `code` (older listeners). */
const CODE_OF_CATEGORY: Partial<Record<ResultErrorCode, string>> = {
  busy: 'UPDATE_BUSY',
  interrupted: 'UPDATE_INTERRUPTED',
}

export interface ResultContext {
  requestId?: string
  /** The update was stopped by occ stopping (SIGTERM): its error is "interrupted". */
  interrupted?: boolean
}

/** The result file for an update's outcome. The message is cleaned and capped (4 KiB). */
export function outcomeToResult(outcome: UpdateOutcome, context: ResultContext = {}): UpdateResult {
  const result: UpdateResult = {
    changed: outcome.changed,
    finished_at: outcome.finishedAt,
    message: resultMessage(outcome.message),
    started_at: outcome.startedAt,
    status: outcome.status,
  }
  if (context.requestId !== undefined) result.request_id = context.requestId
  if (outcome.fromCommit) result.from_commit = outcome.fromCommit
  if (outcome.toCommit) result.to_commit = outcome.toCommit
  if (outcome.status === 'error') {
    const code = outcome.error?.code
    const validCode = code !== undefined && OCC_CODE_PATTERN.test(code) ? code : undefined
    result.error_code = context.interrupted ? 'interrupted' : ((validCode ? CATEGORY_OF_CODE[validCode] : undefined) ?? 'update_failed')
    if (validCode) result.code = validCode
    result.rolled_back = outcome.rolledBack
  }

  return result
}

/** The outcome a result stands for (steps are the host's and are not carried). */
export function resultToOutcome(result: UpdateResult, request: UpdateRequest): UpdateOutcome {
  const outcome: UpdateOutcome = {
    changed: result.changed ?? false,
    finishedAt: result.finished_at,
    message: result.message,
    ref: {...(request.branch ? {branch: request.branch} : {}), ...(request.commit ? {commit: request.commit} : {})},
    rolledBack: result.rolled_back ?? false,
    startedAt: result.started_at,
    status: result.status,
    steps: [],
  }
  if (!request.branch && !request.commit) outcome.ref.branch = 'dev'
  if (result.from_commit) outcome.fromCommit = result.from_commit
  if (result.to_commit) outcome.toCommit = result.to_commit
  if (result.status === 'error') {
    const category = result.error_code ?? 'update_failed'
    const code = result.code ?? CODE_OF_CATEGORY[category] ?? `HOST_${category.toUpperCase()}`
    outcome.error = {
      actions: category === 'busy' ? ['Wait for the running update to finish, then try again.'] : ['See the host: occ logs, occ status'],
      code,
      exitCode: category === 'busy' || code === 'UPDATE_BUSY' ? ExitCode.busy : ExitCode.updateFailed,
    }
  }

  return outcome
}
