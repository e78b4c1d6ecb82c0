/**
 * Against the real image (the real opencode binary), baselines measured in the same run:
 *   1. `occ status --json` wall time vs one `docker exec <container> opencode --version` (what
 *      status used to run on every call) and vs a bare Engine API inspect in a fresh Node process,
 *      interleaved round by round. Goal: status below half of that exec, with at most one exec.
 *   2. `occ start` ready time vs the container's own first healthy answer (a probe every 50 ms
 *      beside occ, from the same moment). Goal: occ returns at most 0.5 s after that answer.
 */
import {execFileSync} from 'node:child_process'
import http from 'node:http'

import Docker from 'dockerode'
import {execa} from 'execa'

import {createSandboxEnv, OCC_BIN, REAL_IMAGE, useFixtureImage} from '../test/helpers/sandbox-env.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 11)
const START_ROUNDS = Number(process.env.BENCH_START_ROUNDS ?? 3)

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

function timeIt(fn: () => void): number {
  const start = performance.now()
  fn()
  return performance.now() - start
}

async function execWall(docker: Docker, container: string, argv: string[]): Promise<number> {
  const start = performance.now()
  const exec = await docker.getContainer(container).exec({AttachStderr: true, AttachStdout: true, Cmd: argv, User: 'opencoder'})
  const stream = await exec.start({hijack: true, stdin: false})
  stream.resume()
  await new Promise((resolve) => stream.on('end', resolve))
  return performance.now() - start
}

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({host: '127.0.0.1', path: '/global/health', port, timeout: 1000}, (response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')))
      response.on('end', () => resolve(response.statusCode === 200 && body.includes('"healthy":true')))
    })
    request.on('error', () => resolve(false))
    request.on('timeout', () => request.destroy())
  })
}

async function main(): Promise<void> {
  const sandbox = await createSandboxEnv('benchreal')
  const docker = new Docker()
  try {
    await useFixtureImage(sandbox, {}, REAL_IMAGE)
    const first = await sandbox.occ(['start', '-q', '--no-mounts'])
    if (first.exitCode !== 0) throw new Error(`occ start failed: ${first.stderr}`)
    const env = {...process.env, ...sandbox.env}
    const inspectScript = `require('http').get({socketPath:'/var/run/docker.sock',path:'/containers/${sandbox.containerName}/json'},r=>{r.resume()})`
    const samples = {inspectProcess: [] as number[], status: [] as number[], versionExec: [] as number[]}
    execFileSync(process.execPath, [OCC_BIN, 'status', '--json'], {env, stdio: 'ignore'})
    for (let round = 0; round < ROUNDS; round++) {
      samples.versionExec.push(await execWall(docker, sandbox.containerName, ['/opt/opencode/bin/opencode', '--version']))
      samples.inspectProcess.push(timeIt(() => execFileSync(process.execPath, ['-e', inspectScript], {stdio: 'ignore'})))
      samples.status.push(timeIt(() => execFileSync(process.execPath, [OCC_BIN, 'status', '--json'], {env, stdio: 'ignore'})))
    }

    // 2. Cold starts: the container removed (volumes kept) before each.
    const startOverheads: number[] = []
    const coldStarts: number[] = []
    for (let round = 0; round < START_ROUNDS; round++) {
      await sandbox.occ(['stop', '--remove'])
      const t0 = performance.now()
      let firstHealthy: number | undefined
      let probing = true
      const probe = (async () => {
        while (probing && firstHealthy === undefined) {
          const tick = performance.now()
          if (await healthy(sandbox.port)) firstHealthy = performance.now()
          else await new Promise((resolve) => setTimeout(resolve, Math.max(0, 50 - (performance.now() - tick))))
        }
      })()
      const started = await execa(process.execPath, [OCC_BIN, 'start', '-q', '--no-mounts'], {env, reject: false})
      const occDone = performance.now()
      probing = false
      await probe
      if (started.exitCode !== 0 || firstHealthy === undefined) throw new Error(`cold start failed: ${started.stderr}`)
      coldStarts.push(firstHealthy - t0)
      startOverheads.push(occDone - firstHealthy)
    }

    const m = {inspectProcess: median(samples.inspectProcess), status: median(samples.status), versionExec: median(samples.versionExec)}
    const summary = {
      bench: 'real-opencode',
      image: REAL_IMAGE,
      rounds: ROUNDS,
      medianMs: Object.fromEntries(Object.entries(m).map(([key, value]) => [key, Number(value.toFixed(1))])),
      ratios: {statusToInspectProcess: Number((m.status / m.inspectProcess).toFixed(2)), statusToVersionExec: Number((m.status / m.versionExec).toFixed(3))},
      start: {
        coldStartToFirstHealthyMs: coldStarts.map((value) => Math.round(value)),
        occReturnsAfterFirstHealthyMs: startOverheads.map((value) => Math.round(value)),
      },
      targets: {
        startWithinHalfSecondOfFirstHealthy: median(startOverheads) <= 500,
        statusBelowHalfTheVersionExec: m.status < m.versionExec / 2,
      },
    }
    console.log(`occ status --json   median ${m.status.toFixed(0)} ms = ${summary.ratios.statusToVersionExec}x one exec of opencode --version (${m.versionExec.toFixed(0)} ms), ${summary.ratios.statusToInspectProcess}x a bare inspect process (${m.inspectProcess.toFixed(0)} ms)`)
    console.log(`occ start           returns ${summary.start.occReturnsAfterFirstHealthyMs.join(' / ')} ms after the first healthy answer (cold start ${summary.start.coldStartToFirstHealthyMs.join(' / ')} ms)`)
    console.log(JSON.stringify(summary))
  } finally {
    await sandbox.cleanup()
  }
}

await main()
