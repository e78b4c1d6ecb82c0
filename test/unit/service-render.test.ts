import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import fc from 'fast-check'

import {ServiceValueError} from '../../src/service/errors.js'
import {launchdAgent, renderLaunchdPlist} from '../../src/service/launchd-plist.js'
import {
  buildServiceSpec,
  launchdLabel,
  systemdUnitName,
  type ServiceSpec,
  type ServiceSpecInput,
} from '../../src/service/spec.js'
import {renderSystemdUnit, startLimit} from '../../src/service/systemd-unit.js'
import {REPO_ROOT} from '../helpers/sandbox-env.js'
import {execArgv, parseUnit, splitWords, unitEnvironment} from '../fixtures/service/unit-file.js'

const GOLDEN_DIR = path.join(REPO_ROOT, 'test/fixtures/service')
const UPDATE = process.env.UPDATE_GOLDEN === '1'

const AWKWARD_ROOT = `/opt/occ "q" 'a' \\b $X %p ü`
const config = {boot_mode: 'user' as const, restart_delay: 5, restart_retries: 3}

/** The specs every rendering test runs over; the golden files are named after them. */
function cases(nodePath = '/opt/node-v24.15.0/bin/node', packageRoot = '/opt/npm-global/lib/node_modules/opencode-cloud') {
  const input = (extra: Partial<ServiceSpecInput>): ServiceSpecInput => ({
    accountHome: '/home/ada',
    config,
    env: {PATH: '/usr/local/bin:/usr/bin:/bin'},
    home: '/home/ada',
    instance: undefined,
    nodePath,
    packageRoot,
    ...extra,
  })
  return {
    default: buildServiceSpec(input({})),
    instance: buildServiceSpec(
      input({
        config: {...config, restart_delay: 10, restart_retries: 5},
        env: {
          DOCKER_HOST: 'unix:///run/user/1000/docker.sock',
          OPENCODE_SANDBOX_INSTANCE: 'ignored-the-instance-argument-wins',
          PATH: '/home/ada/.volta/bin:/usr/bin:/bin',
          XDG_CACHE_HOME: '/home/ada/.cache',
          XDG_CONFIG_HOME: '/home/ada/.config',
          XDG_DATA_HOME: '/home/ada/.local/share',
          XDG_STATE_HOME: '/home/ada/.local/state',
        },
        instance: 'work',
      }),
    ),
    // Every character that needs care in one of the two formats.
    tricky: buildServiceSpec(
      input({
        env: {
          DOCKER_HOST: 'tcp://127.0.0.1:2376',
          OPENCODE_CLOUD_ENV: `a "quoted" \\ back\\slash, 100% $HOME \${X} 'single' ; & < > ]]> ünïcødé ✓`,
          PATH: '/opt/with space/bin:/usr/bin:/bin',
          UNRELATED: 'not carried',
          XDG_STATE_HOME: '/home/a b/%h/$state',
        },
        home: '/home/a b',
        instance: 'wt-0123456789abcdef',
        packageRoot: AWKWARD_ROOT,
      }),
    ),
  }
}

async function golden(name: string, actual: string): Promise<void> {
  const file = path.join(GOLDEN_DIR, name)
  if (UPDATE) await fs.writeFile(file, actual)
  assert.equal(actual, await fs.readFile(file, 'utf8'), `${name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)`)
}

/** python3's plistlib is an independent, strict plist reader (expat underneath). */
function parsePlists(texts: string[]): unknown[] {
  const script = [
    'import json, plistlib, sys',
    'out = [plistlib.loads(t.encode("utf-8"), fmt=plistlib.FMT_XML) for t in json.load(sys.stdin)]',
    'json.dump(out, sys.stdout, ensure_ascii=False)',
  ].join('\n')
  const result = spawnSync('python3', ['-c', script], {encoding: 'utf8', input: JSON.stringify(texts)})
  assert.equal(result.status, 0, `plistlib failed: ${result.stderr}`)
  return JSON.parse(result.stdout) as unknown[]
}

/** A temp dir that systemd --user (run as nobody when we are root) can read. */
async function readableTempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix))
  await fs.chmod(dir, 0o755)
  return dir
}

/**
 * A real node reachable through a path full of characters that need care (systemd refuses
 * quotes and backslashes in a program path outright; the entry path, an argument, has them).
 */
async function awkwardNode(root: string): Promise<string> {
  const dir = path.join(root, 'my node %h $HOME ü', 'bin')
  await fs.mkdir(dir, {recursive: true})
  await fs.chmod(path.dirname(dir), 0o755)
  await fs.chmod(dir, 0o755)
  const node = path.join(dir, 'node')
  await fs.symlink(process.execPath, node)
  return node
}

function verifyUnit(file: string, runtimeDir: string): {status: number | null; output: string} {
  const result = spawnSync('systemd-analyze', ['--user', 'verify', file], {
    encoding: 'utf8',
    env: {...process.env, SYSTEMD_LOG_COLOR: '0', XDG_RUNTIME_DIR: runtimeDir},
  })
  return {output: `${result.stdout}${result.stderr}`, status: result.status}
}

describe('service rendering', () => {
  describe('golden files', () => {
    for (const [name, spec] of Object.entries(cases())) {
      it(`renders the ${name} systemd unit`, async () => {
        await golden(`${name}.service`, renderSystemdUnit(spec))
      })

      it(`renders the ${name} launchd plist`, async () => {
        await golden(`${name}.plist`, renderLaunchdPlist(spec))
      })
    }
  })

  describe('systemd unit', () => {
    it('passes `systemd-analyze --user verify` with no output at all, awkward paths included', async function () {
      this.timeout(60_000)
      const root = await readableTempDir('occ-svc-verify-')
      try {
        const runtimeDir = path.join(root, 'runtime')
        await fs.mkdir(runtimeDir)
        const specs = {...cases(process.execPath), ...prefixed('awkward-', cases(await awkwardNode(root), AWKWARD_ROOT))}
        for (const [name, spec] of Object.entries(specs)) {
          const dir = path.join(root, name)
          await fs.mkdir(dir)
          const file = path.join(dir, systemdUnitName(spec.instance))
          await fs.writeFile(file, renderSystemdUnit(spec))
          const {output, status} = verifyUnit(file, runtimeDir)
          assert.equal(status, 0, `${name}: systemd-analyze verify failed:\n${output}`)
          assert.equal(output, '', `${name}: systemd-analyze verify printed something:\n${output}`)
        }

        // The check is real: a missing executable and an unparsable setting are both noticed.
        const broken = path.join(root, 'broken', 'opencode-cloud.service')
        await fs.mkdir(path.dirname(broken))
        await fs.writeFile(broken, renderSystemdUnit(cases('/nonexistent/node').default).replace('Restart=on-failure', 'Restart=sometimes'))
        const {output} = verifyUnit(broken, runtimeDir)
        assert.match(output, /restart specifier/)
        assert.match(output, /nonexistent/)
      } finally {
        await fs.rm(root, {force: true, recursive: true})
      }
    })

    it('gives systemd exactly the argv and environment of the spec (checked with systemd’s own parser)', async function () {
      this.timeout(60_000)
      const root = await readableTempDir('occ-svc-parse-')
      try {
        const specs = {...cases(), ...prefixed('awkward-', cases(await awkwardNode(root), AWKWARD_ROOT))}
        for (const [name, spec] of Object.entries(specs)) {
          const unit = parseUnit(renderSystemdUnit(spec))
          // Our reader…
          assert.deepEqual(execArgv(unit.get('Service', 'ExecStart')), spec.command, name)
          assert.deepEqual(execArgv(unit.get('Service', 'ExecStartPre')), spec.waitForEngine, name)
          assert.deepEqual(unitEnvironment(unit), Object.fromEntries(spec.environment), name)
          // …and systemd's, where it can run here.
          const dumped = systemdDump(root, name, renderSystemdUnit(spec), systemdUnitName(spec.instance))
          if (dumped) {
            assert.deepEqual(dumped.environment, spec.environment.map(([key, value]) => `${key}=${value}`), name)
            assert.deepEqual(dumped.execStart, spec.command, name)
          }
        }
      } finally {
        await fs.rm(root, {force: true, recursive: true})
      }
    })

    it('carries arbitrary printable environment values exactly (property, systemd’s parser)', async function () {
      this.timeout(120_000)
      const root = await readableTempDir('occ-svc-prop-')
      // eslint-disable-next-line no-control-regex
      const printable = fc.string({maxLength: 40, unit: 'grapheme'}).filter((value) => !/[\u0000-\u001F\u007F-\u009F]/.test(value))
      try {
        let run = 0
        await fc.assert(
          fc.asyncProperty(printable, printable, async (value, arg) => {
            const spec = {...cases().default, environment: [['OPENCODE_CLOUD_ENV', value]] as Array<[string, string]>}
            spec.command = [...spec.command, arg]
            const text = renderSystemdUnit(spec)
            const unit = parseUnit(text)
            assert.equal(unitEnvironment(unit).OPENCODE_CLOUD_ENV, value)
            assert.deepEqual(execArgv(unit.get('Service', 'ExecStart')), spec.command)
            const dumped = systemdDump(root, `p${run++}`, text, 'opencode-cloud.service')
            if (dumped) {
              assert.deepEqual(dumped.environment, [`OPENCODE_CLOUD_ENV=${value}`])
              assert.deepEqual(dumped.execStart, spec.command, JSON.stringify(dumped))
            }
          }),
          {numRuns: 60},
        )
      } finally {
        await fs.rm(root, {force: true, recursive: true})
      }
    })

    it('puts the start limit in [Unit], restarts only on failure, stops with SIGTERM, has no ExecStop or docker.service dependency', () => {
      const unit = parseUnit(renderSystemdUnit(cases().default))
      assert.equal(unit.get('Unit', 'StartLimitBurst'), '4')
      assert.equal(unit.get('Unit', 'StartLimitIntervalSec'), '140')
      assert.deepEqual(unit.all('Service', 'StartLimitBurst'), [])
      assert.equal(unit.get('Service', 'Restart'), 'on-failure')
      assert.equal(unit.get('Service', 'RestartSec'), '5')
      assert.equal(unit.get('Service', 'KillSignal'), 'SIGTERM')
      assert.equal(unit.get('Service', 'KillMode'), 'mixed')
      assert.equal(unit.get('Service', 'TimeoutStopSec'), '180')
      assert.deepEqual(unit.all('Service', 'ExecStop'), [])
      for (const [, entries] of unit.sections) {
        for (const [key, value] of entries) assert.doesNotMatch(`${key}=${value}`, /docker\.service/)
      }

      assert.equal(unit.get('Install', 'WantedBy'), 'default.target')
      assert.deepEqual(execArgv(unit.get('Service', 'ExecStart')).slice(2), ['start', '--no-daemon'])
    })

    it('derives the start limit from restart_retries and restart_delay', () => {
      assert.deepEqual(startLimit({restartDelaySec: 5, restartRetries: 3}), {burst: 4, intervalSec: 140})
      assert.deepEqual(startLimit({restartDelaySec: 1, restartRetries: 0}), {burst: 1, intervalSec: 31})
    })
  })

  describe('launchd plist', () => {
    it('parses back (python3 plistlib) to exactly the agent object, with the spec’s argv and environment', () => {
      const specs = Object.values(cases())
      const parsed = parsePlists(specs.map((spec) => renderLaunchdPlist(spec)))
      for (const [index, spec] of specs.entries()) {
        const plist = parsed[index] as Record<string, unknown>
        assert.deepEqual(plist, launchdAgent(spec))
        assert.deepEqual(plist.ProgramArguments, spec.command)
        assert.deepEqual(plist.EnvironmentVariables, Object.fromEntries(spec.environment))
        assert.deepEqual(plist.KeepAlive, {Crashed: true, SuccessfulExit: false})
        assert.equal(plist.RunAtLoad, true)
        assert.equal(plist.ThrottleInterval, spec.restartDelaySec)
        assert.equal(plist.ExitTimeOut, spec.stopTimeoutSec)
        assert.equal(plist.Label, launchdLabel(spec.instance))
        assert.match(String(plist.StandardOutPath), /\/Library\/Logs\/opencode-cloud(-[a-z0-9-]+)?\.stdout\.log$/)
        assert.match(String(plist.StandardErrorPath), /\/Library\/Logs\/opencode-cloud(-[a-z0-9-]+)?\.stderr\.log$/)
      }
    })

    it('carries arbitrary environment values and arguments exactly (property, plistlib)', async () => {
      // XML can hold tab, LF and CR (written as &#13;) but no other C0 control character.
      // eslint-disable-next-line no-control-regex
      const xmlChar = fc.string({maxLength: 40, unit: 'grapheme'}).filter((value) => !/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/.test(value))
      const samples = fc.sample(fc.tuple(xmlChar, xmlChar), {numRuns: 200})
      const specs = samples.map(([value, arg]) => ({
        ...cases().default,
        command: [...cases().default.command, arg],
        environment: [['OPENCODE_CLOUD_ENV', value]] as Array<[string, string]>,
      }))
      const parsed = parsePlists(specs.map((spec) => renderLaunchdPlist(spec))) as Array<Record<string, unknown>>
      for (const [index, spec] of specs.entries()) assert.deepEqual(parsed[index], launchdAgent(spec))
    })
  })

  describe('spec', () => {
    it('uses absolute paths to node and to occ’s bin/run.js, and waits for the engine with occ’s own script', () => {
      const spec = cases().default
      assert.deepEqual(spec.command, [
        '/opt/node-v24.15.0/bin/node',
        '/opt/npm-global/lib/node_modules/opencode-cloud/bin/run.js',
        'start',
        '--no-daemon',
      ])
      assert.deepEqual(spec.waitForEngine, [
        '/opt/node-v24.15.0/bin/node',
        '/opt/npm-global/lib/node_modules/opencode-cloud/lib/service/wait-for-engine.js',
        '--timeout',
        '120',
      ])
    })

    it('carries PATH (with node’s dir first), DOCKER_HOST, the instance and XDG dirs, and nothing else', () => {
      assert.deepEqual(cases().instance.environment, [
        ['PATH', '/opt/node-v24.15.0/bin:/home/ada/.volta/bin:/usr/bin:/bin'],
        ['DOCKER_HOST', 'unix:///run/user/1000/docker.sock'],
        ['OPENCODE_SANDBOX_INSTANCE', 'work'],
        ['XDG_CONFIG_HOME', '/home/ada/.config'],
        ['XDG_DATA_HOME', '/home/ada/.local/share'],
        ['XDG_STATE_HOME', '/home/ada/.local/state'],
        ['XDG_CACHE_HOME', '/home/ada/.cache'],
      ])
      // No instance: a stray OPENCODE_SANDBOX_INSTANCE must not leak into the default unit.
      const plain = buildServiceSpec({...inputOf(), env: {OPENCODE_SANDBOX_INSTANCE: 'x', PATH: '/opt/node-v24.15.0/bin:/bin'}})
      assert.deepEqual(plain.environment, [['PATH', '/opt/node-v24.15.0/bin:/bin']])
      // HOME only when it is not the account's own.
      assert.deepEqual(cases().tricky.environment[0], ['HOME', '/home/a b'])
    })

    it('names units and labels per instance, so instances never collide', () => {
      assert.equal(systemdUnitName(undefined), 'opencode-cloud.service')
      assert.equal(systemdUnitName('work'), 'opencode-cloud-work.service')
      assert.equal(launchdLabel(undefined), 'com.opencode-cloud.service')
      assert.equal(launchdLabel('work'), 'com.opencode-cloud.work')
      assert.throws(() => launchdLabel('service'), ServiceValueError)
    })

    it('refuses values a service file cannot carry safely, naming the variable', () => {
      const bad: Array<[Partial<ServiceSpecInput>, RegExp]> = [
        [{env: {PATH: '/bin\n/evil'}}, /PATH contains a control character \(U\+000A\)/],
        [{env: {DOCKER_HOST: 'unix:///x\u0000'}}, /DOCKER_HOST contains a control character/],
        [{env: {XDG_STATE_HOME: '/a\u007Fb'}}, /XDG_STATE_HOME contains a control character/],
        [{env: {XDG_DATA_HOME: '/a\uD800b'}}, /XDG_DATA_HOME is not valid Unicode/],
        [{nodePath: 'node'}, /node path must be absolute/],
        [{nodePath: '/opt/no\nde'}, /node path contains a control character/],
        [{config: {...config, boot_mode: 'system'}}, /boot_mode 'system'/],
      ]
      for (const [extra, message] of bad) assert.throws(() => buildServiceSpec({...inputOf(), ...extra}), message)
      // systemd refuses quotes and backslashes in a program path; launchd takes them.
      const quoted = buildServiceSpec({...inputOf(), nodePath: '/opt/"node"/bin/node'})
      assert.throws(() => renderSystemdUnit(quoted), /contains a quote or a backslash/)
      assert.match(renderLaunchdPlist(quoted), /<string>\/opt\/"node"\/bin\/node<\/string>/)
    })

    it('quotes only where systemd needs it', () => {
      const line = parseUnit(renderSystemdUnit(cases().tricky)).get('Service', 'ExecStart')
      assert.equal(splitWords(line).length, 4)
      assert.equal(line.split(' ')[1], String.raw`"/opt/occ`)
      assert.match(renderSystemdUnit(cases().default), /^ExecStart=\/opt\/node-v24\.15\.0\/bin\/node \/opt\/npm-global\/lib\/node_modules\/opencode-cloud\/bin\/run\.js start --no-daemon$/m)
    })
  })
})

function inputOf(): ServiceSpecInput {
  return {
    accountHome: '/home/ada',
    config,
    env: {PATH: '/usr/bin:/bin'},
    home: '/home/ada',
    instance: undefined,
    nodePath: '/opt/node-v24.15.0/bin/node',
    packageRoot: '/opt/occ',
  }
}

function prefixed(prefix: string, specs: Record<string, ServiceSpec>): Record<string, ServiceSpec> {
  return Object.fromEntries(Object.entries(specs).map(([name, spec]) => [`${prefix}${name}`, spec]))
}

let systemdTestMode: boolean | undefined

/**
 * Loads the unit with systemd's own parser (`systemd --user --test`, which dumps the parsed
 * units and exits; it refuses to run as root, so root runs it as nobody) and returns the
 * Environment= entries and the ExecStart argv it stored. undefined when that cannot run here.
 */
function systemdDump(root: string, name: string, text: string, unitName: string): {environment: string[]; execStart: string[]} | undefined {
  if (systemdTestMode === false) return undefined
  const home = path.join(root, `home-${name}`)
  const unitDir = path.join(home, '.config/systemd/user')
  const runtimeDir = path.join(home, 'run')
  spawnSync('mkdir', ['-p', unitDir, runtimeDir])
  spawnSync('chmod', ['-R', 'a+rX', home])
  spawnSync('chmod', ['a+rwx', runtimeDir])
  require0(spawnSync('sh', ['-c', 'cat > "$1" && chmod 644 "$1"', 'sh', path.join(unitDir, unitName)], {input: text}))
  const asNobody = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : []
  const argv = [...asNobody, 'env', `HOME=${home}`, `XDG_RUNTIME_DIR=${runtimeDir}`, '/lib/systemd/systemd', '--user', '--test', `--unit=${unitName}`, '--no-pager', '--log-target=console']
  const result = spawnSync(argv[0], argv.slice(1), {encoding: 'utf8', timeout: 20_000})
  const block = result.stdout.split(/\n\t-> Unit /).find((chunk) => chunk.startsWith(`${unitName}:`))
  if (result.status !== 0 || !block) {
    if (systemdTestMode === undefined) {
      systemdTestMode = false
      console.warn(`      (systemd --user --test is not usable here, so only occ's reader checked the unit: ${result.stderr || result.error?.message || 'no dump'})`)
      return undefined
    }

    assert.fail(`systemd --user --test failed for ${name}: ${result.stderr}`)
  }

  systemdTestMode = true
  // Split on LF only: JS's `.` and multiline `$` also stop at U+2028/U+2029, which are data here.
  const lines = block.split('\n')
  const valuesOf = (prefix: string, from = 0) => lines.slice(from).filter((line) => line.startsWith(prefix)).map((line) => line.slice(prefix.length))
  const environment = valuesOf('\t\tEnvironment: ')
  const command = valuesOf('\t\t\tCommand Line: ', lines.indexOf('\t\t-> ExecStart:'))[0]
  assert.ok(command, `no ExecStart in systemd's dump of ${name}`)
  // The dump quotes like a shell (`\$`, `\\`, `\"` inside double quotes); `$$` is expanded at exec time.
  const execStart = dumpWords(command).map((word) => word.replaceAll('$$', '$'))
  return {environment, execStart}
}

/** Splits systemd's dump of a command line; like systemd, only ASCII space and tab separate words. */
function dumpWords(line: string): string[] {
  const words: string[] = []
  const pattern = /"((?:[^"\\]|\\.)*)"|([^ \t]+)/g
  for (const match of line.matchAll(pattern)) {
    words.push(match[1] === undefined ? match[2] : match[1].replaceAll(/\\(.)/g, '$1'))
  }

  return words
}

function require0(result: ReturnType<typeof spawnSync>): void {
  assert.equal(result.status, 0, String(result.stderr))
}
