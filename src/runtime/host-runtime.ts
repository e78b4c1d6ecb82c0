import {performance} from 'node:perf_hooks'
import {PassThrough} from 'node:stream'
import {setTimeout as delay} from 'node:timers/promises'
import {StringDecoder} from 'node:string_decoder'

import type Docker from 'dockerode'

import type {ResourceNames} from '../config/instance.js'
import {findStateMount, type MountSpec} from '../config/mounts.js'
import type {OccPaths} from '../config/paths.js'
import type {OccConfig} from '../config/schema.js'
import {createDockerClient, isNotFound, pingEngine} from '../docker/connection.js'
import {CONTAINER_PORT, reachableAddress, urlHost} from '../docker/container-spec.js'
import {execInContainer} from '../docker/exec.js'
import {ContainerMissingError, ContainerNotRunningError, OccError} from '../errors.js'
import {AsyncQueue} from './async-queue.js'
import {DEFAULT_SANDBOX_USER, firstTarFile, parsePasswdUser, type SandboxUser} from './mount-ownership.js'
import {probeHttpHealth} from './http-probe.js'
import {parseRestartMethod, RESTART_METHOD_SCRIPT, restartArgv, STOP_OPENCODE_SCRIPT} from './restart.js'
import {announceRestartSync, recreateNoticeState} from './recreate-notice.js'
import {StopTracker, type StopVerdict} from './stop-events.js'
import {awaitSuccessor, type SuccessorOutcome} from './successor.js'
import {dockerLogsOptions, journalctlArgv, keepLine, LineSplitter} from './logs-spec.js'
import type {
  ContainerState,
  ExecOptions,
  ExecResult,
  HealthProbe,
  HostRuntimeApi,
  LogLine,
  LogsSpec,
  RestartMethod,
} from './runtime.js'


export interface HostRuntimeOptions {
  config: OccConfig
  names: ResourceNames
  paths: OccPaths
  docker?: Docker
}

/** The Runtime on the host: the sandbox container through the Docker Engine API. */
export class HostRuntime implements HostRuntimeApi {
  readonly kind = 'host' as const
  readonly docker: Docker
  readonly names: ResourceNames
  readonly config: OccConfig
  readonly paths: OccPaths
  /** Planned stops of the container in progress (holdLifecycle), by why. */
  private readonly holds = new Map<symbol, string>()
  private readonly holdWaiters: Array<() => void> = []
  /** Withdraws the restart note written while the life cycle is held (see holdLifecycle). */
  private withdrawRestartNote?: () => void

  constructor(options: HostRuntimeOptions) {
    this.docker = options.docker ?? createDockerClient()
    this.names = options.names
    this.config = options.config
    this.paths = options.paths
  }

  static async connect(options: HostRuntimeOptions): Promise<HostRuntime> {
    const runtime = new HostRuntime(options)
    await pingEngine(runtime.docker)
    return runtime
  }

  container(): Docker.Container {
    return this.docker.getContainer(this.names.container)
  }

  async inspect(): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      return await this.container().inspect()
    } catch (error) {
      if (isNotFound(error)) return undefined
      throw error
    }
  }

  async containerState(): Promise<ContainerState> {
    return toContainerState(this.names.container, await this.inspect())
  }

  async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    try {
      // Docker takes the name: no inspect round trip first.
      return await execInContainer(this.docker, this.names.container, argv, options)
    } catch (error) {
      const status = (error as {statusCode?: number}).statusCode
      if (status === 404) throw new ContainerMissingError(this.names.container, {cause: error})
      if (status === 409) throw new ContainerNotRunningError(this.names.container, {cause: error})
      throw error
    }
  }

  async probeHealth(timeoutMs: number, known?: ContainerState): Promise<HealthProbe> {
    const state = known ?? (await this.containerState())
    if (!state.running || !state.hostPort) return {kind: 'refused'}
    return probeHttpHealth(reachableAddress(state.hostIp ?? this.config.bind_address), state.hostPort, timeoutMs)
  }

  async opencodeUrl(known?: ContainerState): Promise<string | undefined> {
    const state = known ?? (await this.containerState())
    if (!state.hostPort) return undefined
    const address = reachableAddress(state.hostIp ?? this.config.bind_address)
    const host = address === '127.0.0.1' || address === '::1' ? 'localhost' : urlHost(address)
    return `http://${host}:${state.hostPort}`
  }

  async restartMethod(): Promise<RestartMethod> {
    const result = await this.exec(['sh', '-c', RESTART_METHOD_SCRIPT], {timeoutMs: 10_000, user: 'root'})
    return parseRestartMethod(result.stdout)
  }

  async restartOpencode(signal?: AbortSignal): Promise<RestartMethod> {
    const method = await this.restartMethod()
    if (method === 'container') {
      await this.restartContainer()
      return method
    }

    const result = await this.exec(restartArgv(method), {signal, timeoutMs: 60_000, user: 'root'})
    if (result.exitCode !== 0) {
      throw new OccError('RESTART_FAILED', `Restarting opencode (${method}) failed (exit ${result.exitCode}): ${result.stderr.trim()}`)
    }

    return method
  }

  async putArchive(directory: string, tar: Buffer): Promise<void> {
    try {
      await this.container().putArchive(tar, {path: directory})
    } catch (error) {
      if (isNotFound(error)) throw new ContainerMissingError(this.names.container, {cause: error})
      throw error
    }
  }

  /** A path's tar from the archive endpoint (running or stopped container), capped; undefined when it does not exist. */
  async getArchive(path: string, maxBytes: number): Promise<Buffer | undefined> {
    let stream: NodeJS.ReadableStream & {destroy?: () => void}
    try {
      stream = (await this.container().getArchive({path})) as NodeJS.ReadableStream
    } catch (error) {
      if (isNotFound(error)) return undefined
      throw error
    }

    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length
      chunks.push(chunk)
      if (size > maxBytes) {
        stream.destroy?.()
        break
      }
    }

    return Buffer.concat(chunks).subarray(0, maxBytes)
  }

  /**
   * Whether a path exists in the container: the first bytes of its archive, the rest dropped.
   * (Not the HEAD stat endpoint: dockerode leaves that socket open, which keeps occ from exiting.)
   */
  async exists(path: string): Promise<boolean> {
    return (await this.getArchive(path, 512)) !== undefined
  }

  async startContainer(): Promise<void> {
    try {
      await this.container().start()
    } catch (error) {
      if (isNotFound(error)) throw new ContainerMissingError(this.names.container, {cause: error})
      // 304: already running.
      if ((error as {statusCode?: number}).statusCode !== 304) throw error
    }
  }

  /**
   * A planned restart of the container begins: this process's own watcher (a service's) holds
   * on, and a service in another process is told through a recreate note (recreate-notice.ts),
   * written with the first hold and withdrawn with the last, so that it waits for the restart
   * rather than taking a slow one for a crash.
   */
  holdLifecycle(why: string): () => void {
    const token = Symbol(why)
    if (this.holds.size === 0) this.withdrawRestartNote = announceRestartSync(this.paths, this.names, why)
    this.holds.set(token, why)
    return () => {
      if (!this.holds.delete(token) || this.holds.size > 0) return
      this.withdrawRestartNote?.()
      this.withdrawRestartNote = undefined
      for (const wake of this.holdWaiters.splice(0)) wake()
    }
  }

  /** Why the container's life cycle is held (empty when it is not). */
  lifecycleHolds(): string[] {
    return [...this.holds.values()]
  }

  /** Resolves once no hold is left (at once when there is none). */
  lifecycleFree(): Promise<void> {
    if (this.holds.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.holdWaiters.push(resolve))
  }

  /**
   * Restarts the container for opencode's sake: opencode is ended directly (STOP_OPENCODE_SCRIPT)
   * and the container started again once it has stopped; when that cannot be done (no such
   * process, the exec failed, it does not stop within 15 s), an ordinary restart (30 s grace).
   */
  private async restartContainer(): Promise<void> {
    const ended = await this.exec(['sh', '-c', STOP_OPENCODE_SCRIPT], {timeoutMs: 10_000, user: 'root'}).then(
      (result) => result.exitCode === 0,
      () => false,
    )
    if (ended && (await this.waitNotRunning(15_000))) {
      // Tests freeze occ here (the container stopped, not started yet) to make the restart slow.
      if (process.env.OCC_RESTART_PAUSE_AT === 'stopped') process.kill(process.pid, 'SIGSTOP')
      await this.startContainer()
      return
    }

    await this.container().restart({t: 30})
  }

  private async waitNotRunning(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs
    while (performance.now() < deadline) {
      const info = await this.inspect()
      if (!info?.State.Running) return true
      await delay(50)
    }

    return false
  }

  async *logs(spec: LogsSpec, signal?: AbortSignal): AsyncIterable<LogLine> {
    const info = await this.inspect()
    if (!info) throw new ContainerMissingError(this.names.container)
    if (spec.broker && info.State.Running) {
      const check = await execInContainer(this.docker, info.Id, ['test', '-d', '/run/systemd/system'], {user: 'root'})
      if (check.exitCode === 0) {
        yield* this.execLines(info.Id, journalctlArgv('opencode-broker', spec), spec, signal)
        return
      }
    }

    yield* this.dockerLogLines(spec, spec.broker, signal)
  }

  /**
   * The image's opencoder uid/gid, read from the container's /etc/passwd through the archive
   * endpoint (works on a created, not yet started container; runs nothing). 1000:1000 when the
   * image has no such user or the file cannot be read.
   */
  async sandboxUser(): Promise<SandboxUser> {
    try {
      const stream = (await this.container().getArchive({path: '/etc/passwd'})) as NodeJS.ReadableStream
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        size += chunk.length
        if (size > 1024 * 1024) break
        chunks.push(chunk)
      }

      const file = firstTarFile(Buffer.concat(chunks), 512 * 1024)
      return (file && parsePasswdUser(file.toString('utf8'), 'opencoder')) ?? DEFAULT_SANDBOX_USER
    } catch {
      return DEFAULT_SANDBOX_USER
    }
  }

  /** Bind mounts of the existing container: what is really mounted, not what the config says. */
  async bindMounts(): Promise<MountSpec[]> {
    return bindMountSpecs((await this.containerState()).mounts)
  }

  async waitForStop(signal: AbortSignal): Promise<StopVerdict | undefined> {
    const info = await this.inspect()
    if (!info) return {departure: 'removed', expected: false}
    const watched = {containerId: info.Id, stateMount: findStateMount(bindMountSpecs(toContainerState(this.names.container, info).mounts))?.host}
    // By ID, and checked per event: Docker's name filter is a prefix match, so another
    // instance's container (opencode-cloud-sandbox-x) would otherwise count as ours.
    const stream = (await this.docker.getEvents({
      filters: {container: [info.Id], event: ['die', 'stop', 'start', 'restart', 'destroy', 'rename'], type: ['container']},
    })) as NodeJS.ReadableStream & {destroy(): void}
    try {
      // Subscribed first, then checked: a stop between the two cannot be missed.
      const state = await this.containerState()
      if (!state.running || state.id !== info.Id) {
        return {...watched, ...(state.id === info.Id ? {} : {departure: 'removed' as const}), exitCode: state.exitCode, expected: false}
      }

      const verdict = await new Promise<StopVerdict | undefined>((resolve) => {
        const tracker = new StopTracker()
        let buffer = ''
        let pending: {timer: NodeJS.Timeout; verdict: StopVerdict} | undefined
        const finish = (value: StopVerdict | undefined): void => {
          if (pending) clearTimeout(pending.timer)
          resolve(value)
        }

        if (signal.aborted) {
          finish(undefined)
          return
        }

        signal.addEventListener('abort', () => finish(undefined), {once: true})
        stream.on('data', (chunk: Buffer) => {
          buffer += chunk.toString('utf8')
          let newline = buffer.indexOf('\n')
          while (newline !== -1) {
            const line = buffer.slice(0, newline)
            buffer = buffer.slice(newline + 1)
            newline = buffer.indexOf('\n')
            let event: {Action?: string; Actor?: {Attributes?: Record<string, string>; ID?: string}}
            try {
              event = JSON.parse(line)
            } catch {
              continue
            }

            if (event.Actor?.ID !== info.Id) continue
            const decision = tracker.onEvent(event.Action, event.Actor?.Attributes)
            if (decision.kind === 'end') finish(decision.verdict)
            else if (decision.kind === 'cancel' && pending) {
              clearTimeout(pending.timer)
              pending = undefined
            } else if (decision.kind === 'wait') {
              if (pending) clearTimeout(pending.timer)
              const {verdict} = decision
              pending = {timer: setTimeout(() => finish(verdict), decision.ms), verdict}
            }
          }
        })
        // The stream ending (engine restarted or gone) settles a pending verdict, else "unknown".
        const ended = (): void => finish(pending?.verdict)
        stream.on('end', ended)
        stream.on('close', ended)
        stream.on('error', ended)
      })
      return verdict && {...watched, ...verdict}
    } finally {
      stream.destroy()
    }
  }

  /**
   * After the watched container stopped or left our name: waits (bounded) for a successor under
   * our name with this instance's labels, while a recreate is announced (recreate-notice.ts) or
   * one was already created; says "none" at once when nothing is coming.
   */
  async awaitSuccessor(departedId: string | undefined, signal: AbortSignal): Promise<SuccessorOutcome> {
    return awaitSuccessor(
      {
        candidate: async () => {
          const info = await this.inspect()
          if (!info || !hasLabels(info.Config?.Labels ?? {}, this.names.labels)) return undefined
          return {id: info.Id, running: info.State.Running && !info.State.Restarting}
        },
        notice: () => recreateNoticeState(this.paths, this.names, departedId),
      },
      departedId,
      signal,
    )
  }

  private async *dockerLogLines(spec: LogsSpec, brokerFilter: boolean, signal?: AbortSignal): AsyncIterable<LogLine> {
    const options = dockerLogsOptions(spec)
    // The typings allow only numeric tails and no abortSignal; the API takes both.
    const logs = this.container().logs as unknown as (opts: object) => Promise<Buffer | NodeJS.ReadableStream>
    const raw = await logs.call(this.container(), {...options, abortSignal: signal})
    const queue = new AsyncQueue<LogLine>()
    const out = new LineSplitter('stdout', spec.timestamps)
    const err = new LineSplitter('stderr', spec.timestamps)
    const emit = (lines: LogLine[]): void => {
      for (const line of lines) if (keepLine(line, spec, brokerFilter)) queue.push(line)
    }

    if (Buffer.isBuffer(raw)) {
      // Without follow, Docker answers with the whole multiplexed body at once.
      for (const frame of demuxBuffer(raw)) emit((frame.stream === 'stdout' ? out : err).push(frame.text))
      emit(out.flush())
      emit(err.flush())
      queue.end()
    } else {
      const stdout = new PassThrough()
      const stderr = new PassThrough()
      // A character may be split across frames: decode per stream, not per chunk.
      const outText = new StringDecoder('utf8')
      const errText = new StringDecoder('utf8')
      stdout.on('data', (chunk: Buffer) => emit(out.push(outText.write(chunk))))
      stderr.on('data', (chunk: Buffer) => emit(err.push(errText.write(chunk))))
      this.docker.modem.demuxStream(raw, stdout, stderr)
      const finish = (): void => {
        emit(out.flush())
        emit(err.flush())
        queue.end()
      }

      raw.on('end', finish)
      raw.on('close', finish)
      raw.on('error', finish)
      signal?.addEventListener('abort', () => (raw as unknown as {destroy(): void}).destroy(), {once: true})
    }

    yield* queue
  }

  private async *execLines(containerId: string, argv: string[], spec: LogsSpec, signal?: AbortSignal): AsyncIterable<LogLine> {
    const queue = new AsyncQueue<LogLine>()
    const out = new LineSplitter('stdout', false)
    const err = new LineSplitter('stderr', false)
    const emit = (lines: LogLine[]): void => {
      for (const line of lines) if (keepLine(line, spec, false)) queue.push(line)
    }

    execInContainer(this.docker, containerId, argv, {
      onOutput: (chunk, stream) => emit((stream === 'stdout' ? out : err).push(chunk)),
      signal,
      user: 'root',
    }).then(
      () => {
        emit(out.flush())
        emit(err.flush())
        queue.end()
      },
      () => queue.end(),
    )
    yield* queue
  }
}

function hasLabels(labels: Record<string, string>, wanted: Record<string, string>): boolean {
  return Object.entries(wanted).every(([key, value]) => labels[key] === value)
}

/** The bind mounts among a container's mounts, as mount specs. */
export function bindMountSpecs(mounts: ContainerState['mounts']): MountSpec[] {
  return mounts.filter((mount) => mount.type === 'bind').map((mount) => ({container: mount.target, host: mount.source, readOnly: mount.readOnly}))
}

/** Splits Docker's multiplexed (8-byte header) log body into frames. */
export function demuxBuffer(raw: Buffer): Array<{stream: 'stderr' | 'stdout'; text: string}> {
  const frames: Array<{stream: 'stderr' | 'stdout'; text: string}> = []
  let offset = 0
  while (offset + 8 <= raw.length) {
    const type = raw[offset]
    const size = raw.readUInt32BE(offset + 4)
    if (type > 2 || offset + 8 + size > raw.length) {
      // Not multiplexed (a TTY container): the whole body is plain output.
      return [{stream: 'stdout', text: raw.toString('utf8')}]
    }

    frames.push({stream: type === 2 ? 'stderr' : 'stdout', text: raw.subarray(offset + 8, offset + 8 + size).toString('utf8')})
    offset += 8 + size
  }

  return frames
}

export function toContainerState(name: string, info: Docker.ContainerInspectInfo | undefined): ContainerState {
  if (!info) return {exists: false, labels: {}, mounts: [], name, running: false, status: 'missing'}
  const binding = info.NetworkSettings?.Ports?.[CONTAINER_PORT]?.[0] ?? info.HostConfig?.PortBindings?.[CONTAINER_PORT]?.[0]
  const port = binding?.HostPort ? Number(binding.HostPort) : undefined
  return {
    exists: true,
    exitCode: info.State.ExitCode,
    finishedAt: info.State.FinishedAt && !info.State.FinishedAt.startsWith('0001') ? info.State.FinishedAt : undefined,
    hostIp: binding?.HostIp || undefined,
    hostPort: port && Number.isFinite(port) ? port : undefined,
    id: info.Id,
    image: info.Config?.Image,
    imageId: info.Image || undefined,
    labels: info.Config?.Labels ?? {},
    mounts: (info.Mounts ?? []).map((mount) => ({
      readOnly: !mount.RW,
      source: mount.Type === 'volume' ? (mount.Name ?? mount.Source) : mount.Source,
      target: mount.Destination,
      type: mount.Type,
    })),
    name,
    running: info.State.Running,
    startedAt: info.State.StartedAt && !info.State.StartedAt.startsWith('0001') ? info.State.StartedAt : undefined,
    status: info.State.Status,
  }
}
