/**
 * Downtime during `occ update container` against a plain `occ restart`, measured in the same
 * run, interleaved round by round: the published port is probed every 50 ms (GET
 * /global/health, 250 ms timeout) and each operation's downtime is the longest stretch without a
 * healthy answer while it ran. The update goes v1 → v2 → v1 … (the local registry of the tests,
 * test/helpers/registry.ts, moving one tag), so every round really recreates the container.
 * Reports medians and the ratio update / restart. Needs `npm run build && npm run fixture:build`
 * and docker-registry (.ci/provision.sh). `npx tsx bench/container-update-downtime.bench.ts`
 */
import {setTimeout as delay} from 'node:timers/promises'

import {sharedRegistry} from '../test/helpers/registry.js'
import {createSandboxEnv, freePort, useFixtureImage} from '../test/helpers/sandbox-env.js'
import {longestGap, PROBE_EVERY_MS, startProber} from './lib/health.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

async function main(): Promise<void> {
  const registry = await sharedRegistry()
  const tag = `bench-${process.pid}`
  await registry.publish('v1', tag)
  const sandbox = await createSandboxEnv('bench-updc')
  try {
    sandbox.port = await freePort()
    await useFixtureImage(sandbox, {}, registry.ref(tag))
    const start = await sandbox.occ(['start', '-q'])
    if (start.exitCode !== 0) throw new Error(`occ start failed: ${start.stderr}`)

    /** Runs `argv` while probing; its downtime is the longest unhealthy stretch from 300 ms before it to 1 s after. */
    const measure = async (argv: string[]): Promise<{downtimeMs: number; wallMs: number}> => {
      const prober = startProber(sandbox.port)
      await delay(300)
      const started = performance.now()
      const result = await sandbox.occ(argv, {timeout: 300_000})
      const wallMs = performance.now() - started
      // Until healthy again (bounded), then a second of healthy answers.
      await prober.untilHealthy(60_000)
      await delay(1000)
      const samples = await prober.stop()
      if (result.exitCode !== 0) throw new Error(`occ ${argv.join(' ')} failed (exit ${result.exitCode}): ${result.stderr}`)
      return {downtimeMs: Math.round(longestGap(samples).ms), wallMs: Math.round(wallMs)}
    }

    const restarts: Array<{downtimeMs: number; wallMs: number}> = []
    const updates: Array<{downtimeMs: number; wallMs: number}> = []
    for (let round = 0; round < ROUNDS; round++) {
      restarts.push(await measure(['restart', '-q']))
      await registry.publish(round % 2 === 0 ? 'v2' : 'v1', tag)
      updates.push(await measure(['update', 'container', '-q']))
    }

    const m = {
      restartDowntime: median(restarts.map((r) => r.downtimeMs)),
      restartWall: median(restarts.map((r) => r.wallMs)),
      updateDowntime: median(updates.map((r) => r.downtimeMs)),
      updateWall: median(updates.map((r) => r.wallMs)),
    }
    const summary = {
      bench: 'container-update-downtime',
      medianMs: m,
      probeIntervalMs: PROBE_EVERY_MS,
      ratios: {
        downtimeUpdateToRestart: Number((m.updateDowntime / m.restartDowntime).toFixed(2)),
        wallUpdateToRestart: Number((m.updateWall / m.restartWall).toFixed(2)),
      },
      restarts,
      rounds: ROUNDS,
      updates,
    }
    console.log(
      `occ update container: downtime median ${m.updateDowntime} ms (wall ${m.updateWall} ms); occ restart: ${m.restartDowntime} ms (wall ${m.restartWall} ms); ratio ${summary.ratios.downtimeUpdateToRestart}x`,
    )
    console.log(JSON.stringify(summary))
  } finally {
    await sandbox.cleanup()
    for (const ref of [registry.ref(tag), `${registry.repository}:instance-${sandbox.instance}-previous`]) await sandbox.docker.getImage(ref).remove().catch(() => {})
  }
}

await main()
process.exit(process.exitCode ?? 0)
