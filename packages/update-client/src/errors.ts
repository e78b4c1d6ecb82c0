import type {ListenerStatus} from './types.js'

/** Why no answer can come (the only cases in which requestUpdate rejects). */
export type UpdateClientErrorCode = 'aborted' | 'invalid_request' | 'io' | 'listener_stale' | 'no_listener' | 'timeout'

export interface UpdateClientErrorDetails {
  requestId?: string
  /** The request was taken back before the host's listener claimed it: nothing will happen. */
  withdrawn?: boolean
  /** listener.json as last read (null: there was none). */
  listener?: ListenerStatus | null
  cause?: unknown
}

export class UpdateClientError extends Error {
  override readonly name = 'UpdateClientError'
  readonly code: UpdateClientErrorCode
  readonly requestId: string | undefined
  readonly withdrawn: boolean
  readonly listener: ListenerStatus | null | undefined

  constructor(code: UpdateClientErrorCode, message: string, details: UpdateClientErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : {cause: details.cause})
    this.code = code
    this.requestId = details.requestId
    this.withdrawn = details.withdrawn ?? false
    this.listener = details.listener
  }
}
