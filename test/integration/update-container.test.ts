import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'

import Docker from 'dockerode'
import {execa, type Result} from 'execa'

import {containerUpdateResultSchema} from '../../src/runtime/container-update-schema.js'
import {buildFromContext, sharedRegistry, startAuthRegistry, untagLocalCopies, type TestRegistry} from '../helpers/registry.js'
import {createSandboxEnv, describeRun, expectExit, FIXTURE_IMAGE, json, OCC_BIN, type SandboxEnv, useFixtureImage} from '../helpers/sandbox-env.js'

/**
 * `occ update container` against a real registry (test/helpers/registry.ts) and the real engine,
 * one sandbox for the whole file, its scenarios in order: the first start pulls v1; v1 → v2 keeps
 * what the container had; again → already up to date; v2 → broken rolls back (while it runs, a
 * second update container and an update opencode are refused); --rollback; registry stopped;
 * a kill -9 mid-swap repaired by the next start. A stopped unrelated container, an unrelated image
 * and an unrelated dangling image survive all of it.
 */
describe('integration: occ update container (local registry)', function () {
  this.timeout(240_000)
  const docker = new Docker()
  let registry: TestRegistry
  let sandbox: SandboxEnv
  let image: string
  /** The registry tag this file moves between versions. */
  let tag: string
  let projectDir: string
  const unrelated = {container: '', danglingImage: '', image: '', imageRef: ''}

  const inside = async (argv: string[]): Promise<string> => {
    const result = await execa('docker', ['exec', '-u', 'root', sandbox.containerName, ...argv], {reject: false})
    return String(result.stdout).trim()
  }

  const instanceContainers = async (): Promise<Docker.ContainerInfo[]> =>
    docker.listContainers({all: true, filters: {label: [`opencode-cloud.instance=${sandbox.instance}`]}})
  const rollbackRef = (): string => `${registry.repository}:instance-${sandbox.instance}-previous`
  const labelOf = async (ref: string): Promise<string | undefined> => (await docker.getImage(ref).inspect()).Config.Labels?.['org.opencode-cloud.version']

  /** The sandbox as it must be after every scenario: one container, running, serving `version`, with all it had. */
  const expectSandbox = async (version: string): Promise<Docker.ContainerInspectInfo> => {
    const containers = await instanceContainers()
    assert.deepEqual(
      containers.map((container) => container.Names[0]),
      [`/${sandbox.containerName}`],
      'exactly the sandbox container (no kept _previous one)',
    )
    const info = await docker.getContainer(sandbox.containerName).inspect()
    assert.equal(info.State.Running, true)
    assert.equal(info.Config.Labels['org.opencode-cloud.version'], version, 'the image label')
    assert.equal(await inside(['cat', '/etc/opencode-cloud-version']), version, '/etc/opencode-cloud-version')
    const health = await fetch(`http://127.0.0.1:${sandbox.port}/global/health`)
    assert.equal(health.status, 200, 'opencode answers healthy on the same port')
    assert.equal(await inside(['cat', '/home/opencoder/project/keep.txt']), 'bind-mounted file', 'the bind mount')
    assert.equal(await inside(['cat', '/home/opencoder/workspace/in-volume.txt']), 'volume file', 'the workspace volume')
    assert.equal(await inside(['printenv', 'OCC_TEST_ENV']), 'kept', 'container_env')
    assert.match(await inside(['getent', 'passwd', 'alice']), /^alice:/, 'the login user')
    assert.equal(info.HostConfig.PidsLimit, 2048, 'the pids limit')
    // Nothing else on the host was touched.
    assert.equal((await docker.getContainer(unrelated.container).inspect()).State.Status, 'created')
    await docker.getImage(unrelated.image).inspect().catch((error: unknown) => assert.fail(`the unrelated image ${unrelated.image}: ${String(error)}`))
    await docker.getImage(unrelated.danglingImage).inspect().catch((error: unknown) => assert.fail(`the unrelated dangling image ${unrelated.danglingImage}: ${String(error)}`))
    return info
  }

  const update = (args: string[] = [], options: {env?: Record<string, string>} = {}): Promise<Result> => sandbox.occ(['update', 'container', ...args], options)

  /** Moves the tag to the version the sandbox does not run and starts `occ update container` to it, in the background. */
  const startSwap = async () => {
    const before = await docker.getContainer(sandbox.containerName).inspect()
    const running = before.Config.Labels['org.opencode-cloud.version']
    const target = running === 'v1' ? 'v2' : 'v1'
    await registry.publish(target, tag)
    const child = execa(process.execPath, [OCC_BIN, 'update', 'container'], {env: sandbox.env, reject: false, stdin: 'ignore'})
    return {before, child, running, target}
  }

  /** The sandbox's container once it is another than `oldId` (polled every 25 ms); undefined at the deadline. */
  const newContainer = async (oldId: string, deadline: number): Promise<Docker.ContainerInspectInfo | undefined> => {
    while (Date.now() < deadline) {
      const info = await docker.getContainer(sandbox.containerName).inspect().catch(() => undefined)
      if (info && info.Id !== oldId) return info
      await new Promise((resolve) => setTimeout(resolve, 25))
    }

    return undefined
  }

  before(async function () {
    this.timeout(300_000)
    registry = await sharedRegistry()
    sandbox = await createSandboxEnv('updc')
    // A tag of this file's own: other files use the shared registry too.
    tag = `t-${sandbox.instance}`
    await registry.publish('v1', tag)
    image = registry.ref(tag)
    // The first start and v1 → v2 must really pull (progress is asserted): whatever an earlier
    // file in this process left of v1 and v2 (a digest reference keeps an untagged image) goes.
    for (const version of ['v1', 'v2'] as const) await untagLocalCopies(docker, registry.repository, registry.digests[version])
    await useFixtureImage(sandbox, {container_env: '["OCC_TEST_ENV=kept"]', pids_limit: '2048'}, image)
    projectDir = path.join(sandbox.root, 'project')
    await fs.mkdir(projectDir)
    await fs.writeFile(path.join(projectDir, 'keep.txt'), 'bind-mounted file')
    await fs.chmod(projectDir, 0o777)

    const suffix = sandbox.instance
    const stopped = await docker.createContainer({Cmd: ['true'], Entrypoint: [], Image: FIXTURE_IMAGE, name: `occ-unrelated-${suffix}`})
    unrelated.container = stopped.id
    unrelated.imageRef = `occ-unrelated-${suffix}:keep`
    await docker.getImage(FIXTURE_IMAGE).tag({repo: `occ-unrelated-${suffix}`, tag: 'keep'})
    unrelated.image = (await docker.getImage(unrelated.imageRef).inspect()).Id
    // A dangling image of another repository: built, then its tag moved to a second build. Its
    // label names this run: the same Dockerfile in another run (another test process on the
    // host) would give the same image ID from the build cache, and that run's cleanup would
    // remove this one's image (the 404 "no such image" of the full-suite runs).
    await buildFromContext(docker, `occ-unrelated-dangling-${suffix}:x`, {Dockerfile: `FROM ${FIXTURE_IMAGE}\nLABEL occ.test=one-${suffix}\n`})
    unrelated.danglingImage = (await docker.getImage(`occ-unrelated-dangling-${suffix}:x`).inspect()).Id
    await buildFromContext(docker, `occ-unrelated-dangling-${suffix}:x`, {Dockerfile: `FROM ${FIXTURE_IMAGE}\nLABEL occ.test=two-${suffix}\n`})
  })

  after(async () => {
    await sandbox?.cleanup()
    const suffix = sandbox?.instance
    if (suffix) {
      await docker.getContainer(`occ-unrelated-${suffix}`).remove({force: true}).catch(() => {})
      for (const ref of [unrelated.imageRef, `occ-unrelated-dangling-${suffix}:x`, unrelated.danglingImage]) await docker.getImage(ref).remove({force: true}).catch(() => {})
    }

    if (registry) {
      // Untagged, not forced: an image another file's container uses stays.
      for (const ref of [image, rollbackRef()]) if (ref) await docker.getImage(ref).remove().catch(() => {})
      if (!registry.running()) await registry.start()
    }
  })

  it('the first start pulls the image from the registry, with a progress line per layer', async () => {
    const start = await sandbox.occ(['start', '--mount', `${projectDir}:/home/opencoder/project`])
    expectExit(start, 0)
    const stderr = String(start.stderr)
    assert.match(stderr, new RegExp(`Pulling ${image.replaceAll('.', '\\.')}`), describeRun(start))
    assert.match(stderr, /Layer [0-9a-f]{12} pulled \(\d+(\.\d)? (KB|MB)\): \d+\/\d+ layers done, .* downloaded/, describeRun(start))
    assert.match(stderr, /\d+ layers already present/)
    await inside(['sh', '-c', 'printf "volume file" > /home/opencoder/workspace/in-volume.txt'])
    expectExit(await sandbox.occ(['user', 'add', 'alice', '--password-stdin'], {input: 'Alice-pass-1\n', stdin: 'pipe'}), 0)
    await expectSandbox('v1')
  })

  it('the registry serves what the sandbox runs: already up to date, nothing changes; no rollback tag yet: --rollback says so', async () => {
    const before = await docker.getContainer(sandbox.containerName).inspect()
    const result = await update(['--json'])
    expectExit(result, 0)
    const parsed = containerUpdateResultSchema.parse(json(result))
    assert.equal(parsed.changed, false)
    assert.match(parsed.message, /Already up to date/)
    assert.equal(parsed.from.digest, registry.digests.v1)
    const noPrevious = await update(['--rollback', '--json'])
    expectExit(noPrevious, 1)
    assert.equal(json<{error: {code: string}}>(noPrevious).error.code, 'NO_PREVIOUS_IMAGE')
    const after = await expectSandbox('v1')
    assert.equal(after.Id, before.Id)
  })

  it('v1 → v2 on a terminal: the pull shows in place (layers, bytes); the new version serves with the bind mounts, volumes, users, container_env and limits it had; v1 is the rollback tag', async () => {
    await registry.publish('v2', tag)
    const before = await docker.getContainer(sandbox.containerName).inspect()
    // script(1) gives occ a pseudo-terminal; its output is the terminal's.
    const quote = (text: string): string => `'${text.replaceAll("'", "'\\''")}'`
    const result = (await execa('script', ['-qefc', `${quote(process.execPath)} ${quote(OCC_BIN)} update container`, '/dev/null'], {
      env: {...sandbox.env, TERM: 'xterm'},
      reject: false,
      stdin: 'ignore',
      timeout: 180_000,
    })) as Result
    expectExit(result, 0)
    const terminal = String(result.stdout)
    // eslint-disable-next-line no-control-regex
    assert.match(terminal, /\r\u001B\[2KPulling: \d+\/\d+ layers done, [\d.]+ (B|KB|MB) of [\d.]+ MB downloaded/, describeRun(result))
    // eslint-disable-next-line no-control-regex
    assert.match(terminal, /\r\u001B\[2KPull: (\d+)\/\1 layers done/, 'the line ends with every layer done')
    assert.doesNotMatch(terminal, /Layer [0-9a-f]{12} pulled/, 'no plain per-layer lines on a terminal')
    assert.match(terminal, /Updated the sandbox to .*\(version v2\)/)
    const after = await expectSandbox('v2')
    assert.notEqual(after.Id, before.Id)
    assert.equal(await labelOf(rollbackRef()), 'v1')
    const text = await update()
    expectExit(text, 0)
    assert.match(String(text.stdout), /Already up to date/)
  })

  it('v2 → broken: rolled back to v2, serving, the error says so; meanwhile a second update container and an update opencode are refused, and occ start waits for it', async () => {
    await registry.publish('broken', tag)
    const lockFile = path.join(sandbox.env.XDG_DATA_HOME, 'opencode-cloud', 'locks', `${sandbox.containerName}.update.lock`)
    const running = update(['--json', '--health-timeout', '8'])
    const deadline = Date.now() + 60_000
    while (!(await fs.stat(lockFile).catch(() => undefined))) {
      assert.ok(Date.now() < deadline, 'the update took its lock')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }

    const [second, opencode] = await Promise.all([update(['--json']), sandbox.occ(['update', 'opencode', '--json'])])
    expectExit(second, 9)
    assert.equal(json<{error: {code: string; message: string}}>(second).error.code, 'UPDATE_BUSY')
    assert.match(json<{error: {message: string}}>(second).error.message, /occ update container \(pid \d+/)
    expectExit(opencode, 9)
    assert.match(json<{error: {message: string}}>(opencode).error.message, /update container/)

    // occ start during the swap (the service's start comes back this way) waits for the update, then finds the sandbox as it left it.
    while (!(await docker.getContainer(`${sandbox.containerName}_previous`).inspect().catch(() => undefined))) {
      assert.ok(Date.now() < deadline, 'the update kept the old container aside')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }

    const [result, start] = await Promise.all([running, sandbox.occ(['start'])])
    expectExit(start, 0)
    assert.match(String(start.stderr), /Another update of this sandbox is running: occ update container .* Waiting for it to finish/, describeRun(start))
    assert.match(String(start.stdout), /Service is already running/)
    expectExit(result, 8)
    assert.equal(String(result.stderr).trim(), '', 'nothing but JSON under --json (no pull progress)')
    const error = json<{error: {code: string; message: string; rolledBack: boolean}}>(result).error
    assert.equal(error.code, 'CONTAINER_UPDATE_ROLLED_BACK')
    assert.equal(error.rolledBack, true)
    assert.match(error.message, /rolled back/)
    assert.match(error.message, /opencode did not become healthy/)
    await expectSandbox('v2')
    assert.equal(await labelOf(image), 'v2', 'the configured tag points at the image that runs again')
    assert.equal(await labelOf(rollbackRef()), 'v1', 'the rollback tag is still v1')
    const leftovers = await docker.listImages({filters: {dangling: ['true']}})
    assert.ok(!leftovers.some((entry) => (entry.RepoDigests ?? []).some((digest) => digest.endsWith(registry.digests.broken))), 'the broken image was pruned')
    await fs.stat(lockFile).then(
      () => assert.fail('the lock is released'),
      () => {},
    )
  })

  it('occ update --rollback (the Rust spelling) goes back to v1; v2 becomes the rollback tag', async () => {
    const result = await sandbox.occ(['update', '--rollback', '--json'])
    expectExit(result, 0)
    const parsed = containerUpdateResultSchema.parse(json(result))
    assert.equal(parsed.action, 'rollback')
    assert.equal(parsed.changed, true)
    assert.equal(parsed.from.version, 'v2')
    assert.equal(parsed.from.digest, registry.digests.v2)
    assert.equal(parsed.to.version, 'v1')
    assert.equal(parsed.rollbackImage, rollbackRef())
    await expectSandbox('v1')
    assert.equal(await labelOf(rollbackRef()), 'v2')
  })

  it('registry stopped, tag missing, credentials wanted: update container and a start that must pull say which (REGISTRY_UNREACHABLE, IMAGE_NOT_FOUND, REGISTRY_UNAUTHORIZED), and nothing changes', async () => {
    const before = await docker.getContainer(sandbox.containerName).inspect()
    await registry.stop()
    try {
      const result = await update(['--json'])
      expectExit(result, 1)
      const error = json<{error: {code: string; message: string}}>(result).error
      assert.equal(error.code, 'REGISTRY_UNREACHABLE')
      assert.match(error.message, new RegExp(`The registry ${registry.address.replaceAll('.', '\\.')} cannot be reached`))

      // A start that must pull (an image not present locally) with --recreate: the container stays.
      expectExit(await sandbox.occ(['config', 'set', 'image', registry.ref('v2')]), 0)
      const start = await sandbox.occ(['start', '--recreate', '--json'])
      expectExit(start, 1)
      assert.equal(String(start.stderr).includes('Pulling'), false, 'nothing but JSON under --json')
      assert.equal(json<{error: {code: string}}>(start).error.code, 'REGISTRY_UNREACHABLE')
      const after = await expectSandbox('v1')
      assert.equal(after.Id, before.Id)
    } finally {
      await registry.start()
    }

    const missing = await sandbox.occ(['config', 'set', 'image', registry.ref('no-such-tag')])
    expectExit(missing, 0)
    const notFound = await sandbox.occ(['start', '--recreate', '--json'])
    expectExit(notFound, 1)
    assert.equal(json<{error: {code: string}}>(notFound).error.code, 'IMAGE_NOT_FOUND')

    // A registry that wants credentials occ does not have.
    const locked = await startAuthRegistry()
    try {
      expectExit(await sandbox.occ(['config', 'set', 'image', `${locked.address}/occ-sandbox:latest`]), 0)
      const denied = await sandbox.occ(['start', '--recreate', '--json'])
      expectExit(denied, 1)
      assert.equal(json<{error: {code: string}}>(denied).error.code, 'REGISTRY_UNAUTHORIZED', describeRun(denied))
      const check = await update(['--json'])
      expectExit(check, 1)
      const error = json<{error: {code: string; message: string}}>(check).error
      assert.equal(error.code, 'REGISTRY_UNAUTHORIZED')
      assert.match(error.message, /refused access/)
    } finally {
      await locked.stop()
    }

    expectExit(await sandbox.occ(['config', 'set', 'image', image]), 0)
    assert.equal((await expectSandbox('v1')).Id, before.Id)
  })

  it('killed at each step of the swap: the next occ start puts back the old container, or finishes a new one that is ready', async () => {
    // stopped / renamed / created: the old container comes back; started: the new one becomes ready, the swap is finished.
    let running = 'v1'
    for (const step of ['stopped', 'renamed', 'created', 'started'] as const) {
      const target = running === 'v1' ? 'v2' : 'v1'
      await registry.publish(target, tag)
      const before = await docker.getContainer(sandbox.containerName).inspect()
      const killed = await update([], {env: {OCC_UPDATE_CONTAINER_CRASH_AT: step}})
      assert.equal(killed.signal, 'SIGKILL', `${step}: ${describeRun(killed)}`)
      const start = await sandbox.occ(['start', '--json'])
      expectExit(start, 0)
      const warnings = json<{warnings: string[]}>(start).warnings.join('\n')
      if (step === 'stopped') assert.doesNotMatch(warnings, /interrupted update/, `${step}: nothing to repair, the old container is started`)
      else assert.match(warnings, /interrupted update/, `${step}: ${describeRun(start)}`)
      const expected = step === 'started' ? target : running
      const info = await expectSandbox(expected)
      if (step === 'started') assert.equal(await labelOf(rollbackRef()), running, 'the finished swap set the rollback tag')
      else assert.equal(info.Id, before.Id, `${step}: the same old container`)
      running = expected
    }

    // And an update after all that goes through.
    const target = running === 'v1' ? 'v2' : 'v1'
    await registry.publish(target, tag)
    expectExit(await update(), 0)
    await expectSandbox(target)
  })

  it('kill -9 between "new container created" and "new container ready": the next occ start repairs it', async () => {
    const {before, child, running, target} = await startSwap()
    const fresh = await newContainer(before.Id, Date.now() + 120_000)
    if (fresh) child.kill('SIGKILL')
    const killed = await child
    assert.ok(fresh, `the new container appeared before the update ended: ${describeRun(killed)}`)
    assert.equal(killed.signal, 'SIGKILL', describeRun(killed))
    const kept = await docker.getContainer(`${sandbox.containerName}_previous`).inspect()
    assert.equal(kept.Id, before.Id, 'the old container is kept aside, not removed')

    const start = await sandbox.occ(['start', '--json'])
    expectExit(start, 0)
    const warnings = json<{warnings: string[]}>(start).warnings.join('\n')
    assert.match(warnings, /interrupted update/, describeRun(start))
    // Either way it is consistent: finished on the target (the old version the rollback tag) or back on the old container.
    const finished = /update is finished/.test(warnings)
    const info = await expectSandbox(finished ? target : running)
    if (finished) assert.equal(await labelOf(rollbackRef()), running)
    else assert.equal(info.Id, before.Id)
  })

  it('occ restart while update container swaps: it waits for the swap (the new container is not restarted under it), then restarts what the update left', async () => {
    const deadline = Date.now() + 120_000
    const {before, child: updating, target} = await startSwap()
    const fresh = await newContainer(before.Id, deadline)
    assert.ok(fresh, 'the update created its new container')

    // Frozen mid-swap: the new container exists, the old one is kept aside.
    process.kill(updating.pid!, 'SIGSTOP')
    const frozen = await docker.getContainer(fresh.Id).inspect()
    let restartStderr = ''
    const restart = execa(process.execPath, [OCC_BIN, 'restart'], {env: sandbox.env, reject: false, stdin: 'ignore'})
    restart.stderr?.on('data', (chunk: Buffer) => {
      restartStderr += chunk.toString('utf8')
    })
    let ended = false
    void restart.then(() => {
      ended = true
    })
    try {
      while (!/Waiting for it to finish/.test(restartStderr)) {
        if (ended) assert.fail(`occ restart waited for the swap instead of running under it: ${describeRun(await restart)}`)
        assert.ok(Date.now() < deadline, `occ restart said it waits: ${restartStderr}`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }

      assert.match(restartStderr, /occ update container \(pid \d+/)
      const meanwhile = await docker.getContainer(fresh.Id).inspect()
      assert.equal(meanwhile.State.StartedAt, frozen.State.StartedAt, 'the new container was not (re)started under the update')
    } finally {
      process.kill(updating.pid!, 'SIGCONT')
    }

    const [updated, restarted] = await Promise.all([updating, restart])
    expectExit(updated, 0)
    expectExit(restarted, 0)
    const info = await expectSandbox(target)
    assert.equal(info.Id, fresh.Id, 'the container the update made, restarted')
  })

  it('occ stop --remove after a swap killed with the old container aside removes both; the next start creates one afresh, nothing to repair', async () => {
    const running = (await docker.getContainer(sandbox.containerName).inspect()).Config.Labels['org.opencode-cloud.version']
    const target = running === 'v1' ? 'v2' : 'v1'
    await registry.publish(target, tag)
    const killed = await update([], {env: {OCC_UPDATE_CONTAINER_CRASH_AT: 'created'}})
    assert.equal(killed.signal, 'SIGKILL', describeRun(killed))
    await docker.getContainer(`${sandbox.containerName}_previous`).inspect()

    const stop = await sandbox.occ(['stop', '--remove', '--json'])
    expectExit(stop, 0)
    const stopped = json<{removed: boolean; removedKept?: string}>(stop)
    assert.equal(stopped.removed, true)
    assert.equal(stopped.removedKept, `${sandbox.containerName}_previous`, describeRun(stop))
    assert.deepEqual(await instanceContainers(), [], 'no container of this instance is left')

    const start = await sandbox.occ(['start', '--json', '--mount', `${projectDir}:/home/opencoder/project`])
    expectExit(start, 0)
    assert.doesNotMatch(json<{warnings: string[]}>(start).warnings.join('\n'), /interrupted update/, describeRun(start))
    // The configured tag had been moved to the target before the kill: a fresh container runs it.
    await expectSandbox(target)
  })
})
