import {execFileSync} from 'node:child_process'
import {realpathSync} from 'node:fs'

import {Command, Errors, Flags, type Interfaces, toConfiguredId} from '@oclif/core'

import {normalizeInstance, resourceNames, type ResourceNames} from '../config/instance.js'
import {resolvePaths, type OccPaths} from '../config/paths.js'
import type {OccConfig} from '../config/schema.js'
import {loadConfig} from '../config/store.js'
import {BugError, ExitCode, isOccErrorCode, NotSupportedError, OccError} from '../errors.js'
import type {HostRuntime} from './host-runtime.js'
import {resolveRuntimeKind, type RuntimeChoice} from './resolve.js'
import type {Runtime, RuntimeKind} from './runtime.js'
import type {CollectOptions, StatusView} from './status.js'

export type RuntimeFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof RuntimeCommand)['baseFlags'] & T['flags']>
export type RuntimeArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * The commands that work inside the sandbox, as users type them (`update opencode`): every
 * loaded command (plugins' too) whose `supportedRuntimes` includes 'container'.
 */
export function containerCommands(config: Interfaces.Config): string[] {
  return config.commands
    .filter((command) => !command.hidden && (command as {supportedRuntimes?: unknown}).supportedRuntimes)
    .filter((command) => ((command as {supportedRuntimes?: unknown}).supportedRuntimes as unknown[]).includes('container'))
    .map((command) => toConfiguredId(command.id, config))
    .sort()
}

/**
 * The base class of every occ command and of third-party plugin commands. It owns the base
 * flags, --json, runtime resolution, the config, and the one place where errors become a
 * message with next steps, a stable exit code and a JSON error.
 */
export abstract class RuntimeCommand<T extends typeof Command> extends Command {
  static override baseFlags = {
    // Taken out of argv before oclif parses (src/cli/argv.ts) so that every command, plugins'
    // too, accepts it; declared here so help shows it, and for commands run directly.
    'no-color': Flags.boolean({description: 'No colours in the output (sets NO_COLOR).', helpGroup: 'GLOBAL'}),
    quiet: Flags.boolean({char: 'q', description: 'Print only what is essential.', helpGroup: 'GLOBAL'}),
    runtime: Flags.option({
      description: 'Where occ acts: on the host through Docker, or inside the sandbox. Env: OPENCODE_RUNTIME.',
      helpGroup: 'GLOBAL',
      options: ['auto', 'host', 'container'] as const,
    })(),
    'sandbox-instance': Flags.string({
      description: 'Run against a named sandbox instance (NAME or auto). Env: OPENCODE_SANDBOX_INSTANCE.',
      env: 'OPENCODE_SANDBOX_INSTANCE',
      helpGroup: 'GLOBAL',
    }),
    verbose: Flags.boolean({char: 'v', description: 'Print more detail, including error causes.', helpGroup: 'GLOBAL'}),
  }

  static override enableJsonFlag = true

  /** Runtimes this command works in. Override to allow 'container'. */
  static supportedRuntimes: RuntimeKind[] = ['host']

  protected flags!: RuntimeFlags<T>
  protected args!: RuntimeArgs<T>
  protected paths!: OccPaths
  protected names!: ResourceNames
  protected runtimeKind!: RuntimeKind
  private configCache?: OccConfig
  private runtimeCache?: Runtime

  public override async init(): Promise<void> {
    await super.init()
    const ctor = this.constructor as typeof RuntimeCommand & T
    const {args, flags} = await this.parse({
      args: ctor.args,
      baseFlags: (super.ctor as typeof RuntimeCommand).baseFlags,
      enableJsonFlag: ctor.enableJsonFlag,
      flags: ctor.flags,
      strict: ctor.strict,
    })
    this.flags = flags as RuntimeFlags<T>
    this.args = args as RuntimeArgs<T>
    if (this.flags['no-color']) process.env.NO_COLOR = '1'
    this.paths = resolvePaths()
    const instance = normalizeInstance(this.flags['sandbox-instance'], worktreeRoot)
    if (instance) process.env.OPENCODE_SANDBOX_INSTANCE = instance
    this.names = resourceNames(instance)
    const resolved = resolveRuntimeKind(this.flags.runtime as RuntimeChoice | undefined, process.env.OPENCODE_RUNTIME)
    this.runtimeKind = resolved.kind
    if (!ctor.supportedRuntimes.includes(resolved.kind)) {
      throw new NotSupportedError(`'occ ${this.commandName()}' is not supported in the ${resolved.kind} runtime.`, {
        actions: [
          `Supported inside the sandbox: ${containerCommands(this.config).map((command) => `occ ${command}`).join(', ')}`,
          `To force the host runtime: occ --runtime host ${this.commandName()}, or OPENCODE_RUNTIME=host`,
        ],
      })
    }

    if (resolved.detected && !this.flags.quiet && !this.jsonEnabled()) {
      this.logToStderr('Info: Detected opencode container; using container runtime. Override with --runtime host.')
    }
  }

  /** The config, loaded once; created with defaults when missing (never a wizard). */
  protected async occConfig(): Promise<OccConfig> {
    if (!this.configCache) {
      const loaded = await loadConfig(this.paths)
      if (loaded.created && !this.flags.quiet) this.logToStderr(`Created a default config at ${loaded.path}`)
      this.configCache = loaded.config
    }

    return this.configCache
  }

  /** The runtime this command acts through (host: Docker; container: local). */
  protected async runtime(): Promise<Runtime> {
    if (!this.runtimeCache) {
      if (this.runtimeKind === 'host') {
        const {HostRuntime} = await import('./host-runtime.js')
        this.runtimeCache = await HostRuntime.connect({config: await this.occConfig(), names: this.names, paths: this.paths})
      } else {
        const {ContainerRuntime} = await import('./container-runtime.js')
        this.runtimeCache = new ContainerRuntime(this.names)
      }
    }

    return this.runtimeCache
  }

  /**
   * The host runtime (Docker), for commands that act on the sandbox from outside: start, stop,
   * restart, and the host-only parts of status. Fails with NOT_SUPPORTED inside the sandbox.
   */
  protected async hostRuntime(): Promise<HostRuntime> {
    if (this.runtimeKind !== 'host') {
      throw new NotSupportedError(`'occ ${this.commandName()}' needs the host runtime; occ is running in the ${this.runtimeKind} runtime.`, {
        actions: [`Run it on the host, or force the host runtime: occ --runtime host ${this.commandName()}`],
      })
    }

    return (await this.runtime()) as HostRuntime
  }

  /**
   * The sandbox's status as `occ status` shows it: what every runtime can see, plus (on the host)
   * the update listener, the service and the security settings.
   */
  protected async collectStatus(options: CollectOptions = {}): Promise<StatusView> {
    const [{collectStatus}, runtime] = await Promise.all([import('./status.js'), this.runtime()])
    const viewPromise = collectStatus(runtime, options)
    if (this.runtimeKind !== 'host') return viewPromise
    // Loaded while Docker answers the probes: the host-only parts (listener, service).
    const {withHostStatus} = await import('./host-status.js')
    return withHostStatus(runtime as HostRuntime, viewPromise)
  }

  /** This command as users type it (`config show`, not the internal id `config:show`). */
  protected commandName(): string {
    return this.id ? toConfiguredId(this.id, this.config) : ''
  }

  /** Progress and notes go to stderr, so stdout stays data. Silent under --json and -q. */
  protected note(message: string): void {
    if (!this.flags.quiet) this.logToStderr(message)
  }

  /**
   * How an image pull shows for this run (src/runtime/pull-progress.ts): in place on a terminal,
   * plain lines otherwise, nothing under --json or -q.
   */
  protected async pullView(): Promise<import('./pull-progress.js').PullView> {
    const {createPullView} = await import('./pull-progress.js')
    return createPullView({
      silent: this.jsonEnabled() || this.flags.quiet === true,
      tty: process.stderr.isTTY === true && process.env.TERM !== 'dumb',
      write: (text) => process.stderr.write(text),
    })
  }

  protected override toErrorJson(error: unknown): {error: ReturnType<OccError['toJSON']>} {
    return {error: toOccError(error).toJSON()}
  }

  protected override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    // this.exit(n) is an exit, not an error: nothing to print, not even under --json.
    if (error instanceof Errors.ExitError) throw error
    // oclif's own usage errors (bad flags) already carry their exit code and text.
    if (error instanceof Errors.CLIError && !(error instanceof OccError) && error.oclif?.exit !== undefined) {
      return super.catch(error)
    }

    const known = toOccError(error)
    const verbose = (this.flags as {verbose?: boolean} | undefined)?.verbose
    let message = known.message
    if (verbose && known.cause) message += `\nCause: ${describeCause(known.cause)}`
    const cliError = new Errors.CLIError(message, {code: known.code, exit: known.exitCode, suggestions: known.actions})
    Object.assign(cliError, {occ: known})
    return super.catch(cliError)
  }
}

/** What `--sandbox-instance auto` hashes: the git top level (canonical), else the cwd. */
function worktreeRoot(): string {
  try {
    const top = execFileSync('git', ['rev-parse', '--show-toplevel'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim()
    return realpathSync(top)
  } catch {
    return realpathSync(process.cwd())
  }
}

/**
 * Anything thrown becomes an OccError: known ones as they are, oclif's usage errors (bad flags,
 * missing args) as USAGE, a command's own this.error() as COMMAND_FAILED with the exit code it
 * chose, and everything else as a bug in occ that says how to report it.
 */
export function toOccError(error: unknown): OccError {
  if (error instanceof OccError) return error
  const occ = (error as {occ?: unknown})?.occ
  if (occ instanceof OccError) return occ
  if (error instanceof Errors.CLIError) {
    const suggestions = error.suggestions ?? []
    const actions = suggestions.length > 0 ? {actions: suggestions} : {}
    if (isOccErrorCode(error.code)) return new OccError(error.code, error.message, actions)
    // oclif's parser errors (unknown flag, missing arg, bad option) carry a `parse` field.
    if ('parse' in error) return new OccError('USAGE', error.message, actions)
    // Anything else is a command's own this.error(): keep the exit code it asked for.
    return new OccError('COMMAND_FAILED', error.message, {...actions, exit: error.oclif?.exit ?? ExitCode.failure})
  }

  return new BugError(error instanceof Error ? error.message : String(error), {cause: error})
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) return cause.stack ?? cause.message
  return String(cause)
}
