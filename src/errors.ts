/**
 * The errors occ knows how to explain. Each carries a stable `code` (for --json and scripts),
 * a stable exit code, and `actions`: what the user can do next.
 * RuntimeCommand.catch() turns them into one message; anything else is a bug and says so.
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

export interface OccErrorOptions {
  actions?: string[]
  cause?: unknown
  exit?: number
}

export class OccError extends Error {
  readonly code: string
  readonly exitCode: number
  readonly actions: string[]

  constructor(code: string, message: string, options: OccErrorOptions = {}) {
    super(message, {cause: options.cause})
    this.name = 'OccError'
    this.code = code
    this.exitCode = options.exit ?? ExitCode.failure
    this.actions = options.actions ?? []
  }

  toJSON(): {actions: string[]; code: string; exitCode: number; message: string; name: string} {
    return {actions: this.actions, code: this.code, exitCode: this.exitCode, message: this.message, name: this.name}
  }
}

export class ConfigError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('CONFIG_INVALID', message, {exit: ExitCode.config, ...options})
    this.name = 'ConfigError'
  }
}

export class EngineUnreachableError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('ENGINE_UNREACHABLE', message, {
      actions: ['Start Docker (e.g. `sudo systemctl start docker`) or set DOCKER_HOST to a reachable engine.'],
      exit: ExitCode.engineUnreachable,
      ...options,
    })
    this.name = 'EngineUnreachableError'
  }
}

export class ContainerMissingError extends OccError {
  constructor(containerName: string, options: OccErrorOptions = {}) {
    super('CONTAINER_MISSING', `The sandbox container '${containerName}' does not exist.`, {
      actions: ['Create and start it with: occ start'],
      exit: ExitCode.containerMissing,
      ...options,
    })
    this.name = 'ContainerMissingError'
  }
}

export class ContainerNotRunningError extends OccError {
  constructor(containerName: string, options: OccErrorOptions = {}) {
    super('CONTAINER_NOT_RUNNING', `The sandbox container '${containerName}' is not running.`, {
      actions: ['Start it with: occ start'],
      exit: ExitCode.containerMissing,
      ...options,
    })
    this.name = 'ContainerNotRunningError'
  }
}

export class NotSupportedError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('NOT_SUPPORTED', message, {exit: ExitCode.notSupported, ...options})
    this.name = 'NotSupportedError'
  }
}

export class TimeoutError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('TIMEOUT', message, {exit: ExitCode.timeout, ...options})
    this.name = 'TimeoutError'
  }
}

export class UsageError extends OccError {
  constructor(message: string, options: OccErrorOptions = {}) {
    super('USAGE', message, {exit: ExitCode.usage, ...options})
    this.name = 'UsageError'
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
