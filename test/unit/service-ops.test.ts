import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {resolvePaths} from '../../src/config/paths.js'
import {ServiceCommandError, ServiceManagerUnavailableError, ServiceValueError} from '../../src/service/errors.js'
import {detectLinger, detectServiceHost, type ServiceHost} from '../../src/service/host.js'
import {renderLaunchdPlist} from '../../src/service/launchd-plist.js'
import type {CommandResult} from '../../src/service/runner.js'
import {installService, resumeService, serviceStatus, uninstallService} from '../../src/service/service.js'
import {buildServiceSpec, type ServiceSpec} from '../../src/service/spec.js'
import {renderSystemdUnit} from '../../src/service/systemd-unit.js'
import {waitForEngine} from '../../src/service/wait-for-engine.js'

type Call = string
/** systemctl calls that change something (queries like is-enabled do not). */
const MUTATING = /^systemctl --user (daemon-reload|enable|disable|start|restart|stop|reset-failed)\b/
type Script = (file: string, args: string[]) => Partial<CommandResult> | undefined

/**
 * A stand-in for systemctl/launchctl/loginctl: records every call as one string and answers
 * from a script (default: success with no output).
 */
function fakeRunner(script: Script = () => undefined): {calls: Call[]; run: ServiceHost['run']} {
  const calls: Call[] = []
  return {
    calls,
    async run(file, args) {
      calls.push([file, ...args].join(' '))
      return {exitCode: 0, stderr: '', stdout: '', ...script(file, args)}
    },
  }
}

/** systemd that answers like a real user manager: is-active/is-enabled follow start/enable/disable. */
function fakeSystemd(options: {reachable?: boolean; startFails?: boolean; linger?: 'no' | 'yes'} = {}) {
  const active = new Set<string>()
  const enabled = new Set<string>()
  return fakeRunner((file, args) => {
    if (file === 'loginctl') return options.linger ? {stdout: `Linger=${options.linger}\n`} : {exitCode: 1, stderr: 'Failed to connect to bus'}
    if (file !== 'systemctl') return {exitCode: 127}
    if (options.reachable === false) return {exitCode: 1, stderr: 'Failed to connect to bus: No medium found'}
    const [, verb, ...rest] = args
    const unit = rest.at(-1) ?? ''
    switch (verb) {
      case 'disable': {
        enabled.delete(unit)
        active.delete(unit)
        return undefined
      }

      case 'enable': {
        enabled.add(unit)
        return undefined
      }

      case 'is-active': {
        return active.has(unit) ? {stdout: 'active\n'} : {exitCode: 3, stdout: 'inactive\n'}
      }

      case 'is-enabled': {
        return enabled.has(unit) ? {stdout: 'enabled\n'} : {exitCode: 1, stdout: 'disabled\n'}
      }

      case 'restart':
      case 'start': {
        if (options.startFails) return {exitCode: 1, stderr: `Job for ${unit} failed because the control process exited with error code.`}
        active.add(unit)
        return undefined
      }

      default: {
        return undefined
      }
    }
  })
}

describe('service install / uninstall / status (temp unit dir, recorded manager calls)', () => {
  let root: string
  let packageRoot: string
  let lingerDir: string

  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-svc-ops-'))
    // A package root with the two files the unit runs, so the entry-point check passes.
    packageRoot = path.join(root, 'pkg')
    await fs.mkdir(path.join(packageRoot, 'bin'), {recursive: true})
    await fs.mkdir(path.join(packageRoot, 'lib/service'), {recursive: true})
    await fs.writeFile(path.join(packageRoot, 'bin/run.js'), '')
    await fs.writeFile(path.join(packageRoot, 'lib/service/wait-for-engine.js'), '')
    lingerDir = path.join(root, 'linger')
  })

  afterEach(async () => {
    await fs.rm(root, {force: true, recursive: true})
  })

  function host(manager: 'launchd' | 'systemd', run: ServiceHost['run']): ServiceHost {
    return {lingerDir, manager, run, sleep: async () => {}, uid: 501, unitDir: path.join(root, 'units'), user: 'ada'}
  }

  function spec(instance?: string, delay = 5): ServiceSpec {
    return buildServiceSpec({
      accountHome: '/home/ada',
      config: {boot_mode: 'user', restart_delay: delay, restart_retries: 3},
      env: {PATH: '/usr/bin:/bin'},
      home: '/home/ada',
      instance,
      nodePath: process.execPath,
      packageRoot,
    })
  }

  const unitFile = (name: string): string => path.join(root, 'units', name)

  describe('systemd', () => {
    it('installs: writes the unit, then daemon-reload, enable, start — and reports it active', async () => {
      const systemd = fakeSystemd({linger: 'yes'})
      const result = await installService({host: host('systemd', systemd.run), spec: spec()})
      assert.equal(result.action, 'installed')
      assert.equal(result.unitPath, unitFile('opencode-cloud.service'))
      assert.equal(await fs.readFile(result.unitPath, 'utf8'), renderSystemdUnit(spec()))
      assert.equal((await fs.stat(result.unitPath)).mode & 0o777, 0o644)
      const mutating = systemd.calls.filter((call) => MUTATING.test(call))
      assert.deepEqual(mutating, [
        'systemctl --user daemon-reload',
        'systemctl --user enable opencode-cloud.service',
        'systemctl --user start opencode-cloud.service',
      ])
      assert.ok(systemd.calls.every((call) => !call.startsWith('systemctl') || call.startsWith('systemctl --user ')), 'always --user')
      assert.equal(result.active, true)
      assert.equal(result.state, 'active')
      assert.equal(result.linger, true)
      assert.deepEqual(result.warnings, [])
    })

    it('a second install without --force says it is installed and changes nothing', async () => {
      const first = fakeSystemd()
      await installService({host: host('systemd', first.run), spec: spec()})
      const before = await fs.stat(unitFile('opencode-cloud.service'))
      const second = fakeSystemd()
      const result = await installService({host: host('systemd', second.run), spec: spec(undefined, 9)})
      assert.equal(result.action, 'unchanged')
      assert.equal(result.wasInstalled, true)
      assert.equal(result.upToDate, false, 'the new restart delay makes it differ')
      const after = await fs.stat(unitFile('opencode-cloud.service'))
      assert.equal(after.mtimeMs, before.mtimeMs)
      assert.equal(after.ino, before.ino)
      assert.deepEqual(
        second.calls.filter((call) => MUTATING.test(call)),
        [],
        'no mutating systemctl call',
      )
    })

    it('--force rewrites the unit and restarts the service', async () => {
      await installService({host: host('systemd', fakeSystemd().run), spec: spec()})
      const systemd = fakeSystemd()
      const result = await installService({force: true, host: host('systemd', systemd.run), spec: spec(undefined, 9)})
      assert.equal(result.action, 'reinstalled')
      assert.match(await fs.readFile(unitFile('opencode-cloud.service'), 'utf8'), /^RestartSec=9$/m)
      assert.deepEqual(
        systemd.calls.filter((call) => MUTATING.test(call)),
        ['systemctl --user daemon-reload', 'systemctl --user enable opencode-cloud.service', 'systemctl --user restart opencode-cloud.service'],
      )
    })

    it('--dry-run returns the unit and changes nothing', async () => {
      const systemd = fakeSystemd()
      const result = await installService({dryRun: true, host: host('systemd', systemd.run), spec: spec('work')})
      assert.equal(result.action, 'dry-run')
      assert.equal(result.content, renderSystemdUnit(spec('work')))
      assert.equal(result.unitPath, unitFile('opencode-cloud-work.service'))
      await assert.rejects(fs.stat(path.join(root, 'units')), {code: 'ENOENT'})
      assert.deepEqual(
        systemd.calls.filter((call) => call.startsWith('systemctl')),
        [],
        'not even a query of the manager',
      )
    })

    it('refuses to install without a reachable user manager, and writes nothing', async () => {
      const systemd = fakeSystemd({reachable: false})
      await assert.rejects(installService({host: host('systemd', systemd.run), spec: spec()}), (error: unknown) => {
        assert.ok(error instanceof ServiceManagerUnavailableError)
        assert.ok(error.actions.some((action) => action.includes('loginctl enable-linger ada')))
        return true
      })
      await assert.rejects(fs.stat(unitFile('opencode-cloud.service')), {code: 'ENOENT'})
    })

    it('says so when the unit is installed and enabled but does not start', async () => {
      const systemd = fakeSystemd({startFails: true})
      await assert.rejects(installService({host: host('systemd', systemd.run), spec: spec()}), (error: unknown) => {
        assert.ok(error instanceof ServiceCommandError)
        assert.match(error.message, /installed and enabled, but it did not start/)
        assert.ok(error.actions.some((action) => action.includes('journalctl --user -u opencode-cloud.service')))
        return true
      })
      assert.ok(await fs.stat(unitFile('opencode-cloud.service')))
    })

    it('refuses to register a unit whose node or entry point does not exist', async () => {
      await fs.rm(path.join(packageRoot, 'lib'), {recursive: true})
      const systemd = fakeSystemd()
      await assert.rejects(installService({host: host('systemd', systemd.run), spec: spec()}), ServiceValueError)
      await assert.rejects(fs.stat(unitFile('opencode-cloud.service')), {code: 'ENOENT'})
    })

    it('warns, with the fixing command, when lingering is off', async () => {
      const result = await installService({host: host('systemd', fakeSystemd({linger: 'no'}).run), spec: spec()})
      assert.equal(result.linger, false)
      assert.equal(result.warnings.length, 1)
      assert.match(result.warnings[0], /Lingering is off for ada.*Fix: loginctl enable-linger ada$/)
    })

    it('detects lingering with loginctl, else from /var/lib/systemd/linger/<user>', async () => {
      const ask = (answer: Partial<CommandResult>) => host('systemd', fakeRunner(() => answer).run)
      assert.equal(await detectLinger(ask({stdout: 'Linger=yes\n'})), true)
      assert.equal(await detectLinger(ask({stdout: 'Linger=no\n'})), false)
      const offline = ask({exitCode: 1, stderr: 'Failed to connect to bus'})
      assert.equal(await detectLinger(offline), undefined, 'no logind and no linger dir: unknown')
      await fs.mkdir(lingerDir)
      assert.equal(await detectLinger(offline), false)
      await fs.writeFile(path.join(lingerDir, 'ada'), '')
      assert.equal(await detectLinger(offline), true)
      const runner = fakeRunner(() => ({stdout: 'Linger=no\n'}))
      await detectLinger(host('systemd', runner.run))
      assert.deepEqual(runner.calls, ['loginctl show-user ada -p Linger'])
    })

    it('keeps instances apart: each has its own unit, and uninstalling one leaves the other', async () => {
      const systemd = fakeSystemd()
      await installService({host: host('systemd', systemd.run), spec: spec()})
      await installService({host: host('systemd', systemd.run), spec: spec('work')})
      assert.deepEqual((await fs.readdir(path.join(root, 'units'))).sort(), ['opencode-cloud-work.service', 'opencode-cloud.service'])
      await uninstallService({host: host('systemd', systemd.run), instance: 'work'})
      assert.deepEqual(await fs.readdir(path.join(root, 'units')), ['opencode-cloud.service'])
      const status = await serviceStatus({host: host('systemd', systemd.run), instance: undefined, paths: resolvePaths()})
      assert.equal(status.active, true)
    })

    it('uninstalls: disable --now, delete the file, daemon-reload, reset-failed', async () => {
      await installService({host: host('systemd', fakeSystemd().run), spec: spec('work')})
      const systemd = fakeSystemd()
      const result = await uninstallService({host: host('systemd', systemd.run), instance: 'work'})
      assert.equal(result.action, 'removed')
      await assert.rejects(fs.stat(unitFile('opencode-cloud-work.service')), {code: 'ENOENT'})
      assert.deepEqual(systemd.calls.filter((call) => !call.includes('show --property=Version')), [
        'systemctl --user disable --now opencode-cloud-work.service',
        'systemctl --user daemon-reload',
        'systemctl --user reset-failed opencode-cloud-work.service',
      ])
      assert.deepEqual(result.warnings, [])
    })

    it('uninstall of a service that is not installed changes nothing', async () => {
      const systemd = fakeSystemd()
      const result = await uninstallService({host: host('systemd', systemd.run), instance: undefined})
      assert.equal(result.action, 'not-installed')
      assert.deepEqual(systemd.calls, [])
    })

    it('uninstall without a reachable manager still removes the file, and says what it could not do', async () => {
      await installService({host: host('systemd', fakeSystemd().run), spec: spec()})
      const systemd = fakeSystemd({reachable: false})
      const result = await uninstallService({host: host('systemd', systemd.run), instance: undefined})
      assert.equal(result.action, 'removed')
      assert.match(result.warnings.join('\n'), /No systemd user manager answered/)
      await assert.rejects(fs.stat(unitFile('opencode-cloud.service')), {code: 'ENOENT'})
    })

    it('status: installed, active, enabled, linger — and unknown activity without a manager', async () => {
      const paths = resolvePaths()
      const systemd = fakeSystemd({linger: 'no'})
      // Not installed: nothing is asked of the manager (status stays fast).
      assert.deepEqual(await serviceStatus({host: host('systemd', systemd.run), instance: 'work', paths}), {
        installed: false,
        manager: 'systemd',
        name: 'opencode-cloud-work.service',
        unitPath: unitFile('opencode-cloud-work.service'),
      })
      assert.deepEqual(systemd.calls, [])
      await installService({host: host('systemd', systemd.run), spec: spec('work')})
      const status = await serviceStatus({host: host('systemd', systemd.run), instance: 'work', paths})
      assert.equal(status.installed, true)
      assert.equal(status.active, true)
      assert.equal(status.enabled, true)
      assert.equal(status.linger, false)
      const offline = await serviceStatus({host: host('systemd', fakeSystemd({reachable: false}).run), instance: 'work', paths})
      assert.deepEqual(
        {active: offline.active, installed: offline.installed, reachable: offline.reachable},
        {active: undefined, installed: true, reachable: false},
      )
      const none = await serviceStatus({host: {...host('systemd', systemd.run), manager: undefined}, instance: undefined, paths})
      assert.deepEqual(none, {installed: false, manager: 'none'})
    })
    it('resumeService starts an installed, stopped unit (after occ stop) and leaves others alone', async () => {
      const systemd = fakeSystemd()
      const paths = resolvePaths()
      const none = await resumeService({host: host('systemd', systemd.run), instance: undefined, paths})
      assert.equal(none.action, 'not-installed')
      assert.deepEqual(systemd.calls.filter((call) => MUTATING.test(call)), [])

      await installService({host: host('systemd', systemd.run), spec: spec()})
      await systemd.run('systemctl', ['--user', 'disable', 'opencode-cloud.service'])
      await systemd.run('systemctl', ['--user', 'enable', 'opencode-cloud.service'])
      systemd.calls.length = 0
      const resumed = await resumeService({host: host('systemd', systemd.run), instance: undefined, paths})
      assert.deepEqual(resumed, {action: 'started', name: 'opencode-cloud.service'})
      assert.deepEqual(systemd.calls.filter((call) => MUTATING.test(call)), ['systemctl --user start opencode-cloud.service'])

      systemd.calls.length = 0
      const again = await resumeService({host: host('systemd', systemd.run), instance: undefined, paths})
      assert.equal(again.action, 'already-active')
      assert.deepEqual(systemd.calls.filter((call) => MUTATING.test(call)), [])
    })

    it('resumeService reports a unit that will not start, and an unreachable manager', async () => {
      const working = fakeSystemd()
      await installService({host: host('systemd', working.run), spec: spec()})
      await working.run('systemctl', ['--user', 'disable', 'opencode-cloud.service'])
      const failing = fakeSystemd({startFails: true})
      const failed = await resumeService({host: host('systemd', failing.run), instance: undefined, paths: resolvePaths()})
      assert.equal(failed.action, 'failed')
      assert.match(failed.detail ?? '', /failed because the control process exited/)
      const down = fakeSystemd({reachable: false})
      assert.equal((await resumeService({host: host('systemd', down.run), instance: undefined, paths: resolvePaths()})).action, 'unreachable')
    })
  })

  describe('launchd', () => {
    function fakeLaunchd(options: {bootstrapFailures?: number; gui?: boolean} = {}) {
      const loaded = new Set<string>()
      let failures = options.bootstrapFailures ?? 0
      return fakeRunner((file, args) => {
        if (file !== 'launchctl') return {exitCode: 127}
        const [verb, target, plist] = args
        if (verb === 'print' && target === 'gui/501') return options.gui === false ? {exitCode: 113, stderr: 'Bad request.'} : undefined
        if (verb === 'print') return loaded.has(target) ? {stdout: `${target} = {\n\tstate = running\n}\n`} : {exitCode: 113, stderr: 'Could not find service'}
        if (verb === 'bootout') return loaded.delete(target) ? undefined : {exitCode: 3, stderr: 'Boot-out failed: 3: No such process'}
        if (verb === 'bootstrap') {
          if (failures-- > 0) return {exitCode: 5, stderr: 'Bootstrap failed: 5: Input/output error'}
          loaded.add(`${target}/${path.basename(plist, '.plist')}`)
        }

        return undefined
      })
    }

    it('installs: writes the plist, boots out any old job, bootstraps it into gui/<uid>', async () => {
      const launchd = fakeLaunchd()
      const result = await installService({host: host('launchd', launchd.run), spec: spec('work')})
      assert.equal(result.action, 'installed')
      assert.equal(result.unitPath, unitFile('com.opencode-cloud.work.plist'))
      assert.equal(await fs.readFile(result.unitPath, 'utf8'), renderLaunchdPlist(spec('work')))
      assert.deepEqual(launchd.calls, [
        'launchctl print gui/501',
        'launchctl bootout gui/501/com.opencode-cloud.work',
        `launchctl bootstrap gui/501 ${result.unitPath}`,
        'launchctl print gui/501/com.opencode-cloud.work',
      ])
      assert.equal(result.active, true)
      assert.equal(result.linger, undefined)
    })

    it('retries bootstrap while launchd is still removing the old job', async () => {
      const launchd = fakeLaunchd({bootstrapFailures: 2})
      const result = await installService({host: host('launchd', launchd.run), spec: spec()})
      assert.equal(launchd.calls.filter((call) => call.startsWith('launchctl bootstrap')).length, 3)
      assert.equal(result.active, true)
      const stuck = fakeLaunchd({bootstrapFailures: 99})
      await assert.rejects(installService({force: true, host: host('launchd', stuck.run), spec: spec()}), /launchd did not load it/)
    })

    it('refuses without a GUI session', async () => {
      await assert.rejects(installService({host: host('launchd', fakeLaunchd({gui: false}).run), spec: spec()}), ServiceManagerUnavailableError)
    })

    it('uninstalls: bootout (a job that is not loaded is fine) and delete the plist', async () => {
      await installService({host: host('launchd', fakeLaunchd().run), spec: spec()})
      const launchd = fakeLaunchd()
      const result = await uninstallService({host: host('launchd', launchd.run), instance: undefined})
      assert.equal(result.action, 'removed')
      assert.deepEqual(result.warnings, [])
      assert.ok(launchd.calls.includes('launchctl bootout gui/501/com.opencode-cloud.service'))
      await assert.rejects(fs.stat(unitFile('com.opencode-cloud.service.plist')), {code: 'ENOENT'})
    })
  })

  describe('host detection', () => {
    it('puts systemd units where the user manager looks (XDG_CONFIG_HOME honoured) and agents in ~/Library/LaunchAgents', () => {
      const paths = resolvePaths({HOME: '/home/ada', XDG_CONFIG_HOME: '/cfg'})
      assert.equal(detectServiceHost({paths, platform: 'linux'}).unitDir, '/cfg/systemd/user')
      assert.equal(detectServiceHost({paths: resolvePaths({HOME: '/home/ada'}), platform: 'linux'}).unitDir, '/home/ada/.config/systemd/user')
      const mac = detectServiceHost({paths, platform: 'darwin'})
      assert.equal(mac.manager, 'launchd')
      assert.equal(mac.unitDir, '/home/ada/Library/LaunchAgents')
      assert.equal(detectServiceHost({paths, platform: 'win32'}).manager, undefined)
    })
  })

  describe('wait-for-engine (the unit’s ExecStartPre)', () => {
    it('returns as soon as the engine answers, and gives up after the timeout', async () => {
      let pings = 0
      const lines: string[] = []
      const ok = await waitForEngine({
        intervalMs: 1,
        log: (line) => lines.push(line),
        async ping() {
          if (++pings < 3) throw new Error('connect ENOENT /var/run/docker.sock')
        },
        timeoutSec: 10,
      })
      assert.equal(ok, true)
      assert.equal(pings, 3)
      assert.match(lines[0], /Waiting up to 10s for the Docker engine/)
      assert.match(lines.at(-1)!, /answers/)
      let clock = 0
      const late = await waitForEngine({
        intervalMs: 1,
        log: (line) => lines.push(line),
        now: () => (clock += 400),
        async ping() {
          throw new Error('connect ECONNREFUSED')
        },
        timeoutSec: 1,
      })
      assert.equal(late, false)
      assert.match(lines.at(-1)!, /did not answer within 1s: connect ECONNREFUSED/)
    })
  })
})
