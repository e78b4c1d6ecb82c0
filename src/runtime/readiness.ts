import {performance} from 'node:perf_hooks'
import {setTimeout as delay} from 'node:timers/promises'

import {OccError, SandboxStoppedError, TimeoutError} from '../errors.js'
import type {ContainerState, Runtime} from './runtime.js'
import {mapBrokerHealth, mapOpencodeHealth, parseSandboxFacts, SANDBOX_FACTS_SCRIPT, type BrokerHealth, type OpencodeHealth} from './status.js'

export interface ReadinessOptions {
  /** Overall wait for opencode's /global/health to say healthy. */
  healthTimeoutMs?: number
  /** Further wait for the broker once opencode is healthy. */
  brokerTimeoutMs?: number
  intervalMs?: number
  signal?: AbortSignal
  onProgress?: (message: string) => void
  /** Last log lines, to show when readiness fails. */
  recentLogs?: () => Promise<string[]>
  /** The monotonic clock in ms for the deadlines (default performance.now): a wall clock jump must not end or stretch the wait. */
  now?: () => number
}

export interface Readiness {
  opencode: OpencodeHealth
  broker: BrokerHealth
  elapsedMs: number
}

/** Ready = opencode answers /global/health as healthy AND the broker is healthy (process + socket). */
export async function waitUntilReady(runtime: Runtime, options: ReadinessOptions = {}): Promise<Readiness> {
  const now = options.now ?? (() => performance.now())
  const started = now()
  const interval = options.intervalMs ?? 100
  const healthDeadline = started + (options.healthTimeoutMs ?? 60_000)
  let opencode: OpencodeHealth
  let lastLabel = ''
  // The broker is up long before the real opencode (seconds): check it beside the health wait,
  // at most once a second, so occ returns as soon as opencode answers.
  let brokerSeen: BrokerHealth | undefined
  let brokerCheck: Promise<void> | undefined
  let lastBrokerCheck = Number.NEGATIVE_INFINITY
  const checkBroker = (): void => {
    if (brokerSeen?.state === 'healthy' || brokerCheck || now() - lastBrokerCheck < 1000) return
    lastBrokerCheck = now()
    brokerCheck = runtime
      .exec(['sh', '-c', SANDBOX_FACTS_SCRIPT], {timeoutMs: 5000, user: 'root'})
      .then((result) => {
        const facts = parseSandboxFacts(result.stdout)
        brokerSeen = mapBrokerHealth(facts.brokerProcess, facts.brokerSocket)
      })
      .catch(() => {})
      .finally(() => {
        brokerCheck = undefined
      })
  }

  while (true) {
    options.signal?.throwIfAborted()
    const state = await runtime.containerState()
    if (!state.running) throw await stoppedError(state, options)
    opencode = mapOpencodeHealth(await runtime.probeHealth(Math.min(2000, Math.max(interval * 8, 500))))
    if (opencode.state === 'healthy') break
    checkBroker()
    if (opencode.label !== lastLabel) options.onProgress?.(`opencode: ${opencode.label}`)
    lastLabel = opencode.label
    if (now() > healthDeadline) {
      throw await readinessError(
        `opencode did not become healthy within ${Math.round((options.healthTimeoutMs ?? 60_000) / 1000)} s (last: ${opencode.label}).`,
        options,
      )
    }

    await delay(interval, undefined, {signal: options.signal})
  }

  await brokerCheck
  if (brokerSeen?.state === 'healthy') return {broker: brokerSeen, elapsedMs: Math.round(now() - started), opencode}
  const brokerDeadline = now() + (options.brokerTimeoutMs ?? 30_000)
  let broker: BrokerHealth
  while (true) {
    options.signal?.throwIfAborted()
    const result = await runtime.exec(['sh', '-c', SANDBOX_FACTS_SCRIPT], {timeoutMs: 5000, user: 'root'}).catch(() => undefined)
    if (!result) {
      const state = await runtime.containerState()
      if (!state.running) throw await stoppedError(state, options)
    }

    const facts = result ? parseSandboxFacts(result.stdout) : {}
    broker = mapBrokerHealth(facts.brokerProcess, facts.brokerSocket)
    if (broker.state === 'healthy') break
    if (now() > brokerDeadline) {
      throw await readinessError(`The broker did not become ready within ${Math.round((options.brokerTimeoutMs ?? 30_000) / 1000)} s (last: ${broker.label}).`, options, [
        'Check its logs with: occ logs --broker',
      ])
    }

    await delay(interval, undefined, {signal: options.signal})
  }

  return {broker, elapsedMs: Math.round(now() - started), opencode}
}

/** The container is gone or exited: say so at once, with its exit code and last log lines. */
async function stoppedError(state: ContainerState, options: ReadinessOptions): Promise<SandboxStoppedError> {
  const how = state.exists ? `exit ${state.exitCode ?? '?'}` : 'the container was removed'
  return withLogs(SandboxStoppedError, `The sandbox stopped while starting (${how}).`, options, [
    'See why in the full logs: occ logs --no-follow',
    'If the image or a mount is broken, fix it and recreate the container: occ start --recreate',
  ])
}

async function readinessError(message: string, options: ReadinessOptions, extraActions: string[] = []): Promise<TimeoutError> {
  return withLogs(TimeoutError, message, options, [
    ...extraActions,
    'See the full logs with: occ logs',
    'If the image is broken, recreate the container: occ start --recreate',
  ])
}

async function withLogs<E extends OccError>(
  Kind: new (message: string, options: {actions: string[]}) => E,
  message: string,
  options: ReadinessOptions,
  actions: string[],
): Promise<E> {
  const lines = options.recentLogs ? await options.recentLogs().catch(() => []) : []
  // Container output is sandbox text: no control characters reach the terminal.
  // eslint-disable-next-line no-control-regex
  const clean = lines.map((line) => line.replaceAll(/[\u0000-\u001F\u007F-\u009F]/g, '').slice(0, 400))
  const logs = clean.length > 0 ? `\nLast container log lines:\n${clean.map((line) => `  ${line}`).join('\n')}` : ''
  return new Kind(`${message}${logs}`, {actions})
}
