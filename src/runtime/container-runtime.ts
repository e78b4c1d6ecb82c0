import {accessSync, constants, existsSync, statSync} from 'node:fs'
import os from 'node:os'

import {execa} from 'execa'

import type {ResourceNames} from '../config/instance.js'
import {NotSupportedError, OccError, TimeoutError} from '../errors.js'
import {AsyncQueue} from './async-queue.js'
import {probeHttpHealth} from './http-probe.js'
import {restartArgv, restartMethodFrom} from './restart.js'
import {journalctlArgv, keepLine, LineSplitter} from './logs-spec.js'
import type {ContainerState, ExecOptions, ExecResult, HealthProbe, LogLine, LogsSpec, RestartMethod, Runtime} from './runtime.js'

/**
 * The Runtime inside the sandbox (occ installed in the container). It has no container life
 * cycle to manage: status, logs (with journald) and update opencode work; the rest is host-only.
 */
export class ContainerRuntime implements Runtime {
  readonly kind = 'container' as const
  readonly names: ResourceNames

  constructor(names: ResourceNames) {
    this.names = names
  }

  async containerState(): Promise<ContainerState> {
    return {exists: true, labels: {}, mounts: [], name: os.hostname(), running: true, status: 'running', hostPort: 3000}
  }

  async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    let command = argv
    const me = os.userInfo().username
    if (options.user && options.user !== me && !(options.user === 'root' && process.getuid?.() === 0)) {
      if (process.getuid?.() !== 0) {
        throw new NotSupportedError(`Running as '${options.user}' needs root inside the sandbox.`, {
          actions: ['Run occ with sudo inside the sandbox, or run the command from the host.'],
        })
      }

      command = ['runuser', '-u', options.user, '--', ...argv]
    }

    const child = execa(command[0], command.slice(1), {
      cancelSignal: options.signal,
      cwd: options.workdir,
      env: options.env,
      input: options.stdin,
      reject: false,
      stripFinalNewline: false,
      timeout: options.timeoutMs,
    })
    if (options.onOutput) {
      child.stdout?.on('data', (chunk: Buffer) => options.onOutput?.(chunk.toString('utf8'), 'stdout'))
      child.stderr?.on('data', (chunk: Buffer) => options.onOutput?.(chunk.toString('utf8'), 'stderr'))
    }

    const result = await child
    if (result.timedOut) throw new TimeoutError(`'${argv[0]}' did not finish within ${options.timeoutMs} ms.`)
    return {exitCode: result.exitCode ?? -1, stderr: String(result.stderr ?? ''), stdout: String(result.stdout ?? '')}
  }

  probeHealth(timeoutMs: number): Promise<HealthProbe> {
    return probeHttpHealth('127.0.0.1', 3000, timeoutMs)
  }

  async opencodeUrl(): Promise<string> {
    return 'http://localhost:3000'
  }

  async restartMethod(): Promise<RestartMethod> {
    return restartMethodFrom(
      (path) => statSync(path, {throwIfNoEntry: false})?.isDirectory() ?? false,
      (path) => {
        try {
          accessSync(path, constants.X_OK)
          return true
        } catch {
          return false
        }
      },
    )
  }

  async restartOpencode(signal?: AbortSignal): Promise<RestartMethod> {
    const method = await this.restartMethod()
    if (method === 'container') {
      throw new NotSupportedError('opencode cannot be restarted from inside this sandbox (no systemd, no supervisor).', {
        actions: ['Restart it from the host: occ restart'],
      })
    }

    const result = await this.exec(restartArgv(method), {signal, timeoutMs: 60_000, user: 'root'})
    if (result.exitCode !== 0) throw new OccError('RESTART_FAILED', `Restarting opencode failed: ${result.stderr.trim()}`)
    return method
  }

  async putArchive(): Promise<void> {
    throw new NotSupportedError('Changing files of a stopped sandbox needs the Docker engine, on the host.', {
      actions: ['Run the update from the host: occ update opencode'],
    })
  }

  async startContainer(): Promise<void> {
    throw new NotSupportedError('The sandbox cannot start itself from inside.', {actions: ['Start it from the host: occ start']})
  }

  /** Nothing here watches the container's life cycle. */
  holdLifecycle(): () => void {
    return () => {}
  }

  async *logs(spec: LogsSpec, signal?: AbortSignal): AsyncIterable<LogLine> {
    if (!existsSync('/run/systemd/system')) {
      throw new NotSupportedError('Logs are unavailable inside a sandbox without systemd.', {
        actions: ['Use the host runtime instead: occ --runtime host logs'],
      })
    }

    const argv = journalctlArgv(spec.broker ? 'opencode-broker' : 'opencode', spec)
    const queue = new AsyncQueue<LogLine>()
    const out = new LineSplitter('stdout', false)
    const child = execa(argv[0], argv.slice(1), {cancelSignal: signal, reject: false})
    child.stdout?.on('data', (chunk: Buffer) => {
      for (const line of out.push(chunk.toString('utf8'))) if (keepLine(line, spec, false)) queue.push(line)
    })
    child.then(
      (result) => {
        for (const line of out.flush()) if (keepLine(line, spec, false)) queue.push(line)
        queue.end(
          result.exitCode && !signal?.aborted ? new OccError('LOGS_FAILED', `journalctl exited with status ${result.exitCode}`) : undefined,
        )
      },
      (error) => queue.end(error),
    )
    yield* queue
  }
}
