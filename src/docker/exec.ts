import {randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {PassThrough} from 'node:stream'
import {StringDecoder} from 'node:string_decoder'
import {setTimeout as delay} from 'node:timers/promises'

import type Docker from 'dockerode'

import {TimeoutError} from '../errors.js'
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

/** Runs argv in a container (no shell), capturing stdout and stderr apart, with the exit code. */
export async function execInContainer(
  docker: Docker,
  containerId: string,
  argv: string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const container = docker.getContainer(containerId)
  const execId = randomBytes(8).toString('hex')
  const env = {...options.env, [EXEC_ID_VARIABLE]: execId}
  const exec = await container.exec({
    AttachStderr: true,
    AttachStdin: options.stdin !== undefined,
    AttachStdout: true,
    Cmd: argv,
    Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    Tty: false,
    User: options.user,
    WorkingDir: options.workdir,
  })
  const stream = await exec.start({hijack: true, stdin: options.stdin !== undefined})
  const stdout = new Capture('stdout', options.onOutput)
  const stderr = new Capture('stderr', options.onOutput)
  docker.modem.demuxStream(stream, stdout.sink, stderr.sink)
  if (options.stdin !== undefined) stream.end(options.stdin)

  const ended = once(stream, 'end').catch(() => undefined)
  const closed = once(stream, 'close').catch(() => undefined)
  const finished = Promise.race([ended, closed])
  const abort = abortOrTimeout(options)
  try {
    await Promise.race([finished, abort.promise])
  } catch (error) {
    stream.destroy()
    await killExec(container, execId)
    throw error
  } finally {
    abort.dispose()
  }

  let info = await exec.inspect()
  for (let tries = 0; info.Running && tries < 100; tries++) {
    await delay(20)
    info = await exec.inspect()
  }

  return {exitCode: info.ExitCode ?? -1, stderr: stderr.text(), stdout: stdout.text()}
}

/** Ends every process an exec started, found from the container side by its OCC_EXEC_ID. */
export async function killExec(container: Docker.Container, execId: string): Promise<void> {
  try {
    const killer = await container.exec({AttachStderr: true, AttachStdout: true, Cmd: ['sh', '-c', KILL_EXEC_SCRIPT, 'occ-kill', execId], User: 'root'})
    const stream = await killer.start({hijack: true, stdin: false})
    stream.resume()
    await Promise.race([once(stream, 'end'), once(stream, 'close'), delay(5000)]).catch(() => undefined)
  } catch {
    // The container may be gone already: nothing left to kill.
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
