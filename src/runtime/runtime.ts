import type {ResourceNames} from '../config/instance.js'
import type {MountSpec} from '../config/mounts.js'

export type RuntimeKind = 'container' | 'host'

/** What Docker (or the local system, inside the sandbox) says about the sandbox container. */
export interface ContainerState {
  name: string
  exists: boolean
  running: boolean
  /** Docker's State.Status: created, running, exited, … ('missing' when there is no container). */
  status: string
  id?: string
  image?: string
  /** The ID of the image the container was created from. */
  imageId?: string
  startedAt?: string
  finishedAt?: string
  exitCode?: number
  /** Host port published for 3000/tcp, and the address it is bound to. */
  hostPort?: number
  hostIp?: string
  mounts: MountInfo[]
  labels: Record<string, string>
}

export interface MountInfo {
  type: 'bind' | 'volume' | string
  /** Host path for binds, volume name for volumes. */
  source: string
  target: string
  readOnly: boolean
}

export interface ExecOptions {
  user?: string
  env?: Record<string, string>
  workdir?: string
  stdin?: Buffer | string
  timeoutMs?: number
  signal?: AbortSignal
  /** Streams output while the command runs (for progress); the result still holds all of it. */
  onOutput?: (chunk: string, stream: 'stderr' | 'stdout') => void
}

export interface ExecResult {
  exitCode: number
  stdout: string
  stderr: string
}

/** GET /global/health, before it is mapped to a label. */
export type HealthProbe =
  | {kind: 'failed'; error: string}
  | {kind: 'http'; status: number; body: unknown}
  | {kind: 'refused'}
  | {kind: 'timeout'}

export interface LogLine {
  stream: 'stderr' | 'stdout'
  text: string
  timestamp?: string
}

export interface LogsSpec {
  /** Number of lines from the end, or 'all'. */
  lines: number | 'all'
  follow: boolean
  timestamps: boolean
  grep?: string
  broker: boolean
}

/** How opencode is restarted in this container (found out, not assumed). */
export type RestartMethod = 'container' | 'supervisor' | 'systemd'

export type ContainerEvent = {action: string; exitCode?: number; time: number}

/**
 * Everything the shared core needs from "the place opencode runs". The host runtime does it
 * through the Docker Engine API; the container runtime (occ inside the sandbox) locally.
 */
export interface Runtime {
  readonly kind: RuntimeKind
  readonly names: ResourceNames
  containerState(): Promise<ContainerState>
  /** Runs argv in the sandbox. Never a shell string built from input. */
  exec(argv: string[], options?: ExecOptions): Promise<ExecResult>
  /** GET /global/health on the published port (`known`: a state just read, to save a lookup). */
  probeHealth(timeoutMs: number, known?: ContainerState): Promise<HealthProbe>
  /** The URL a person opens to reach opencode. */
  opencodeUrl(known?: ContainerState): Promise<string | undefined>
  restartMethod(): Promise<RestartMethod>
  /** Restarts opencode only (not the whole container when avoidable). */
  restartOpencode(signal?: AbortSignal): Promise<RestartMethod>
  logs(spec: LogsSpec, signal?: AbortSignal): AsyncIterable<LogLine>
  /**
   * Extracts a tar archive into a directory of the container, running or STOPPED (the Engine
   * API's archive endpoint: nothing runs in the sandbox). How an update rolls back a release
   * that stopped the container. Host runtime only.
   */
  putArchive(directory: string, tar: Buffer): Promise<void>
  /** Starts the (stopped) container again. Host runtime only. */
  startContainer(): Promise<void>
  /**
   * Marks a planned stop of the container (an update restarting it, or bringing it back after
   * a crash): until the returned release is called, a watcher of this runtime (the service's
   * lifecycle watch) does not take a stop for the end of the sandbox. Releasing twice is a no-op.
   */
  holdLifecycle(why: string): () => void
}

/** The host runtime adds the container's life cycle, which only makes sense outside it. */
export interface HostRuntimeApi extends Runtime {
  readonly kind: 'host'
  /** Bind mounts in effect for the running container (the listener needs the state mount). */
  bindMounts(): Promise<MountSpec[]>
  /** Resolves when the container stops: `expected` when it was stopped through the API (occ stop). */
  waitForStop(signal: AbortSignal): Promise<{expected: boolean; exitCode?: number} | undefined>
}
