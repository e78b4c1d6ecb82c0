/**
 * The update listener against a 2-second polling loop (the Rust occ's design), measured in the
 * same run, each in a child process of its own:
 *   1. latency from the rename of update-command.json into place to its claim, p50/p99 over
 *      --requests requests (default 200) each;
 *   2. CPU time (user + system) over --idle-seconds (default 60) of idle, side by side. When a
 *      Docker engine answers, the idle run also gives the baseline the Rust loop's per-tick
 *      container inspect and the listener an (idle) Docker events stream, as in production.
 * Run: npx tsx bench/listener.bench.ts [--requests 200] [--idle-seconds 60]
 * The last stdout line is a JSON summary; progress goes to stderr.
 */
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import {fileURLToPath} from 'node:url'

const HERE = fileURLToPath(import.meta.url)
const RESOLVE_SOURCES = fileURLToPath(new URL('../scripts/resolve-sources.mjs', import.meta.url))
const REPO_ROOT = path.resolve(path.dirname(HERE), '..')
const REQUEST_FILE = 'update-command.json'
const RESULT_FILE = 'update-command.result.json'
const POLL_MS = 2000
const BASELINE_DIRS = 20
const CONTAINER = `occ-bench-missing-${randomBytes(3).toString('hex')}`

const now = (): bigint => process.hrtime.bigint() // CLOCK_MONOTONIC: comparable across processes
const args = parseArgs(process.argv.slice(2))

if (args.role === 'listener') await listenerChild()
else if (args.role === 'poller') await pollerChild()
else await main()

// ---------------------------------------------------------------------------------------------
// The parent: writes requests the way the web UI does and measures.

async function main(): Promise<void> {
  const requests = Number(args.requests ?? 200)
  const idleSeconds = Number(args['idle-seconds'] ?? 60)
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-listener-bench-'))
  try {
    const docker = await dockerAnswers()
    log(`latency: ${requests} requests to the listener…`)
    const listener = await listenerLatency(path.join(root, 'listener'), requests)
    log(`latency: ${requests} requests to a ${POLL_MS} ms polling loop (${BASELINE_DIRS} dirs in parallel)…`)
    const poll = await pollerLatency(path.join(root, 'poller'), requests)
    log(`idle CPU: ${idleSeconds} s, both side by side${docker ? ' (with Docker: events stream vs inspect per tick)' : ''}…`)
    const idle = await idleCpu(root, idleSeconds, docker)
    const summary = {
      bench: 'listener',
      idle_cpu: {
        docker,
        listener_ms: idle.listener,
        poll2s_ms: idle.poller,
        ratio_listener_to_poll: round(idle.listener / idle.poller, 3),
        seconds: idleSeconds,
      },
      latency_ms: {
        listener: listener,
        poll2s: poll,
        requests,
        speedup_p50: round(poll.p50 / listener.p50, 1),
        speedup_p99: round(poll.p99 / listener.p99, 1),
      },
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
    }
    console.log(JSON.stringify(summary))
  } finally {
    await fs.rm(root, {force: true, recursive: true})
  }
}

async function listenerLatency(stateRoot: string, count: number): Promise<Stats> {
  await fs.mkdir(stateRoot, {recursive: true})
  const child = startChild(['--role', 'listener', '--state', stateRoot, '--mode', 'latency'])
  await child.next('ready')
  const dir = path.join(stateRoot, 'opencode-cloud', 'commands')
  const latencies: number[] = []
  for (let i = 0; i < count; i++) {
    await sleep(Math.random() * 20)
    const renamedAt = await deliver(dir, i)
    const claimedAt = BigInt((await child.next('claim')).split(' ')[1])
    await child.next('result')
    latencies.push(Number(claimedAt - renamedAt) / 1e6)
  }

  await child.stop()
  return stats(latencies)
}

async function pollerLatency(root: string, count: number): Promise<Stats> {
  const dirs = Array.from({length: BASELINE_DIRS}, (_, i) => path.join(root, `d${i}`))
  for (const dir of dirs) await fs.mkdir(dir, {recursive: true})
  const child = startChild(['--role', 'poller', '--dirs', dirs.join(','), '--mode', 'latency'])
  await child.next('ready')
  const claims = new Map<number, (at: bigint) => void>()
  child.on('claim', (line) => {
    const [, index, at] = line.split(' ')
    claims.get(Number(index))?.(BigInt(at))
  })
  const latencies: number[] = []
  const perDir = Math.ceil(count / dirs.length)
  await Promise.all(
    dirs.map(async (dir, index) => {
      for (let i = 0; i < perDir && latencies.length < count; i++) {
        await sleep(Math.random() * POLL_MS) // a uniformly random phase against the poll
        const claimed = new Promise<bigint>((resolve) => claims.set(index, resolve))
        const renamedAt = await deliver(dir, i)
        latencies.push(Number((await claimed) - renamedAt) / 1e6)
      }
    }),
  )
  await child.stop()
  return stats(latencies.slice(0, count))
}

async function idleCpu(root: string, seconds: number, docker: boolean): Promise<{listener: number; poller: number}> {
  const stateRoot = path.join(root, 'idle-listener')
  const pollDir = path.join(root, 'idle-poller')
  await fs.mkdir(stateRoot, {recursive: true})
  await fs.mkdir(pollDir, {recursive: true})
  const extra = ['--mode', 'idle', '--idle-seconds', String(seconds), ...(docker ? ['--docker', '1'] : [])]
  const listener = startChild(['--role', 'listener', '--state', stateRoot, ...extra])
  const poller = startChild(['--role', 'poller', '--dirs', pollDir, ...extra])
  const [a, b] = await Promise.all([listener.next('cpu'), poller.next('cpu')])
  await Promise.all([listener.stop(), poller.stop()])
  return {listener: Number(a.split(' ')[1]) / 1000, poller: Number(b.split(' ')[1]) / 1000}
}

/** As the web UI: write a temp file in the same dir, rename it into place. Returns the rename time. */
async function deliver(dir: string, i: number): Promise<bigint> {
  const tmp = path.join(dir, `.web-ui-${i}.tmp`)
  await fs.writeFile(tmp, JSON.stringify({command: 'update_opencode', request_id: `bench-${i}`}))
  const at = now()
  await fs.rename(tmp, path.join(dir, REQUEST_FILE))
  return at
}

// ---------------------------------------------------------------------------------------------
// Child: the real listener (plugin source), instant fake update, default intervals for idle.

async function listenerChild(): Promise<void> {
  const {UpdateListener} = await import('../plugins/update-listener/src/listener.js')
  const {MOUNT_STATE, prepareCommandsDir} = await import('../src/internal.js')
  const prepared = await prepareCommandsDir({container: MOUNT_STATE, host: args.state!, readOnly: false})
  const controller = new AbortController()
  const latency = args.mode === 'latency'
  const listener = new UpdateListener({
    dir: prepared,
    log: () => {},
    onEvent: (event) => {
      if (event.type === 'claimed') send(`claim ${now()}`)
      if (event.type === 'result') send('result')
    },
    // Latency: no rate limit, so the run measures the claim alone. Idle: the real defaults.
    ...(latency ? {rateLimitMs: 0} : {}),
    async updateOpencode() {
      const at = new Date().toISOString()
      return {changed: false, finishedAt: at, message: 'bench', ref: {}, rolledBack: false, startedAt: at, status: 'success', steps: []}
    },
    version: 'bench',
  })
  const running = listener.run(controller.signal)
  // In production the container's end comes from one Docker events stream (idle: no traffic).
  const events = args.docker ? dockerEvents(controller.signal) : undefined
  await idleThenReport(controller, running, events)
}

// Child: the baseline, a 2 s polling loop (lstat; claim by rename; answer), like the Rust occ's,
// which also asked Docker whether the container still ran on every tick.

async function pollerChild(): Promise<void> {
  const dirs = args.dirs!.split(',')
  const controller = new AbortController()
  const inspect = args.docker ? await dockerInspector() : undefined
  const tick = async (): Promise<void> => {
    if (inspect) await inspect()
    for (const [index, dir] of dirs.entries()) {
      const file = path.join(dir, REQUEST_FILE)
      try {
        await fs.lstat(file)
      } catch {
        continue
      }

      const claim = path.join(dir, `update-command.claimed.${process.pid}.json`)
      await fs.rename(file, claim)
      send(`claim ${index} ${now()}`)
      const text = await fs.readFile(claim, 'utf8')
      const tmp = path.join(dir, `.result.${randomBytes(4).toString('hex')}`)
      await fs.writeFile(tmp, JSON.stringify({message: text.length, status: 'success'}))
      await fs.rename(tmp, path.join(dir, RESULT_FILE))
      await fs.rm(claim)
    }
  }

  const running = (async () => {
    while (!controller.signal.aborted) {
      await tick()
      await sleep(POLL_MS, controller.signal)
    }
  })()
  await idleThenReport(controller, running)
}

async function idleThenReport(controller: AbortController, running: Promise<void>, extra?: Promise<void>): Promise<void> {
  process.stdin.on('end', () => controller.abort())
  process.stdin.resume()
  await sleep(300) // let the start-up work settle before measuring
  send('ready')
  if (args.mode === 'idle') {
    const start = process.cpuUsage()
    await sleep(Number(args['idle-seconds']) * 1000)
    const used = process.cpuUsage(start)
    send(`cpu ${used.user + used.system}`)
  }

  await Promise.all([running, extra])
}

// ---------------------------------------------------------------------------------------------
// Docker (optional): an idle events stream for the listener, an inspect per tick for the loop.

async function dockerAnswers(): Promise<boolean> {
  try {
    const {default: Docker} = await import('dockerode')
    await new Docker().ping()
    return true
  } catch {
    return false
  }
}

async function dockerEvents(signal: AbortSignal): Promise<void> {
  const {default: Docker} = await import('dockerode')
  const stream = (await new Docker().getEvents({filters: {container: [CONTAINER], type: ['container']}})) as NodeJS.ReadableStream & {destroy(): void}
  stream.on('error', () => {})
  await new Promise<void>((resolve) => {
    signal.addEventListener('abort', () => {
      stream.destroy()
      resolve()
    })
  })
}

async function dockerInspector(): Promise<() => Promise<void>> {
  const {default: Docker} = await import('dockerode')
  const container = new Docker().getContainer(CONTAINER)
  return async () => {
    await container.inspect().catch(() => undefined) // 404 costs the same round trip
  }
}

// ---------------------------------------------------------------------------------------------
// Plumbing.

interface Child {
  next(kind: string): Promise<string>
  on(kind: string, listener: (line: string) => void): void
  stop(): Promise<void>
}

function startChild(childArgs: string[]): Child {
  // Children load TypeScript sources: tsx, and 'opencode-cloud' resolved to src/ (scripts/resolve-sources.mjs).
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', RESOLVE_SOURCES, HERE, ...childArgs], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const waiting = new Map<string, Array<(line: string) => void>>()
  const queued = new Map<string, string[]>()
  const listeners = new Map<string, (line: string) => void>()
  readline.createInterface({input: child.stdout!}).on('line', (line) => {
    const kind = line.split(' ')[0]
    const listener = listeners.get(kind)
    if (listener) return listener(line)
    const waiter = waiting.get(kind)?.shift()
    if (waiter) waiter(line)
    else queued.set(kind, [...(queued.get(kind) ?? []), line])
  })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  return {
    next(kind) {
      const ready = queued.get(kind)?.shift()
      if (ready !== undefined) return Promise.resolve(ready)
      return new Promise((resolve, reject) => {
        waiting.set(kind, [...(waiting.get(kind) ?? []), resolve])
        void exited.then(() => reject(new Error(`child exited while waiting for '${kind}'`)))
      })
    },
    on(kind, listener) {
      listeners.set(kind, listener)
    },
    async stop() {
      child.stdin!.end()
      await exited
    },
  }
}

interface Stats {
  n: number
  p50: number
  p99: number
  max: number
}

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number): number => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]
  return {max: round(sorted[sorted.length - 1], 2), n: sorted.length, p50: round(at(0.5), 2), p99: round(at(0.99), 2)}
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

function send(line: string): void {
  process.stdout.write(`${line}\n`)
}

function log(line: string): void {
  process.stderr.write(`${line}\n`)
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

function parseArgs(argv: string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {}
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1]
  return out
}
