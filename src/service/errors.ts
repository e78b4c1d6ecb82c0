import {OccError, type OccErrorOptions} from '../errors.js'

/** A value (an env var, a path) that the unit or plist cannot carry faithfully. */
export class ServiceValueError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('SERVICE_UNSAFE_VALUE', message, options)
    this.name = 'ServiceValueError'
  }
}

/** The service manager cannot be reached (no systemd user manager, no launchd GUI session). */
export class ServiceManagerUnavailableError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('SERVICE_MANAGER_UNAVAILABLE', message, options)
    this.name = 'ServiceManagerUnavailableError'
  }
}

/** systemctl/launchctl refused a step we cannot do without. */
export class ServiceCommandError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('SERVICE_COMMAND_FAILED', message, options)
    this.name = 'ServiceCommandError'
  }
}
