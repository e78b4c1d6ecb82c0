import assert from 'node:assert/strict'

import {resourceNames} from '../../src/config/instance.js'
import {ExitCode, SandboxStoppedError, TimeoutError} from '../../src/errors.js'
import {waitUntilReady, type ReadinessOptions} from '../../src/runtime/readiness.js'
import type {ContainerState, ExecResult, HealthProbe, Runtime} from '../../src/runtime/runtime.js'
import {UNUSED_CONTAINER_CONTROL} from './runtime-stubs.js'

const HEALTHY: HealthProbe = {body: {healthy: true, version: '1.0.0'}, kind: 'http', status: 200}
const BROKER_UP = 'version=1.0.0\nbroker_process=1\nbroker_socket=1\n'
const BROKER_DOWN = 'version=1.0.0\nbroker_process=1\nbroker_socket=0\n'

interface Script {
  /** Container state per containerState() call (the last one repeats). */
  states?: Array<Partial<ContainerState>>
  /** Health probe answers per call (the last one repeats). */
  probes?: HealthProbe[]
  /** Facts-script stdout per exec call (the last one repeats); an Error is thrown. */
  facts?: Array<Error | string>
}

/** A fake at the Runtime interface, answering from a script and counting calls. */
function fakeRuntime(script: Script) {
  const calls = {exec: 0, probe: 0, state: 0}
  const pick = <T>(list: T[] | undefined, index: number, fallback: T): T => (list && list.length > 0 ? list[Math.min(index, list.length - 1)] : fallback)
  const runtime: Runtime = {
    ...UNUSED_CONTAINER_CONTROL,
    async containerState(): Promise<ContainerState> {
      const partial = pick(script.states, calls.state++, {})
      return {exists: true, labels: {}, mounts: [], name: 'opencode-cloud-sandbox-t', running: true, status: 'running', ...partial}
    },
    async exec(): Promise<ExecResult> {
      const answer = pick(script.facts, calls.exec++, BROKER_UP)
      if (answer instanceof Error) throw answer
      return {exitCode: 0, stderr: '', stdout: answer}
    },
    kind: 'host',
    logs() {
      throw new Error('not used')
    },
    names: resourceNames('t'),
    async opencodeUrl() {
      return 'http://localhost:3100'
    },
    async probeHealth(): Promise<HealthProbe> {
      return pick(script.probes, calls.probe++, HEALTHY)
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

const fast: ReadinessOptions = {brokerTimeoutMs: 2000, healthTimeoutMs: 2000, intervalMs: 5}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }

  assert.fail('expected a rejection')
}

describe('waitUntilReady', () => {
  it('is ready at once when opencode is healthy and the broker is up', async () => {
    const {calls, runtime} = fakeRuntime({})
    const ready = await waitUntilReady(runtime, fast)
    assert.equal(ready.opencode.state, 'healthy')
    assert.equal(ready.opencode.version, '1.0.0')
    assert.equal(ready.broker.state, 'healthy')
    assert.equal(calls.probe, 1)
    assert.equal(calls.exec, 1)
  })

  it('waits while opencode is starting, then for the broker, reporting progress once per change', async () => {
    const {calls, runtime} = fakeRuntime({
      facts: [new Error('exec: not yet'), BROKER_DOWN, BROKER_DOWN, BROKER_UP],
      probes: [{kind: 'refused'}, {kind: 'refused'}, {kind: 'timeout'}, {body: {healthy: false}, kind: 'http', status: 503}, HEALTHY],
    })
    const progress: string[] = []
    const ready = await waitUntilReady(runtime, {...fast, onProgress: (message) => progress.push(message)})
    assert.equal(ready.opencode.state, 'healthy')
    assert.equal(ready.broker.state, 'healthy')
    assert.equal(calls.probe, 5)
    assert.equal(calls.exec, 4)
    assert.deepEqual(progress, ['opencode: Starting', 'opencode: Unhealthy (HTTP 503)'])
    assert.ok(ready.elapsedMs >= 0)
  })

  it('times out when opencode never becomes healthy, with the recent logs in the message', async () => {
    const {runtime} = fakeRuntime({probes: [{body: {healthy: false}, kind: 'http', status: 503}]})
    const started = Date.now()
    const error = await rejection(
      waitUntilReady(runtime, {
        ...fast,
        healthTimeoutMs: 150,
        recentLogs: async () => ['opencode: GET /global/health -> 503', 'opencode: database locked'],
      }),
    )
    assert.ok(Date.now() - started < 1500, 'took far longer than the timeout')
    assert.ok(error instanceof TimeoutError, String(error))
    assert.equal(error.exitCode, ExitCode.timeout)
    assert.match(error.message, /did not become healthy/)
    assert.match(error.message, /Unhealthy \(HTTP 503\)/)
    assert.match(error.message, /Last container log lines:/)
    assert.match(error.message, /opencode: database locked/)
    assert.ok(error.actions.some((action) => action.includes('occ logs')), error.actions.join('\n'))
  })

  it('still reports the timeout when reading the logs fails', async () => {
    const {runtime} = fakeRuntime({probes: [{kind: 'refused'}]})
    const error = await rejection(
      waitUntilReady(runtime, {
        ...fast,
        healthTimeoutMs: 50,
        recentLogs: async () => {
          throw new Error('logs unavailable')
        },
      }),
    )
    assert.ok(error instanceof TimeoutError)
    assert.match(error.message, /did not become healthy/)
    assert.doesNotMatch(error.message, /logs unavailable/)
  })

  it('times out when the broker never becomes ready, pointing at its logs', async () => {
    const {runtime} = fakeRuntime({facts: [BROKER_DOWN]})
    const error = await rejection(waitUntilReady(runtime, {...fast, brokerTimeoutMs: 100, recentLogs: async () => ['opencode-broker: bind failed']}))
    assert.ok(error instanceof TimeoutError)
    assert.match(error.message, /broker did not become ready/)
    assert.match(error.message, /Degraded/)
    assert.match(error.message, /opencode-broker: bind failed/)
    assert.ok(error.actions.some((action) => action.includes('occ logs --broker')), error.actions.join('\n'))
  })

  it('fails fast when the container stops while opencode starts', async () => {
    const {calls, runtime} = fakeRuntime({
      probes: [{kind: 'refused'}],
      states: [{}, {}, {exitCode: 3, running: false, status: 'exited'}],
    })
    const started = Date.now()
    const error = await rejection(waitUntilReady(runtime, {...fast, healthTimeoutMs: 30_000, recentLogs: async () => ['opencode: fatal: no config']}))
    assert.ok(Date.now() - started < 1000, 'waited for the timeout although the container had stopped')
    assert.ok(error instanceof SandboxStoppedError, `a dying container is not a timeout: ${String(error)}`)
    assert.equal(error.code, 'SANDBOX_STOPPED')
    assert.equal(error.exitCode, ExitCode.containerMissing)
    assert.match(error.message, /stopped while starting/)
    assert.match(error.message, /exit 3/)
    assert.match(error.message, /opencode: fatal: no config/)
    assert.equal(calls.state, 3)
  })

  it('fails fast when the container stops while waiting for the broker', async () => {
    const {runtime} = fakeRuntime({
      facts: [BROKER_DOWN, new Error('container is not running')],
      states: [{}, {exitCode: 137, running: false, status: 'exited'}],
    })
    const started = Date.now()
    const error = await rejection(waitUntilReady(runtime, {...fast, brokerTimeoutMs: 2000}))
    assert.ok(Date.now() - started < 1000, `waited ${Date.now() - started} ms for the broker of a stopped container`)
    assert.match(error.message, /stopped/)
  })

  describe('deadlines on the monotonic clock', () => {
    const realNow = Date.now
    afterEach(() => {
      Date.now = realNow
    })

    /** Date.now leaps by `jumpMs` as soon as the wait has begun (after its first health probe). */
    function leapingRuntime(jumpMs: number) {
      const {calls, runtime} = fakeRuntime({probes: [{kind: 'refused'}]})
      const probe = runtime.probeHealth.bind(runtime)
      runtime.probeHealth = async (...args) => {
        Date.now = () => realNow() + jumpMs
        return probe(...args)
      }

      return {calls, runtime}
    }

    for (const [name, jumpMs] of [['an hour ahead', 3_600_000], ['an hour back', -3_600_000]] as const) {
      it(`the wall clock leaping ${name} neither ends nor stretches the health wait`, async () => {
        const {runtime} = leapingRuntime(jumpMs)
        const started = performance.now()
        // Aborted at the end, so a wait that never times out (the bug) does not outlive the test.
        const controller = new AbortController()
        const wait = rejection(waitUntilReady(runtime, {...fast, healthTimeoutMs: 400, signal: controller.signal}))
        const outcome = await Promise.race([wait, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 5000))])
        controller.abort()
        assert.notEqual(outcome, 'hung', 'the wait did not end at its deadline')
        const took = performance.now() - started
        assert.ok(outcome instanceof TimeoutError, String(outcome))
        assert.ok(took >= 350 && took < 3000, `timed out after ${Math.round(took)} ms, not ~400 ms`)
      })
    }

    it('elapsedMs is monotonic too (the wall clock leaping back during the wait)', async () => {
      const {runtime: healthy} = fakeRuntime({})
      const probe = healthy.probeHealth.bind(healthy)
      healthy.probeHealth = async (...args) => {
        Date.now = () => realNow() - 3_600_000
        return probe(...args)
      }

      const ready = await waitUntilReady(healthy, fast)
      assert.ok(ready.elapsedMs >= 0 && ready.elapsedMs < 1000, `elapsedMs ${ready.elapsedMs}`)
    })
  })

  it('stops waiting when its signal aborts', async () => {
    const {runtime} = fakeRuntime({probes: [{kind: 'refused'}]})
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('user pressed Ctrl+C')), 30)
    const started = Date.now()
    const error = await rejection(waitUntilReady(runtime, {...fast, healthTimeoutMs: 30_000, signal: controller.signal}))
    assert.ok(Date.now() - started < 1000)
    assert.ok(error.name === 'AbortError' || error === controller.signal.reason, String(error))
  })
})
