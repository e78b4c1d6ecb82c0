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
import http from 'node:http'
import path from 'node:path'

import Docker from 'dockerode'
import {execa} from 'execa'

import {MAKE_REPO_SCRIPT, pushCommit} from '../test/fixtures/sandbox/repo-helpers.mjs'
import {createSandboxEnv, REAL_DIST_DIR, REAL_IMAGE, REAL_OPENCODE_VERSION, REPO_ROOT, useFixtureImage} from '../test/helpers/sandbox-env.js'

const ROUNDS = Number(process.env.BENCH_UPDATE_ROUNDS ?? 3)
const PROBE_EVERY_MS = 50
const CONTAINER_REPO = '/srv/opencode.git'
const OLDER = '1.18.33'

interface Sample {
  at: number
  healthy: boolean
  version?: string
}

function probe(port: number): Promise<Omit<Sample, 'at'>> {
  return new Promise((resolve) => {
    const request = http.get({agent: false, host: '127.0.0.1', path: '/global/health', port, timeout: 250}, (response) => {
      let text = ''
      response.on('data', (chunk: Buffer) => (text += chunk.toString()))
      response.on('end', () => {
        try {
          const body = JSON.parse(text) as {healthy?: boolean; version?: string}
          resolve({healthy: response.statusCode === 200 && body.healthy === true, version: body.version})
        } catch {
          resolve({healthy: false})
        }
      })
    })
    request.on('timeout', () => request.destroy(new Error('timeout')))
    request.on('error', () => resolve({healthy: false}))
  })
}

/** Probes every 50 ms until stopped; returns the samples. */
function prober(port: number): {stop: () => Promise<Sample[]>; firstHealthy: () => Promise<number>} {
  const samples: Sample[] = []
  let running = true
  let wake: ((at: number) => void) | undefined
  const loop = (async () => {
    while (running) {
      const tick = performance.now()
      const answer = await probe(port)
      const sample = {at: performance.now(), ...answer}
      samples.push(sample)
      if (sample.healthy && wake) {
        wake(sample.at)
        wake = undefined
      }

      await new Promise((resolve) => setTimeout(resolve, Math.max(0, PROBE_EVERY_MS - (performance.now() - tick))))
    }
  })()
  return {
    firstHealthy: () => new Promise((resolve) => (wake = resolve)),
    async stop() {
      running = false
      await loop
      return samples
    },
  }
}

/** The longest time between two healthy answers with only unhealthy ones (or none) between them. */
function longestGap(samples: Sample[]): number {
  let best = 0
  let lastHealthy: number | undefined
  for (const sample of samples) {
    if (!sample.healthy) continue
    if (lastHealthy !== undefined) best = Math.max(best, sample.at - lastHealthy)
    lastHealthy = sample.at
  }

  return best
}

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
        const probes = prober(sandbox.port)
        const t0 = performance.now()
        const healthyAt = probes.firstHealthy()
        await container.start()
        coldStarts.push((await healthyAt) - t0)
        await probes.stop()
      }

      const branch = round % 2 === 0 ? 'older' : 'main'
      const version = branch === 'older' ? OLDER : REAL_OPENCODE_VERSION
      const probes = prober(sandbox.port)
      const t0 = performance.now()
      const update = await sandbox.occ(['update', 'opencode', '--branch', branch, '--json'])
      updateTotals.push(performance.now() - t0)
      // The last sample must be healthy from the new version for the gap to be closed.
      const deadline = performance.now() + 60_000
      while (performance.now() < deadline && !(await probe(sandbox.port)).healthy) await new Promise((resolve) => setTimeout(resolve, PROBE_EVERY_MS))
      const samples = await probes.stop()
      if (update.exitCode !== 0) throw new Error(`update to ${branch} failed: ${update.stdout}\n${update.stderr}`)
      const last = samples.findLast((sample) => sample.healthy)
      if (last?.version !== version) throw new Error(`after the update to ${branch}: ${JSON.stringify(last)}`)
      downtimes.push(longestGap(samples))
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
