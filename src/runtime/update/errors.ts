import {isOccErrorCode, OccError, type OccErrorCode, type OccErrorOptions} from '../../errors.js'
import type {UpdateOutcome} from '../update-types.js'

/**
 * An update that did not reach its goal. `code` says which way (UPDATE_FAILED, UPDATE_ROLLED_BACK,
 * UNKNOWN_BRANCH, …); the outcome, when attached, is what --json and the listener report.
 */
export class UpdateFailedError extends OccError {
  outcome?: UpdateOutcome

  constructor(code: OccErrorCode, message: string, options: OccErrorOptions & {outcome?: UpdateOutcome} = {}) {
    super(code, message, options)
    this.name = 'UpdateFailedError'
    this.outcome = options.outcome
  }

  override toJSON(): ReturnType<OccError['toJSON']> & {outcome?: UpdateOutcome} {
    return {...super.toJSON(), ...(this.outcome ? {outcome: this.outcome} : {})}
  }
}

export class UpdateBusyError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('UPDATE_BUSY', message, options)
    this.name = 'UpdateBusyError'
  }
}

export class UpdateCancelledError extends OccError {
  constructor(message = 'The update was cancelled; nothing was changed.', options: OccErrorOptions = {}) {
    super('UPDATE_CANCELLED', message, options)
    this.name = 'UpdateCancelledError'
  }
}

/** The outcome of a failed update as an error the command can throw (keeping the cause's code). */
export function outcomeError(outcome: UpdateOutcome): OccError {
  const code = outcome.error?.code
  return new UpdateFailedError(isOccErrorCode(code) ? code : 'UPDATE_FAILED', outcome.message, {
    actions: outcome.error?.actions ?? [],
    outcome,
  })
}
