/**
 * Wall time of `occ --version` and `occ status --json` (against a running fixture container),
 * as ratios to baselines measured in the same run, interleaved round by round so machine noise
 * hits all of them alike:
 *   - `node -e 0`: the floor for any Node CLI;
 *   - a bare Engine API inspect of the container: in-process (one HTTP request on the socket) and
 *     as a minimal Node process doing just that request.
 * Targets (issue 2): --version <= 3x `node -e 0`; status --json median <= 200 ms.
 */
import {execFileSync} from 'node:child_process'
import http from 'node:http'

import {createSandboxEnv, OCC_BIN, useFixtureImage} from '../test/helpers/sandbox-env.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 21)

function timeIt(fn: () => void): number {
  const start = performance.now()
  fn()
  return performance.now() - start
}

function inspectOnce(name: string): Promise<number> {
  const start = performance.now()
  return new Promise((resolve, reject) => {
    const request = http.get({path: `/containers/${name}/json`, socketPath: '/var/run/docker.sock'}, (response) => {
      response.resume()
      response.on('end', () => resolve(performance.now() - start))
    })
    request.on('error', reject)
  })
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const p90 = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length * 0.9)]

async function main(): Promise<void> {
  const sandbox = await createSandboxEnv('bench')
  try {
    await useFixtureImage(sandbox)
    const started = await sandbox.occ(['start', '-q'])
    if (started.exitCode !== 0) throw new Error(`occ start failed: ${started.stderr}`)
    const env = {...process.env, ...sandbox.env}
    const inspectScript = `require('http').get({socketPath:'/var/run/docker.sock',path:'/containers/${sandbox.containerName}/json'},r=>{r.resume()})`
    const samples = {inspectInProcess: [] as number[], inspectProcess: [] as number[], nodeBare: [] as number[], status: [] as number[], version: [] as number[]}
    // One warm-up round fills Node's compile cache, as on any machine after the first run.
    execFileSync(process.execPath, [OCC_BIN, 'status', '--json'], {env, stdio: 'ignore'})
    for (let round = 0; round < ROUNDS; round++) {
      samples.nodeBare.push(timeIt(() => execFileSync(process.execPath, ['-e', '0'], {stdio: 'ignore'})))
      samples.version.push(timeIt(() => execFileSync(process.execPath, [OCC_BIN, '--version'], {env, stdio: 'ignore'})))
      samples.inspectProcess.push(timeIt(() => execFileSync(process.execPath, ['-e', inspectScript], {stdio: 'ignore'})))
      samples.inspectInProcess.push(await inspectOnce(sandbox.containerName))
      samples.status.push(timeIt(() => execFileSync(process.execPath, [OCC_BIN, 'status', '--json'], {env, stdio: 'ignore'})))
    }

    const m = Object.fromEntries(Object.entries(samples).map(([key, values]) => [key, median(values)])) as Record<keyof typeof samples, number>
    const summary = {
      bench: 'startup',
      rounds: ROUNDS,
      medianMs: Object.fromEntries(Object.entries(m).map(([key, value]) => [key, Number(value.toFixed(1))])),
      p90Ms: {status: Number(p90(samples.status).toFixed(1)), version: Number(p90(samples.version).toFixed(1))},
      ratios: {
        statusToInspectInProcess: Number((m.status / m.inspectInProcess).toFixed(1)),
        statusToInspectProcess: Number((m.status / m.inspectProcess).toFixed(2)),
        statusToNode: Number((m.status / m.nodeBare).toFixed(2)),
        versionToNode: Number((m.version / m.nodeBare).toFixed(2)),
      },
      targets: {statusMedianAtMost200ms: m.status <= 200, versionAtMost3xNode: m.version / m.nodeBare <= 3},
    }
    console.log(`occ --version        median ${m.version.toFixed(1)} ms = ${summary.ratios.versionToNode}x node -e 0 (${m.nodeBare.toFixed(1)} ms)`)
    console.log(`occ status --json    median ${m.status.toFixed(1)} ms (p90 ${summary.p90Ms.status} ms) = ${summary.ratios.statusToInspectProcess}x a bare inspect process (${m.inspectProcess.toFixed(1)} ms), ${summary.ratios.statusToInspectInProcess}x one in-process inspect (${m.inspectInProcess.toFixed(1)} ms)`)
    console.log(JSON.stringify(summary))
  } finally {
    await sandbox.cleanup()
  }
}

await main()
