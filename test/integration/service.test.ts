/**
 * The service end to end, as far as this machine allows: there is no systemd manager here, so
 * the unit's own command lines are run the way systemd would run them (same argv, same
 * environment, same working directory) against the fixture container; `occ install` and
 * `occ uninstall` run as built, with stand-in systemctl/loginctl on PATH that record their argv;
 * `uninstall --volumes --force` runs against the real engine. Where `systemctl --user` does
 * answer, a last test installs the unit for real.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import Docker from 'dockerode'
import {execa, type Result, type ResultPromise} from 'execa'

import {resourceNames, VOLUME_KEYS} from '../../src/config/instance.js'
import {resolvePaths} from '../../src/config/paths.js'
import {detectServiceHost} from '../../src/service/host.js'
import {installResultSchema, uninstallResultSchema} from '../../src/service/result-schema.js'
import {installService} from '../../src/service/service.js'
import {buildServiceSpec, systemdUnitName, type ServiceSpec} from '../../src/service/spec.js'
import {renderSystemdUnit} from '../../src/service/systemd-unit.js'
import {execArgv, parseUnit, unitEnvironment} from '../fixtures/service/unit-file.js'
import {createSandboxEnv, describeRun, FIXTURE_IMAGE, OCC_BIN, REPO_ROOT, useFixtureImage, type SandboxEnv} from '../helpers/sandbox-env.js'

const PROVISION = 'Run `bash .ci/provision.sh && npm run build && npm run fixture:build` first.'




async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, child?: ResultPromise): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let exited: Result | undefined
  child?.then((result) => (exited = result as Result)).catch(() => {})
  while (Date.now() < deadline) {
    const value = await probe()
    if (value !== undefined) return value
    if (exited) assert.fail(`the service command exited before ${what}:\n${describeRun(exited)}`)
    await delay(200)
  }

  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

async function settle(child: ResultPromise, what: string, timeoutMs: number): Promise<Result> {
  const result = await Promise.race([child, delay(timeoutMs, undefined, {ref: false}).then(() => undefined)])
  if (!result) {
    child.kill('SIGKILL')
    assert.fail(`${what}: the service command did not exit within ${timeoutMs} ms`)
  }

  return result as Result
}

/** A world whose config uses the fixture image and a port nothing else holds. */
async function fixtureWorld(label: string): Promise<SandboxEnv> {
  const sandbox = await createSandboxEnv(label)
  await useFixtureImage(sandbox)
  return sandbox
}

function specFor(sandbox: SandboxEnv, extraEnv: Record<string, string> = {}): ServiceSpec {
  return buildServiceSpec({
    config: {boot_mode: 'user', restart_delay: 5, restart_retries: 3},
    env: {...sandbox.env, PATH: process.env.PATH ?? '/usr/bin:/bin', ...extraEnv},
    home: sandbox.home,
    instance: sandbox.instance,
    nodePath: process.execPath,
    packageRoot: REPO_ROOT,
  })
}

/**
 * What systemd would run for this unit: the argv of ExecStartPre/ExecStart and exactly the
 * unit's Environment= (plus HOME, which the user manager sets when the unit does not), in the
 * account's home (WorkingDirectory=~).
 */
function unitCommands(unitText: string): {env: Record<string, string>; pre: string[]; start: string[]} {
  const unit = parseUnit(unitText)
  const env = {HOME: os.userInfo().homedir, ...unitEnvironment(unit)}
  return {env, pre: execArgv(unit.get('Service', 'ExecStartPre')), start: execArgv(unit.get('Service', 'ExecStart'))}
}

function runAsSystemdWould(argv: string[], env: Record<string, string>): ResultPromise {
  return execa(argv[0], argv.slice(1), {cwd: env.HOME, env, extendEnv: false, reject: false, stdin: 'ignore'})
}

describe('service (integration)', function () {
  this.timeout(300_000)
  const worlds: SandboxEnv[] = []
  const docker = new Docker()

  before(async function () {
    this.timeout(30_000)
    try {
      await docker.ping()
    } catch (error) {
      throw new Error(`The Docker engine is not reachable (${(error as Error).message}). ${PROVISION}`, {cause: error})
    }

    try {
      await docker.getImage(FIXTURE_IMAGE).inspect()
    } catch {
      throw new Error(`The fixture image ${FIXTURE_IMAGE} is missing. ${PROVISION}`)
    }

    for (const built of ['lib/commands/install.js', 'lib/commands/start.js', 'lib/service/wait-for-engine.js', 'oclif.manifest.json']) {
      if (!existsSync(path.join(REPO_ROOT, built))) throw new Error(`${built} is missing: the CLI is not built. ${PROVISION}`)
    }
  })

  afterEach(async () => {
    for (const sandbox of worlds.splice(0)) await sandbox.cleanup()
  })

  it("runs the unit's exact ExecStartPre + ExecStart: the listener comes up, docker kill → non-zero exit, SIGTERM and occ stop → exit 0", async () => {
    const sandbox = await fixtureWorld('svc')
    worlds.push(sandbox)
    const unitText = renderSystemdUnit(specFor(sandbox))
    const {env, pre, start} = unitCommands(unitText)
    assert.deepEqual(start, [process.execPath, OCC_BIN, 'start', '--no-daemon'])
    assert.equal(env.OPENCODE_SANDBOX_INSTANCE, sandbox.instance)
    const listenerFile = path.join(sandbox.env.XDG_STATE_HOME, 'opencode/opencode-cloud/commands/listener.json')
    const listenerUp = async (): Promise<true | undefined> => ((await fs.stat(listenerFile).catch(() => undefined)) ? true : undefined)

    // ExecStartPre: the engine answers, so it returns at once.
    const waited = await runAsSystemdWould(pre, env)
    assert.equal(waited.exitCode, 0, describeRun(waited))

    // ExecStart, first run: creates and starts the container, then the listener reports in.
    let service = runAsSystemdWould(start, env)
    await waitFor('listener.json', listenerUp, 180_000, service)
    const container = docker.getContainer(sandbox.containerName)
    assert.equal((await container.inspect()).State.Running, true)

    // The container dies unexpectedly → non-zero exit, so Restart=on-failure restarts it.
    await container.kill()
    const died = await settle(service, 'after docker kill', 60_000)
    assert.notEqual(died.exitCode, 0, describeRun(died))
    assert.equal(died.signal, undefined, describeRun(died))

    // What systemd does next (after RestartSec): the same command again, which starts the container again.
    await fs.rm(listenerFile, {force: true})
    service = runAsSystemdWould(start, env)
    await waitFor('listener.json after the restart', listenerUp, 180_000, service)
    assert.equal((await container.inspect()).State.Running, true)

    // systemctl stop (KillSignal=SIGTERM, KillMode=mixed: to occ only) → a graceful exit 0, not a failure.
    service.kill('SIGTERM')
    const terminated = await settle(service, 'after SIGTERM', 60_000)
    assert.equal(terminated.exitCode, 0, describeRun(terminated))
    assert.match(String(terminated.stderr), /Received SIGTERM/)

    // Started again; occ stop → exit 0, so systemd leaves it stopped instead of fighting the user.
    await fs.rm(listenerFile, {force: true})
    service = runAsSystemdWould(start, env)
    await waitFor('listener.json after the second start', listenerUp, 180_000, service)
    const stop = await sandbox.occ(['stop'])
    assert.equal(stop.exitCode, 0, describeRun(stop))
    const stopped = await settle(service, 'after occ stop', 60_000)
    assert.equal(stopped.exitCode, 0, describeRun(stopped))
  })

  describe('occ install / uninstall (built CLI, stand-in systemctl and loginctl)', () => {
    let fakeBin: string
    let callLog: string

    beforeEach(async () => {
      fakeBin = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-fake-systemd-'))
      callLog = path.join(fakeBin, 'calls.log')
      // A user manager that says yes to everything and reports the unit active; lingering off.
      const systemctl = [
        '#!/bin/sh',
        `printf '%s\\n' "systemctl $*" >> '${callLog}'`,
        'case "$2" in',
        '  show) echo Version=252 ;;',
        '  is-active) echo active ;;',
        '  is-enabled) echo enabled ;;',
        'esac',
        'exit 0',
      ].join('\n')
      const loginctl = ['#!/bin/sh', `printf '%s\\n' "loginctl $*" >> '${callLog}'`, 'echo Linger=no', 'exit 0'].join('\n')
      await fs.writeFile(path.join(fakeBin, 'systemctl'), `${systemctl}\n`, {mode: 0o755})
      await fs.writeFile(path.join(fakeBin, 'loginctl'), `${loginctl}\n`, {mode: 0o755})
    })

    afterEach(async () => {
      await fs.rm(fakeBin, {force: true, recursive: true})
    })

    async function calls(): Promise<string[]> {
      const text = await fs.readFile(callLog, 'utf8').catch(() => '')
      await fs.rm(callLog, {force: true})
      return text.split('\n').filter(Boolean)
    }

    const mutating = (list: string[]) => list.filter((call) => /^systemctl --user (daemon-reload|enable|disable|start|restart|stop|reset-failed)\b/.test(call))

    it('install, install again, --dry-run, --force, uninstall: files and systemctl calls', async () => {
      const sandbox = await createSandboxEnv('svc-cli')
      worlds.push(sandbox)
      // The whole env: sandbox.occ's `...options` replaces its own env with options.env.
      const env = {...sandbox.env, PATH: `${fakeBin}:${process.env.PATH}`}
      const unitName = systemdUnitName(sandbox.instance)
      const unitFile = path.join(sandbox.env.XDG_CONFIG_HOME, 'systemd/user', unitName)

      const first = await sandbox.occ(['install'], {env})
      assert.equal(first.exitCode, 0, describeRun(first))
      assert.match(String(first.stdout), new RegExp(`Service installed: ${unitName}`))
      // oclif wraps warnings in a ' ›' box; unwrap before matching.
      const warning = String(first.stderr).replaceAll(/\n ›\s+/g, ' ')
      assert.match(warning, new RegExp(`Warning: Lingering is off for ${os.userInfo().username}: .* Fix: loginctl enable-linger ${os.userInfo().username}`))
      assert.deepEqual(mutating(await calls()), [
        'systemctl --user daemon-reload',
        `systemctl --user enable ${unitName}`,
        `systemctl --user start ${unitName}`,
      ])
      const written = await fs.readFile(unitFile, 'utf8')
      const {env: unitEnv, start} = unitCommands(written)
      assert.deepEqual(start, [process.execPath, OCC_BIN, 'start', '--no-daemon'])
      for (const name of ['OPENCODE_SANDBOX_INSTANCE', 'XDG_CONFIG_HOME', 'XDG_DATA_HOME', 'XDG_STATE_HOME', 'XDG_CACHE_HOME', 'HOME']) {
        assert.equal(unitEnv[name], sandbox.env[name], name)
      }

      // The installed unit passes systemd-analyze verify without a word.
      const runtimeDir = path.join(sandbox.root, 'runtime')
      await fs.mkdir(runtimeDir)
      const verify = spawnSync('systemd-analyze', ['--user', 'verify', unitFile], {encoding: 'utf8', env: {...process.env, XDG_RUNTIME_DIR: runtimeDir}})
      assert.equal(verify.status, 0, verify.stderr)
      assert.equal(`${verify.stdout}${verify.stderr}`, '')

      // Again without --force: says so, changes nothing.
      const before = await fs.stat(unitFile)
      const again = await sandbox.occ(['install', '--json'], {env})
      assert.equal(again.exitCode, 0, describeRun(again))
      const againJson = installResultSchema.parse(JSON.parse(String(again.stdout)))
      assert.equal(againJson.action, 'unchanged')
      assert.equal(againJson.upToDate, true)
      assert.equal((await fs.stat(unitFile)).mtimeMs, before.mtimeMs)
      assert.deepEqual(mutating(await calls()), [])

      // --dry-run prints exactly the file and calls nothing.
      const dry = await sandbox.occ(['install', '--dry-run'], {env})
      assert.equal(dry.exitCode, 0, describeRun(dry))
      assert.equal(`${String(dry.stdout)}\n`, written)
      assert.deepEqual(await calls(), ['loginctl show-user ' + os.userInfo().username + ' -p Linger'])

      // --force: rewrites and restarts.
      const forced = await sandbox.occ(['install', '--force', '--json'], {env})
      assert.equal(forced.exitCode, 0, describeRun(forced))
      assert.equal(installResultSchema.parse(JSON.parse(String(forced.stdout))).action, 'reinstalled')
      assert.deepEqual(mutating(await calls()), [
        'systemctl --user daemon-reload',
        `systemctl --user enable ${unitName}`,
        `systemctl --user restart ${unitName}`,
      ])

      // uninstall --volumes without --force: refused before anything changes.
      const refused = await sandbox.occ(['uninstall', '--volumes'], {env})
      assert.equal(refused.exitCode, 2, describeRun(refused))
      assert.match(String(refused.stderr), /--volumes flag requires --force/)
      assert.ok(existsSync(unitFile))
      assert.deepEqual(await calls(), [])

      const removed = await sandbox.occ(['uninstall', '--json'], {env})
      assert.equal(removed.exitCode, 0, describeRun(removed))
      assert.equal(uninstallResultSchema.parse(JSON.parse(String(removed.stdout))).action, 'removed')
      assert.ok(!existsSync(unitFile))
      assert.deepEqual(mutating(await calls()), [
        `systemctl --user disable --now ${unitName}`,
        'systemctl --user daemon-reload',
        `systemctl --user reset-failed ${unitName}`,
      ])
    })

    it("uninstall --volumes --force removes this instance's container, then only this instance's volumes", async () => {
      const sandbox = await createSandboxEnv('svc-vol')
      const other = await createSandboxEnv('svc-other')
      worlds.push(sandbox, other)
      // The whole env: sandbox.occ's `...options` replaces its own env with options.env.
      const env = {...sandbox.env, PATH: `${fakeBin}:${process.env.PATH}`}
      const names = resourceNames(sandbox.instance)
      const otherNames = resourceNames(other.instance)
      const labels = (instance: string) => ({'managed-by': 'opencode-cloud', 'opencode-cloud.instance': instance})
      for (const name of Object.values(names.volumes)) await docker.createVolume({Labels: labels(sandbox.instance), Name: name})
      await docker.createVolume({Labels: labels(other.instance), Name: otherNames.volumes.data})
      // A running container that uses this instance's volumes: Docker refuses to remove them until it is gone.
      const container = await docker.createContainer({
        Cmd: ['sleep', '600'],
        Entrypoint: [],
        HostConfig: {Binds: [`${names.volumes.data}:/data`, `${names.volumes.state}:/state`], Init: true},
        Image: FIXTURE_IMAGE,
        Labels: labels(sandbox.instance),
        name: names.container,
      })
      await container.start()
      await installService({
        host: {...detectServiceHost({paths: resolvePaths(sandbox.env)}), run: async () => ({exitCode: 0, stderr: '', stdout: ''})},
        spec: specFor(sandbox),
      })

      const result = await sandbox.occ(['uninstall', '--volumes', '--force', '--json'], {env})
      assert.equal(result.exitCode, 0, describeRun(result))
      const output = uninstallResultSchema.parse(JSON.parse(String(result.stdout)))
      assert.equal(output.action, 'removed')
      assert.equal(output.data?.container, 'removed')
      assert.deepEqual(output.data.volumesRemoved.sort(), Object.values(names.volumes).sort())
      assert.equal(VOLUME_KEYS.length, output.data.volumesRemoved.length)
      await assert.rejects(container.inspect(), {statusCode: 404})
      for (const name of Object.values(names.volumes)) await assert.rejects(docker.getVolume(name).inspect(), {statusCode: 404})
      assert.equal((await docker.getVolume(otherNames.volumes.data).inspect()).Name, otherNames.volumes.data, "the other instance's volume is still there")

      // Nothing left: a second run says so and still succeeds.
      const again = await sandbox.occ(['uninstall', '--volumes', '--force', '--json'], {env})
      assert.equal(again.exitCode, 0, describeRun(again))
      const second = uninstallResultSchema.parse(JSON.parse(String(again.stdout)))
      assert.deepEqual([second.action, second.data?.container, second.data?.volumesRemoved], ['not-installed', 'absent', []])
    })
  })

})
