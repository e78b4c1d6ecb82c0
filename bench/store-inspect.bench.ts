/**
 * The release store's inspect on the real image without /opt/opencode/VERSION (the published
 * image may ship none), round by round in one container:
 *   miss: the cache removed first, so inspect runs the real `opencode --version` — what every
 *         inspect cost before the version was cached (update preflight, repairs, listener start);
 *   hit:  the next inspect, answered from the cache;
 *   file: then with VERSION written back (what an image with VERSION costs).
 * Goal: a hit well below the miss (the binary costs 1.6-2.5 s of CPU), the same version from both.
 */
import Docker from 'dockerode'

import {execInContainer} from '../src/docker/exec.js'
import {ScriptReleaseStore} from '../src/runtime/update/release-store.js'
import {createSandboxEnv, REAL_IMAGE, REAL_OPENCODE_VERSION, useFixtureImage} from '../test/helpers/sandbox-env.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 11)

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function main(): Promise<void> {
  const sandbox = await createSandboxEnv('benchinspect')
  const docker = new Docker()
  try {
    await useFixtureImage(sandbox, {}, REAL_IMAGE)
    const started = await sandbox.occ(['start', '-q', '--no-mounts'])
    if (started.exitCode !== 0) throw new Error(`occ start failed: ${started.stderr}`)
    const root = (argv: string[]) => execInContainer(docker, sandbox.containerName, argv, {user: 'root'})
    const original = await root(['cat', '/opt/opencode/VERSION'])
    if (original.stdout.trim() !== REAL_OPENCODE_VERSION) throw new Error(`the image's VERSION says ${original.stdout.trim()}, not ${REAL_OPENCODE_VERSION}`)
    const store = new ScriptReleaseStore((argv, options) => execInContainer(docker, sandbox.containerName, argv, options))
    const timed = async (expected: 'binary' | 'cache' | 'file'): Promise<number> => {
      const start = performance.now()
      const state = await store.inspect()
      const ms = performance.now() - start
      if (state.version !== REAL_OPENCODE_VERSION || state.versionSource !== expected) {
        throw new Error(`inspect said ${state.version} from ${state.versionSource}, expected ${REAL_OPENCODE_VERSION} from ${expected}`)
      }

      return ms
    }

    const samples = {file: [] as number[], hit: [] as number[], miss: [] as number[]}
    for (let round = 0; round < ROUNDS; round++) {
      await root(['rm', '-f', '/opt/opencode/.version-cache', '/opt/opencode/VERSION'])
      samples.miss.push(await timed('binary'))
      samples.hit.push(await timed('cache'))
      await root(['sh', '-c', 'printf "%s\\n" "$1" > /opt/opencode/VERSION', 'sh', REAL_OPENCODE_VERSION])
      samples.file.push(await timed('file'))
    }

    const m = {file: median(samples.file), hit: median(samples.hit), miss: median(samples.miss)}
    const summary = {
      bench: 'store-inspect',
      image: REAL_IMAGE,
      medianMs: {file: Number(m.file.toFixed(1)), hit: Number(m.hit.toFixed(1)), miss: Number(m.miss.toFixed(1))},
      ratio: {hitToFile: Number((m.hit / m.file).toFixed(2)), hitToMiss: Number((m.hit / m.miss).toFixed(3))},
      rounds: ROUNDS,
      targets: {hitBelowQuarterOfMiss: m.hit < m.miss / 4},
    }
    console.log(`inspect without VERSION   cached ${m.hit.toFixed(0)} ms = ${summary.ratio.hitToMiss}x running opencode --version (${m.miss.toFixed(0)} ms), ${summary.ratio.hitToFile}x reading VERSION (${m.file.toFixed(0)} ms); median of ${ROUNDS}`)
    console.log(JSON.stringify(summary))
  } finally {
    await sandbox.cleanup()
  }
}

await main()
