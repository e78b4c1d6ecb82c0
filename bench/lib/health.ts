/**
 * The downtime benches' health probe (GET /global/health on the published port) and what they
 * compute from it: a background prober that samples every 50 ms, and the longest stretch
 * between two healthy answers.
 */
import {setTimeout as delay} from 'node:timers/promises'

import {probeHttpHealth} from '../../src/runtime/http-probe.js'

export const PROBE_EVERY_MS = 50
export const PROBE_TIMEOUT_MS = 250

export interface HealthAnswer {
  /** HTTP 200 with `"healthy": true` in a JSON body. */
  healthy: boolean
  version?: string
}

export interface HealthSample extends HealthAnswer {
  /** performance.now() when the answer (or the failure, or the timeout) came. */
  at: number
}

/** One probe through occ's own (src/runtime/http-probe.ts); never rejects: no answer, a timeout or a body that is not JSON is unhealthy. */
export async function probeHealth(port: number, timeoutMs = PROBE_TIMEOUT_MS): Promise<HealthAnswer> {
  const probe = await probeHttpHealth('127.0.0.1', port, timeoutMs)
  if (probe.kind !== 'http') return {healthy: false}
  const body = (typeof probe.body === 'object' && probe.body !== null ? probe.body : {}) as {healthy?: unknown; version?: unknown}
  return {healthy: probe.status === 200 && body.healthy === true, version: typeof body.version === 'string' ? body.version : undefined}
}

export interface HealthProber {
  /** Every sample so far, oldest first. */
  samples: HealthSample[]
  /** When the first healthy answer after this call came. */
  nextHealthy(): Promise<number>
  /** Until the latest sample is healthy, or `timeoutMs` passed (then it returns all the same). */
  untilHealthy(timeoutMs: number): Promise<void>
  /** Stops probing (after the probe in flight) and returns the samples. */
  stop(): Promise<HealthSample[]>
}

/** Probes `port` every `everyMs` (a probe starts at most that long after the last one started) until stopped. */
export function startProber(port: number, everyMs = PROBE_EVERY_MS): HealthProber {
  const samples: HealthSample[] = []
  const waiting: Array<(at: number) => void> = []
  let running = true
  const loop = (async () => {
    while (running) {
      const started = performance.now()
      const sample = {...(await probeHealth(port)), at: performance.now()}
      samples.push(sample)
      if (sample.healthy) for (const wake of waiting.splice(0)) wake(sample.at)
      const wait = everyMs - (performance.now() - started)
      if (wait > 0) await delay(wait)
    }
  })()
  return {
    nextHealthy: () => new Promise((resolve) => waiting.push(resolve)),
    samples,
    async stop() {
      running = false
      await loop
      return samples
    },
    async untilHealthy(timeoutMs) {
      const deadline = performance.now() + timeoutMs
      while (performance.now() < deadline && !(samples.at(-1)?.healthy ?? false)) await delay(everyMs)
    },
  }
}

/** The longest time between two healthy answers with only unhealthy answers (or none) between them. */
export function longestGap(samples: HealthSample[]): {ms: number; from?: number; to?: number} {
  let best: {ms: number; from?: number; to?: number} = {ms: 0}
  let lastHealthy: number | undefined
  for (const sample of samples) {
    if (!sample.healthy) continue
    if (lastHealthy !== undefined && sample.at - lastHealthy > best.ms) best = {from: lastHealthy, ms: sample.at - lastHealthy, to: sample.at}
    lastHealthy = sample.at
  }

  return best
}
