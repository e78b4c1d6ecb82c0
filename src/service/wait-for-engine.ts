/**
 * The systemd unit's ExecStartPre: waits until the Docker engine answers, so a user unit needs
 * no dependency on docker.service (which a user manager does not have) and a slow engine at
 * boot does not burn the unit's start limit. Usage: node wait-for-engine.js [--timeout SECONDS]
 * It reaches the engine exactly as occ does (src/docker/connection.ts).
 */
import {realpathSync} from 'node:fs'
import {performance} from 'node:perf_hooks'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'

import {createDockerClient, pingEngine} from '../docker/connection.js'

export interface WaitForEngineOptions {
  timeoutSec: number
  ping?: () => Promise<unknown>
  intervalMs?: number
  log?: (line: string) => void
  now?: () => number
}

/** Resolves true as soon as the engine answers a ping, false when `timeoutSec` passes first. */
export async function waitForEngine(options: WaitForEngineOptions): Promise<boolean> {
  const docker = options.ping ? undefined : createDockerClient()
  const ping = options.ping ?? (() => pingEngine(docker!, 5000))
  // The deadline is an interval: the monotonic clock (at boot the wall clock may still be set by NTP).
  const now = options.now ?? (() => performance.now())
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const deadline = now() + options.timeoutSec * 1000
  let lastError: string
  for (let attempt = 0; ; attempt++) {
    try {
      await ping()
      if (attempt > 0) log('The Docker engine answers.')
      return true
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error)
      if (attempt === 0) log(`Waiting up to ${options.timeoutSec}s for the Docker engine: ${lastError}`)
    }

    if (now() >= deadline) break
    await sleep(Math.min(options.intervalMs ?? 2000, Math.max(0, deadline - now())))
  }

  log(`The Docker engine did not answer within ${options.timeoutSec}s: ${lastError}`)
  return false
}

function parseTimeout(argv: string[]): number {
  const index = argv.indexOf('--timeout')
  if (index === -1) return 120
  const value = Number(argv[index + 1])
  if (!Number.isInteger(value) || value < 0) throw new Error(`--timeout needs a whole number of seconds (got '${argv[index + 1]}')`)
  return value
}

function isMain(): boolean {
  if (!process.argv[1]) return false
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isMain()) {
  const ok = await waitForEngine({timeoutSec: parseTimeout(process.argv.slice(2))})
  process.exitCode = ok ? 0 : 1
}
