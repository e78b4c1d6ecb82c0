/**
 * Downtime during `occ update opencode`: the published port is probed every 50 ms
 * (GET /global/health, 250 ms timeout) while an update runs whose build sleeps
 * BUILD_SLEEP_SECONDS (default 20). Reports the longest stretch without a healthy answer (goal:
 * at most 2 s — the restart only, never the build) and the update's total time beyond the build
 * step itself (resolve, fetch, switch, restart, health checks, prune).
 * Runs against the fixture image and a fixture repo mounted into the container; needs
 * `npm run build && npm run fixture:build`. `npx tsx bench/update-downtime.bench.ts`
 */
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {execa} from 'execa'

import type {UpdateOutcome} from '../src/runtime/update-types.js'
import {createFixtureRepo, pushCommit} from '../test/fixtures/sandbox/repo-helpers.mjs'
import {createSandboxEnv, freePort, useFixtureImage} from '../test/helpers/sandbox-env.js'
import {longestGap, PROBE_EVERY_MS, startProber} from './lib/health.js'

const BUILD_SECONDS = Number(process.env.BUILD_SLEEP_SECONDS ?? 20)
const CONTAINER_REPO = '/srv/opencode.git'

async function main(): Promise<void> {
  const sandbox = await createSandboxEnv('bench-upd')
  try {
    sandbox.port = await freePort()
    const repoDir = path.join(sandbox.root, 'opencode.git')
    await createFixtureRepo(repoDir)
    await pushCommit(repoDir, {base: 'main', branch: 'dev', files: {BUILD_SLEEP_SECONDS: `${BUILD_SECONDS}\n`, VERSION: '1.1.0-bench\n'}})
    await execa('chmod', ['-R', 'a+rX', sandbox.root])
    await useFixtureImage(sandbox, {opencode_repo: CONTAINER_REPO})
    const start = await sandbox.occ(['start', '-q', '--mount', `${repoDir}:${CONTAINER_REPO}:ro`])
    if (start.exitCode !== 0) throw new Error(`occ start failed: ${start.stderr}`)

    const prober = startProber(sandbox.port)
    await delay(500)

    const updateStarted = performance.now()
    const update = await sandbox.occ(['update', 'opencode', '--json'], {timeout: (BUILD_SECONDS + 120) * 1000})
    const updateMs = performance.now() - updateStarted
    await delay(1000)
    const samples = await prober.stop()

    if (update.exitCode !== 0) throw new Error(`occ update failed (exit ${update.exitCode}): ${update.stdout}\n${update.stderr}`)
    const outcome = JSON.parse(String(update.stdout)) as UpdateOutcome
    const buildMs = outcome.steps.find((step) => step.step === 'build')?.durationMs ?? 0
    const gap = longestGap(samples)
    const unhealthy = samples.filter((sample) => !sample.healthy).length
    const versions = [...new Set(samples.filter((sample) => sample.healthy).map((sample) => sample.version))]
    const summary = {
      bench: 'update-downtime',
      buildSleepSeconds: BUILD_SECONDS,
      buildStepMs: buildMs,
      goalMaxDowntimeMs: 2000,
      longestDowntimeMs: Math.round(gap.ms),
      meetsGoal: gap.ms <= 2000 && versions.at(-1) === '1.1.0-bench',
      probeIntervalMs: PROBE_EVERY_MS,
      probes: samples.length,
      restartMethod: outcome.restartMethod,
      steps: Object.fromEntries(outcome.steps.filter((step) => step.status !== 'skipped').map((step) => [step.step, step.durationMs])),
      totalBeyondBuildMs: Math.round(updateMs - buildMs),
      unhealthyProbes: unhealthy,
      updateWallMs: Math.round(updateMs),
      versionsSeen: versions,
    }
    console.log(JSON.stringify(summary))
    if (!summary.meetsGoal) process.exitCode = 1
  } finally {
    await sandbox.cleanup()
  }
}

await main()
