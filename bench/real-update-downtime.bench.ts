/**
 * Update downtime on the REAL image (no supervisor: an update restarts the container), against
 * the real opencode's cold start measured alone in the same run, interleaved round by round:
 *   - downtime: `occ update opencode` between 1.18.34 and 1.18.33 (the image's recipe installs
 *     the pinned npm binaries) while the published port is probed every 50 ms; the longest
 *     stretch without a healthy answer;
 *   - cold start: the stopped container started through the Engine API, to its first healthy
 *     answer (the same probe).
 * Goal: median downtime ≤ median cold start + 1 s. Needs `npm run build && npm run fixture:build-real`.
 * `npx tsx bench/real-update-downtime.bench.ts` (BENCH_UPDATE_ROUNDS, default 3).
 */
import path from 'node:path'

import Docker from 'dockerode'
import {execa} from 'execa'

import {MAKE_REPO_SCRIPT, pushCommit} from '../test/fixtures/sandbox/repo-helpers.mjs'
import {createSandboxEnv, REAL_DIST_DIR, REAL_IMAGE, REAL_OPENCODE_VERSION, REPO_ROOT, useFixtureImage} from '../test/helpers/sandbox-env.js'
import {longestGap, startProber} from './lib/health.js'

const ROUNDS = Number(process.env.BENCH_UPDATE_ROUNDS ?? 3)
const CONTAINER_REPO = '/srv/opencode.git'
const OLDER = '1.18.33'

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function main(): Promise<void> {
  const sandbox = await createSandboxEnv('benchrup')
  const docker = new Docker()
  try {
    const repo = path.join(sandbox.root, 'opencode.git')
    await execa('sh', [MAKE_REPO_SCRIPT, repo, path.join(REPO_ROOT, 'test/fixtures/real/opencode-src')])
    await pushCommit(repo, {branch: 'older', files: {VERSION: `${OLDER}\n`}})
    await execa('chmod', ['-R', 'a+rX', sandbox.root])
    await useFixtureImage(sandbox, {opencode_repo: CONTAINER_REPO}, REAL_IMAGE)
    const mounts = ['--mount', `${repo}:${CONTAINER_REPO}:ro`, '--mount', `${REAL_DIST_DIR}:/opt/opencode-dist:ro`]
    const start = await sandbox.occ(['start', '-q', ...mounts])
    if (start.exitCode !== 0) throw new Error(`occ start failed: ${start.stderr}`)
    const container = docker.getContainer(sandbox.containerName)

    const downtimes: number[] = []
    const coldStarts: number[] = []
    const updateTotals: number[] = []
    for (let round = 0; round < 2 * ROUNDS; round++) {
      // Cold start alone: stopped, then started through the API, to the first healthy answer.
      if (round % 2 === 0) {
        await container.stop({t: 10})
        const probes = startProber(sandbox.port)
        const t0 = performance.now()
        const healthyAt = probes.nextHealthy()
        await container.start()
        coldStarts.push((await healthyAt) - t0)
        await probes.stop()
      }

      const branch = round % 2 === 0 ? 'older' : 'main'
      const version = branch === 'older' ? OLDER : REAL_OPENCODE_VERSION
      const probes = startProber(sandbox.port)
      const t0 = performance.now()
      const update = await sandbox.occ(['update', 'opencode', '--branch', branch, '--json'])
      updateTotals.push(performance.now() - t0)
      // The last sample must be healthy from the new version for the gap to be closed.
      await probes.untilHealthy(60_000)
      const samples = await probes.stop()
      if (update.exitCode !== 0) throw new Error(`update to ${branch} failed: ${update.stdout}\n${update.stderr}`)
      const last = samples.findLast((sample) => sample.healthy)
      if (last?.version !== version) throw new Error(`after the update to ${branch}: ${JSON.stringify(last)}`)
      downtimes.push(longestGap(samples).ms)
    }

    const cold = median(coldStarts)
    const down = median(downtimes)
    const summary = {
      bench: 'real-update-downtime',
      coldStartMs: coldStarts.map(Math.round),
      downtimeMs: downtimes.map(Math.round),
      image: REAL_IMAGE,
      medianMs: {coldStart: Math.round(cold), downtime: Math.round(down), updateTotal: Math.round(median(updateTotals))},
      ratios: {downtimeToColdStart: Number((down / cold).toFixed(2))},
      rounds: ROUNDS,
      targets: {downtimeWithinColdStartPlusOneSecond: down <= cold + 1000},
    }
    console.log(`update downtime     ${summary.downtimeMs.join(' / ')} ms (median ${summary.medianMs.downtime}) vs the real opencode's cold start alone ${summary.coldStartMs.join(' / ')} ms (median ${summary.medianMs.coldStart}): ${summary.ratios.downtimeToColdStart}x`)
    console.log(JSON.stringify(summary))
  } finally {
    await sandbox.cleanup()
  }
}

await main()
