import {once} from 'node:events'
import {PassThrough} from 'node:stream'
import {StringDecoder} from 'node:string_decoder'
import {setTimeout as delay} from 'node:timers/promises'

import type Docker from 'dockerode'

import {TimeoutError} from '../errors.js'
import type {ExecOptions, ExecResult} from '../runtime/runtime.js'

/** Output beyond this is cut (with a marker): a sandbox process must not exhaust occ's memory. */
const MAX_CAPTURE = 8 * 1024 * 1024

/** Runs argv in a container (no shell), capturing stdout and stderr apart, with the exit code. */
export async function execInContainer(
  docker: Docker,
  containerId: string,
  argv: string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const container = docker.getContainer(containerId)
  const exec = await container.exec({
    AttachStderr: true,
    AttachStdin: options.stdin !== undefined,
    AttachStdout: true,
    Cmd: argv,
    Env: options.env ? Object.entries(options.env).map(([key, value]) => `${key}=${value}`) : undefined,
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
    // There is no API to kill an exec: kill its process from a second exec.
    const info = await exec.inspect().catch(() => undefined)
    if (info?.Running && info.Pid) {
      await container
        .exec({Cmd: ['kill', '-TERM', String(info.Pid)], User: 'root'})
        .then((killer) => killer.start({}))
        .catch(() => undefined)
    }

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
