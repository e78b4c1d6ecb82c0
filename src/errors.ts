/**
 * The errors occ knows how to explain. ERROR_CODES is the one table of every code occ reports:
 * its exit code and its default next steps (`actions`). An OccError names a code from it; its
 * exit code comes from the table (COMMAND_FAILED alone keeps the exit its command chose), and the
 * thrower may give more specific actions.
 * RuntimeCommand.catch() turns them into one message; anything else is a bug and says so.
 * The JSON shape (`{error: {...}}`) is schemas/error.schema.json.
 */
export const ExitCode = {
  failure: 1,
  usage: 2,
  config: 3,
  engineUnreachable: 4,
  containerMissing: 5,
  notSupported: 6,
  timeout: 7,
  updateFailed: 8,
  busy: 9,
} as const

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

/** Where bugs are reported (package.json `bugs`). */
export const BUG_REPORT_URL = 'https://github.com/pRizz/opencode-cloud/issues'

interface ErrorCodeEntry {
  readonly exit: ExitCodeValue
  readonly actions: readonly string[]
  /** A bug in occ, not something the user did or the machine is in. */
  readonly bug?: true
}

const updateFailed = (actions: readonly string[] = ['See what happened: occ logs', 'Check the sandbox: occ status']): ErrorCodeEntry => ({
  actions,
  exit: ExitCode.updateFailed,
})
const hostResult = updateFailed(['See the host: occ logs, occ status'])

export const ERROR_CODES = {
  // --- usage -----------------------------------------------------------------------------
  USAGE: {actions: ['See the usage: occ help'], exit: ExitCode.usage},
  // A command (typically a plugin's) failed with its own message through oclif's this.error().
  // The only code whose exit code is the command's choice (this.error's `exit`), not the table's.
  COMMAND_FAILED: {actions: [], exit: ExitCode.failure},
  COMMAND_NOT_FOUND: {actions: ['List the commands: occ help'], exit: ExitCode.usage},
  SERVICE_UNSAFE_VALUE: {actions: [], exit: ExitCode.usage},
  // --- config ----------------------------------------------------------------------------
  CONFIG_INVALID: {actions: ['Show the config: occ config show', 'Change a value: occ config set KEY VALUE'], exit: ExitCode.config},
  // --- Docker and the container ----------------------------------------------------------
  ENGINE_UNREACHABLE: {
    actions: ['Start Docker (e.g. `sudo systemctl start docker`) or set DOCKER_HOST to a reachable engine.'],
    exit: ExitCode.engineUnreachable,
  },
  DOCKER_ERROR: {actions: ['See the sandbox: occ status'], exit: ExitCode.failure},
  CONTAINER_MISSING: {actions: ['Create and start it with: occ start'], exit: ExitCode.containerMissing},
  CONTAINER_NOT_RUNNING: {actions: ['Start it with: occ start'], exit: ExitCode.containerMissing},
  // The container exited while occ waited for it: not a timeout, and not "missing" either.
  SANDBOX_STOPPED: {actions: ['See why in the full logs: occ logs --no-follow'], exit: ExitCode.containerMissing},
  CONTAINER_CREATE_FAILED: {actions: ['Try again: occ start'], exit: ExitCode.failure},
  IMAGE_UNAVAILABLE: {actions: ['Check the image: occ config get image'], exit: ExitCode.failure},
  // A pull or registry check that failed, by why (src/docker/image.ts classifies the Engine's words).
  IMAGE_NOT_FOUND: {actions: ['Check the image: occ config get image'], exit: ExitCode.failure},
  REGISTRY_UNAUTHORIZED: {actions: ['Log in to the registry on this machine (docker login <registry>), then try again.'], exit: ExitCode.failure},
  REGISTRY_UNREACHABLE: {actions: ['Check that this machine can reach the registry, then try again.'], exit: ExitCode.failure},
  PORT_IN_USE: {actions: ['Pick another port: occ start --port <port> (to keep it: occ config set port <port>)'], exit: ExitCode.failure},
  VOLUME_NOT_OURS: {actions: [], exit: ExitCode.failure},
  VOLUME_IN_USE: {actions: [], exit: ExitCode.failure},
  LOGS_FAILED: {actions: [], exit: ExitCode.failure},
  NOT_SUPPORTED: {actions: [], exit: ExitCode.notSupported},
  TIMEOUT: {actions: ['See what the sandbox is doing: occ logs'], exit: ExitCode.timeout},
  // --- the service -----------------------------------------------------------------------
  SERVICE_MANAGER_UNAVAILABLE: {actions: ['Run the sandbox in the foreground instead: occ start --no-daemon'], exit: ExitCode.notSupported},
  SERVICE_COMMAND_FAILED: {actions: [], exit: ExitCode.failure},
  // --- login users and the first-login password (IOTP) ---------------------------------
  USER_EXISTS: {actions: ['See the users: occ user list'], exit: ExitCode.failure},
  USER_MISSING: {actions: ['See the users: occ user list'], exit: ExitCode.failure},
  USER_PROTECTED: {actions: ['See the users occ manages: occ user list'], exit: ExitCode.failure},
  LAST_USER: {actions: ['Add another user first: occ user add <name>'], exit: ExitCode.failure},
  USER_RESTORE_FAILED: {actions: ['See the sandbox logs: occ logs --no-follow'], exit: ExitCode.failure},
  USER_PERSIST_FAILED: {actions: ['See the sandbox logs: occ logs --no-follow'], exit: ExitCode.failure},
  USER_COMMAND_FAILED: {actions: ['See the sandbox logs: occ logs --no-follow'], exit: ExitCode.failure},
  IOTP_INACTIVE: {actions: ['See the users: occ user list'], exit: ExitCode.failure},
  IOTP_RESET_FAILED: {actions: ['See the sandbox logs: occ logs --no-follow'], exit: ExitCode.failure},
  // --- update opencode -------------------------------------------------------------------
  UPDATE_FAILED: updateFailed(),
  UPDATE_ROLLED_BACK: updateFailed(["Look at the new version's logs: occ logs"]),
  UPDATE_NOT_ROOT: updateFailed(['Run the update from the host: occ update opencode']),
  UPDATE_NOT_SUPPORTED: {actions: ['Recreate the sandbox from the opencode-cloud image: occ start'], exit: ExitCode.notSupported},
  UPDATE_BUSY: {actions: ['Wait for it, then try again: occ status'], exit: ExitCode.busy},
  UPDATE_CANCELLED: {actions: [], exit: ExitCode.failure},
  UPDATE_INTERRUPTED: updateFailed(['See whether it finished: occ status', 'Try again: occ update opencode']),
  UPDATE_NO_LISTENER: updateFailed(['On the host: occ install (the service runs the listener), or occ start --no-daemon']),
  UPDATE_LISTENER_LOST: updateFailed(['Check on the host: occ status; the update may have finished anyway.']),
  UNKNOWN_BRANCH: updateFailed(['Pick an existing branch: occ update opencode --branch <branch>']),
  UNKNOWN_COMMIT: updateFailed(['Pick an existing commit: occ update opencode --commit <sha>']),
  AMBIGUOUS_COMMIT: updateFailed(['Give more digits: occ update opencode --commit <sha>']),
  RESOLVE_FAILED: updateFailed(['Check opencode_repo: occ config get opencode_repo']),
  FETCH_FAILED: updateFailed(['Check opencode_repo: occ config get opencode_repo']),
  BUILD_FAILED: updateFailed(),
  ACTIVATE_FAILED: updateFailed(),
  RESTART_FAILED: updateFailed(),
  UNHEALTHY: updateFailed(),
  ROLLBACK_FAILED: updateFailed(['Look at the sandbox: occ logs; recreate it if needed: occ start']),
  ROLLBACK_UNHEALTHY: updateFailed(['Look at the logs: occ logs', 'Restart the sandbox: occ restart']),
  REPAIR_FAILED: updateFailed(['Restart the sandbox (it repairs on start): occ restart']),
  // --- update container ----------------------------------------------------------------
  CONTAINER_UPDATE_FAILED: updateFailed(['See the sandbox: occ status', 'Try again: occ update container']),
  CONTAINER_UPDATE_ROLLED_BACK: updateFailed(['The sandbox runs the image it ran before; try again when a fixed image is published: occ update container']),
  CONTAINER_ROLLBACK_FAILED: updateFailed(['See the sandbox: occ status, occ logs --no-follow', 'Start it again: occ start']),
  NO_PREVIOUS_IMAGE: {actions: ['Update at least once first: occ update container'], exit: ExitCode.failure},
  INSTALL_BROKEN: {actions: ['Reinstall occ.'], exit: ExitCode.failure},
  // The host listener's answer (its error_code) to an update handed over from inside the sandbox,
  // when the result carries no occ code of its own.
  HOST_INVALID_JSON: hostResult,
  HOST_INVALID_REQUEST: hostResult,
  HOST_UNSUPPORTED_COMMAND: hostResult,
  HOST_CONFLICTING_TARGET: hostResult,
  HOST_INVALID_REF: hostResult,
  HOST_TOO_LARGE: hostResult,
  HOST_NOT_REGULAR_FILE: hostResult,
  HOST_UPDATE_FAILED: hostResult,
  // --- bugs ------------------------------------------------------------------------------
  BUG: {
    actions: ['Run again with -v for the details', `Report it with that output: ${BUG_REPORT_URL}`],
    bug: true,
    exit: ExitCode.failure,
  },
} as const satisfies Record<string, ErrorCodeEntry>

export type OccErrorCode = keyof typeof ERROR_CODES

export const OCC_ERROR_CODES = Object.keys(ERROR_CODES) as OccErrorCode[]

export function isOccErrorCode(code: unknown): code is OccErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)
}

export interface OccErrorOptions {
  /** Next steps for this case; the table's defaults when absent. */
  actions?: string[]
  cause?: unknown
  /** COMMAND_FAILED only: the exit code the failing command chose. Ignored for every other code. */
  exit?: number
}

/** What `--json` prints for an error (schemas/error.schema.json). */
export interface OccErrorJson {
  actions: string[]
  bug: boolean
  code: OccErrorCode
  exitCode: number
  message: string
  name: string
}

export class OccError extends Error {
  readonly code: OccErrorCode
  readonly exitCode: number
  readonly actions: string[]
  /** True when this is a bug in occ (not something the user can fix). */
  readonly bug: boolean

  constructor(code: OccErrorCode, message: string, options: OccErrorOptions = {}) {
    super(message, {cause: options.cause})
    const entry: ErrorCodeEntry = ERROR_CODES[code]
    this.name = 'OccError'
    this.code = code
    this.exitCode = code === 'COMMAND_FAILED' && options.exit !== undefined ? options.exit : entry.exit
    this.actions = options.actions ?? [...entry.actions]
    this.bug = entry.bug === true
  }

  toJSON(): OccErrorJson {
    return {actions: this.actions, bug: this.bug, code: this.code, exitCode: this.exitCode, message: this.message, name: this.name}
  }
}

export class ConfigError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('CONFIG_INVALID', message, options)
    this.name = 'ConfigError'
  }
}

export class EngineUnreachableError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('ENGINE_UNREACHABLE', message, options)
    this.name = 'EngineUnreachableError'
  }
}

export class ContainerMissingError extends OccError {
  constructor(containerName: string, options: OccErrorOptions = {}) {
    super('CONTAINER_MISSING', `The sandbox container '${containerName}' does not exist.`, options)
    this.name = 'ContainerMissingError'
  }
}

export class ContainerNotRunningError extends OccError {
  constructor(containerName: string, options: OccErrorOptions = {}) {
    super('CONTAINER_NOT_RUNNING', `The sandbox container '${containerName}' is not running.`, options)
    this.name = 'ContainerNotRunningError'
  }
}

/** The container exited while occ waited for it (starting, restarting, updating): not a timeout. */
export class SandboxStoppedError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('SANDBOX_STOPPED', message, options)
    this.name = 'SandboxStoppedError'
  }
}

export class NotSupportedError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('NOT_SUPPORTED', message, options)
    this.name = 'NotSupportedError'
  }
}

export class TimeoutError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('TIMEOUT', message, options)
    this.name = 'TimeoutError'
  }
}

export class UsageError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('USAGE', message, options)
    this.name = 'UsageError'
  }
}

/** Something occ did not expect: a bug. The message says so and how to report it. */
export class BugError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('BUG', `This is a bug in occ: ${message}`, options)
    this.name = 'BugError'
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
