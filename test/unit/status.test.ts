import assert from 'node:assert/strict'

import fc from 'fast-check'

import {resourceNames} from '../../src/config/instance.js'
import type {ContainerState, ExecOptions, ExecResult, HealthProbe, Runtime} from '../../src/runtime/runtime.js'
import {
  cleanText,
  collectStatus,
  extractCommit,
  formatDuration,
  mapBrokerHealth,
  mapOpencodeHealth,
  parseSandboxFacts,
} from '../../src/runtime/status.js'
import {UNUSED_CONTAINER_CONTROL} from './runtime-stubs.js'

const COMMIT = 'df9b40b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7'
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/

describe('status model', () => {
  describe('opencode health mapping', () => {
    it('healthy JSON → Healthy, with the reported version', () => {
      assert.deepEqual(mapOpencodeHealth({body: {healthy: true, version: '1.2.3'}, kind: 'http', status: 200}), {
        httpStatus: 200,
        label: 'Healthy',
        state: 'healthy',
        version: '1.2.3',
      })
    })

    it('connection refused → Starting', () => {
      assert.deepEqual(mapOpencodeHealth({kind: 'refused'}), {label: 'Starting', state: 'starting'})
    })

    it('timeout → Starting', () => {
      assert.deepEqual(mapOpencodeHealth({kind: 'timeout'}), {label: 'Starting', state: 'starting'})
    })

    it('HTTP 503 → Unhealthy (HTTP 503), keeping the code', () => {
      const health = mapOpencodeHealth({body: {healthy: false}, kind: 'http', status: 503})
      assert.equal(health.state, 'unhealthy')
      assert.equal(health.label, 'Unhealthy (HTTP 503)')
      assert.equal(health.httpStatus, 503)
    })

    it('any non-2xx keeps its code', () => {
      for (const status of [301, 404, 500, 502]) {
        assert.equal(mapOpencodeHealth({body: undefined, kind: 'http', status}).label, `Unhealthy (HTTP ${status})`)
      }
    })

    it('a body that is not JSON (or not the health shape) → Check failed', () => {
      for (const body of [undefined, 'ok', 42, null, [], {}, {healthy: 'yes'}]) {
        const health = mapOpencodeHealth({body, kind: 'http', status: 200})
        assert.equal(health.state, 'check_failed', JSON.stringify(body))
        assert.equal(health.label, 'Check failed')
      }
    })

    it('a probe error → Check failed', () => {
      assert.deepEqual(mapOpencodeHealth({error: 'EHOSTUNREACH', kind: 'failed'}), {label: 'Check failed', state: 'check_failed'})
    })

    it('2xx with healthy:false is unhealthy, not healthy', () => {
      assert.equal(mapOpencodeHealth({body: {healthy: false}, kind: 'http', status: 200}).state, 'unhealthy')
    })

    it('a hostile version string is cleaned', () => {
      const health = mapOpencodeHealth({body: {healthy: true, version: `1.0\u001b[2J\r\n${'x'.repeat(500)}`}, kind: 'http', status: 200})
      assert.equal(health.state, 'healthy')
      assert.ok(health.version !== undefined && health.version.length <= 120)
      assert.doesNotMatch(health.version ?? '', CONTROL)
      assert.equal(mapOpencodeHealth({body: {healthy: true, version: 7}, kind: 'http', status: 200}).version, undefined)
    })

    it('never throws and always gives one of the four states (property)', () => {
      const probe = fc.oneof(
        fc.record({kind: fc.constant('refused' as const)}),
        fc.record({kind: fc.constant('timeout' as const)}),
        fc.record({error: fc.string(), kind: fc.constant('failed' as const)}),
        fc.record({body: fc.anything(), kind: fc.constant('http' as const), status: fc.integer({max: 999, min: 0})}),
      )
      fc.assert(
        fc.property(probe, (value) => {
          const health = mapOpencodeHealth(value as HealthProbe)
          assert.ok(['check_failed', 'healthy', 'starting', 'unhealthy'].includes(health.state))
        }),
      )
    })
  })

  describe('broker health mapping', () => {
    const cases: Array<[boolean | undefined, boolean | undefined, string, string]> = [
      [true, true, 'healthy', 'Healthy'],
      [true, false, 'degraded', 'Degraded'],
      [false, true, 'degraded', 'Degraded'],
      [false, false, 'unhealthy', 'Unhealthy'],
      [undefined, true, 'check_failed', 'Check failed'],
      [true, undefined, 'check_failed', 'Check failed'],
      [undefined, undefined, 'check_failed', 'Check failed'],
    ]
    for (const [process, socket, state, label] of cases) {
      it(`process ${process} + socket ${socket} → ${label}`, () => {
        assert.deepEqual(mapBrokerHealth(process, socket), {label, state})
      })
    }
  })

  describe('parseSandboxFacts', () => {
    it('reads the output of the facts script', () => {
      const facts = parseSandboxFacts(
        ['version=1.0.0-fixture', `commit=${COMMIT}`, 'image_version=fixture-1', 'broker_process=1', 'broker_socket=1', 'init=supervisor', ''].join('\n'),
      )
      assert.deepEqual(facts, {
        brokerProcess: true,
        brokerSocket: true,
        commit: COMMIT,
        imageVersion: 'fixture-1',
        opencodeVersion: '1.0.0-fixture',
      })
    })

    it('reads an unverified release from the release store journal, only with a sane name', () => {
      const facts = parseSandboxFacts(`unverified=${COMMIT}\nunverified_previous=image\n`)
      assert.deepEqual(facts.unverifiedRelease, {previous: 'image', release: COMMIT})
      const withCommit = parseSandboxFacts(`unverified=${COMMIT}\nunverified_previous=${'b'.repeat(40)}\nunverified_previous_commit=${'B'.repeat(40)}\n`)
      assert.deepEqual(withCommit.unverifiedRelease, {previous: 'b'.repeat(40), previousCommit: 'b'.repeat(40), release: COMMIT})
      assert.equal(parseSandboxFacts(`unverified=${COMMIT}\nunverified_previous_commit=zz\n`).unverifiedRelease?.previousCommit, undefined)
      assert.equal(parseSandboxFacts('unverified=../../etc\u001b[2J\n').unverifiedRelease, undefined)
    })

    it('treats empty values as unknown and 0 as false', () => {
      const facts = parseSandboxFacts('version=\ncommit=\nimage_version=\nbroker_process=0\nbroker_socket=0\ninit=other\n')
      assert.equal(facts.opencodeVersion, undefined)
      assert.equal(facts.commit, undefined)
      assert.equal(facts.imageVersion, undefined)
      assert.equal(facts.brokerProcess, false)
      assert.equal(facts.brokerSocket, false)
    })

    it('strips control characters (terminal escapes, CR, NUL, C1) from values', () => {
      const facts = parseSandboxFacts('version=1.0\u001b[31m-evil\u0007\r\nimage_version=\u0000v2\u009b1m\u007f\n')
      assert.equal(facts.opencodeVersion, '1.0[31m-evil')
      assert.equal(facts.imageVersion, 'v21m')
    })

    it('caps huge values', () => {
      const facts = parseSandboxFacts(`version=${'9'.repeat(1_000_000)}\nimage_version=${'v'.repeat(100_000)}\n`)
      assert.equal(facts.opencodeVersion?.length, 120)
      assert.equal(facts.imageVersion?.length, 120)
    })

    it('ignores unknown keys, lines without =, prototype keys and odd values', () => {
      const facts = parseSandboxFacts(
        ['__proto__=polluted', 'constructor=x', 'healthy=1', 'no equals here', '=novalue', 'init=root-shell', 'broker_process=yes', 'broker_socket=1 '].join('\n'),
      )
      assert.deepEqual(Object.keys(facts).sort(), ['brokerProcess', 'brokerSocket'])
      assert.equal(facts.brokerProcess, false)
      assert.equal(facts.brokerSocket, false)
      assert.equal(({} as Record<string, unknown>).polluted, undefined)
      assert.equal(Object.getPrototypeOf(facts), Object.prototype)
    })

    it('does not let a value carry a fake key (a value is one line)', () => {
      const facts = parseSandboxFacts('version=1.0 broker_process=1\nbroker_process=0\n')
      assert.equal(facts.opencodeVersion, '1.0 broker_process=1')
      assert.equal(facts.brokerProcess, false)
    })

    it('reads only the first 20 lines', () => {
      const padding = Array.from({length: 25}, (_, index) => `noise${index}=x`).join('\n')
      assert.equal(parseSandboxFacts(`${padding}\nversion=late\n`).opencodeVersion, undefined)
    })

    it('never throws, and every value it returns is short and clean (property)', () => {
      const line = fc.oneof(
        fc.string({maxLength: 300, unit: 'binary'}),
        fc.tuple(fc.constantFrom('version', 'commit', 'image_version', 'broker_process', 'broker_socket', 'init'), fc.string({maxLength: 300, unit: 'binary'})).map(([key, value]) => `${key}=${value}`),
      )
      fc.assert(
        fc.property(fc.array(line, {maxLength: 30}), (lines) => {
          const facts = parseSandboxFacts(lines.join('\n'))
          for (const value of [facts.opencodeVersion, facts.imageVersion, facts.commit]) {
            if (value === undefined) continue
            assert.ok(value.length > 0 && value.length <= 120)
            assert.doesNotMatch(value, CONTROL)
          }

          if (facts.commit !== undefined) assert.match(facts.commit, /^[0-9a-f]{7,40}$/)
          for (const flag of [facts.brokerProcess, facts.brokerSocket]) assert.ok(flag === undefined || typeof flag === 'boolean')
        }),
        {numRuns: 300},
      )
    })
  })

  describe('extractCommit', () => {
    it('takes a 40-hex commit (the short form is its first 7)', () => {
      assert.equal(extractCommit(`${COMMIT}\n`), COMMIT)
      assert.equal(extractCommit(COMMIT)?.slice(0, 7), 'df9b40b')
    })

    it('lowercases and takes the first hex token with a letter', () => {
      assert.equal(extractCommit('commit DF9B40B1 (main)'), 'df9b40b1')
      assert.equal(extractCommit('20260131 abcdef1'), 'abcdef1')
    })

    it('ignores numeric versions', () => {
      assert.equal(extractCommit('0.0.0--202601311855'), undefined)
      assert.equal(extractCommit('20260131'), undefined)
      assert.equal(extractCommit('1234567890'), undefined)
    })

    it('ignores too short, too long and non-hex tokens', () => {
      assert.equal(extractCommit('abc123'), undefined)
      assert.equal(extractCommit('a'.repeat(41)), undefined)
      assert.equal(extractCommit('deadbeeg'), undefined)
      assert.equal(extractCommit(''), undefined)
    })
  })

  describe('formatDuration (reference §12 cases)', () => {
    const cases: Array<[number, string]> = [
      [0, '0s'],
      [30, '30s'],
      [59, '59s'],
      [60, '1m'],
      [90, '1m 30s'],
      [120, '2m'],
      [3600, '1h'],
      [3660, '1h 1m'],
      [7200, '2h'],
      [86_400, '1d'],
      [90_000, '1d 1h'],
      [3665, '1h 1m'],
      [59.9, '59s'],
      [-5, '0s'],
    ]
    for (const [seconds, text] of cases) {
      it(`${seconds} s → ${text}`, () => {
        assert.equal(formatDuration(seconds), text)
      })
    }
  })

  it('cleanText strips control characters and caps at 120', () => {
    assert.equal(cleanText(undefined), undefined)
    assert.equal(cleanText(' \u0000 '), undefined)
    assert.equal(cleanText('a\tb'), 'ab')
    assert.equal(cleanText('x'.repeat(200))?.length, 120)
  })

  describe('collectStatus over a fake Runtime', () => {
    function fakeRuntime(state: Partial<ContainerState>, options: {facts?: string; execFails?: boolean; probe?: HealthProbe} = {}) {
      const calls = {exec: [] as string[][], probe: 0}
      const full: ContainerState = {exists: true, labels: {'org.opencode-cloud.version': 'label-1'}, mounts: [], name: 'opencode-cloud-sandbox-x', running: true, status: 'running', ...state}
      const runtime: Runtime = {
        ...UNUSED_CONTAINER_CONTROL,
        async containerState() {
          return full
        },
        async exec(argv: string[], _options?: ExecOptions): Promise<ExecResult> {
          calls.exec.push(argv)
          if (options.execFails) throw new Error('exec failed')
          return {exitCode: 0, stderr: '', stdout: options.facts ?? ''}
        },
        kind: 'host',
        logs() {
          throw new Error('not used')
        },
        names: resourceNames('x'),
        async opencodeUrl() {
          return full.hostPort ? `http://localhost:${full.hostPort}` : undefined
        },
        async probeHealth() {
          calls.probe++
          return options.probe ?? {body: {healthy: true, version: '1.0.0'}, kind: 'http', status: 200}
        },
        async restartMethod() {
          return 'supervisor'
        },
        async restartOpencode() {
          return 'supervisor'
        },
      }
      return {calls, runtime}
    }

    it('fills every field for a running, healthy sandbox, with one exec', async () => {
      const now = Date.parse('2026-01-01T01:05:00Z')
      const {calls, runtime} = fakeRuntime(
        {hostIp: '127.0.0.1', hostPort: 3100, id: 'abc123', image: 'img:1', startedAt: '2026-01-01T00:00:00Z'},
        {facts: `version=1.0.0\ncommit=${COMMIT}\nimage_version=v9\nbroker_process=1\nbroker_socket=1\ninit=supervisor\n`},
      )
      const view = await collectStatus(runtime, {now: () => now})
      assert.equal(calls.exec.length, 1, 'the in-sandbox facts must come from one exec')
      assert.equal(view.schemaVersion, 1)
      assert.equal(view.instance, 'x')
      assert.equal(view.container.running, true)
      assert.equal(view.container.uptimeSeconds, 3900)
      assert.equal(view.opencode.health?.label, 'Healthy')
      assert.equal(view.opencode.version, '1.0.0')
      assert.equal(view.opencode.commit, COMMIT)
      assert.equal(view.opencode.commitShort, 'df9b40b')
      assert.equal(view.opencode.url, 'http://localhost:3100')
      assert.equal(view.image.version, 'v9')
      assert.deepEqual(view.broker, {health: {label: 'Healthy', state: 'healthy'}, process: true, socket: true})
      assert.deepEqual(view.port, {bindAddress: '127.0.0.1', container: 3000, host: 3100})
    })

    it('while a release is unverified, the installed commit is the one the journal recorded, not COMMIT (verify killed between its writes)', async () => {
      const previous = 'a'.repeat(40)
      const facts = `version=1.1.0\ncommit=${COMMIT}\nunverified=${COMMIT}\nunverified_previous=${previous}\nunverified_previous_commit=${previous}\n`
      const view = await collectStatus(fakeRuntime({hostPort: 3100}, {facts}).runtime)
      assert.equal(view.opencode.commit, previous)
      assert.equal(view.opencode.commitShort, 'aaaaaaa')
      assert.deepEqual(view.opencode.unverifiedRelease, {previous, previousCommit: previous, release: COMMIT})
      // The first update from the image's plain layout: no commit was recorded before it.
      const first = await collectStatus(fakeRuntime({hostPort: 3100}, {facts: `commit=${COMMIT}\nunverified=${COMMIT}\nunverified_previous=image\n`}).runtime)
      assert.equal(first.opencode.commit, null)
      assert.deepEqual(first.opencode.unverifiedRelease, {previous: 'image', previousCommit: null, release: COMMIT})
    })

    it('reports Check failed for the broker when the exec fails, and keeps the image label version', async () => {
      const {runtime} = fakeRuntime({hostPort: 3100}, {execFails: true})
      const view = await collectStatus(runtime)
      assert.equal(view.broker.health?.state, 'check_failed')
      assert.equal(view.opencode.version, '1.0.0', 'the version comes from the health body')
      assert.equal(view.image.version, 'label-1')
    })

    it("takes the version from the health body, and the recorded VERSION only while opencode does not answer", async () => {
      const facts = `version=0.9.0\ncommit=${COMMIT}\nbroker_process=1\nbroker_socket=1\n`
      const healthy = await collectStatus(fakeRuntime({hostPort: 3100}, {facts}).runtime)
      assert.equal(healthy.opencode.version, '1.0.0')
      const down = await collectStatus(fakeRuntime({hostPort: 3100}, {facts, probe: {kind: 'refused'}}).runtime)
      assert.equal(down.opencode.health?.state, 'starting')
      assert.equal(down.opencode.version, '0.9.0')
    })

    it('never runs opencode in the sandbox: one exec, reading files only', async () => {
      const {calls, runtime} = fakeRuntime({hostPort: 3100}, {facts: ''})
      await collectStatus(runtime)
      assert.equal(calls.exec.length, 1)
      const script = calls.exec[0].join(' ')
      assert.doesNotMatch(script, /opencode(\s|")+--version|\/opt\/opencode\/(bin|current)\/opencode\b/, script)
      assert.match(script, /\/opt\/opencode\/VERSION/)
    })

    it('does not probe a stopped container', async () => {
      const {calls, runtime} = fakeRuntime({running: false, status: 'exited'})
      const view = await collectStatus(runtime)
      assert.equal(calls.probe, 0)
      assert.equal(view.container.state, 'exited')
      assert.equal(view.container.uptimeSeconds, null)
      assert.equal(view.opencode.health, null)
      assert.equal(view.broker.health, null)
    })
  })
})

describe('restart method detection', () => {
  it('the sandbox script and the local check agree, in the same order', async () => {
    const {execFileSync} = await import('node:child_process')
    const {existsSync} = await import('node:fs')
    const {RESTART_METHOD_SCRIPT, parseRestartMethod, restartArgv, restartMethodFrom} = await import('../../src/runtime/restart.js')
    // The script on this machine (no systemd dir, no supervisor) says 'container', like the local check.
    const local = restartMethodFrom(
      (path) => existsSync(path),
      (path) => existsSync(path),
    )
    assert.equal(parseRestartMethod(execFileSync('sh', ['-c', RESTART_METHOD_SCRIPT], {encoding: 'utf8'})), local)
    assert.equal(restartMethodFrom(() => true, () => true), 'systemd')
    assert.equal(restartMethodFrom(() => false, (path) => path.endsWith('opencode-supervisorctl')), 'supervisor')
    assert.equal(parseRestartMethod('supervisor\n'), 'supervisor')
    assert.equal(parseRestartMethod('garbage'), 'container')
    assert.deepEqual(restartArgv('systemd'), ['systemctl', 'restart', 'opencode.service'])
    assert.deepEqual(restartArgv('supervisor'), ['/usr/local/bin/opencode-supervisorctl', 'restart'])
  })
})
