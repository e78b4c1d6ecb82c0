/**
 * release-store.sh under plain sh (dash) against a temp root: no Docker. Every subcommand, the
 * journal, lock ownership, prune, and every crash point (the script killed between two steps,
 * then inspect + repair must lead to a healthy, consistent state).
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import type {ExecOptions, ExecResult, HealthProbe, RestartMethod, Runtime} from '../../src/runtime/runtime.js'
import {lockOwner, lockOwnerGone, type OwnerChecks} from '../../src/runtime/update/lock-owner.js'
import {ScriptReleaseStore, type StoreRunner} from '../../src/runtime/update/release-store.js'
import {repairUnderLock, takeUpdateLock} from '../../src/runtime/update/repair.js'

const OLD = '1'.repeat(40)
const NEW = '2'.repeat(40)
const THIRD = '3'.repeat(40)
const TOKEN = 'ab'.repeat(12)

/** Runs the store's argv locally: `sh` is dash; env and stdin as the exec would pass them. */
function localRunner(extraEnv: () => Record<string, string> = () => ({})): StoreRunner {
  return (argv: string[], options: ExecOptions): Promise<ExecResult> =>
    new Promise((resolve, reject) => {
      const [command, ...args] = argv.map((arg, index) => (arg === 'sh' && (index === 0 || argv[index - 1] === '-w') ? 'dash' : arg))
      const child = spawn(command, args, {env: {...process.env, ...options.env, ...extraEnv()}, stdio: ['pipe', 'pipe', 'pipe']})
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString()
        options.onOutput?.(chunk.toString(), 'stdout')
      })
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      child.on('error', reject)
      child.on('close', (code, signal) => resolve({exitCode: code ?? (signal === 'SIGKILL' ? 137 : -1), stderr, stdout}))
      child.stdin.end(options.stdin ?? '')
    })
}

interface World {
  root: string
  recipe: string
  store: ScriptReleaseStore
  crashAt: string | undefined
}

async function world(): Promise<World> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-store-'))
  // The image's plain layout.
  await fs.mkdir(path.join(root, 'bin'))
  await fs.mkdir(path.join(root, 'ui'))
  await fs.writeFile(path.join(root, 'bin/opencode'), '#!/bin/sh\necho 1.0.0\n', {mode: 0o755})
  await fs.writeFile(path.join(root, 'ui/index.html'), 'old ui\n')
  await fs.writeFile(path.join(root, 'VERSION'), '1.0.0\n')
  await fs.writeFile(path.join(root, 'COMMIT'), `${OLD}\n`)
  const recipe = path.join(root, '..', `${path.basename(root)}-recipe`)
  await fs.writeFile(recipe, '#!/bin/sh\nexit 0\n', {mode: 0o755})
  const w: World = {crashAt: undefined, recipe, root, store: undefined as unknown as ScriptReleaseStore}
  w.store = new ScriptReleaseStore(
    localRunner((): Record<string, string> => (w.crashAt ? {OCC_STORE_CRASH_AT: w.crashAt} : {})),
    {recipePath: recipe, root, user: 'nobody-here'},
  )
  return w
}

/** What a build leaves: a release candidate in .staging/<token>/release. */
async function fakeBuild(w: World, token: string, version: string, options: {healthFail?: boolean} = {}): Promise<void> {
  const release = path.join(w.root, '.staging', token, 'release')
  await fs.mkdir(path.join(release, 'bin'), {recursive: true})
  await fs.mkdir(path.join(release, 'ui'), {recursive: true})
  await fs.writeFile(path.join(release, 'bin/opencode'), `#!/bin/sh\necho ${version}\n`, {mode: 0o755})
  await fs.writeFile(path.join(release, 'ui/index.html'), `ui ${version}\n`)
  await fs.writeFile(path.join(release, 'VERSION'), `${version}\n`)
  if (options.healthFail) await fs.writeFile(path.join(release, 'HEALTH_FAIL'), '')
}

const me = (token = TOKEN) => lockOwner(token, 'test owner')

async function waitFile(file: string, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs
  while (!(await fs.access(file).then(() => true, () => false))) {
    if (performance.now() > end) throw new Error(`no ${file} within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function read(file: string): Promise<string | undefined> {
  return fs.readFile(file, 'utf8').then((text) => text.trim(), () => undefined)
}

/**
 * A sandbox seen from outside: opencode "runs" the release that current pointed at when it was
 * last restarted, and answers 503 when that release has HEALTH_FAIL.
 */
class FakeOpencode {
  running: {version: string; healthFail: boolean} | undefined
  restarts = 0
  private readonly root: string
  constructor(root: string) {
    this.root = root
  }

  async start(): Promise<void> {
    const home = await fs.realpath(path.join(this.root, 'bin')).then((bin) => path.dirname(bin))
    this.running = {
      healthFail: await fs.access(path.join(home, 'HEALTH_FAIL')).then(() => true, () => false),
      version: (await read(path.join(home, 'VERSION'))) ?? '?',
    }
  }

  runtime(): Runtime {
    return {
      // The supervisor restarts opencode in a container that keeps running.
      containerState: async () => ({exists: true, labels: {}, mounts: [], name: 'dash', running: true, status: 'running'}),
      holdLifecycle: () => () => {},
      probeHealth: async (): Promise<HealthProbe> => {
        if (!this.running) return {kind: 'refused'}
        return {body: {healthy: !this.running.healthFail, version: this.running.version}, kind: 'http', status: this.running.healthFail ? 503 : 200}
      },
      restartOpencode: async (): Promise<RestartMethod> => {
        this.restarts++
        await this.start()
        return 'supervisor'
      },
    } as unknown as Runtime
  }
}

/** The invariants after any repair: no journal, current → a release, COMMIT = current, links resolve, no temp files. */
async function assertConsistent(w: World, expected: {release: string | undefined; version: string}): Promise<void> {
  const state = await w.store.inspect()
  assert.equal(state.journal, undefined, 'no journal left')
  assert.equal(state.currentRelease, expected.release)
  assert.equal(state.recordedCommit, expected.release ?? OLD, 'COMMIT names what current runs')
  assert.equal(state.version, expected.version)
  assert.equal(await read(path.join(w.root, 'ui/index.html')), expected.version === '1.0.0' ? 'old ui' : `ui ${expected.version}`)
  const leftovers = (await fs.readdir(w.root)).filter((name) => /\.tmp$|^\.old\.|^\.link/.test(name))
  assert.deepEqual(leftovers, [])
}

function dashAvailable(): void {
  const probe = spawnSync('dash', ['-c', 'exit 0'])
  assert.equal(probe.status, 0, 'dash must be installed (Debian: the default /bin/sh)')
}

describe('release-store.sh under dash (no Docker)', function () {
  this.timeout(60_000)
  let w: World

  before(dashAvailable)
  beforeEach(async () => {
    w = await world()
  })
  afterEach(async () => {
    await fs.rm(w.root, {force: true, recursive: true})
    await fs.rm(w.recipe, {force: true})
  })

  it('inspect: the plain layout, the recipe, the version from VERSION; no journal, no lock', async () => {
    const state = await w.store.inspect()
    assert.equal(state.present, true)
    assert.equal(state.recordedCommit, OLD)
    assert.equal(state.activeCommit, OLD)
    assert.equal(state.currentRelease, undefined)
    assert.equal(state.recipe, 'image')
    assert.equal(state.version, '1.0.0')
    assert.equal(state.journal, undefined)
    assert.equal(state.lock, undefined)
    assert.equal(state.root, process.getuid?.() === 0)
  })

  it('a whole update: lock, stage, built, activate (journal, COMMIT untouched), verify (COMMIT), prune, unlock', async () => {
    const lock = await w.store.lock(me(), 90)
    assert.equal(lock.kind, 'taken')
    const staging = await w.store.stage(TOKEN, undefined, false)
    assert.equal(staging, path.join(w.root, '.staging', TOKEN))
    await fakeBuild(w, TOKEN, '1.1.0', {healthFail: false})
    assert.deepEqual(await w.store.built(TOKEN, 'image'), {version: '1.1.0'})
    const activated = await w.store.activate(TOKEN, NEW, OLD, '1.1.0')
    assert.deepEqual(activated, {previous: OLD, previousCommit: OLD})

    const switched = await w.store.inspect()
    assert.equal(switched.currentRelease, NEW)
    assert.equal(switched.recordedCommit, OLD, 'COMMIT is written only after verification')
    assert.deepEqual(switched.journal && {...switched.journal, since: undefined}, {previous: OLD, previousCommit: OLD, release: NEW, since: undefined, version: '1.1.0'})
    assert.equal(await read(path.join(w.root, 'ui/index.html')), 'ui 1.1.0', 'top-level entries follow current')
    assert.equal(await fs.readlink(path.join(w.root, 'bin')), 'current/bin')

    assert.deepEqual(await w.store.verify(), {commit: NEW})
    await assertConsistent(w, {release: NEW, version: '1.1.0'})
    assert.deepEqual(await w.store.prune([NEW, OLD]), [])
    await w.store.unlock(TOKEN)
    assert.equal((await w.store.inspect()).lock, undefined)
    await assert.rejects(fs.access(staging))
  })

  it('OCC_STORE_PAUSE_AT (from occ\'s environment) holds the script at that point until its pid file is removed; unset, nothing waits', async () => {
    await w.store.lock(me(), 90)
    await w.store.stage(TOKEN, undefined, false)
    await fakeBuild(w, TOKEN, '1.1.0')
    const marker = path.join(w.root, '.paused-journaled')
    process.env.OCC_STORE_PAUSE_AT = 'journaled'
    let activation: Promise<unknown>
    try {
      activation = w.store.activate(TOKEN, NEW, OLD, '1.1.0')
      await waitFile(marker, 10_000)
    } finally {
      delete process.env.OCC_STORE_PAUSE_AT
    }

    assert.match((await read(marker)) ?? '', /^\d+$/, 'the paused script names its pid')
    const held = await w.store.inspect()
    assert.equal(held.journal?.release, NEW, 'held right after the journal was written')
    assert.equal(held.currentRelease, OLD, 'and before the switch')
    await fs.rm(marker)
    await activation
    assert.equal((await w.store.inspect()).currentRelease, NEW)
    // A name that is not a point, or odd text, pauses nowhere.
    process.env.OCC_STORE_PAUSE_AT = 'committed; rm -rf /'
    try {
      assert.deepEqual(await w.store.verify(), {commit: NEW})
    } finally {
      delete process.env.OCC_STORE_PAUSE_AT
    }
  })

  it('rollback works on the files alone: current, COMMIT and links back, the failed release and its extra links gone', async () => {
    await w.store.lock(me(), 90)
    await w.store.stage(TOKEN, undefined, false)
    await fakeBuild(w, TOKEN, '1.3.0', {healthFail: true})
    await w.store.built(TOKEN, 'image')
    await w.store.activate(TOKEN, NEW, OLD, '1.3.0')
    assert.ok(await fs.lstat(path.join(w.root, 'HEALTH_FAIL')))
    const back = await w.store.rollback(true)
    assert.deepEqual(back, {failed: NEW, release: OLD, rolledBack: true})
    await assertConsistent(w, {release: OLD, version: '1.0.0'})
    await assert.rejects(fs.lstat(path.join(w.root, 'HEALTH_FAIL')), 'the dangling link is dropped')
    await assert.rejects(fs.access(path.join(w.root, 'releases', NEW)))
    assert.deepEqual(await w.store.rollback(true), {rolledBack: false}, 'a second rollback has nothing to do')
    await assert.rejects(w.store.verify(), /nothing to verify/)
  })

  it('refuses a second activate while a release is unverified, and hostile arguments', async () => {
    await w.store.lock(me(), 90)
    await w.store.stage(TOKEN, undefined, false)
    await fakeBuild(w, TOKEN, '1.1.0')
    await w.store.activate(TOKEN, NEW, OLD, '1.1.0')
    await fakeBuild(w, TOKEN, '1.2.0')
    await assert.rejects(w.store.activate(TOKEN, THIRD, OLD, '1.2.0'), /unverified release is pending/)
    await assert.rejects(w.store.activate('../../etc', THIRD, OLD, ''), /invalid token/)
    await assert.rejects(w.store.activate(TOKEN, '$(reboot)', OLD, ''), /invalid commit/)
    await assert.rejects(w.store.stage('ab/../..', undefined, false), /invalid token/)
  })

  it('lock: busy with the owner record; taken over by token (owner gone) or by a stale heartbeat; unlock only by its token', async () => {
    assert.equal((await w.store.lock(me(), 90)).kind, 'taken')
    const other = 'cd'.repeat(12)
    const busy = await w.store.lock(me(other), 90)
    assert.equal(busy.kind, 'busy')
    assert.ok(busy.kind === 'busy')
    assert.equal(busy.owner.token, TOKEN)
    assert.equal(busy.owner.pid, process.pid)
    assert.equal(busy.owner.description, 'test owner')
    assert.equal(busy.owner.bootId, lockOwner(TOKEN, '').bootId)

    await w.store.unlock(other)
    assert.ok((await w.store.inspect()).lock, 'a wrong token does not unlock')

    const took = await w.store.lock(me(other), 90, TOKEN)
    assert.deepEqual(took, {endedBuilds: [], kind: 'taken', tookOver: 'owner-gone'})
    assert.equal((await w.store.inspect()).lock?.token, other)

    const old = new Date(Date.now() - 120_000)
    await fs.utimes(path.join(w.root, '.update-lock/heartbeat'), old, old)
    const third = 'ef'.repeat(12)
    const stale = await w.store.lock(me(third), 90)
    assert.equal(stale.kind === 'taken' && stale.tookOver, 'stale')
    assert.equal(await w.store.heartbeat(other), false, 'the old owner learns it lost the lock')
    assert.equal(await w.store.heartbeat(third), true)
  })

  it('taking the lock ends the build a dead update left running (its process group) and clears staging', async () => {
    const dir = path.join(w.root, '.staging', 'dead')
    await fs.mkdir(dir, {recursive: true})
    const build = spawn('setsid', ['sleep', '300'], {detached: false, env: {...process.env, OCC_STAGING: dir}, stdio: 'ignore'})
    await new Promise((resolve) => setTimeout(resolve, 200))
    await fs.writeFile(path.join(dir, 'build.pid'), `${build.pid}\n`)
    const exited = new Promise<string | null>((resolve) => build.on('exit', (_code, signal) => resolve(signal)))
    const lock = await w.store.lock(me(), 90)
    assert.ok(lock.kind === 'taken')
    assert.deepEqual(lock.endedBuilds, [build.pid])
    assert.equal(await exited, 'SIGTERM')
    assert.deepEqual(await fs.readdir(path.join(w.root, '.staging')), [])
  })

  it('a pid file naming a process that is not the build is left alone', async () => {
    const dir = path.join(w.root, '.staging', 'dead')
    await fs.mkdir(dir, {recursive: true})
    const bystander = spawn('sleep', ['300'], {stdio: 'ignore'})
    try {
      await fs.writeFile(path.join(dir, 'build.pid'), `${bystander.pid}\n`)
      const lock = await w.store.lock(me(), 90)
      assert.ok(lock.kind === 'taken')
      assert.deepEqual(lock.endedBuilds, [])
      assert.equal(bystander.exitCode, null)
    } finally {
      bystander.kill('SIGKILL')
    }
  })

  it('build runs the recipe on the staged source (its pid recorded, OCC_STAGING set); kill-build ends a running build; adopt makes the build user\'s output the candidate', async () => {
    const staged = path.join(w.root, '.staging', TOKEN)
    // A recipe that records what it was given, then either builds or runs until it is ended.
    await fs.writeFile(
      w.recipe,
      '#!/bin/sh\nprintf "%s\\n" "$1" "$2" "$OCC_STAGING" > "$1/../seen"\nif [ -f "$1/SLOW" ]; then exec sleep 300; fi\nmkdir -p "$2/bin" && printf "#!/bin/sh\\necho 1.2.0\\n" > "$2/bin/opencode" && echo 1.2.0 > "$2/VERSION"\n',
      {mode: 0o755},
    )
    assert.equal((await w.store.lock(me(), 90)).kind, 'taken')
    assert.equal(await w.store.stage(TOKEN, undefined, false), staged)
    await fs.mkdir(path.join(staged, 'src'))
    const done = await w.store.build(TOKEN, {recipe: 'image', timeoutMs: 10_000})
    assert.equal(done.exitCode, 0, done.stderr)
    assert.deepEqual((await read(path.join(staged, 'seen')))?.split('\n'), [path.join(staged, 'src'), path.join(staged, 'release'), staged])
    assert.match((await read(path.join(staged, 'build.pid'))) ?? '', /^\d+$/)
    assert.deepEqual(await w.store.built(TOKEN, 'image'), {version: '1.2.0'})

    // A build still running: kill-build ends its process group (and only a build of this token).
    await fs.writeFile(path.join(staged, 'src', 'SLOW'), '')
    await fs.rm(path.join(staged, 'seen'))
    const slow = w.store.build(TOKEN, {recipe: 'image', timeoutMs: 30_000})
    await waitFile(path.join(staged, 'seen'), 5000)
    assert.deepEqual(await w.store.killBuild('cd'.repeat(12)), [], 'another token ends nothing')
    const pid = Number(await read(path.join(staged, 'build.pid')))
    assert.deepEqual(await w.store.killBuild(TOKEN), [pid])
    assert.notEqual((await slow).exitCode, 0)

    // The built-in recipe builds as the sandbox user into work/out; adopt copies it into release.
    await fs.rm(path.join(staged, 'release'), {force: true, recursive: true})
    await fs.mkdir(path.join(staged, 'work', 'out', 'bin'), {recursive: true})
    await fs.writeFile(path.join(staged, 'work', 'out', 'bin', 'opencode'), '#!/bin/sh\necho 1.3.0\n', {mode: 0o755})
    await fs.writeFile(path.join(staged, 'work', 'out', 'VERSION'), '1.3.0\n')
    assert.deepEqual(await w.store.built(TOKEN, 'builtin'), {version: '1.3.0'})
    assert.equal(await read(path.join(staged, 'release', 'VERSION')), '1.3.0')
    await fs.rm(path.join(staged, 'work', 'out'), {force: true, recursive: true})
    await assert.rejects(w.store.built(TOKEN, 'builtin'), /no output/)
  })

  it('prune keeps what it is told, current, and a pending release with its previous; drops the rest', async () => {
    await fs.mkdir(path.join(w.root, 'releases', THIRD), {recursive: true})
    await w.store.lock(me(), 90)
    await w.store.stage(TOKEN, undefined, false)
    await fakeBuild(w, TOKEN, '1.1.0')
    await w.store.activate(TOKEN, NEW, OLD, '1.1.0')
    const pruned = await w.store.prune([])
    assert.deepEqual(pruned, [THIRD])
    assert.deepEqual((await fs.readdir(path.join(w.root, 'releases'))).sort(), [OLD, NEW].sort())
  })

  describe('crash anywhere, then inspect + repair: healthy and consistent', () => {
    const activatePoints = ['migrate-copied', 'migrated', 'moved', 'journaled', 'linked', 'switched']

    async function crashActivate(point: string, healthFail: boolean): Promise<FakeOpencode> {
      const opencode = new FakeOpencode(w.root)
      await opencode.start()
      await w.store.lock(me(), 90)
      await w.store.stage(TOKEN, undefined, false)
      await fakeBuild(w, TOKEN, '1.1.0', {healthFail})
      w.crashAt = point
      await assert.rejects(w.store.activate(TOKEN, NEW, OLD, '1.1.0'))
      w.crashAt = undefined
      return opencode
    }

    async function repair(opencode: FakeOpencode) {
      const lock = await takeUpdateLock(w.store, {checks: deadOwnerChecks(), staleSeconds: 90})
      assert.equal(lock.kind, 'taken', 'the dead owner lock is taken over at once')
      const report = await repairUnderLock(opencode.runtime(), w.store, await w.store.inspect(), {healthIntervalMs: 1, healthTimeoutMs: 500, verifyTimeoutMs: 300})
      if (lock.kind === 'taken') await w.store.unlock(lock.token)
      return report
    }

    for (const point of activatePoints) {
      it(`killed at activate/${point}, before opencode restarted: back on the old release, which still serves`, async () => {
        const opencode = await crashActivate(point, false)
        const report = await repair(opencode)
        assert.ok(report.kind === 'none' || report.kind === 'rolled-back', report.kind)
        if (report.kind === 'rolled-back') assert.equal(report.healthy, true)
        // Killed before the first release existed: the plain layout is simply still in place.
        await assertConsistent(w, {release: point === 'migrate-copied' ? undefined : OLD, version: '1.0.0'})
        assert.equal(opencode.running?.version, '1.0.0')
      })
    }

    it('killed after the switch and the restart, the new version healthy: re-verified and installed', async () => {
      const opencode = await crashActivate('switched', false)
      await opencode.start() // the restart happened, then occ died before verifying
      const report = await repair(opencode)
      assert.equal(report.kind, 'verified')
      await assertConsistent(w, {release: NEW, version: '1.1.0'})
      assert.equal(opencode.restarts, 0)
    })

    it('killed after the restart of a release that answers 503: rolled back, opencode restarted on the old one', async () => {
      const opencode = await crashActivate('switched', true)
      await opencode.start()
      const report = await repair(opencode)
      assert.ok(report.kind === 'rolled-back' && report.healthy, JSON.stringify(report))
      await assertConsistent(w, {release: OLD, version: '1.0.0'})
      assert.equal(opencode.running?.version, '1.0.0')
      assert.equal(opencode.restarts, 1)
    })

    it('killed inside verify (COMMIT written, journal not yet removed): re-verified', async () => {
      const opencode = await crashActivate('switched', false)
      await opencode.start()
      w.crashAt = 'committed'
      await assert.rejects(w.store.verify())
      w.crashAt = undefined
      const left = await w.store.inspect()
      assert.ok(left.journal)
      assert.equal(await read(path.join(w.root, 'COMMIT')), NEW, 'COMMIT was written before the kill')
      assert.equal(left.recordedCommit, OLD, 'but installed is what the journal recorded before the switch')
      assert.equal((await repair(opencode)).kind, 'verified')
      await assertConsistent(w, {release: NEW, version: '1.1.0'})
    })

    for (const point of ['switched-back', 'restored']) {
      it(`killed inside rollback (${point}): the repair finishes the rollback`, async () => {
        const opencode = await crashActivate('switched', true)
        await opencode.start()
        w.crashAt = point
        await assert.rejects(w.store.rollback(true))
        w.crashAt = undefined
        assert.ok((await w.store.inspect()).journal, 'the journal still says what to finish')
        const report = await repair(opencode)
        assert.ok(report.kind === 'rolled-back' && report.healthy)
        await assertConsistent(w, {release: OLD, version: '1.0.0'})
      })
    }

    it('killed right after taking the lock: the next owner takes it over at once and finds nothing to repair', async () => {
      w.crashAt = 'lock-taken'
      await assert.rejects(w.store.lock(me(), 90))
      w.crashAt = undefined
      const lock = await takeUpdateLock(w.store, {checks: deadOwnerChecks(), staleSeconds: 90})
      assert.equal(lock.kind, 'taken')
      assert.equal(lock.kind === 'taken' && Boolean(lock.tookOver), true)
    })
  })
})

/*
 * A layout without VERSION (the published image may ship none): the real opencode costs 1.6-2.5 s
 * of CPU per `--version`, so inspect runs it at most once per installed commit, release and
 * binary. The stand-in binary counts its `--version` runs in a file; runuser runs it as root.
 */
describe('release-store.sh: the version of a layout without VERSION (run once, cached)', function () {
  this.timeout(60_000)
  let w: World
  let runs: string
  let store: ScriptReleaseStore

  /** A bin/opencode that answers `version` and counts its runs. */
  const countingBinary = (version: string): string => `#!/bin/sh\n[ "$1" = --version ] && echo run >> '${runs}'\necho ${version}\n`
  const runCount = async (): Promise<number> => ((await read(runs)) ?? '').split('\n').filter(Boolean).length
  const cache = (): string => path.join(w.root, '.version-cache')

  before(function () {
    dashAvailable()
    // runuser (how the script runs the binary as opencode's user) needs root, as in the sandbox.
    assert.equal(process.getuid?.(), 0, 'this suite runs as root, as CI does')
  })
  beforeEach(async () => {
    w = await world()
    runs = `${w.root}-runs`
    await fs.rm(path.join(w.root, 'VERSION'))
    await fs.writeFile(path.join(w.root, 'bin/opencode'), countingBinary('1.0.0'), {mode: 0o755})
    store = new ScriptReleaseStore(localRunner(), {recipePath: w.recipe, root: w.root, user: 'root'})
  })
  afterEach(async () => {
    await fs.rm(w.root, {force: true, recursive: true})
    await fs.rm(w.recipe, {force: true})
    await fs.rm(runs, {force: true})
  })

  it('the first inspect runs the binary and records its answer; the next ones do not run it', async () => {
    const first = await store.inspect()
    assert.deepEqual([first.version, first.versionSource, await runCount()], ['1.0.0', 'binary', 1])
    for (let index = 0; index < 3; index++) {
      const again = await store.inspect()
      assert.deepEqual([again.version, again.versionSource], ['1.0.0', 'cache'])
    }

    assert.equal(await runCount(), 1, 'one run for four inspects')
    const stat = await fs.lstat(cache())
    assert.ok(stat.isFile())
    assert.equal(stat.mode & 0o777, 0o644)
    assert.equal(stat.uid, 0, 'root-owned')
    assert.deepEqual((await fs.readdir(w.root)).filter((name) => name.includes('.tmp')), [], 'written by temp file + rename')
  })

  it('runs again after the commit, or the binary, changed: a cached value never outlives what it was measured on', async () => {
    await store.inspect()
    await fs.writeFile(path.join(w.root, 'COMMIT'), `${THIRD}\n`)
    assert.equal((await store.inspect()).versionSource, 'binary')
    assert.equal(await runCount(), 2)
    assert.equal((await store.inspect()).versionSource, 'cache')
    await fs.rm(path.join(w.root, 'COMMIT'))
    assert.equal((await store.inspect()).versionSource, 'binary', 'no COMMIT is another key too')
    assert.equal(await runCount(), 3)
    // Another binary in place (same commit): its own answer, not the cached one.
    await fs.rm(path.join(w.root, 'bin/opencode'))
    await fs.writeFile(path.join(w.root, 'bin/opencode'), countingBinary('1.0.1'), {mode: 0o755})
    const replaced = await store.inspect()
    assert.deepEqual([replaced.version, replaced.versionSource, await runCount()], ['1.0.1', 'binary', 4])
  })

  it('a hostile cache (oversized, a link, a hard link, not ours, garbage, another key, a bad version, extra lines) is ignored and replaced', async () => {
    await store.inspect()
    const good = await fs.readFile(cache(), 'utf8')
    assert.match(good, /^commit=1{40}\ncurrent=\nbinary=\d+:\d+:[\d.]+:[\d.]+:\/.+\/bin\/opencode\nversion=1\.0\.0\n$/)
    const key = good.slice(0, good.indexOf('version='))
    const elsewhere = `${w.root}-elsewhere`
    const hostile: Array<[string, () => Promise<void>]> = [
      ['oversized (the first KiB alone would pass)', () => fs.writeFile(cache(), `${key}version=6.6.6\n${'x'.repeat(2000)}`)],
      ['a symlink to a file that would pass', async () => {
        await fs.writeFile(elsewhere, `${key}version=6.6.6\n`)
        await fs.symlink(elsewhere, cache())
      }],
      ['a hard link to a file that would pass', async () => {
        await fs.writeFile(elsewhere, `${key}version=6.6.6\n`)
        await fs.link(elsewhere, cache())
      }],
      ['owned by another user', async () => {
        await fs.writeFile(cache(), `${key}version=6.6.6\n`)
        await fs.chown(cache(), 4242, 4242)
      }],
      ['garbage', () => fs.writeFile(cache(), Buffer.from([0, 1, 2, 0xff, 10, 0x1b, 91, 50, 74, 10, 61, 10, 10]))],
      ['the key of another commit', () => fs.writeFile(cache(), `${key.replace(OLD, NEW)}version=6.6.6\n`)],
      ['a version that is not one', () => fs.writeFile(cache(), `${key}version=6.6.6;$(reboot)\n`)],
      ['an extra line', () => fs.writeFile(cache(), `${key}version=6.6.6\nversion=7\n`)],
      ['a directory', () => fs.mkdir(cache())],
    ]
    let expectedRuns = 1
    for (const [what, plant] of hostile) {
      await fs.rm(cache(), {force: true, recursive: true})
      await fs.rm(elsewhere, {force: true})
      await plant()
      const state = await store.inspect()
      expectedRuns++
      assert.deepEqual([state.version, state.versionSource, await runCount()], ['1.0.0', 'binary', expectedRuns], what)
      if (what !== 'a directory') {
        assert.equal(await fs.readFile(cache(), 'utf8'), good, `${what}: replaced by the measured value`)
        assert.equal((await fs.lstat(cache())).nlink, 1, what)
      }

      if (what.includes('link')) assert.equal(await read(elsewhere), `${key}version=6.6.6`, `${what}: its target is untouched`)
    }
  })

  it('an update records the version in the releases: built writes the candidate\'s VERSION, activate the image release\'s; later inspects run nothing', async () => {
    assert.equal((await store.inspect()).version, '1.0.0')
    assert.equal(await runCount(), 1)
    await store.lock(me(), 90)
    await store.stage(TOKEN, undefined, false)
    await fakeBuild(w, TOKEN, 'ignored')
    const candidate = path.join(w.root, '.staging', TOKEN, 'release')
    await fs.writeFile(path.join(candidate, 'bin/opencode'), countingBinary('1.1.0'), {mode: 0o755})
    // A VERSION the build user left as a link is no version record: the binary is asked.
    await fs.rm(path.join(candidate, 'VERSION'))
    await fs.symlink('/etc/hostname', path.join(candidate, 'VERSION'))
    assert.deepEqual(await store.built(TOKEN, 'image'), {version: '1.1.0'})
    assert.equal(await runCount(), 2)
    const written = await fs.lstat(path.join(candidate, 'VERSION'))
    assert.ok(written.isFile() && !written.isSymbolicLink())
    await store.activate(TOKEN, NEW, OLD, '1.1.0')
    await store.verify()
    assert.equal(await read(path.join(w.root, 'releases', NEW, 'VERSION')), '1.1.0')
    assert.equal(await read(path.join(w.root, 'releases', OLD, 'VERSION')), '1.0.0', 'the image release keeps what was measured on it')
    await assert.rejects(fs.lstat(cache()), 'the switch drops the cache')
    for (let index = 0; index < 2; index++) assert.deepEqual(pickVersion(await store.inspect()), ['1.1.0', 'file'])
    // Back on the image's release (a rollback of a later update): its VERSION answers.
    await store.stage(TOKEN, undefined, false)
    await fakeBuild(w, TOKEN, '1.2.0', {healthFail: true})
    await store.activate(TOKEN, THIRD, OLD, '1.2.0')
    await store.rollback(true)
    await store.prune([NEW])
    await store.stage(TOKEN, undefined, false)
    await fakeBuild(w, TOKEN, '1.3.0')
    await store.activate(TOKEN, THIRD, OLD, '1.3.0')
    await store.verify()
    await store.stage(TOKEN, undefined, false)
    assert.deepEqual(pickVersion(await store.inspect()), ['1.3.0', 'file'])
    assert.equal(await runCount(), 2, 'nothing ran the binary after built')
  })

  it('while a release is unverified, a measured version is not kept', async () => {
    await store.lock(me(), 90)
    await store.stage(TOKEN, undefined, false)
    await fakeBuild(w, TOKEN, '1.1.0')
    await store.activate(TOKEN, NEW, OLD, '1.1.0')
    // A release without VERSION under a journal (a build by an older occ).
    await fs.rm(path.join(w.root, 'releases', NEW, 'VERSION'))
    await fs.writeFile(path.join(w.root, 'releases', NEW, 'bin/opencode'), countingBinary('1.1.0'), {mode: 0o755})
    assert.deepEqual(pickVersion(await store.inspect()), ['1.1.0', 'binary'])
    await assert.rejects(fs.lstat(cache()))
    await store.verify()
    assert.deepEqual(pickVersion(await store.inspect()), ['1.1.0', 'binary'])
    assert.deepEqual(pickVersion(await store.inspect()), ['1.1.0', 'cache'])
    assert.equal(await runCount(), 2)
  })
})

const pickVersion = (state: {version?: string; versionSource?: string}): Array<string | undefined> => [state.version, state.versionSource]

/** Owner checks in which every lock recorded by this test process belongs to a dead process. */
function deadOwnerChecks(): OwnerChecks {
  const owner = lockOwner('x', '')
  return {bootId: owner.bootId, held: new Set(), isAlive: () => false, pid: -1, pidStart: '0', startTime: () => undefined}
}

describe('update lock ownership (pure)', () => {
  const checks: OwnerChecks = {bootId: 'boot-1', held: new Set(['mine']), isAlive: (pid) => pid === 42 || pid === 7, pid: 7, pidStart: '700', startTime: (pid) => (pid === 42 ? '4200' : '700')}

  it('takes over at once a dead owner on this host, or a pid reused by another process', () => {
    assert.match(lockOwnerGone({ageSeconds: 1, bootId: 'boot-1', pid: 99, pidStart: '1', token: 't'}, checks) ?? '', /gone/)
    assert.match(lockOwnerGone({ageSeconds: 1, bootId: 'boot-1', pid: 42, pidStart: '1', token: 't'}, checks) ?? '', /reused/)
  })

  it('takes over a lock this very process left behind, but not one it holds right now', () => {
    assert.match(lockOwnerGone({ageSeconds: 1, bootId: 'boot-1', pid: 7, pidStart: '700', token: 'left'}, checks) ?? '', /this process/)
    assert.equal(lockOwnerGone({ageSeconds: 1, bootId: 'boot-1', pid: 7, pidStart: '700', token: 'mine'}, checks), undefined)
  })

  it('leaves a live owner, an owner on another host, and an owner record without a boot id to the heartbeat rule', () => {
    assert.equal(lockOwnerGone({ageSeconds: 1, bootId: 'boot-1', pid: 42, pidStart: '4200', token: 't'}, checks), undefined)
    assert.equal(lockOwnerGone({ageSeconds: 1, bootId: 'boot-2', pid: 99, pidStart: '1', token: 't'}, checks), undefined)
    assert.equal(lockOwnerGone({ageSeconds: 1, pid: 99, token: 't'}, checks), undefined)
  })
})
