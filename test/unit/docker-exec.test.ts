/**
 * execInContainer against a stand-in engine on a unix socket (the Engine API's wire, not a mock of
 * dockerode): the engine misbehaviour behind the "docker kill during an update" hang, made
 * deterministic. Docker 20.10 sometimes never answers an exec start (or never ends its stream)
 * when the container is killed at that moment; the one socket left open kept
 * `occ start --no-daemon` alive for ever. Each case checks that the exec settles, and that the
 * engine sees its connection closed (nothing of it is left to keep occ alive).
 */
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import http from 'node:http'
import type {Socket} from 'node:net'
import os from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {execInContainer, type ExecWatch} from '../../src/docker/exec.js'
import {SandboxStoppedError, TimeoutError} from '../../src/errors.js'

const WATCH: ExecWatch = {firstCheckMs: 20, graceMs: 150, pollMs: 40}

interface Engine {
  docker: Docker
  /** What GET /containers/<name>/json reports. */
  container: {Running: boolean; StartedAt: string; ExitCode: number}
  /** How POST /exec/<id>/start behaves. */
  start: 'hang' | 'stream-forever' | 'stream-then-end'
  /** Resolves once the engine saw the exec start connection close. */
  startClosed: Promise<void>
  /** Exec start requests the engine got (not counting the kill of a timed-out exec). */
  starts: number
  /** Kills of a timed-out or cancelled exec (KILL_EXEC_SCRIPT). */
  kills: number
  /** Resolves when the exec was started (its stream is attached, or the request hangs). */
  startSeen: Promise<void>
  /** Ends an attached stream the way the engine does when the process exits. */
  endStream(): void
  close(): Promise<void>
}

async function fakeEngine(): Promise<Engine> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-engine-'))
  const socketPath = path.join(dir, 'docker.sock')
  let markClosed!: () => void
  let markSeen!: () => void
  let attached: Socket | undefined
  const sockets = new Set<Socket>()
  const engine: Engine = {
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await fs.rm(dir, {force: true, recursive: true})
    },
    container: {ExitCode: 0, Running: true, StartedAt: '2026-01-01T00:00:00.000000000Z'},
    docker: new Docker({socketPath}),
    endStream() {
      // One stdout frame ("bye\n"), then the end of the stream.
      const frame = Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 0, 4]), Buffer.from('bye\n')])
      attached?.end(frame)
    },
    start: 'hang',
    startClosed: new Promise((resolve) => (markClosed = resolve)),
    startSeen: new Promise((resolve) => (markSeen = resolve)),
    kills: 0,
    starts: 0,
  }
  const execId = randomBytes(32).toString('hex')
  const killId = randomBytes(32).toString('hex')
  const json = (response: http.ServerResponse, status: number, body: unknown): void => {
    response.writeHead(status, {'content-type': 'application/json'})
    response.end(JSON.stringify(body))
  }

  const server = http.createServer((request, response) => {
    const url = request.url ?? ''
    if (request.method === 'POST' && /^\/containers\/[^/]+\/exec$/.test(url)) {
      let body = ''
      request.on('data', (chunk: Buffer) => (body += chunk.toString()))
      request.on('end', () => {
        // The kill of a timed-out exec (KILL_EXEC_SCRIPT) gets an exec that ends at once.
        const killer = (JSON.parse(body) as {Cmd: string[]}).Cmd.includes('occ-kill')
        if (killer) engine.kills++
        json(response, 201, {Id: killer ? killId : execId})
      })
      return
    }

    if (request.method === 'GET' && /^\/containers\/[^/]+\/json/.test(url)) return json(response, 200, {Id: 'c', State: engine.container})
    if (request.method === 'GET' && url.startsWith(`/exec/${execId}/json`)) return json(response, 200, {ExitCode: engine.container.Running ? 0 : 137, Running: false})
    if (request.method === 'GET' && url.startsWith(`/exec/${killId}/json`)) return json(response, 200, {ExitCode: 0, Running: false})
    request.resume()
    json(response, 404, {message: `no route ${request.method} ${url}`})
  })
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  // The exec start asks for an upgrade (Connection: Upgrade): Node hands it over here.
  server.on('upgrade', (request: http.IncomingMessage, socket: Socket) => {
    if (request.url?.startsWith(`/exec/${killId}/start`)) {
      socket.end('HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n')
      return
    }

    engine.starts++
    // The client closing its end is what counts (the server side is half-open until then).
    socket.on('end', () => {
      markClosed()
      socket.end()
    })
    socket.on('close', () => markClosed())
    socket.on('error', () => {})
    socket.on('data', () => {})
    if (engine.start !== 'hang') {
      socket.write('HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n')
      attached = socket
      if (engine.start === 'stream-then-end') setTimeout(() => engine.endStream(), 10)
    }

    markSeen()
  })
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  return engine
}

describe('execInContainer: an engine that never ends an exec (the docker kill hang)', () => {
  let engine: Engine
  beforeEach(async () => {
    engine = await fakeEngine()
  })
  afterEach(async () => {
    await engine.close()
  })

  it('an exec start the engine never answers settles once the container is not running, and its connection is closed', async () => {
    engine.start = 'hang'
    const run = execInContainer(engine.docker, 'sandbox', ['true'], {}, WATCH)
    await engine.startSeen
    const died = performance.now()
    engine.container = {...engine.container, ExitCode: 137, Running: false}
    await assert.rejects(run, (error: unknown) => error instanceof SandboxStoppedError && /stopped \(exit 137\)/.test(error.message))
    const took = performance.now() - died
    assert.ok(took < WATCH.pollMs + WATCH.graceMs + 1000, `settled ${Math.round(took)} ms after the container stopped`)
    await engine.startClosed
  })

  it('an attached stream that never ends settles once the container is not running (no socket left open)', async () => {
    engine.start = 'stream-forever'
    const run = execInContainer(engine.docker, 'sandbox', ['sleep', '1000'], {}, WATCH)
    await engine.startSeen
    engine.container = {...engine.container, ExitCode: 137, Running: false}
    await assert.rejects(run, SandboxStoppedError)
    await engine.startClosed
    assert.equal(engine.kills, 0, 'nothing to kill in a container that is gone')
  })

  it('a container started again meanwhile (docker restart) counts as gone for the exec in flight', async () => {
    engine.start = 'hang'
    const run = execInContainer(engine.docker, 'sandbox', ['true'], {}, WATCH)
    await engine.startSeen
    // Let the watch record when the container was started, then restart it.
    await new Promise((resolve) => setTimeout(resolve, WATCH.firstCheckMs + WATCH.pollMs * 2))
    engine.container = {...engine.container, StartedAt: '2026-01-01T00:05:00.000000000Z'}
    await assert.rejects(run, (error: unknown) => error instanceof SandboxStoppedError && /was restarted/.test(error.message))
    await engine.startClosed
  })

  it('a stream that ends within the grace after the container died is a normal result (its exit code), not an error', async () => {
    engine.start = 'stream-forever'
    const run = execInContainer(engine.docker, 'sandbox', ['build'], {}, WATCH)
    await engine.startSeen
    engine.container = {...engine.container, ExitCode: 137, Running: false}
    engine.endStream()
    const result = await run
    assert.equal(result.exitCode, 137)
    assert.equal(result.stdout, 'bye\n')
  })

  it('the timeout covers an exec start the engine never answers (the container still runs)', async () => {
    engine.start = 'hang'
    const started = performance.now()
    await assert.rejects(execInContainer(engine.docker, 'sandbox', ['true'], {timeoutMs: 300}, WATCH), TimeoutError)
    assert.ok(performance.now() - started < 5000)
    await engine.startClosed
    assert.equal(engine.kills, 1, 'what the exec may have started is ended from the container side')
  })

  it('a cancel covers an exec start the engine never answers', async () => {
    engine.start = 'hang'
    const controller = new AbortController()
    const run = execInContainer(engine.docker, 'sandbox', ['true'], {signal: controller.signal}, WATCH)
    await engine.startSeen
    controller.abort(new Error('cancelled by the test'))
    await assert.rejects(run, /cancelled by the test/)
    await engine.startClosed
    assert.equal(engine.kills, 1)
  })

  it('while the container runs and the exec ends normally, nothing is cut', async () => {
    engine.start = 'stream-then-end'
    const result = await execInContainer(engine.docker, 'sandbox', ['echo', 'bye'], {}, WATCH)
    assert.equal(result.exitCode, 0)
    assert.equal(result.stdout, 'bye\n')
    assert.equal(engine.starts, 1)
  })
})
