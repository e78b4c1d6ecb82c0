import {setTimeout as delay} from 'node:timers/promises'

import {TimeoutError} from '../errors.js'
import type {Runtime} from './runtime.js'
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
}

export interface Readiness {
  opencode: OpencodeHealth
  broker: BrokerHealth
  elapsedMs: number
}

/** Ready = opencode answers /global/health as healthy AND the broker is healthy (process + socket). */
export async function waitUntilReady(runtime: Runtime, options: ReadinessOptions = {}): Promise<Readiness> {
  const started = Date.now()
  const interval = options.intervalMs ?? 250
  const healthDeadline = started + (options.healthTimeoutMs ?? 60_000)
  let opencode: OpencodeHealth
  let lastLabel = ''
  while (true) {
    options.signal?.throwIfAborted()
    const state = await runtime.containerState()
    if (!state.running) {
      throw await readinessError(`The sandbox container stopped while starting (status ${state.status}, exit ${state.exitCode ?? '?'}).`, options)
    }

    opencode = mapOpencodeHealth(await runtime.probeHealth(Math.min(2000, interval * 8)))
    if (opencode.state === 'healthy') break
    if (opencode.label !== lastLabel) options.onProgress?.(`opencode: ${opencode.label}`)
    lastLabel = opencode.label
    if (Date.now() > healthDeadline) {
      throw await readinessError(
        `opencode did not become healthy within ${Math.round((options.healthTimeoutMs ?? 60_000) / 1000)} s (last: ${opencode.label}).`,
        options,
      )
    }

    await delay(interval, undefined, {signal: options.signal})
  }

  const brokerDeadline = Date.now() + (options.brokerTimeoutMs ?? 30_000)
  let broker: BrokerHealth
  while (true) {
    options.signal?.throwIfAborted()
    const result = await runtime.exec(['sh', '-c', SANDBOX_FACTS_SCRIPT], {timeoutMs: 5000, user: 'root'}).catch(() => undefined)
    if (!result) {
      const state = await runtime.containerState()
      if (!state.running) {
        throw await readinessError(`The sandbox container stopped while starting (status ${state.status}, exit ${state.exitCode ?? '?'}).`, options)
      }
    }

    const facts = result ? parseSandboxFacts(result.stdout) : {}
    broker = mapBrokerHealth(facts.brokerProcess, facts.brokerSocket)
    if (broker.state === 'healthy') break
    if (Date.now() > brokerDeadline) {
      throw await readinessError(`The broker did not become ready within ${Math.round((options.brokerTimeoutMs ?? 30_000) / 1000)} s (last: ${broker.label}).`, options, [
        'Check its logs with: occ logs --broker',
      ])
    }

    await delay(interval, undefined, {signal: options.signal})
  }

  return {broker, elapsedMs: Date.now() - started, opencode}
}

async function readinessError(message: string, options: ReadinessOptions, extraActions: string[] = []): Promise<TimeoutError> {
  const lines = options.recentLogs ? await options.recentLogs().catch(() => []) : []
  const logs = lines.length > 0 ? `\nRecent container logs:\n${lines.map((line) => `  ${line}`).join('\n')}` : ''
  return new TimeoutError(`${message}${logs}`, {
    actions: [...extraActions, 'See the full logs with: occ logs', 'If the image is broken, remove the container and start again: occ stop --remove && occ start'],
  })
}
