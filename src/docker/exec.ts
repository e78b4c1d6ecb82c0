import {randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {PassThrough} from 'node:stream'
import {StringDecoder} from 'node:string_decoder'
import {setTimeout as delay} from 'node:timers/promises'

import type Docker from 'dockerode'

import {SandboxStoppedError, TimeoutError} from '../errors.js'
import type {ExecOptions, ExecResult} from '../runtime/runtime.js'

/** Output beyond this is cut (with a marker): a sandbox process must not exhaust occ's memory. */
const MAX_CAPTURE = 8 * 1024 * 1024

/**
 * Every exec carries OCC_EXEC_ID=<random> in its environment (children inherit it), so an exec
 * that times out or is cancelled can be ended whole from the container side: the Engine API
 * has no kill for an exec, and ExecInspect's Pid is the host's pid, meaningless inside.
 * KILL_EXEC_SCRIPT finds every process whose environment has that id (data as $1, never
 * spliced), sends TERM, and KILL to whatever is left a second later.
 */
export const EXEC_ID_VARIABLE = 'OCC_EXEC_ID'
export const KILL_EXEC_SCRIPT = [
  'mark="OCC_EXEC_ID=$1"; self=$$',
  'pids() { for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$self" ] && continue; tr "\\0" "\\n" < "$d/environ" 2>/dev/null | grep -qxF "$mark" && echo "$p"; done; }',
  'for p in $(pids); do kill -TERM "$p" 2>/dev/null; done',
  'for _ in 1 2 3 4 5 6 7 8 9 10; do [ -z "$(pids)" ] && exit 0; sleep 0.1; done',
  'for p in $(pids); do kill -KILL "$p" 2>/dev/null; done',
  'exit 0',
].join('\n')

/**
 * How an exec notices that its container is gone. The engine does not always say so: when the
 * container is killed while an exec is being started, Docker 20.10 can leave the start request
 * (or the attached stream) open for ever, and that one socket kept `occ start --no-daemon`
 * alive after `docker kill`. So while an exec is in flight the container is inspected (first
 * after firstCheckMs, which also records when it was started, then every pollMs); once it is
 * not running, removed, or started again since, the exec gets graceMs to end on its own, then
 * its requests and stream are cut and it rejects with SandboxStoppedError.
 */
export interface ExecWatch {
  firstCheckMs: number
  pollMs: number
  graceMs: number
}

export const EXEC_WATCH: ExecWatch = {firstCheckMs: 250, graceMs: 2000, pollMs: 1000}

/** Runs argv in a container (no shell), capturing stdout and stderr apart, with the exit code. */
export async function execInContainer(
  docker: Docker,
  containerId: string,
  argv: string[],
  options: ExecOptions = {},
  watch: ExecWatch = EXEC_WATCH,
): Promise<ExecResult> {
  const container = docker.getContainer(containerId)
  const execId = randomBytes(8).toString('hex')
  const env = {...options.env, [EXEC_ID_VARIABLE]: execId}
  // Cuts the engine requests of this exec (create, start) when it is given up on.
  const cut = new AbortController()
  const abort = abortOrTimeout(options)
  const gone = watchContainer(container, containerId, watch)
  const until = <T>(work: Promise<T>): Promise<T> => Promise.race([work, abort.promise, gone.promise])
  let stream: NodeJS.ReadWriteStream & {destroy(): void} | undefined
  let started = false
  try {
    const exec = await until(
      container.exec({
        AttachStderr: true,
        AttachStdin: options.stdin !== undefined,
        AttachStdout: true,
        Cmd: argv,
        Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
        Tty: false,
        User: options.user,
        WorkingDir: options.workdir,
        abortSignal: cut.signal,
      }),
    )
    started = true
    stream = (await until(exec.start({abortSignal: cut.signal, hijack: true, stdin: options.stdin !== undefined}))) as typeof stream
    const stdout = new Capture('stdout', options.onOutput)
    const stderr = new Capture('stderr', options.onOutput)
    docker.modem.demuxStream(stream!, stdout.sink, stderr.sink)
    if (options.stdin !== undefined) stream!.end(options.stdin)
    const ended = once(stream!, 'end').catch(() => undefined)
    const closed = once(stream!, 'close').catch(() => undefined)
    await until(Promise.race([ended, closed]))
    const info = await until(finalInspect(exec))
    return {exitCode: info.ExitCode ?? -1, stderr: stderr.text(), stdout: stdout.text()}
  } catch (error) {
    cut.abort()
    stream?.destroy()
    // A timeout or a cancel ends what the exec started; a container that is gone took it along.
    if (started && !(error instanceof SandboxStoppedError)) await killExec(container, execId)
    throw error
  } finally {
    abort.dispose()
    gone.dispose()
  }
}

/** The exec's exit code, once the engine has it (the stream may end just before). */
async function finalInspect(exec: Docker.Exec): Promise<Docker.ExecInspectInfo> {
  let info = await exec.inspect()
  for (let tries = 0; info.Running && tries < 100; tries++) {
    await delay(20)
    info = await exec.inspect()
  }

  return info
}

/** Rejects (SandboxStoppedError) graceMs after the container is seen not running or restarted. */
function watchContainer(container: Docker.Container, name: string, watch: ExecWatch): {promise: Promise<never>; dispose: () => void} {
  let timer: NodeJS.Timeout | undefined
  let disposed = false
  let startedAt: string | undefined
  const promise = new Promise<never>((_, reject) => {
    const schedule = (ms: number, next: () => void): void => {
      if (disposed) return
      timer = setTimeout(next, ms)
      // The exec's own socket keeps occ alive while it runs; this check must not.
      timer.unref()
    }

    const giveUp = (why: string): void => {
      schedule(watch.graceMs, () => reject(new SandboxStoppedError(`The sandbox container ${name} ${why} while a command ran in it.`)))
    }

    const check = async (): Promise<void> => {
      let state: Docker.ContainerInspectInfo['State'] | undefined
      try {
        state = (await container.inspect()).State
      } catch (error) {
        if ((error as {statusCode?: number}).statusCode === 404) return giveUp('was removed')
        // The engine did not answer this time: look again.
        return schedule(watch.pollMs, () => void check())
      }

      if (disposed) return
      if (!state.Running) return giveUp(`stopped (exit ${state.ExitCode})`)
      if (startedAt !== undefined && state.StartedAt !== startedAt) return giveUp('was restarted')
      startedAt = state.StartedAt
      schedule(watch.pollMs, () => void check())
    }

    schedule(watch.firstCheckMs, () => void check())
  })
  promise.catch(() => undefined)
  return {
    dispose() {
      disposed = true
      clearTimeout(timer)
    },
    promise,
  }
}

/**
 * Ends every process an exec started, found from the container side by its OCC_EXEC_ID. Bounded
 * as a whole (create, start and stream): the engine may not answer for a dying container either.
 */
export async function killExec(container: Docker.Container, execId: string, limitMs = 5000): Promise<void> {
  const cut = new AbortController()
  const timer = setTimeout(() => cut.abort(), limitMs)
  let stream: NodeJS.ReadWriteStream & {destroy(): void} | undefined
  try {
    const limit = new Promise<void>((resolve) => cut.signal.addEventListener('abort', () => resolve(), {once: true}))
    const killer = await container.exec({
      AttachStderr: true,
      AttachStdout: true,
      Cmd: ['sh', '-c', KILL_EXEC_SCRIPT, 'occ-kill', execId],
      User: 'root',
      abortSignal: cut.signal,
    })
    stream = (await killer.start({abortSignal: cut.signal, hijack: true, stdin: false})) as typeof stream
    stream!.resume()
    await Promise.race([once(stream!, 'end'), once(stream!, 'close'), limit]).catch(() => undefined)
  } catch {
    // The container may be gone already (or the engine did not answer in time): nothing to do.
  } finally {
    clearTimeout(timer)
    stream?.destroy()
  }
}

class Capture {
  readonly sink = new PassThrough()
  private chunks: Buffer[] = []
  private size = 0
  private truncated = false

  constructor(
    name: 'stderr' | 'stdout',
    onOutput?: (chunk: string, stream: 'stderr' | 'stdout') => void,
  ) {
    const decoder = new StringDecoder('utf8')
    this.sink.on('data', (chunk: Buffer) => {
      if (onOutput) onOutput(decoder.write(chunk), name)
      if (this.size + chunk.length > MAX_CAPTURE) {
        this.truncated = true
        return
      }

      this.chunks.push(chunk)
      this.size += chunk.length
    })
  }

  text(): string {
    const text = Buffer.concat(this.chunks).toString('utf8')
    return this.truncated ? `${text}\n[output truncated at ${MAX_CAPTURE} bytes]` : text
  }
}

function abortOrTimeout(options: ExecOptions): {promise: Promise<never>; dispose: () => void} {
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  const promise = new Promise<never>((_, reject) => {
    if (options.timeoutMs) {
      timer = setTimeout(
        () => reject(new TimeoutError(`Command in the sandbox did not finish within ${options.timeoutMs} ms.`)),
        options.timeoutMs,
      )
    }

    if (options.signal) {
      onAbort = () => reject(options.signal?.reason ?? new Error('aborted'))
      if (options.signal.aborted) onAbort()
      else options.signal.addEventListener('abort', onAbort, {once: true})
    }
  })
  promise.catch(() => undefined)
  return {
    dispose() {
      clearTimeout(timer)
      if (onAbort) options.signal?.removeEventListener('abort', onAbort)
    },
    promise,
  }
}
