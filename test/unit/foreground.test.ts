import assert from 'node:assert/strict'
import {EventEmitter} from 'node:events'
import {setTimeout as delay} from 'node:timers/promises'

import {MOUNT_STATE} from '../../src/config/mounts.js'
import {runForeground, type ForegroundOptions} from '../../src/runtime/foreground.js'
import type {HostRuntime} from '../../src/runtime/host-runtime.js'
import {SwapGate, type SuccessorOutcome} from '../../src/runtime/successor.js'

type Stop = {containerId?: string; departure?: 'removed' | 'renamed'; expected: boolean; exitCode?: number; stateMount?: string} | undefined

/**
 * A host whose waitForStop the test controls. Like the real one, it also resolves (undefined)
 * when its signal aborts: the event stream is destroyed then.
 */
function fakeHost() {
  let settle!: {resolve: (stop: Stop) => void; reject: (error: Error) => void}
  let watchSignal: AbortSignal | undefined
  let watches = 0
  // The life cycle holds, as HostRuntime keeps them (an update restarting the container).
  const holds: string[] = []
  let waiters: Array<() => void> = []
  const state = {running: true, exitCode: undefined as number | undefined, id: 'old', stateMount: '/state'}
  // What the host says when asked for a successor (the default: nothing is coming).
  let successor: (departedId: string | undefined) => Promise<SuccessorOutcome> = async () => ({kind: 'none'})
  const successorCalls: Array<string | undefined> = []
  const host = {
    awaitSuccessor(departedId: string | undefined, signal: AbortSignal): Promise<SuccessorOutcome> {
      successorCalls.push(departedId)
      // Like the real one: an abort ends the wait.
      const aborted = new Promise<SuccessorOutcome>((resolve) => signal.addEventListener('abort', () => resolve({kind: 'aborted'}), {once: true}))
      return Promise.race([successor(departedId), aborted])
    },
    async containerState() {
      const mounts = [{readOnly: false, source: state.stateMount, target: MOUNT_STATE, type: 'bind'}]
      return {exists: true, exitCode: state.exitCode, id: state.id, labels: {}, mounts, name: 'c', running: state.running, status: state.running ? 'running' : 'exited'}
    },
    lifecycleFree(): Promise<void> {
      return holds.length === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))
    },
    lifecycleHolds: () => [...holds],
    waitForStop(signal: AbortSignal): Promise<Stop> {
      watchSignal = signal
      watches++
      return new Promise<Stop>((resolve, reject) => {
        settle = {reject, resolve}
        signal.addEventListener('abort', () => resolve(undefined), {once: true})
      })
    },
  }
  return {
    hold(why: string) {
      holds.push(why)
      return () => {
        holds.splice(holds.indexOf(why), 1)
        if (holds.length === 0) {
          for (const wake of waiters) wake()
          waiters = []
        }
      }
    },
    host: host as unknown as HostRuntime,
    state,
    successorCalls,
    set successor(answer: (departedId: string | undefined) => Promise<SuccessorOutcome>) {
      successor = answer
    },
    get watches() {
      return watches
    },
    get settle() {
      return settle
    },
    get watchSignal() {
      return watchSignal
    },
  }
}

/** Hooks that run until their signal aborts, then take `finishMs` to wind down. */
function slowHooks(finishMs: number) {
  const state = {abortedWith: undefined as unknown, finished: false, signal: undefined as AbortSignal | undefined, started: false}
  const runHooks = async (signal: AbortSignal): Promise<void> => {
    state.started = true
    state.signal = signal
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), {once: true}))
    state.abortedWith = signal.reason
    await delay(finishMs)
    state.finished = true
  }

  return {runHooks, state}
}

function setup(finishMs = 30) {
  const emitter = new EventEmitter()
  const logs: string[] = []
  const fake = fakeHost()
  const hooks = slowHooks(finishMs)
  const options: ForegroundOptions = {
    host: fake.host,
    log: (message) => logs.push(message),
    processLike: emitter as unknown as ForegroundOptions['processLike'],
    runHooks: hooks.runHooks,
  }
  return {emitter, fake, hooks, logs, options}
}

function assertNoListenersLeft(emitter: EventEmitter): void {
  assert.equal(emitter.listenerCount('SIGINT'), 0, 'SIGINT listener left behind')
  assert.equal(emitter.listenerCount('SIGTERM'), 0, 'SIGTERM listener left behind')
}

describe('runForeground (occ start --no-daemon)', () => {
  it('a stop through the API (occ stop) ends it with exit 0, after the hooks finished', async () => {
    const {emitter, fake, hooks, logs, options} = setup()
    const running = runForeground(options)
    await delay(10)
    assert.equal(hooks.state.started, true)
    assert.equal(emitter.listenerCount('SIGTERM'), 1)
    fake.settle.resolve({exitCode: 0, expected: true})
    const result = await running
    assert.deepEqual(result, {containerExitCode: 0, end: 'container-stopped', exitCode: 0})
    assert.equal(hooks.state.finished, true, 'returned before the hooks finished')
    assert.equal(hooks.state.signal?.aborted, true)
    assert.ok(logs.some((line) => line.includes('stopped')), logs.join('\n'))
    assertNoListenersLeft(emitter)
  })

  it('an unexpected container death ends it with exit 1 and the container exit code', async () => {
    const {emitter, fake, hooks, logs, options} = setup()
    const running = runForeground(options)
    await delay(5)
    fake.settle.resolve({exitCode: 137, expected: false})
    const result = await running
    assert.deepEqual(result, {containerExitCode: 137, end: 'container-died', exitCode: 1})
    assert.equal(hooks.state.finished, true)
    assert.ok(logs.some((line) => line.includes('137')), logs.join('\n'))
    assertNoListenersLeft(emitter)
  })

  it('losing the engine (the event stream ends) ends it with exit 1', async () => {
    const {emitter, fake, hooks, options} = setup()
    const running = runForeground(options)
    await delay(5)
    fake.settle.resolve(undefined)
    const result = await running
    assert.equal(result.end, 'engine-lost')
    assert.equal(result.exitCode, 1)
    assert.equal(hooks.state.finished, true)
    assertNoListenersLeft(emitter)
  })

  it('a failing watch counts as a lost engine (exit 1), and is logged', async () => {
    const {emitter, fake, logs, options} = setup()
    const running = runForeground(options)
    await delay(5)
    fake.settle.reject(new Error('socket hang up'))
    const result = await running
    assert.equal(result.end, 'engine-lost')
    assert.equal(result.exitCode, 1)
    assert.ok(logs.some((line) => line.includes('socket hang up')), logs.join('\n'))
    assertNoListenersLeft(emitter)
  })

  it('a stop during a planned restart (an update of this process) is not the end: watched again once the container runs', async () => {
    const {emitter, fake, hooks, logs, options} = setup()
    const running = runForeground(options)
    await delay(5)
    const release = fake.hold('update to 6666666')
    // The new release crashed: the container died while the update held the life cycle.
    fake.state.running = false
    fake.settle.resolve({exitCode: 1, expected: false})
    await delay(20)
    assert.equal(hooks.state.signal?.aborted, false, 'the hooks were stopped during the planned restart')
    assert.ok(logs.some((line) => line.includes('planned restart (update to 6666666)')), logs.join('\n'))
    // The update rolled back and started the container again, then let go.
    fake.state.running = true
    release()
    await delay(20)
    assert.equal(fake.watches, 2, 'the container is not watched again')
    assert.equal(hooks.state.signal?.aborted, false)
    // A real death afterwards still ends it.
    fake.state.running = false
    fake.settle.resolve({exitCode: 137, expected: false})
    const result = await running
    assert.deepEqual(result, {containerExitCode: 137, end: 'container-died', exitCode: 1})
    assertNoListenersLeft(emitter)
  })

  it('a container still stopped when the planned restart ends is the end (exit 1, its exit code)', async () => {
    const {fake, options} = setup()
    const running = runForeground(options)
    await delay(5)
    const release = fake.hold('update')
    fake.state.running = false
    fake.state.exitCode = 1
    fake.settle.resolve({exitCode: 1, expected: false})
    await delay(20)
    release()
    const result = await running
    assert.deepEqual(result, {containerExitCode: 1, end: 'container-died', exitCode: 1})
    assert.equal(fake.watches, 1)
  })

  describe('a container replaced under its name (occ start --recreate, occ update container)', () => {
    /** A successor answer the test settles, and a gate the test can watch. */
    function replaced() {
      const ctx = setup()
      const gate = new SwapGate()
      let answer!: (outcome: SuccessorOutcome) => void
      ctx.fake.successor = () => new Promise<SuccessorOutcome>((resolve) => (answer = resolve))
      const running = runForeground({...ctx.options, gate})
      return {...ctx, answer: (outcome: SuccessorOutcome) => answer(outcome), gate, running}
    }

    it('is followed: the gate closes during the swap (work waits at it), the new container is watched, the hooks keep running', async () => {
      const {answer, emitter, fake, gate, hooks, logs, running} = replaced()
      await delay(5)
      fake.settle.resolve({containerId: 'old', departure: 'removed', expected: true, stateMount: '/state'})
      await delay(10)
      assert.deepEqual(fake.successorCalls, ['old'])
      assert.equal(gate.isClosed, true, 'the gate is open while the container is being replaced')
      let passed = false
      const waiting = gate.pass().then(() => (passed = true))
      await delay(10)
      assert.equal(passed, false, 'work passed the gate during the swap')
      fake.state.id = 'new'
      answer({containerId: 'new', kind: 'attach'})
      await waiting
      assert.equal(gate.isClosed, false)
      await delay(10)
      assert.equal(fake.watches, 2, 'the new container is not watched')
      assert.equal(hooks.state.signal?.aborted, false, 'the hooks were stopped by a recreate')
      assert.ok(logs.some((line) => line.includes('following the new one (new)')), logs.join('\n'))
      // A stop of the new one, with nothing coming after it, ends it as before.
      fake.successor = async () => ({kind: 'none'})
      fake.settle.resolve({containerId: 'new', expected: true})
      assert.deepEqual(await running, {containerExitCode: undefined, end: 'container-stopped', exitCode: 0})
      assertNoListenersLeft(emitter)
    })

    it('a removal with no successor (occ stop --remove, docker rm -f) ends it as before: exit 0, "removed"', async () => {
      const {fake, logs, options} = setup()
      const running = runForeground(options)
      await delay(5)
      fake.settle.resolve({containerId: 'old', departure: 'removed', expected: true})
      assert.deepEqual(await running, {containerExitCode: undefined, end: 'container-stopped', exitCode: 0})
      assert.deepEqual(fake.successorCalls, ['old'])
      assert.ok(logs.includes('The container was removed.'), logs.join('\n'))
    })

    it('a recreate that gives up ends it with exit 1 (the service manager starts occ again)', async () => {
      const {answer, fake, logs, running} = replaced()
      await delay(5)
      fake.settle.resolve({containerId: 'old', departure: 'renamed', expected: true})
      await delay(5)
      answer({kind: 'give-up', why: 'the recreate ended without a running container'})
      assert.deepEqual(await running, {containerExitCode: undefined, end: 'recreate-failed', exitCode: 1})
      assert.ok(logs.some((line) => line.includes('ended without a running container')), logs.join('\n'))
    })

    it('a successor whose state mount is elsewhere ends it with exit 1 (the listener must start again on the new directory)', async () => {
      const {answer, fake, gate, logs, running} = replaced()
      await delay(5)
      fake.settle.resolve({containerId: 'old', departure: 'removed', expected: true, stateMount: '/state'})
      await delay(5)
      fake.state.id = 'new'
      fake.state.stateMount = '/elsewhere'
      answer({containerId: 'new', kind: 'attach'})
      assert.deepEqual(await running, {containerExitCode: undefined, end: 'state-mount-changed', exitCode: 1})
      assert.equal(gate.isClosed, true, 'work was let through to a container the listener does not serve')
      assert.ok(logs.some((line) => line.includes('/elsewhere')), logs.join('\n'))
    })

    it('SIGTERM during the swap ends it with exit 0; work waiting at the gate is rejected, not left hanging', async () => {
      const {emitter, fake, gate, running} = replaced()
      await delay(5)
      fake.settle.resolve({containerId: 'old', departure: 'removed', expected: true})
      await delay(5)
      const controller = new AbortController()
      const waiting = gate.pass(controller.signal)
      emitter.emit('SIGTERM', 'SIGTERM')
      controller.abort(new Error('stopping'))
      await assert.rejects(waiting, /stopping/)
      // The successor wait sees the abort (the real one polls with the signal).
      assert.equal((await running).end, 'signal')
    })
  })

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} ends it with exit 0: the hooks see the abort and are awaited, the watch is released`, async () => {
      const {emitter, fake, hooks, logs, options} = setup(80)
      const running = runForeground(options)
      await delay(10)
      const sent = Date.now()
      emitter.emit(signal, signal)
      const result = await running
      assert.deepEqual(result, {containerExitCode: undefined, end: 'signal', exitCode: 0})
      assert.equal(hooks.state.finished, true, 'returned before the hooks finished')
      assert.ok(Date.now() - sent >= 70, 'did not wait for the hooks to wind down')
      assert.ok(hooks.state.abortedWith instanceof Error)
      assert.equal(fake.watchSignal?.aborted, true, 'the container watch was not released')
      assert.ok(logs.some((line) => line.includes(signal)), logs.join('\n'))
      assertNoListenersLeft(emitter)
    })
  }

  it('a second signal while the hooks wind down exits at once (130)', async () => {
    const {emitter, options} = setup(200)
    const exits: Array<number | undefined> = []
    Object.assign(emitter, {exit: (code?: number) => exits.push(code)})
    const running = runForeground(options)
    await delay(5)
    emitter.emit('SIGTERM', 'SIGTERM')
    await delay(5)
    emitter.emit('SIGINT', 'SIGINT')
    assert.deepEqual(exits, [130])
    await running
  })

  it('hooks that return at once do not end it: it still waits for the container or a signal', async () => {
    const {emitter, fake, options} = setup()
    let settled = false
    const running = runForeground({...options, runHooks: async () => {}}).then((result) => {
      settled = true
      return result
    })
    await delay(30)
    assert.equal(settled, false, 'ended although nothing happened')
    fake.settle.resolve({exitCode: 0, expected: true})
    assert.equal((await running).exitCode, 0)
    assertNoListenersLeft(emitter)
  })

  it('only the first ending counts: a signal after the container stopped does not change the result', async () => {
    const {emitter, fake, options} = setup(50)
    const running = runForeground(options)
    await delay(5)
    fake.settle.resolve({exitCode: 1, expected: false})
    await delay(5)
    emitter.emit('SIGTERM', 'SIGTERM')
    const result = await running
    assert.equal(result.end, 'container-died')
    assert.equal(result.exitCode, 1)
  })
})

describe('serveInForeground (service mode)', () => {
  it('a foreground hook that failed ends the loop with exit 1 (so the service manager restarts occ)', async () => {
    const {serveInForeground} = await import('../../src/runtime/foreground.js')
    const fake = fakeHost()
    const logs: string[] = []
    const result = await serveInForeground({
      config: {} as never,
      async fireHooks() {
        return {failures: [{error: new Error('listener crashed'), plugin: {name: 'some-plugin'} as never}], successes: []}
      },
      host: fake.host,
      log: (message) => logs.push(message),
      paths: {} as never,
      version: '0.0.0',
    })
    assert.equal(result.end, 'hook-failed')
    assert.equal(result.exitCode, 1)
    assert.ok(logs.some((line) => line.includes('some-plugin: listener crashed')), logs.join('\n'))
  })

  it('gives the hooks the runtime, config, a live signal and the update plan', async () => {
    const {serveInForeground} = await import('../../src/runtime/foreground.js')
    const fake = fakeHost()
    let seen: {signalAborted: boolean; hasUpdate: boolean; version: string} | undefined
    const pending = serveInForeground({
      config: {opencode_repo: 'x'} as never,
      async fireHooks(context) {
        seen = {hasUpdate: typeof context.updateOpencode === 'function', signalAborted: context.signal.aborted, version: context.version}
        await new Promise<void>((resolve) => context.signal.addEventListener('abort', () => resolve(), {once: true}))
        return {failures: [], successes: []}
      },
      host: fake.host,
      log: () => {},
      paths: {} as never,
      version: '1.2.3',
    })
    await delay(20)
    fake.settle.resolve({expected: true, exitCode: 0})
    const result = await pending
    assert.deepEqual(seen, {hasUpdate: true, signalAborted: false, version: '1.2.3'})
    assert.equal(result.exitCode, 0)
  })
})

describe('serveInForeground: fail() from one hook', () => {
  it('ends service mode at once with exit 1 while another hook still waits for the signal', async () => {
    const {serveInForeground} = await import('../../src/runtime/foreground.js')
    const fake = fakeHost()
    let otherSawAbort = false
    const result = await serveInForeground({
      config: {} as never,
      async fireHooks(context) {
        // Like oclif: every plugin's hook in parallel, settled together.
        const listener = (async () => {
          await delay(10)
          context.fail(new Error('commands dir was replaced'))
          throw new Error('commands dir was replaced')
        })().catch((error: Error) => ({error, plugin: {name: 'listener'}}))
        const patient = new Promise<void>((resolve) =>
          context.signal.addEventListener(
            'abort',
            () => {
              otherSawAbort = true
              resolve()
            },
            {once: true},
          ),
        )
        const [failure] = await Promise.all([listener, patient])
        return {failures: failure ? [failure as never] : [], successes: []}
      },
      host: fake.host,
      log: () => {},
      paths: {} as never,
      version: '0.0.0',
    })
    assert.equal(otherSawAbort, true)
    assert.deepEqual([result.end, result.exitCode], ['hook-failed', 1])
  })
})
