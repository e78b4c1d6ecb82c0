import * as z from 'zod'

import {UPDATE_STEPS} from '../runtime/update-types.js'
import {MAX_RESULT_MESSAGE_BYTES} from './text.js'
import {BRANCH_CHARSET, BRANCH_RULES, COMMIT_PATTERN, MAX_BRANCH_LENGTH, validateBranch} from './refs.js'

export const UPDATE_COMMAND = 'update_opencode'
/** request_id's cap, in Unicode code points (see requestIdFits). */
export const MAX_REQUEST_ID_LENGTH = 200
export const REQUEST_FIELDS = ['command', 'request_id', 'branch', 'commit'] as const

/** ISO-8601 in UTC, ending in Z (the Rust occ wrote +00:00; docs/update-flow.md asks for Z). */
const timestamp = z.iso.datetime()

/**
 * The one length rule for request_id, on the host and in the web UI's client: at most
 * MAX_REQUEST_ID_LENGTH Unicode code points (a surrogate pair is one), which is what JSON Schema's
 * maxLength means and what zod's max() counts; so the generated schema the client validates
 * against says exactly this. Counting UTF-16 units instead would refuse (and not echo) an id
 * the client accepted, and the client would wait for an answer that never names it.
 */
export function requestIdFits(id: string): boolean {
  if (id.length <= MAX_REQUEST_ID_LENGTH) return true // at most one unit per code point
  let points = 0
  for (const _ of id) if (++points > MAX_REQUEST_ID_LENGTH) return false
  return true
}

const requestIdSchema = z.string().max(MAX_REQUEST_ID_LENGTH)

const branchSchema = z
  .string()
  .max(MAX_BRANCH_LENGTH)
  .regex(BRANCH_CHARSET)
  .regex(BRANCH_RULES)
  .superRefine((value, ctx) => {
    const check = validateBranch(value)
    if (!check.ok) ctx.addIssue({code: 'custom', message: check.reason})
  })

const commitSchema = z.string().regex(COMMIT_PATTERN)

/**
 * What the web UI writes to update-command.json. Strict: an unknown field is an error that names
 * it. `null` counts as absent, as it did for the Rust occ (serde's Option).
 */
export const updateCommandSchema = z
  .strictObject({
    command: z.literal(UPDATE_COMMAND).describe('Must be "update_opencode".'),
    request_id: requestIdSchema.nullish().describe('Echoed in the result, to correlate the two.'),
    branch: branchSchema.nullish().describe('Update to the tip of this branch. Not together with commit.'),
    commit: commitSchema.nullish().describe('Update to this commit (7-40 hex digits). Not together with branch.'),
  })
  .refine((value) => value.branch == null || value.commit == null, {error: 'Specify only one of branch or commit.'})
  .meta({
    description: 'A request from the web UI to update opencode (written as a temp file, then renamed into place).',
    // The refine above, for JSON Schema readers: not both a branch and a commit.
    not: {properties: {branch: {type: 'string'}, commit: {type: 'string'}}, required: ['branch', 'commit']},
    title: 'update-command.json',
  })

export type UpdateCommandInput = z.input<typeof updateCommandSchema>

/** A request that passed every check; absent fields are undefined, never null. */
export interface UpdateCommand {
  command: typeof UPDATE_COMMAND
  requestId?: string
  branch?: string
  commit?: string
}

/** Machine-readable reasons on error results (the message is for people). */
export const RESULT_ERROR_CODES = [
  'invalid_json',
  'invalid_request',
  'unsupported_command',
  'conflicting_target',
  'invalid_ref',
  'too_large',
  'not_regular_file',
  'interrupted',
  'update_failed',
  'busy',
] as const
export type ResultErrorCode = (typeof RESULT_ERROR_CODES)[number]

/** occ's stable error codes (UPDATE_ROLLED_BACK, BUILD_FAILED, …): upper case, digits, underscores. */
export const OCC_CODE_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/

export const updateResultSchema = z
  .strictObject({
    status: z.enum(['success', 'error']),
    request_id: z.string().optional().describe("The request's request_id, when it had a readable one."),
    message: z
      .string()
      .max(MAX_RESULT_MESSAGE_BYTES)
      .describe('For people: what happened, or what went wrong. No control characters except newlines; at most 4 KiB (longer text is cut, saying how much).'),
    started_at: timestamp,
    finished_at: timestamp,
    changed: z.boolean().optional().describe('Whether opencode changed; absent when unknown (an interrupted update).'),
    from_commit: z.string().optional().describe('The commit installed before the update, when known.'),
    to_commit: z.string().optional().describe('The commit installed after the update, when known.'),
    error_code: z.enum(RESULT_ERROR_CODES).optional().describe('Why it failed, on error results.'),
    rolled_back: z
      .boolean()
      .optional()
      .describe('On update errors: whether the new version was switched back to the previous one (absent when no update ran).'),
    code: z
      .string()
      .regex(OCC_CODE_PATTERN)
      .optional()
      .describe("On errors: occ's stable error code (UPDATE_ROLLED_BACK, BUILD_FAILED, UNKNOWN_BRANCH, …), finer than error_code."),
  })
  .meta({
    description: 'The answer to an update request (written as a temp file, then renamed into place).',
    title: 'update-command.result.json',
  })

export type UpdateResult = z.output<typeof updateResultSchema>

export const LISTENER_STATES = ['idle', 'updating', 'disabled'] as const
export type ListenerState = (typeof LISTENER_STATES)[number]

/** Requests claimed and waiting while another runs; past this, a request is answered "busy". */
export const MAX_QUEUED_REQUESTS = 8

export const queuedRequestSchema = z.strictObject({
  request_id: requestIdSchema.optional(),
  claimed_at: timestamp,
})

export const OPENCODE_HEALTH_STATES = ['healthy', 'unhealthy', 'unknown'] as const

export const listenerHealthSchema = z
  .strictObject({
    state: z.enum(OPENCODE_HEALTH_STATES),
    checked_at: timestamp,
    detail: z.string().max(200).optional().describe('For people: the last answer (e.g. "HTTP 503", "connection refused").'),
  })
  .describe("opencode's health as the listener last saw it (the listener runs whatever it is: an update is how it gets fixed).")

export const pendingResultSchema = z
  .strictObject({
    request_id: requestIdSchema.optional(),
    status: z.enum(['success', 'error']).describe('The answer that is waiting to be written.'),
    since: timestamp,
    reason: z.string().max(500).describe('Why it could not be written (e.g. "ENOSPC: no space left on device").'),
    next_retry_at: timestamp,
  })
  .describe('An answer that could not be written yet (disk full, I/O error): kept and retried with backoff; never dropped.')

export const listenerStatusSchema = z
  .strictObject({
    pid: z.number().int().positive().describe("The host process id of the listener (occ start --no-daemon)."),
    version: z.string().describe("occ's version."),
    started_at: timestamp,
    heartbeat_at: timestamp.describe('Refreshed at least every heartbeat_interval_ms while the listener runs.'),
    heartbeat_interval_ms: z.number().int().positive(),
    state: z.enum(LISTENER_STATES),
    request_id: z.string().optional().describe('While updating: the request being handled.'),
    update_started_at: timestamp.optional(),
    step: z.enum(UPDATE_STEPS).optional().describe('While updating: the current step of the update plan.'),
    step_started_at: timestamp.optional(),
    next_command_at: timestamp
      .optional()
      .describe('When idle: the earliest time the next request may start (the rate limit); may be in the past.'),
    disabled_reason: z.string().optional().describe('When disabled: why the listener does not answer requests.'),
    queue: z
      .array(queuedRequestSchema)
      .max(MAX_QUEUED_REQUESTS)
      .optional()
      .describe('Requests claimed and waiting their turn, oldest first (handled in order, one per rate-limit interval).'),
    opencode_health: listenerHealthSchema.optional(),
    pending_result: pendingResultSchema.optional(),
  })
  .meta({
    description: "The update listener's heartbeat: whether a listener is alive, busy, and on which step.",
    title: 'listener.json',
  })

export type ListenerStatusFile = z.output<typeof listenerStatusSchema>

export type RequestCheck =
  | {ok: false; code: ResultErrorCode; message: string; requestId?: string}
  | {ok: true; request: UpdateCommand}

/**
 * Checks a parsed request and explains the first problem in the words the web UI shows. The
 * request_id is echoed whenever it can be read, so even an error result can be correlated.
 */
export function checkUpdateCommand(raw: unknown): RequestCheck {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return {code: 'invalid_request', message: `The update command must be a JSON object (got ${describeJson(raw)}).`, ok: false}
  }

  const record = raw as Record<string, unknown>
  const requestId =
    typeof record.request_id === 'string' && requestIdFits(record.request_id) ? record.request_id : undefined
  const problem = (code: ResultErrorCode, message: string): RequestCheck => ({code, message, ok: false, requestId})

  if (!Object.hasOwn(record, 'command')) {
    return problem('invalid_request', `Missing field 'command' (expected "${UPDATE_COMMAND}").`)
  }

  if (record.command !== UPDATE_COMMAND) {
    const shown = typeof record.command === 'string' ? record.command : describeJson(record.command)
    return problem('unsupported_command', `Unsupported command '${clip(shown)}'. Expected: ${UPDATE_COMMAND}`)
  }

  const unknown = Object.keys(record).filter((key) => !(REQUEST_FIELDS as readonly string[]).includes(key))
  if (unknown.length > 0) {
    const names = unknown.slice(0, 5).map((key) => `'${clip(key)}'`)
    const more = unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''
    const noun = unknown.length === 1 ? 'field' : 'fields'
    return problem(
      'invalid_request',
      `Unknown ${noun} ${names.join(', ')}${more} in the update command (allowed: ${REQUEST_FIELDS.join(', ')}).`,
    )
  }

  const present = (key: string) => record[key] !== undefined && record[key] !== null
  if (present('branch') && present('commit')) return problem('conflicting_target', 'Specify only one of branch or commit.')

  for (const key of ['request_id', 'branch', 'commit'] as const) {
    if (present(key) && typeof record[key] !== 'string') {
      return problem('invalid_request', `Field '${key}' must be a string (got ${describeJson(record[key])}).`)
    }
  }

  if (present('request_id') && !requestIdFits(record.request_id as string)) {
    return problem('invalid_request', `Field 'request_id' is longer than ${MAX_REQUEST_ID_LENGTH} characters (Unicode code points).`)
  }

  if (present('branch')) {
    const check = validateBranch(record.branch as string)
    if (!check.ok) return problem('invalid_ref', `Invalid branch '${clip(record.branch as string)}': ${check.reason}.`)
  }

  if (present('commit') && !COMMIT_PATTERN.test(record.commit as string)) {
    return problem('invalid_ref', `Invalid commit '${clip(record.commit as string)}': a commit is 7 to 40 hexadecimal digits.`)
  }

  // The hand-written checks above give the messages; the schema is the contract. They must agree.
  const parsed = updateCommandSchema.safeParse(raw)
  if (!parsed.success) return problem('invalid_request', `Invalid update command: ${parsed.error.issues[0]?.message ?? 'unknown problem'}`)
  const request: UpdateCommand = {command: UPDATE_COMMAND}
  if (parsed.data.request_id != null) request.requestId = parsed.data.request_id
  if (parsed.data.branch != null) request.branch = parsed.data.branch
  if (parsed.data.commit != null) request.commit = parsed.data.commit
  return {ok: true, request}
}

function describeJson(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return 'a string'
  return typeof value === 'object' ? 'an object' : `${typeof value} ${clip(String(value))}`
}

/** Keeps echoed input short and on one line (it ends up in logs and in the web UI). */
export function clip(text: string, max = 80): string {
  // eslint-disable-next-line no-control-regex
  const oneLine = text.replaceAll(/[\u0000-\u001F\u007F]/g, '?')
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine
}
