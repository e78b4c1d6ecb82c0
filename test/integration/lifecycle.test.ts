import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import Docker from 'dockerode'
import {execa, type Result, type ResultPromise} from 'execa'

import {MOUNT_STATE} from '../../src/config/mounts.js'
import {seccompSecurityOpt} from '../../src/docker/seccomp.js'
import {statusViewSchema} from '../../src/runtime/status-schema.js'
import type {StatusView} from '../../src/runtime/status.js'
import {createSandboxEnv, describeRun, expectExit, FIXTURE_IMAGE, freePort, json, OCC_BIN, out, REPO_ROOT, type SandboxEnv, useFixtureImage} from '../helpers/sandbox-env.js'

const PROVISION = 'Run `bash .ci/provision.sh && npm run fixture:build` first (and `npm run build` for the CLI).'
const FIXTURE_VERSION = '1.0.0-fixture'
const FIXTURE_IMAGE_VERSION = 'fixture-1'


function err(result: Result): string {
  return String(result.stderr ?? '')
}




async function statusJson(sandbox: SandboxEnv): Promise<StatusView> {
  const result = await sandbox.occ(['status', '--json'])
  expectExit(result, 0)
  const parsed = statusViewSchema.safeParse(json(result))
  assert.ok(parsed.success, `status --json does not match schemas/status.schema.json: ${parsed.error?.message}\n${out(result)}`)
  return parsed.data as StatusView
}



async function containerInfo(sandbox: SandboxEnv): Promise<Docker.ContainerInspectInfo | undefined> {
  try {
    return await sandbox.docker.getContainer(sandbox.containerName).inspect()
  } catch (error) {
    if ((error as {statusCode?: number}).statusCode === 404) return undefined
    throw error
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const value = await probe()
    if (value !== undefined && value !== false) return value
    await delay(100)
  }

  assert.fail(`timed out waiting for ${what}`)
}

/** Resolves when `text` shows up on the child's stderr; fails if the child exits first. */
async function waitForStderr(child: ResultPromise, text: string, timeoutMs = 60_000): Promise<string> {
  let seen = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`'${text}' did not appear on stderr within ${timeoutMs} ms:\n${seen}`)), timeoutMs)
    child.stderr?.on('data', (chunk: Buffer) => {
      seen += chunk.toString('utf8')
      if (seen.includes(text)) {
        clearTimeout(timer)
        resolve(seen)
      }
    })
    child.then(
      (result) => {
        clearTimeout(timer)
        reject(new Error(`occ exited before '${text}':\n${describeRun(result as Result)}`))
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}

describe('occ against a real Docker engine (fixture image)', function () {
  this.timeout(120_000)
  const worlds: SandboxEnv[] = []

  /** A fresh world for one test: own instance, HOME/XDG dirs, a free port; removed in afterEach. */
  async function world(label: string, settings: Record<string, string> = {}, fixture = true, instance?: string): Promise<SandboxEnv> {
    const sandbox = await createSandboxEnv(label, {instance})
    worlds.push(sandbox)
    // The helper derives the port from the pid; make sure nothing else on this machine holds it.
    if (fixture) await useFixtureImage(sandbox, settings)
    return sandbox
  }

  async function started(label: string, settings: Record<string, string> = {}): Promise<SandboxEnv> {
    const sandbox = await world(label, settings)
    expectExit(await sandbox.occ(['start']), 0)
    return sandbox
  }

  before(async function () {
    this.timeout(30_000)
    const docker = new Docker()
    try {
      await Promise.race([docker.ping(), delay(10_000).then(() => Promise.reject(new Error('no answer within 10 s')))])
    } catch (error) {
      throw new Error(`The Docker engine is not reachable (${(error as Error).message}). ${PROVISION}`, {cause: error})
    }

    try {
      await docker.getImage(FIXTURE_IMAGE).inspect()
    } catch (error) {
      throw new Error(`The fixture image ${FIXTURE_IMAGE} is missing. ${PROVISION}`, {cause: error})
    }

    if (!existsSync(path.join(REPO_ROOT, 'lib/commands/start.js')) || !existsSync(path.join(REPO_ROOT, 'oclif.manifest.json'))) {
      throw new Error(`The CLI is not built (lib/ is missing). ${PROVISION}`)
    }
  })

  afterEach(async () => {
    for (const sandbox of worlds.splice(0)) {
      await sandbox.cleanup()
      const filters = {label: [`opencode-cloud.instance=${sandbox.instance}`]}
      assert.deepEqual(await sandbox.docker.listContainers({all: true, filters}), [], `containers of ${sandbox.instance} left behind`)
      assert.deepEqual((await sandbox.docker.listVolumes({filters})).Volumes ?? [], [], `volumes of ${sandbox.instance} left behind`)
    }
  })

  it('start → status healthy → logs → restart → stop → stop again, with status -q following along', async () => {
    const sandbox = await world('life')

    // start
    const start = await sandbox.occ(['start'])
    expectExit(start, 0)
    assert.match(out(start), /Service started and ready/)
    assert.ok(out(start).includes(`http://localhost:${sandbox.port}`), describeRun(start))
    expectExit(await sandbox.occ(['status', '-q']), 0)

    // logs right after start: real, whole lines (the fixture's first lines say "listening"; the
    // entrypoint's own lines, e.g. the IOTP, start with [opencode-cloud])
    const logs = await sandbox.occ(['logs', '--no-follow', '-n', '5'])
    expectExit(logs, 0)
    const lines = out(logs).split('\n').filter((line, index, all) => index < all.length - 1 || line !== '')
    assert.ok(lines.length > 0 && lines.length <= 5, `expected 1..5 lines:\n${out(logs)}`)
    for (const line of lines) assert.match(line, /^(?:(?:opencode|opencode-broker|supervisor)\b|\[opencode-cloud\] )/, `not a whole log line: ${JSON.stringify(line)}`)
    assert.ok(lines.some((line) => line.includes('listening')), `no 'listening' line:\n${out(logs)}`)

    const logsJson = json<{lines: Array<{stream: string; text: string; timestamp?: string}>}>(await sandbox.occ(['logs', '--no-follow', '--json', '-n', 'all']))
    assert.ok(logsJson.lines.length >= 2, JSON.stringify(logsJson))
    for (const line of logsJson.lines) {
      assert.ok(line.stream === 'stdout' || line.stream === 'stderr')
      assert.ok(!line.text.includes('\n'), `a JSON line holds a newline: ${JSON.stringify(line.text)}`)
    }

    assert.ok(logsJson.lines.some((line) => line.text === `opencode ${FIXTURE_VERSION} listening on 0.0.0.0:3000`), JSON.stringify(logsJson))
    assert.ok(logsJson.lines.some((line) => line.text.startsWith('opencode-broker: listening')), JSON.stringify(logsJson))

    const stamped = await sandbox.occ(['logs', '--no-follow', '--timestamps', '-n', '3'])
    expectExit(stamped, 0)
    for (const line of out(stamped).trimEnd().split('\n')) assert.match(line, /^\d{4}-\d\d-\d\dT\S+ (opencode|opencode-broker|supervisor)\b/)

    const grep = await sandbox.occ(['logs', '--no-follow', '-n', 'all', '--grep', 'listening'])
    expectExit(grep, 0)
    const grepped = out(grep).trimEnd().split('\n')
    assert.ok(grepped.length >= 2 && grepped.every((line) => line.includes('listening')), out(grep))

    const broker = await sandbox.occ(['logs', '--no-follow', '-n', 'all', '--broker'])
    expectExit(broker, 0)
    assert.deepEqual(out(broker).trimEnd().split('\n'), ['opencode-broker: listening on /run/opencode/auth.sock'])

    // status --json: every field the issue lists
    const status = await statusJson(sandbox)
    assert.equal(status.runtime, 'host')
    assert.equal(status.instance, sandbox.instance)
    assert.equal(status.container.name, sandbox.containerName)
    assert.equal(status.container.exists, true)
    assert.equal(status.container.running, true)
    assert.equal(status.container.state, 'running')
    assert.equal(status.container.image, FIXTURE_IMAGE)
    assert.ok(typeof status.container.uptimeSeconds === 'number' && status.container.uptimeSeconds >= 0)
    assert.equal(status.opencode.health?.state, 'healthy')
    assert.equal(status.opencode.health?.label, 'Healthy')
    assert.equal(status.opencode.version, FIXTURE_VERSION)
    assert.match(status.opencode.commit ?? '', /^[0-9a-f]{40}$/)
    assert.equal(status.opencode.commitShort, status.opencode.commit?.slice(0, 7))
    assert.equal(status.opencode.url, `http://localhost:${sandbox.port}`)
    assert.equal(status.broker.health?.state, 'healthy')
    assert.equal(status.broker.process, true)
    assert.equal(status.broker.socket, true)
    assert.equal(status.image.version, FIXTURE_IMAGE_VERSION)
    assert.equal(status.port.host, sandbox.port)
    assert.equal(status.port.container, 3000)
    assert.equal(status.port.bindAddress, '127.0.0.1')
    const stateMount = status.mounts.find((mount) => mount.target === MOUNT_STATE)
    assert.deepEqual(stateMount, {readOnly: false, source: path.join(sandbox.env.XDG_STATE_HOME, 'opencode'), target: MOUNT_STATE, type: 'bind'})
    assert.ok(status.mounts.some((mount) => mount.type === 'volume' && mount.source === `opencode-users-${sandbox.instance}`))

    const human = await sandbox.occ(['status'])
    expectExit(human, 0)
    for (const text of ['running', 'Healthy', FIXTURE_VERSION, status.opencode.commitShort ?? '?', FIXTURE_IMAGE_VERSION, `${sandbox.port} -> container:3000`]) {
      assert.ok(out(human).includes(text), `status lacks '${text}':\n${out(human)}`)
    }

    // restart: on the port the container publishes, even when the config now says another
    expectExit(await sandbox.occ(['config', 'set', 'port', String(await freePort())]), 0)
    const restart = await sandbox.occ(['restart', '--json'])
    expectExit(restart, 0)
    const restarted = json<{port: number; readiness: {opencode: {state: string}; broker: {state: string}}}>(restart)
    assert.equal(restarted.port, sandbox.port)
    assert.equal(restarted.readiness.opencode.state, 'healthy')
    assert.equal(restarted.readiness.broker.state, 'healthy')
    const afterRestart = await statusJson(sandbox)
    assert.equal(afterRestart.opencode.health?.state, 'healthy')
    assert.equal(afterRestart.broker.health?.state, 'healthy')
    assert.equal(afterRestart.port.host, sandbox.port)
    assert.equal(afterRestart.container.id, status.container.id, 'restart recreated the container')
    assert.ok(Date.parse(afterRestart.container.startedAt ?? '') > Date.parse(status.container.startedAt ?? ''), 'the container was not restarted')

    // stop, then stop again
    const stop = await sandbox.occ(['stop'])
    expectExit(stop, 0)
    assert.match(out(stop), /Service stopped/)
    expectExit(await sandbox.occ(['status', '-q']), 1)
    const stopped = await statusJson(sandbox)
    assert.equal(stopped.container.running, false)
    assert.equal(stopped.container.exists, true)
    assert.equal(stopped.opencode.health, null)

    const again = await sandbox.occ(['stop'])
    expectExit(again, 0)
    assert.match(out(again), /already stopped/i)
    assert.doesNotMatch(out(again), /Service stopped/, 'a second stop must not claim it stopped something')
    const againJson = json<{existed: boolean; wasRunning: boolean; removed: boolean}>(await sandbox.occ(['stop', '--json']))
    assert.deepEqual([againJson.existed, againJson.wasRunning, againJson.removed], [true, false, false])

    // and up again: status -q says so
    expectExit(await sandbox.occ(['start']), 0)
    expectExit(await sandbox.occ(['status', '-q']), 0)
  })

  it('start twice: the second says it is already running and leaves the container as it is', async () => {
    const sandbox = await world('twice')
    const first = await sandbox.occ(['start', '--json'])
    expectExit(first, 0)
    const created = json<{alreadyRunning: boolean; created: boolean; containerId: string; port: number}>(first)
    assert.equal(created.alreadyRunning, false)
    assert.equal(created.created, true)
    assert.equal(created.port, sandbox.port)
    const startedAt = (await containerInfo(sandbox))?.State.StartedAt

    const second = await sandbox.occ(['start'])
    expectExit(second, 0)
    assert.match(out(second), /already running/i)
    const third = json<{alreadyRunning: boolean; created: boolean; containerId: string}>(await sandbox.occ(['start', '--json']))
    assert.equal(third.alreadyRunning, true)
    assert.equal(third.created, false)
    assert.equal(third.containerId, created.containerId)
    const info = await containerInfo(sandbox)
    assert.equal(info?.Id, created.containerId, 'the container was recreated')
    assert.equal(info?.State.StartedAt, startedAt, 'the container was restarted')
  })

  it('a container without occ\'s seccomp profile (made by an older occ) is kept with a warning; start --recreate gives it the profile', async () => {
    const sandbox = await started('old-profile')
    const current = (await containerInfo(sandbox))!
    assert.ok(current.HostConfig.SecurityOpt?.includes(seccompSecurityOpt()), 'a new container lacks the profile')
    // The same container as an occ before the profile created it: only no-new-privileges.
    expectExit(await sandbox.occ(['stop', '--remove']), 0)
    const old = await sandbox.docker.createContainer({
      ...current.Config,
      HostConfig: {...current.HostConfig, SecurityOpt: ['no-new-privileges:true']},
      name: sandbox.containerName,
    })
    await old.start()

    const start = await sandbox.occ(['start'])
    expectExit(start, 0)
    // oclif wraps a warning at the terminal width, with ' ›   ' at the start of every line.
    const said = `${out(start)} ${err(start)}`.replaceAll(/\s+(›\s+)?/g, ' ')
    assert.match(said, /lacks occ's current seccomp profile .*occ start --recreate/)
    assert.equal((await containerInfo(sandbox))?.Id, old.id, 'start replaced the container without --recreate')

    expectExit(await sandbox.occ(['start', '--recreate']), 0)
    const recreated = await containerInfo(sandbox)
    assert.notEqual(recreated?.Id, old.id)
    assert.ok(recreated?.HostConfig.SecurityOpt?.includes(seccompSecurityOpt()), 'the recreated container lacks the profile')
    const again = await sandbox.occ(['start'])
    expectExit(again, 0)
    assert.doesNotMatch(`${out(again)}${err(again)}`, /seccomp/)
  })

  it('a container with an earlier seccomp profile of occ\'s, or that keeps FSETID (made by an older occ), is kept with a warning; start --recreate brings both up to date', async () => {
    const sandbox = await started('old-caps')
    const current = (await containerInfo(sandbox))!
    assert.ok(current.HostConfig.CapDrop?.includes('FSETID'), 'a new container keeps FSETID')
    expectExit(await sandbox.occ(['stop', '--remove']), 0)
    // As an occ with the first profile (the same, but with one more syscall) and without FSETID in CapDrop created it.
    const profile = JSON.parse(seccompSecurityOpt().slice('seccomp='.length)) as {syscalls: Array<{names: string[]}>}
    profile.syscalls[0].names.push('llseek')
    const old = await sandbox.docker.createContainer({
      ...current.Config,
      HostConfig: {
        ...current.HostConfig,
        CapDrop: current.HostConfig.CapDrop?.filter((cap: string) => cap !== 'FSETID'),
        SecurityOpt: ['no-new-privileges:true', `seccomp=${JSON.stringify(profile)}`],
      },
      name: sandbox.containerName,
    })
    await old.start()

    const start = await sandbox.occ(['start'])
    expectExit(start, 0)
    const said = `${out(start)} ${err(start)}`.replaceAll(/\s+(›\s+)?/g, ' ')
    assert.match(said, /has an earlier version of occ's seccomp profile; it keeps capabilities the sandbox no longer gets \(FSETID\).*occ start --recreate/)
    assert.doesNotMatch(said, /are not refused/)
    assert.equal((await containerInfo(sandbox))?.Id, old.id, 'start replaced the container without --recreate')

    expectExit(await sandbox.occ(['start', '--recreate']), 0)
    const recreated = await containerInfo(sandbox)
    assert.ok(recreated?.HostConfig.CapDrop?.includes('FSETID'), 'the recreated container keeps FSETID')
    const again = await sandbox.occ(['start'])
    expectExit(again, 0)
    assert.doesNotMatch(`${out(again)}${err(again)}`, /seccomp|capabilities/)
  })

  it('stop --remove removes the container (volumes kept); then stop succeeds and status says there is none', async () => {
    const sandbox = await started('remove')
    const remove = await sandbox.occ(['stop', '--remove'])
    expectExit(remove, 0)
    assert.match(out(remove), /removed/)
    assert.equal(await containerInfo(sandbox), undefined, 'the container still exists')
    const {Volumes} = await sandbox.docker.listVolumes({filters: {label: [`opencode-cloud.instance=${sandbox.instance}`]}})
    assert.equal(Volumes?.length, 7, 'the volumes were not kept')

    const stop = await sandbox.occ(['stop'])
    expectExit(stop, 0)
    assert.match(out(stop), /No sandbox container exists|nothing to stop/)
    const stopJson = json<{existed: boolean}>(await sandbox.occ(['stop', '--remove', '--json']))
    assert.equal(stopJson.existed, false)

    expectExit(await sandbox.occ(['status', '-q']), 1)
    const status = await statusJson(sandbox)
    assert.equal(status.container.exists, false)
    assert.equal(status.container.running, false)
    const human = await sandbox.occ(['status'])
    expectExit(human, 0)
    assert.match(out(human), /No service found/)
  })

  it('a container killed from outside shows up as not running, and start brings it back', async () => {
    const sandbox = await started('killed')
    const before = await containerInfo(sandbox)
    await sandbox.docker.getContainer(sandbox.containerName).kill()
    await waitFor('the container to stop', async () => !(await containerInfo(sandbox))?.State.Running)

    const status = await statusJson(sandbox)
    assert.equal(status.container.exists, true)
    assert.equal(status.container.running, false)
    assert.equal(status.container.state, 'exited')
    assert.equal(status.container.uptimeSeconds, null)
    assert.ok(status.container.finishedAt, 'no finishedAt for an exited container')
    assert.equal(status.opencode.health, null)
    expectExit(await sandbox.occ(['status', '-q']), 1)
    const human = await sandbox.occ(['status'])
    expectExit(human, 0)
    assert.match(out(human), /State:\s+exited/)
    assert.match(out(human), /occ start/)

    expectExit(await sandbox.occ(['start']), 0)
    const back = await statusJson(sandbox)
    assert.equal(back.opencode.health?.state, 'healthy')
    assert.equal(back.container.id, before?.Id, 'start recreated a container that only needed starting')
  })

  describe('an unreachable engine', () => {
    const commands = [['status'], ['status', '-q'], ['start'], ['stop'], ['restart'], ['logs', '--no-follow']]

    it('gives exit code 4 and a clear message with the next step, for every command', async () => {
      const sandbox = await world('noengine', {}, false)
      // The whole env: the helper's occ() replaces (not merges) env when options carry one.
      const env = {...sandbox.env, DOCKER_HOST: 'unix:///nonexistent.sock'}
      for (const args of commands) {
        const started = Date.now()
        const result = await sandbox.occ(args, {env, timeout: 30_000})
        expectExit(result, 4)
        assert.ok(Date.now() - started < 15_000, `occ ${args.join(' ')} took ${Date.now() - started} ms to give up`)
        assert.match(err(result), /Docker socket not found/, describeRun(result))
        assert.ok(err(result).includes('/nonexistent.sock'), describeRun(result))
        assert.match(err(result), /DOCKER_HOST|Start Docker/, describeRun(result))
        assert.doesNotMatch(err(result), /Unexpected error|\n\s+at /, `looks like a crash: ${describeRun(result)}`)
      }
    })

    it('--json gives {error: {code: "ENGINE_UNREACHABLE", ...}} on stdout', async () => {
      const sandbox = await world('noengine', {}, false)
      for (const args of [['status', '--json'], ['start', '--json'], ['stop', '--json']]) {
        const result = await sandbox.occ(args, {env: {...sandbox.env, DOCKER_HOST: 'unix:///nonexistent.sock'}})
        expectExit(result, 4)
        const {error} = json<{error: {code: string; exitCode: number; message: string; actions: string[]}}>(result)
        assert.equal(error.code, 'ENGINE_UNREACHABLE')
        assert.equal(error.exitCode, 4)
        assert.match(error.message, /nonexistent\.sock/)
        assert.ok(error.actions.length > 0)
      }
    })

    it('a TCP engine that refuses connections is unreachable too (exit 4)', async () => {
      const sandbox = await world('noengine', {}, false)
      const result = await sandbox.occ(['status', '--json'], {env: {...sandbox.env, DOCKER_HOST: `tcp://127.0.0.1:${await freePort()}`}})
      expectExit(result, 4)
      assert.equal(json<{error: {code: string}}>(result).error.code, 'ENGINE_UNREACHABLE')
    })
  })

  describe('start --no-daemon', () => {
    function foreground(sandbox: SandboxEnv): ResultPromise {
      return execa(process.execPath, [OCC_BIN, 'start', '--no-daemon'], {
        env: sandbox.env,
        reject: false,
        stdin: 'ignore',
        timeout: 90_000,
      })
    }

    it('exits 0 after occ stop', async () => {
      const sandbox = await world('fgstop')
      const child = foreground(sandbox)
      await waitForStderr(child, 'Running in the foreground')
      expectExit(await sandbox.occ(['stop']), 0)
      const result = (await child) as Result
      expectExit(result, 0)
      assert.match(err(result), /stopped/)
    })

    it('exits non-zero after docker kill (so a service manager restarts it)', async () => {
      const sandbox = await world('fgkill')
      const child = foreground(sandbox)
      await waitForStderr(child, 'Running in the foreground')
      await sandbox.docker.getContainer(sandbox.containerName).kill()
      const result = (await child) as Result
      assert.equal(result.timedOut, false)
      assert.notEqual(result.exitCode, 0, describeRun(result))
      assert.match(err(result), /died unexpectedly/)
    })

    it('keeps running through occ restart (a restart is not a stop), then exits 0 after occ stop', async () => {
      const sandbox = await world('fgrestart')
      const child = foreground(sandbox)
      let ended = false
      void child.finally(() => (ended = true))
      await waitForStderr(child, 'Running in the foreground')
      expectExit(await sandbox.occ(['restart']), 0)
      await delay(4000)
      assert.equal(ended, false, `start --no-daemon ended on a restart: ${ended ? err((await child) as Result) : ''}`)
      expectExit(await sandbox.occ(['stop']), 0)
      const result = (await child) as Result
      expectExit(result, 0)
      assert.match(err(result), /stopped/)
    })

    it("is not ended by another instance whose container name starts with its own", async () => {
      const sandbox = await world('fgprefix')
      // Docker's name filter is a prefix match: opencode-cloud-sandbox-<x>-b matches <x>.
      const other = await world('fgprefix', {}, true, `${sandbox.instance}-b`)
      expectExit(await other.occ(['start']), 0)
      const child = foreground(sandbox)
      let ended = false
      void child.finally(() => (ended = true))
      await waitForStderr(child, 'Running in the foreground')
      expectExit(await other.occ(['stop']), 0)
      await delay(4000)
      assert.equal(ended, false, `start --no-daemon ended when another instance stopped: ${ended ? err((await child) as Result) : ''}`)
      expectExit(await sandbox.occ(['stop']), 0)
      expectExit((await child) as Result, 0)
    })

    for (const [when, settleMs] of [['once it has settled', 1500], ['right after it went into the foreground', 0]] as const) {
      it(`exits 0 on SIGTERM ${when}`, async () => {
        const sandbox = await world('fgterm')
        const child = foreground(sandbox)
        await waitForStderr(child, 'Running in the foreground')
        await delay(settleMs)
        child.kill('SIGTERM')
        const result = (await child) as Result
        // execa sends SIGKILL 5 s after a SIGTERM that did not end the process.
        assert.equal(result.signal, undefined, `killed by ${result.signal} instead of exiting: ${describeRun(result)}`)
        expectExit(result, 0)
        assert.match(err(result), /SIGTERM/)
      })
    }
  })

  it('no command waits for input when stdin is not a TTY (stdin left open, fresh config)', async () => {
    const sandbox = await world('notty', {}, false)
    const open = {stdin: 'pipe' as const, timeout: 60_000}
    // The very first command finds no config: it is created, nothing is asked.
    const status = await sandbox.occ(['status'], open)
    expectExit(status, 0)
    assert.match(err(status), /Created a default config/)
    assert.match(out(status), /No service found/)
    expectExit(await sandbox.occ(['config', 'set', 'image', FIXTURE_IMAGE], open), 0)
    expectExit(await sandbox.occ(['config', 'set', 'port', String(sandbox.port)], open), 0)
    expectExit(await sandbox.occ(['start'], open), 0)
    expectExit(await sandbox.occ(['restart'], open), 0)
    expectExit(await sandbox.occ(['logs', '--no-follow'], open), 0)
    expectExit(await sandbox.occ(['stop', '--remove'], open), 0)
  })

  it('container_env reaches the container', async () => {
    const sandbox = await started('env', {container_env: '["FOO=bar","GREETING=hello, world"]'})
    const info = await containerInfo(sandbox)
    const env = info?.Config.Env ?? []
    assert.ok(env.includes('FOO=bar'), env.join('\n'))
    assert.ok(env.includes('GREETING=hello, world'), env.join('\n'))
  })

  describe('a bad mount is a config error (exit 3), and nothing is created', () => {
    async function expectConfigError(sandbox: SandboxEnv, fragment: RegExp): Promise<void> {
      const human = await sandbox.occ(['start'])
      expectExit(human, 3)
      assert.match(err(human), fragment)
      const result = await sandbox.occ(['start', '--json'])
      expectExit(result, 3)
      assert.equal(json<{error: {code: string}}>(result).error.code, 'CONFIG_INVALID')
      assert.equal(await containerInfo(sandbox), undefined, 'a container was created despite the bad mount')
    }

    it('a host path that does not exist', async () => {
      const sandbox = await world('badmount')
      const missing = path.join(sandbox.root, 'does-not-exist')
      expectExit(await sandbox.occ(['config', 'set', 'mounts', JSON.stringify([`${missing}:/home/opencoder/extra`])]), 0)
      await expectConfigError(sandbox, new RegExp(`${missing}.*does not exist`))
    })

    it('a host path that is a file', async () => {
      const sandbox = await world('badmount')
      const file = path.join(sandbox.root, 'a-file')
      await fs.writeFile(file, 'x')
      expectExit(await sandbox.occ(['config', 'set', 'mounts', JSON.stringify([`${file}:/home/opencoder/extra`])]), 0)
      await expectConfigError(sandbox, /is not a directory/)
    })

    it('a mount written into config.json by hand that is not absolute', async () => {
      const sandbox = await world('badmount')
      const config = JSON.parse(await fs.readFile(sandbox.configFile, 'utf8'))
      config.mounts = ['relative/dir:/home/opencoder/extra']
      await fs.writeFile(sandbox.configFile, JSON.stringify(config, null, 2))
      await expectConfigError(sandbox, /absolute/)
    })

    it('a mount that would hide /opt/opencode', async () => {
      const sandbox = await world('badmount')
      expectExit(await sandbox.occ(['config', 'set', 'mounts', JSON.stringify([`${sandbox.root}:/opt/opencode`])]), 0)
      await expectConfigError(sandbox, /hide opencode/)
    })
  })

  describe('sandbox instances', () => {
    /** FNV-1a 64 formatted as the Rust occ does: `wt-{hash:012x}` (reference §0). */
    function rustAutoId(text: string): string {
      let hash = 0xcbf29ce484222325n
      for (const byte of Buffer.from(text, 'utf8')) hash = BigInt.asUintN(64, (hash ^ BigInt(byte)) * 0x100000001b3n)
      return `wt-${hash.toString(16).padStart(12, '0')}`
    }

    it('two instances live side by side with their own container, volumes and port', async () => {
      const [a, b] = await Promise.all([started('side-a'), started('side-b')])
      const [statusA, statusB] = await Promise.all([statusJson(a), statusJson(b)])
      assert.notEqual(statusA.container.id, statusB.container.id)
      assert.equal(statusA.port.host, a.port)
      assert.equal(statusB.port.host, b.port)
      expectExit(await a.occ(['stop']), 0)
      expectExit(await b.occ(['status', '-q']), 0)
    })

    it('--sandbox-instance auto names the sandbox after the git top level (as the Rust occ does), from any subdirectory', async () => {
      const sandbox = await world('auto', {}, false)
      const repo = path.join(sandbox.root, 'checkout')
      await fs.mkdir(path.join(repo, 'src/deep'), {recursive: true})
      await execa('git', ['init', '-q', repo])
      const expected = rustAutoId(await fs.realpath(repo))
      const instances: string[] = []
      for (const cwd of [repo, path.join(repo, 'src/deep')]) {
        const result = await sandbox.occ(['status', '--json', '--sandbox-instance', 'auto'], {cwd})
        expectExit(result, 0)
        instances.push(String(json<{instance: string}>(result).instance))
      }

      assert.deepEqual(instances, [expected, expected])
    })
  })
})
