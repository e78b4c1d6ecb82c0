import assert from 'node:assert/strict'
import {performance} from 'node:perf_hooks'

import fc from 'fast-check'

import {UPDATE_STEPS, type StepTiming, type UpdateStep} from '../../src/runtime/update-types.js'
import {runUpdatePlan, type UpdatePlanOptions, type UpdateProgressWithSignal} from '../../src/runtime/update/plan.js'
import type {UpdateRequest} from '../../src/runtime/update-types.js'
import {type FakeBuild, FakeSandbox, SHA} from './update-fake-runtime.js'

const FAST: UpdatePlanOptions = {healthIntervalMs: 1, healthTimeoutMs: 200, healthyAnswers: 2, repairVerifyTimeoutMs: 100}
const config = {opencode_repo: 'https://example.invalid/opencode.git'}

/** The plan against the fake, with its release store faked at the ReleaseStore interface. */
function plan(sandbox: FakeSandbox, request: UpdateRequest, progress: UpdateProgressWithSignal = {}, options: UpdatePlanOptions = {}) {
  return runUpdatePlan(sandbox, config, request, progress, {...FAST, store: sandbox.store, ...options})
}

function statuses(steps: StepTiming[]): Record<string, string> {
  return Object.fromEntries(steps.map((step) => [step.step, step.status]))
}

/**
 * A sandbox killed before it verified `release`: `current` points at it and the journal names it,
 * while COMMIT still says SHA.old (1.0.0). It serves `release` unless `serving` says which runs.
 */
function unverifiedSandbox(release: string, build: FakeBuild, {serving = release}: {serving?: string} = {}): FakeSandbox {
  const sandbox = new FakeSandbox()
  sandbox.plain = undefined
  sandbox.releases = new Map([
    [SHA.old, {version: '1.0.0'}],
    [release, build],
  ])
  sandbox.current = release
  sandbox.commitFile = SHA.old
  sandbox.journal = {previous: SHA.old, previousCommit: SHA.old, release, version: build.version}
  sandbox.running = sandbox.releases.get(serving)
  return sandbox
}

describe('update plan (fake runtime)', () => {
  it('defaults to dev, builds, switches, writes COMMIT after the switch, restarts and prunes', async () => {
    const sandbox = new FakeSandbox()
    const outcome = await plan(sandbox, {}, {}, FAST)

    assert.equal(outcome.status, 'success', outcome.message)
    assert.equal(outcome.changed, true)
    assert.deepEqual(outcome.ref, {branch: 'dev', commit: SHA.dev})
    assert.equal(outcome.fromCommit, SHA.old)
    assert.equal(outcome.toCommit, SHA.dev)
    assert.equal(outcome.fromVersion, '1.0.0')
    assert.equal(outcome.toVersion, '1.1.0')
    assert.equal(outcome.restartMethod, 'supervisor')
    assert.equal(outcome.rolledBack, false)
    assert.match(outcome.message, /from 1111111 to 2222222 \(version 1\.0\.0 → 1\.1\.0\)/)

    assert.equal(sandbox.commitFile, SHA.dev)
    assert.equal(sandbox.current, SHA.dev)
    assert.equal(sandbox.running?.version, '1.1.0')
    // The image's plain layout became a release to roll back to, and is kept as "previous".
    assert.deepEqual([...sandbox.releases.keys()].sort(), [SHA.old, SHA.dev].sort())
    const order = sandbox.events
    assert.ok(order.indexOf(`build:${SHA.dev}`) < order.indexOf(`migrate:${SHA.old}`), 'migration only after a good build')
    assert.ok(order.indexOf(`journal:${SHA.dev}`) < order.indexOf(`switch:${SHA.dev}`), 'journalled before the switch')
    assert.ok(order.indexOf(`switch:${SHA.dev}`) < order.indexOf('restart:1.1.0'), 'restart after the switch')
    assert.ok(order.indexOf('restart:1.1.0') < order.indexOf(`commit:${SHA.dev}`), 'COMMIT only once the new version answered healthy')
    assert.equal(sandbox.journal, undefined)
    assert.equal(order.at(-1), 'unlock')
    assert.equal(sandbox.lock, undefined)

    assert.deepEqual(
      outcome.steps.map((step) => step.step),
      [...UPDATE_STEPS],
    )
    assert.deepEqual(statuses(outcome.steps), {
      activate: 'done',
      build: 'done',
      compare: 'done',
      fetch: 'done',
      preflight: 'done',
      prune: 'done',
      repair: 'skipped',
      resolve: 'done',
      restart: 'done',
      rollback: 'skipped',
    })
    assert.ok(outcome.durationMs !== undefined && outcome.durationMs >= 0)
    assert.ok(Date.parse(outcome.finishedAt) >= Date.parse(outcome.startedAt))
  })

  it('says "already at" and stops or restarts nothing when the target is installed', async () => {
    const sandbox = new FakeSandbox()
    sandbox.branches.dev = SHA.old
    const outcome = await plan(sandbox, {branch: 'dev'}, {}, FAST)

    assert.equal(outcome.status, 'success')
    assert.equal(outcome.changed, false)
    assert.match(outcome.message, /already at 1111111/)
    assert.equal(sandbox.restarts, 0)
    assert.ok(!sandbox.events.some((event) => /^(build|switch|commit|fetch)/.test(event)), sandbox.events.join(','))
    assert.deepEqual(statuses(outcome.steps), {
      activate: 'skipped',
      build: 'skipped',
      compare: 'done',
      fetch: 'skipped',
      preflight: 'done',
      prune: 'skipped',
      repair: 'skipped',
      resolve: 'done',
      restart: 'skipped',
      rollback: 'skipped',
    })
    assert.equal(sandbox.lock, undefined)
  })

  it('takes exactly refs/heads/<branch>, not a tag or another branch ending the same way', async () => {
    const sandbox = new FakeSandbox()
    sandbox.extraRefs = [`${SHA.bad}\trefs/tags/dev`, `${SHA.fail}\trefs/heads/feature/dev`]
    const outcome = await plan(sandbox, {branch: 'dev'}, {}, FAST)
    assert.equal(outcome.status, 'success', outcome.message)
    assert.equal(outcome.toCommit, SHA.dev)
  })

  it('fails on an unknown branch without touching anything', async () => {
    const sandbox = new FakeSandbox()
    const outcome = await plan(sandbox, {branch: 'no-such-branch'}, {}, FAST)
    assert.equal(outcome.status, 'error')
    assert.equal(outcome.error?.code, 'UNKNOWN_BRANCH')
    assert.match(outcome.message, /Branch 'no-such-branch' does not exist/)
    assert.equal(sandbox.commitFile, SHA.old)
    assert.equal(sandbox.restarts, 0)
    assert.equal(statuses(outcome.steps).resolve, 'failed')
    assert.equal(sandbox.lock, undefined)
  })

  it('resolves a short commit to its full SHA', async () => {
    const sandbox = new FakeSandbox()
    const outcome = await plan(sandbox, {commit: '3333333'}, {}, FAST)
    assert.equal(outcome.status, 'success', outcome.message)
    assert.deepEqual(outcome.ref, {commit: SHA.main})
    assert.equal(sandbox.commitFile, SHA.main)
    assert.ok(sandbox.events.includes('fetch-all'))
  })

  it('accepts upper-case hex and a full SHA without fetching history to resolve it', async () => {
    const sandbox = new FakeSandbox()
    const outcome = await plan(sandbox, {commit: SHA.main.toUpperCase()}, {}, FAST)
    assert.equal(outcome.status, 'success', outcome.message)
    assert.equal(sandbox.commitFile, SHA.main)
    assert.ok(!sandbox.events.includes('fetch-all'))
    assert.ok(sandbox.events.includes(`fetch:${SHA.main}`))
  })

  it('reports an ambiguous or unknown short commit', async () => {
    const ambiguous = await plan(new FakeSandbox(), {commit: 'abcdef1'}, {}, FAST)
    assert.equal(ambiguous.error?.code, 'AMBIGUOUS_COMMIT')
    const unknown = await plan(new FakeSandbox(), {commit: 'fedcba9'}, {}, FAST)
    assert.equal(unknown.error?.code, 'UNKNOWN_COMMIT')
    assert.match(unknown.message, /not on any branch or tag/)
  })

  it('knows a short commit of the installed version without fetching anything', async () => {
    const sandbox = new FakeSandbox()
    const outcome = await plan(sandbox, {commit: '1111111'}, {}, FAST)
    assert.equal(outcome.changed, false)
    assert.match(outcome.message, /already at 1111111/)
    assert.ok(!sandbox.execs.some((argv) => argv[0] === 'git'))
  })

  it('falls back to fetching the branch when the server refuses a fetch by SHA', async () => {
    const sandbox = new FakeSandbox()
    sandbox.rejectFetchBySha = true
    const outcome = await plan(sandbox, {branch: 'main'}, {}, FAST)
    assert.equal(outcome.status, 'success', outcome.message)
    assert.ok(sandbox.events.includes('fetch-ref:refs/heads/main'))
  })

  it('a failed build changes nothing: old version serving, COMMIT unchanged, no restart', async () => {
    const sandbox = new FakeSandbox()
    sandbox.branches.dev = SHA.fail
    const outcome = await plan(sandbox, {}, {}, FAST)
    assert.equal(outcome.status, 'error')
    assert.equal(outcome.error?.code, 'BUILD_FAILED')
    assert.equal(outcome.error?.exitCode, 8)
    assert.match(outcome.message, /BUILD_FAIL is present.*Nothing was changed; opencode still runs 1111111/)
    assert.equal(sandbox.commitFile, SHA.old)
    assert.equal(sandbox.current, undefined)
    assert.equal(sandbox.plain?.version, '1.0.0')
    assert.equal(sandbox.restarts, 0)
    assert.equal(outcome.changed, false)
    assert.equal(outcome.toCommit, SHA.old)
    assert.equal(statuses(outcome.steps).build, 'failed')
    assert.equal(statuses(outcome.steps).activate, 'skipped')
    assert.equal(sandbox.lock, undefined)
  })

  it('rolls back an unhealthy version and says so', async () => {
    const sandbox = new FakeSandbox()
    sandbox.branches.dev = SHA.bad
    const outcome = await plan(sandbox, {}, {}, FAST)
    assert.equal(outcome.status, 'error')
    assert.equal(outcome.error?.code, 'UPDATE_ROLLED_BACK')
    assert.equal(outcome.rolledBack, true)
    assert.equal(outcome.changed, false)
    assert.match(outcome.message, /Update to 4444444 failed: the new version did not answer healthy within 0\.2 s \(last answer: HTTP 503 from version 1\.3\.0\)\. Rolled back to 1111111, which is serving again\./)
    assert.equal(sandbox.current, SHA.old)
    assert.equal(sandbox.commitFile, SHA.old)
    assert.equal(sandbox.running?.version, '1.0.0')
    assert.ok(!sandbox.releases.has(SHA.bad), 'the failed release is removed')
    assert.equal(sandbox.restarts, 2)
    assert.equal(outcome.toVersion, '1.0.0')
    assert.equal(outcome.fromCommit, SHA.old)
    assert.equal(outcome.toCommit, SHA.old, 'toCommit is what is installed after the rollback')
    assert.deepEqual(outcome.ref, {branch: 'dev', commit: SHA.bad})
    const s = statuses(outcome.steps)
    assert.equal(s.restart, 'failed')
    assert.equal(s.rollback, 'done')
    assert.equal(s.prune, 'skipped')
    assert.equal(sandbox.lock, undefined)
  })

  it('says so when the rolled-back version is not healthy either', async () => {
    const sandbox = new FakeSandbox()
    sandbox.branches.dev = SHA.bad
    sandbox.healthOverride = {kind: 'refused'}
    const outcome = await plan(sandbox, {}, {}, FAST)
    assert.equal(outcome.error?.code, 'ROLLBACK_UNHEALTHY')
    assert.match(outcome.message, /Rolled back to 1111111, but it is not healthy either/)
    assert.equal(sandbox.commitFile, SHA.old)
  })

  it('container restart (no supervisor): a release that stops the container is rolled back on the stopped container, started and verified', async () => {
    const sandbox = new FakeSandbox()
    sandbox.restartMethodValue = 'container'
    sandbox.branches.dev = SHA.crash
    sandbox.logLines = ['[opencode-cloud] Starting opencode', '', 'opencode: \u001b[31mfatal\u001b[0m: boom']
    const started = performance.now()
    // A long health timeout: the wait must end when the container stops, not spin until then.
    const outcome = await plan(sandbox, {}, {}, {...FAST, healthTimeoutMs: 60_000})
    assert.ok(performance.now() - started < 5000, `the health wait spun for ${Math.round(performance.now() - started)} ms on a stopped container`)
    assert.equal(outcome.status, 'error')
    assert.equal(outcome.error?.code, 'UPDATE_ROLLED_BACK')
    assert.equal(outcome.rolledBack, true)
    assert.equal(
      outcome.message,
      'Update to 6666666 failed: the new version did not come up: the container stopped (exited) (its last log lines: "[opencode-cloud] Starting opencode" | "opencode: fatal: boom"). Rolled back to 1111111, which is serving again.',
    )
    assert.equal(sandbox.container.running, true, 'the container was not started again')
    assert.equal(sandbox.running?.version, '1.0.0')
    assert.equal(sandbox.current, SHA.old)
    assert.equal(sandbox.commitFile, SHA.old)
    assert.equal(sandbox.journal, undefined)
    assert.equal(sandbox.lock, undefined)
    assert.ok(!sandbox.releases.has(SHA.crash), 'the failed release is removed')
    assert.equal(outcome.toVersion, '1.0.0')
    assert.equal(outcome.toCommit, SHA.old)
    // The order: held, crashed, current switched back through the archive, started, verified, files rolled back, released.
    const from = sandbox.events.indexOf(`hold:update to 6666666`)
    assert.ok(from >= 0, sandbox.events.join(' '))
    assert.deepEqual(sandbox.events.slice(from).filter((event) => !event.startsWith('prune')), [
      'hold:update to 6666666',
      'restart:0.0.0-crash',
      'container-stopped',
      `archive:/opt/opencode/current->releases/${SHA.old}`,
      'start:1.0.0',
      `rollback:${SHA.old}`,
      'hold-released',
      'unlock',
    ])
    assert.equal(sandbox.holds, 0)
    const s = statuses(outcome.steps)
    assert.equal(s.restart, 'failed')
    assert.equal(s.rollback, 'done')
    assert.match(outcome.steps.find((step) => step.step === 'rollback')?.detail ?? '', /archive endpoint/)
  })

  it('container restart: when the previous release does not come up either, it says so at once (not after the timeout)', async () => {
    const sandbox = new FakeSandbox()
    sandbox.restartMethodValue = 'container'
    sandbox.branches.dev = SHA.crash
    sandbox.plain = {crashes: true, version: '1.0.0'}
    sandbox.running = {version: '1.0.0'}
    const started = performance.now()
    const outcome = await plan(sandbox, {}, {}, {...FAST, healthTimeoutMs: 60_000})
    assert.ok(performance.now() - started < 5000)
    assert.equal(outcome.error?.code, 'ROLLBACK_UNHEALTHY')
    assert.match(outcome.message, /Switched the stopped container back to 1111111 and started it, but it is not healthy either: the container stopped/)
    assert.equal(outcome.rolledBack, true)
    assert.equal(sandbox.holds, 0, 'the life cycle hold was not released')
  })

  it('container restart: a healthy new release keeps the container running, the hold is released', async () => {
    const sandbox = new FakeSandbox()
    sandbox.restartMethodValue = 'container'
    const outcome = await plan(sandbox, {}, {}, FAST)
    assert.equal(outcome.status, 'success', outcome.message)
    assert.equal(outcome.restartMethod, 'container')
    assert.equal(sandbox.container.running, true)
    assert.equal(sandbox.holds, 0)
    assert.ok(!sandbox.events.some((event) => event.startsWith('archive:')), 'wrote into the container through the archive endpoint without need')
  })

  it('waits for the new version: a healthy answer from the old one does not count', async () => {
    const sandbox = new FakeSandbox()
    // The restart "happens" but the old process keeps answering.
    sandbox.restartOpencode = async () => {
      sandbox.restarts++
      return 'supervisor'
    }

    const outcome = await plan(sandbox, {}, {}, FAST)
    assert.equal(outcome.error?.code, 'UPDATE_ROLLED_BACK')
    assert.match(outcome.message, /version 1\.0\.0 answers \(expected 1\.1\.0\)/)
  })

  it('keeps the current and the previous release and prunes the rest', async () => {
    const sandbox = new FakeSandbox()
    sandbox.plain = undefined
    sandbox.current = SHA.a
    sandbox.commitFile = SHA.a
    sandbox.releases = new Map([
      [SHA.b, {version: '0.8'}],
      [SHA.c, {version: '0.9'}],
      [SHA.a, {version: '1.0.0'}],
    ])
    sandbox.running = sandbox.releases.get(SHA.a)
    const outcome = await plan(sandbox, {branch: 'main'}, {}, FAST)
    assert.equal(outcome.status, 'success', outcome.message)
    assert.deepEqual([...sandbox.releases.keys()].sort(), [SHA.a, SHA.main].sort())
    assert.match(outcome.steps.find((step) => step.step === 'prune')?.detail ?? '', /removed/)
  })

  it('trusts the current link over COMMIT (a crash between the switch and the COMMIT write)', async () => {
    const sandbox = new FakeSandbox()
    sandbox.plain = undefined
    sandbox.current = SHA.dev
    sandbox.commitFile = SHA.old
    sandbox.releases = new Map([
      [SHA.old, {version: '1.0.0'}],
      [SHA.dev, {version: '1.1.0'}],
    ])
    const outcome = await plan(sandbox, {branch: 'dev'}, {}, FAST)
    assert.equal(outcome.changed, false)
    assert.match(outcome.message, /already at 2222222/)
  })

  it('refuses while another update holds the lock, changing nothing', async () => {
    const sandbox = new FakeSandbox()
    sandbox.lock = {ageSeconds: 3, description: 'occ pid 42 on host', token: 'other'}
    const outcome = await plan(sandbox, {}, {}, FAST)
    assert.equal(outcome.error?.code, 'UPDATE_BUSY')
    assert.equal(outcome.error?.exitCode, 9)
    assert.match(outcome.message, /Another opencode update is running \(occ pid 42 on host\)/)
    assert.equal(sandbox.lock?.token, 'other', 'the other lock is left alone')
    assert.ok(!sandbox.execs.some((argv) => argv[0] === 'git'))
  })

  it('maps a missing or stopped container to the usual errors', async () => {
    const missing = new FakeSandbox()
    missing.container = {exists: false, running: false}
    assert.equal((await plan(missing, {}, {}, FAST)).error?.code, 'CONTAINER_MISSING')
    const stopped = new FakeSandbox()
    stopped.container = {exists: true, running: false}
    const outcome = await plan(stopped, {}, {}, FAST)
    assert.equal(outcome.error?.code, 'CONTAINER_NOT_RUNNING')
    assert.deepEqual(outcome.error?.actions, ['Start it with: occ start'])
  })

  it('refuses an image without a build recipe before fetching', async () => {
    const sandbox = new FakeSandbox()
    sandbox.recipe = 'none'
    const outcome = await plan(sandbox, {}, {}, FAST)
    assert.equal(outcome.error?.code, 'UPDATE_NOT_SUPPORTED')
    assert.ok(!sandbox.execs.some((argv) => argv[0] === 'git'))
  })

  it('cancels a running build: kills it, changes nothing', async () => {
    const sandbox = new FakeSandbox()
    sandbox.builds[SHA.dev].buildMs = 5000
    const controller = new AbortController()
    const outcome = await runUpdatePlan(
      sandbox,
      config,
      {},
      {
        onStep(step) {
          if (step === 'build') setTimeout(() => controller.abort(), 20)
        },
        signal: controller.signal,
      },
      {...FAST, store: sandbox.store},
    )
    assert.equal(outcome.error?.code, 'UPDATE_CANCELLED')
    assert.ok(sandbox.events.includes('kill-build'))
    assert.equal(sandbox.commitFile, SHA.old)
    assert.equal(sandbox.restarts, 0)
    assert.equal(sandbox.lock, undefined)
  })

  it('gives up on a build that runs past its time limit', async () => {
    const sandbox = new FakeSandbox()
    sandbox.builds[SHA.dev].buildMs = 5000
    const outcome = await plan(sandbox, {}, {}, {...FAST, buildTimeoutMs: 30})
    assert.equal(outcome.error?.code, 'BUILD_FAILED')
    assert.match(outcome.message, /did not finish within/)
    assert.equal(sandbox.commitFile, SHA.old)
  })

  it('lets go of a build that survives its kill, so occ can still end', async () => {
    const sandbox = new FakeSandbox()
    sandbox.builds[SHA.dev].buildMs = 60_000
    sandbox.buildIgnoresKill = true
    const started = performance.now()
    const outcome = await plan(sandbox, {}, {}, {...FAST, buildTimeoutMs: 20})
    assert.equal(outcome.error?.code, 'BUILD_FAILED')
    assert.deepEqual(sandbox.events.filter((event) => /^(kill-build|build-exec)/.test(event)).sort(), ['build-exec-released', 'kill-build'])
    assert.ok(performance.now() - started < 5000)
  })

  it('reports each step once, in order, and streams output lines', async () => {
    const sandbox = new FakeSandbox()
    const started: UpdateStep[] = []
    const done: UpdateStep[] = []
    const lines: string[] = []
    await runUpdatePlan(
      sandbox,
      config,
      {},
      {onOutput: (line) => lines.push(line), onStep: (step) => started.push(step), onStepDone: (timing) => done.push(timing.step)},
      {...FAST, store: sandbox.store},
    )
    assert.deepEqual(started, ['preflight', 'resolve', 'compare', 'fetch', 'build', 'activate', 'restart', 'prune'])
    assert.deepEqual([...done].sort(), [...UPDATE_STEPS].sort())
    assert.ok(lines.includes('building 1.1.0'))
    assert.ok(lines.includes('git: working'))
  })

  it('cuts a build that writes without newlines into lines (64 KiB), each shown capped at 4 KiB, instead of buffering it all', async () => {
    const sandbox = new FakeSandbox()
    const chunk = 'x'.repeat(50_000)
    sandbox.builds[SHA.dev].output = Array.from({length: 8}, () => chunk)
    const lines: string[] = []
    await plan(sandbox, {}, {onOutput: (line) => lines.push(line)}, FAST)
    const xs = lines.filter((line) => line.startsWith('x'))
    assert.ok(xs.length >= 6, `expected the 400 kB to arrive as several lines, got ${xs.length}`)
    assert.ok(xs.every((line) => Buffer.byteLength(line) <= 4096), 'a line longer than 4 KiB was passed on')
    // Every byte is either shown or counted as cut.
    const total = xs.reduce((sum, line) => {
      const cut = /… \((\d+) bytes cut\)$/.exec(line)
      return sum + (cut ? line.length - cut[0].length + Number(cut[1]) : line.length)
    }, 0)
    assert.equal(total, 8 * 50_000)
  })

  it('rejects both a branch and a commit before anything runs in the sandbox', async () => {
    const sandbox = new FakeSandbox()
    const outcome = await plan(sandbox, {branch: 'dev', commit: SHA.dev}, {}, FAST)
    assert.equal(outcome.error?.code, 'USAGE')
    assert.equal(outcome.error?.exitCode, 2)
    assert.deepEqual(sandbox.execs, [])
  })

  it('rejects hostile refs before anything runs in the sandbox', async () => {
    const hostile = fc.oneof(
      fc.constantFrom('$(id)', '`id`', 'a;b', 'a b', 'a\nb', '-x', '--upload-pack=sh', '../x', 'a..b', 'x"y', "x'y", 'a|b', 'a&b', 'a>b', ''),
      fc.string({maxLength: 30}).filter((value) => /[^A-Za-z0-9._/-]/.test(value) || value.startsWith('-') || value.includes('..')),
    )
    await fc.assert(
      fc.asyncProperty(hostile, fc.boolean(), async (value, asCommit) => {
        const sandbox = new FakeSandbox()
        const outcome = await plan(sandbox, asCommit ? {commit: value} : {branch: value}, {}, FAST)
        assert.equal(outcome.status, 'error')
        assert.equal(outcome.error?.code, 'USAGE')
        assert.deepEqual(sandbox.execs, [])
      }),
      {numRuns: 150},
    )
  })

  it('rejects an opencode_repo that could be read as an option', async () => {
    const sandbox = new FakeSandbox()
    const outcome = await runUpdatePlan(sandbox, {opencode_repo: '--upload-pack=touch /tmp/x'}, {}, {}, FAST)
    assert.equal(outcome.error?.code, 'CONFIG_INVALID')
    assert.deepEqual(sandbox.execs, [])
  })
})

describe('update plan: the journal, the lock owner, SIGTERM, clocks (fake store)', () => {
  it('repairs an unverified release first: healthy from its version → installed, and says so (not "nothing to do")', async () => {
    const sandbox = unverifiedSandbox(SHA.dev, {version: '1.1.0'})
    const outcome = await plan(sandbox, {branch: 'dev'})
    assert.equal(outcome.status, 'success', outcome.message)
    assert.equal(statuses(outcome.steps).repair, 'done')
    assert.match(outcome.steps.find((step) => step.step === 'repair')?.detail ?? '', /answers healthy: it is installed now/)
    // It was unverified when the update began: the message says the repair installed it, never "nothing to do".
    assert.match(outcome.message, /Release 2222222 .*answered healthy and is installed now; it is the requested commit/)
    assert.doesNotMatch(outcome.message, /nothing to do/)
    assert.equal(outcome.changed, true)
    assert.equal(sandbox.commitFile, SHA.dev)
    assert.equal(sandbox.journal, undefined)
  })

  it('never says "nothing to do" for an unverified release that answers 503: rolls it back, then updates again', async () => {
    const sandbox = unverifiedSandbox(SHA.bad, {healthFail: true, version: '1.3.0'})
    sandbox.branches.dev = SHA.bad
    const outcome = await plan(sandbox, {})
    assert.doesNotMatch(outcome.message, /nothing to do/)
    assert.equal(statuses(outcome.steps).repair, 'done')
    assert.match(outcome.steps.find((step) => step.step === 'repair')?.detail ?? '', /Rolled back the unverified release 4444444/)
    // The update then builds 4444444 again, finds it unhealthy again, and rolls back again.
    assert.equal(outcome.error?.code, 'UPDATE_ROLLED_BACK')
    assert.equal(sandbox.current, SHA.old)
    assert.equal(sandbox.commitFile, SHA.old)
    assert.equal(sandbox.journal, undefined)
    assert.equal(sandbox.running?.version, '1.0.0')
  })

  it('the repair restarting the container (no supervisor) holds the life cycle around the restart', async () => {
    const sandbox = unverifiedSandbox(SHA.bad, {healthFail: true, version: '1.3.0'})
    sandbox.restartMethodValue = 'container'
    sandbox.branches.dev = SHA.old
    const outcome = await plan(sandbox, {})
    assert.equal(outcome.status, 'success', outcome.message)
    const from = sandbox.events.indexOf('hold:repair of the unverified release 4444444')
    assert.ok(from >= 0, sandbox.events.join(' '))
    assert.deepEqual(sandbox.events.slice(from, from + 3), ['hold:repair of the unverified release 4444444', 'restart:1.0.0', 'hold-released'])
    assert.equal(sandbox.holds, 0)
  })

  it('an unverified release whose old process still serves (killed at activate) is rolled back without a restart', async () => {
    const sandbox = unverifiedSandbox(SHA.main, {version: '1.2.0'}, {serving: SHA.old})
    const outcome = await plan(sandbox, {commit: SHA.old})
    assert.equal(outcome.status, 'success', outcome.message)
    assert.match(outcome.message, /already at 1111111/)
    assert.equal(sandbox.restarts, 0)
    assert.equal(outcome.fromCommit, SHA.old, 'the unverified commit never counted as installed')
  })

  it('takes over at once a lock whose owner is dead on this host (no 90 s wait)', async () => {
    const sandbox = new FakeSandbox()
    sandbox.lock = {ageSeconds: 1, bootId: 'boot', description: 'occ pid 999', pid: 999, pidStart: '5', token: 'deadbeef'}
    const checks = {bootId: 'boot', held: new Set<string>(), isAlive: () => false, pid: 1, pidStart: '1', startTime: () => undefined}
    const outcome = await plan(sandbox, {}, {}, {ownerChecks: checks})
    assert.equal(outcome.status, 'success', outcome.message)
    assert.ok(sandbox.events.includes('lock-takeover'))
    assert.match(outcome.steps.find((step) => step.step === 'preflight')?.detail ?? '', /took over the update lock \(its owner \(pid 999\) is gone\)/)
  })

  it('a live owner elsewhere keeps the lock: busy', async () => {
    const sandbox = new FakeSandbox()
    sandbox.lock = {ageSeconds: 1, bootId: 'other-host', description: 'occ pid 5 on other', pid: 5, pidStart: '5', token: 'feed'}
    const checks = {bootId: 'boot', held: new Set<string>(), isAlive: () => false, pid: 1, pidStart: '1', startTime: () => undefined}
    const outcome = await plan(sandbox, {}, {}, {ownerChecks: checks})
    assert.equal(outcome.error?.code, 'UPDATE_BUSY')
  })

  it('SIGTERM during the health wait stops it at once, rolls back, and says so', async () => {
    const sandbox = new FakeSandbox()
    sandbox.healthOverride = {kind: 'refused'}
    const controller = new AbortController()
    let restarted = 0
    const realRestart = sandbox.restartOpencode.bind(sandbox)
    sandbox.restartOpencode = async () => {
      restarted++
      if (restarted === 2) sandbox.healthOverride = undefined // the old version comes back
      const method = await realRestart()
      if (restarted === 1) setTimeout(() => controller.abort(new Error('SIGTERM received')), 30)
      return method
    }

    const started = performance.now()
    const outcome = await plan(sandbox, {}, {signal: controller.signal}, {healthTimeoutMs: 60_000})
    assert.ok(performance.now() - started < 5000, 'did not wait out the 60 s health timeout')
    assert.equal(outcome.error?.code, 'UPDATE_INTERRUPTED')
    assert.equal(outcome.rolledBack, true)
    assert.match(outcome.message, /occ was stopped while checking 2222222, so it rolled back to 1111111, which is serving again/)
    assert.equal(sandbox.current, SHA.old)
    assert.equal(sandbox.commitFile, SHA.old)
    assert.equal(statuses(outcome.steps).rollback, 'done')
  })

  it('a forward wall-clock jump during the health wait does not roll back a healthy update (monotonic deadline)', async () => {
    const sandbox = new FakeSandbox()
    const realDateNow = Date.now
    let probes = 0
    const realProbe = sandbox.probeHealth.bind(sandbox)
    sandbox.probeHealth = async () => {
      probes++
      // The wall clock leaps a day ahead between probes.
      if (probes === 1) Date.now = () => realDateNow() + 86_400_000
      return realProbe()
    }

    try {
      const outcome = await plan(sandbox, {}, {}, {healthTimeoutMs: 2000})
      assert.equal(outcome.status, 'success', outcome.message)
    } finally {
      Date.now = realDateNow
    }
  })
})


describe('update plan: sandbox text', () => {
  it('a build writing 4 MiB lines with escapes: output cleaned and capped line by line, the message bounded and clean', async () => {
    const sandbox = new FakeSandbox()
    const hostile = `\u001B]0;owned\u0007\u001B[2J${'x'.repeat(4 * 1024 * 1024)}\n`
    sandbox.builds[SHA.fail].output = [hostile]
    sandbox.branches.dev = SHA.fail
    const lines: string[] = []
    const outcome = await plan(sandbox, {}, {onOutput: (line) => lines.push(line)})
    assert.equal(outcome.error?.code, 'BUILD_FAILED')
    assert.ok(lines.every((line) => Buffer.byteLength(line) <= 4096 && !line.includes('\u001B')))
    assert.ok(Buffer.byteLength(outcome.message) <= 4096)
    assert.ok(!outcome.message.includes('\u001B'))
  })
})
