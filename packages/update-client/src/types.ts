/**
 * The contract's shapes as TypeScript types. They mirror occ's zod schemas (src/protocol); a
 * type-level test fails when the two differ, and the values are checked at run time against the
 * JSON Schemas generated from those same zod schemas.
 */

export type UpdateStep = 'activate' | 'build' | 'compare' | 'fetch' | 'preflight' | 'prune' | 'repair' | 'resolve' | 'restart' | 'rollback'

/** update-command.json, as written by the web UI. */
export interface UpdateCommand {
  command: 'update_opencode'
  request_id?: string | null
  branch?: string | null
  commit?: string | null
}

/** update-command.result.json: the host's answer. */
export interface UpdateResult {
  status: 'error' | 'success'
  request_id?: string
  message: string
  started_at: string
  finished_at: string
  changed?: boolean
  from_commit?: string
  to_commit?: string
  error_code?:
    | 'conflicting_target'
    | 'interrupted'
    | 'invalid_json'
    | 'invalid_ref'
    | 'invalid_request'
    | 'not_regular_file'
    | 'too_large'
    | 'unsupported_command'
    | 'update_failed'
    | 'busy'
  /** On update errors: whether the new version was switched back to the previous one. */
  rolled_back?: boolean
  /** On errors: occ's stable error code (UPDATE_ROLLED_BACK, BUILD_FAILED, UNKNOWN_BRANCH, …). */
  code?: string
}

/** listener.json: the host listener's heartbeat. */
export interface ListenerStatus {
  pid: number
  version: string
  started_at: string
  heartbeat_at: string
  heartbeat_interval_ms: number
  state: 'disabled' | 'idle' | 'updating'
  request_id?: string
  update_started_at?: string
  step?: UpdateStep
  step_started_at?: string
  next_command_at?: string
  disabled_reason?: string
  /** Requests claimed and waiting their turn, oldest first. */
  queue?: Array<{request_id?: string; claimed_at: string}>
  /** opencode's health as the listener last saw it. */
  opencode_health?: {state: 'healthy' | 'unhealthy' | 'unknown'; checked_at: string; detail?: string}
  /** An answer that could not be written yet (disk full, I/O error): retried, never dropped. */
  pending_result?: {request_id?: string; status: 'error' | 'success'; since: string; reason: string; next_retry_at: string}
}
