/**
 * `occ update opencode` against a real Docker engine: the fixture image, a fixture opencode repo
 * bind-mounted read-only into the container (opencode_repo points at it), the built CLI.
 */
import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import Docker from 'dockerode'
import {execa, type Result} from 'execa'

import type {UpdateOutcome} from '../../src/runtime/update-types.js'
import {updateOutcomeSchema} from '../../src/runtime/update/outcome-schema.js'
import {createFixtureRepo, FIXTURE_OPENCODE_VERSION, pushCommit} from '../fixtures/sandbox/repo-helpers.mjs'
import {createSandboxEnv, describeRun, FIXTURE_IMAGE, freePort, OCC_BIN, REPO_ROOT, useFixtureImage, type SandboxEnv} from '../helpers/sandbox-env.js'
import {createListenerWorld, type ListenerWorld} from './listener-helpers/world.js'

const CONTAINER_REPO = '/srv/opencode.git'
const PROVISION = 'Run `bash .ci/provision.sh && npm run build && npm run fixture:build` first.'

interface UpdateWorld {
  sandbox: SandboxEnv
  repoDir: string
  baseCommit: string
  push(branch: string, files: Record<string, string | null>): Promise<string>
  /** Runs a command in the container as root and returns its stdout (throws on failure). */
  sh(script: string, user?: string): Promise<string>
  health(): Promise<{status: number; body: {healthy?: boolean; version?: string}} | undefined>
  opencodePid(): Promise<string>
}


/** stderr without oclif's error wrapping (" ›   " prefixes, line breaks). */
function stderrText(result: Result): string {
  return String(result.stderr).replaceAll(/\s*›\s*/g, ' ').replaceAll(/\s+/g, ' ')
}

function outcomeOf(result: Result): UpdateOutcome {
  let raw: unknown
  try {
    raw = JSON.parse(String(result.stdout))
  } catch {
    assert.fail(`stdout is not JSON: ${describeRun(result)}`)
  }

  const body = (raw as {error?: {outcome?: unknown}}).error?.outcome ?? raw
  const parsed = updateOutcomeSchema.safeParse(body)
  assert.ok(parsed.success, `not an update outcome: ${parsed.error?.message}\n${describeRun(result)}`)
  return parsed.data as UpdateOutcome
}


function getHealth(port: number, timeoutMs = 1000): Promise<{status: number; body: {healthy?: boolean; version?: string}} | undefined> {
  return new Promise((resolve) => {
    const request = http.get({agent: false, host: '127.0.0.1', path: '/global/health', port, timeout: timeoutMs}, (response) => {
      let text = ''
      response.on('data', (chunk: Buffer) => {
        text += chunk.toString()
      })
      response.on('end', () => {
        try {
          resolve({body: JSON.parse(text), status: response.statusCode ?? 0})
        } catch {
          resolve({body: {}, status: response.statusCode ?? 0})
        }
      })
    })
    request.on('timeout', () => request.destroy())
    request.on('error', () => resolve(undefined))
  })
}

describe('occ update opencode (real engine, fixture image and repo)', function () {
  this.timeout(180_000)
  const cleanups: Array<() => Promise<void>> = []

  before(async function () {
    this.timeout(30_000)
    const docker = new Docker()
    try {
      await docker.ping()
      await docker.getImage(FIXTURE_IMAGE).inspect()
    } catch (error) {
      throw new Error(`Docker or the fixture image is not available (${(error as Error).message}). ${PROVISION}`, {cause: error})
    }

    if (!existsSync(path.join(REPO_ROOT, 'lib/commands/update/opencode.js'))) throw new Error(`The CLI is not built. ${PROVISION}`)
  })

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup()
  })

  /** A sandbox running the fixture image with the fixture repo mounted at /srv/opencode.git. */
  async function updateWorld(label: string): Promise<UpdateWorld> {
    const sandbox = await createSandboxEnv(label)
    cleanups.push(() => sandbox.cleanup())
    sandbox.port = await freePort()
    const repoDir = path.join(sandbox.root, 'opencode.git')
    const {commit: baseCommit} = await createFixtureRepo(repoDir)
    await execa('chmod', ['-R', 'a+rX', sandbox.root])
    await useFixtureImage(sandbox, {opencode_repo: CONTAINER_REPO})
    const start = await sandbox.occ(['start', '--mount', `${repoDir}:${CONTAINER_REPO}:ro`])
    assert.equal(start.exitCode, 0, describeRun(start))
    const world: UpdateWorld = {
      baseCommit,
      health: () => getHealth(sandbox.port),
      async opencodePid() {
        return (await world.sh('/usr/local/bin/opencode-supervisorctl status')).trim()
      },
      async push(branch, files) {
        const sha = await pushCommit(repoDir, {base: 'main', branch, files})
        await execa('chmod', ['-R', 'a+rX', repoDir])
        return sha
      },
      repoDir,
      sandbox,
      async sh(script, user = 'root') {
        const result = await execa('docker', ['exec', '-u', user, sandbox.containerName, 'sh', '-c', script], {reject: false})
        if (result.exitCode !== 0) throw new Error(`${script} → exit ${result.exitCode}: ${result.stderr}`)
        return String(result.stdout)
      },
    }
    return world
  }

  it('updates by branch: builds, switches atomically, writes COMMIT, stays root-owned, prunes to two releases', async () => {
    const world = await updateWorld('upd-branch')
    const sha = await world.push('feature/next', {VERSION: '1.1.0\n'})

    const result = await world.sandbox.occ(['update', 'opencode', '--branch', 'feature/next', '--json'])
    assert.equal(result.exitCode, 0, describeRun(result))
    const outcome = outcomeOf(result)
    assert.equal(outcome.status, 'success')
    assert.equal(outcome.changed, true)
    assert.deepEqual(outcome.ref, {branch: 'feature/next', commit: sha})
    assert.equal(outcome.fromCommit, world.baseCommit)
    assert.equal(outcome.toCommit, sha)
    assert.equal(outcome.fromVersion, FIXTURE_OPENCODE_VERSION)
    assert.equal(outcome.toVersion, '1.1.0')
    assert.equal(outcome.restartMethod, 'supervisor')
    assert.deepEqual(
      outcome.steps.map((step) => `${step.step}:${step.status}`),
      ['preflight:done', 'repair:skipped', 'resolve:done', 'compare:done', 'fetch:done', 'build:done', 'activate:done', 'restart:done', 'rollback:skipped', 'prune:done'],
    )
    assert.ok(!String(result.stderr).includes('Build'), `no progress under --json:\n${result.stderr}`)

    assert.deepEqual((await world.health())?.body, {healthy: true, version: '1.1.0'})
    assert.equal((await world.sh('cat /opt/opencode/COMMIT')).trim(), sha)
    assert.equal((await world.sh('readlink /opt/opencode/current')).trim(), `releases/${sha}`)
    assert.equal((await world.sh('readlink /opt/opencode/bin; readlink /opt/opencode/ui')).trim(), 'current/bin\ncurrent/ui')
    assert.equal((await world.sh('/opt/opencode/bin/opencode --version', 'opencoder')).trim(), '1.1.0')
    // Root-owned all the way; the agent's user can run opencode but not replace it.
    const owners = await world.sh(`stat -c '%U %a %n' /opt/opencode /opt/opencode/releases /opt/opencode/releases/${sha} /opt/opencode/releases/${sha}/bin/opencode /opt/opencode/COMMIT`)
    for (const line of owners.trim().split('\n')) assert.match(line, /^root [0-7]?[0-7][0-5][0-5] /, owners)
    await assert.rejects(world.sh('touch /opt/opencode/bin/opencode', 'opencoder'))
    await assert.rejects(world.sh('touch /opt/opencode/releases/x', 'opencoder'))

    // Two more updates: only current and previous stay.
    const second = await world.push('dev', {VERSION: '1.2.0\n'})
    const update2 = await world.sandbox.occ(['update', 'opencode'])
    assert.equal(update2.exitCode, 0, describeRun(update2))
    assert.match(String(update2.stdout), new RegExp(`Updated opencode from ${sha.slice(0, 7)} to ${second.slice(0, 7)} \\(version 1\\.1\\.0 → 1\\.2\\.0\\)`))
    const releases = (await world.sh('ls /opt/opencode/releases')).trim().split('\n').sort()
    assert.deepEqual(releases, [sha, second].sort(), 'the image release was pruned; current and previous kept')
    assert.deepEqual((await world.health())?.body, {healthy: true, version: '1.2.0'})
  })

  it('updates by short commit (resolved to the full SHA)', async () => {
    const world = await updateWorld('upd-commit')
    const sha = await world.push('side', {VERSION: '1.5.0\n'})
    await world.push('side', {VERSION: '1.6.0\n'}) // the branch moves on; the commit is what counts

    const result = await world.sandbox.occ(['update', 'opencode', '--commit', sha.slice(0, 7), '--json'])
    assert.equal(result.exitCode, 0, describeRun(result))
    const outcome = outcomeOf(result)
    assert.deepEqual(outcome.ref, {commit: sha})
    assert.equal(outcome.toCommit, sha)
    assert.equal((await world.sh('cat /opt/opencode/COMMIT')).trim(), sha)
    assert.deepEqual((await world.health())?.body, {healthy: true, version: '1.5.0'})
  })

  it('says "already at" when up to date, restarting nothing', async () => {
    const world = await updateWorld('upd-same')
    const pid = await world.opencodePid()

    const result = await world.sandbox.occ(['update', 'opencode'])
    assert.equal(result.exitCode, 0, describeRun(result))
    assert.match(String(result.stdout), new RegExp(`already at ${world.baseCommit.slice(0, 7)}`))
    assert.equal(await world.opencodePid(), pid, 'opencode was not restarted')

    const json = outcomeOf(await world.sandbox.occ(['update', 'opencode', '--commit', world.baseCommit, '--json']))
    assert.equal(json.changed, false)
    assert.equal(json.toCommit, world.baseCommit)
    assert.equal(await world.opencodePid(), pid)
    assert.equal((await world.sh('ls -A /opt/opencode')).includes('releases'), false, 'the layout is untouched')
  })

  it('fails on an unknown branch, changing nothing', async () => {
    const world = await updateWorld('upd-nobranch')
    const result = await world.sandbox.occ(['update', 'opencode', '--branch', 'no-such-branch', '--json'])
    assert.equal(result.exitCode, 8, describeRun(result))
    const error = JSON.parse(String(result.stdout)).error
    assert.equal(error.code, 'UNKNOWN_BRANCH')
    assert.match(error.message, /Branch 'no-such-branch' does not exist in \/srv\/opencode\.git/)
    assert.equal((await world.sh('cat /opt/opencode/COMMIT')).trim(), world.baseCommit)
  })

  it('a failed build changes nothing: the old version serves throughout, COMMIT unchanged', async () => {
    const world = await updateWorld('upd-buildfail')
    await world.push('dev', {BUILD_FAIL: '', BUILD_SLEEP_SECONDS: '3', VERSION: '9.9.9\n'})
    const pid = await world.opencodePid()

    const answers: string[] = []
    let probing = true
    const prober = (async () => {
      while (probing) {
        const health = await world.health()
        answers.push(health ? `${health.status} ${health.body.version}` : 'down')
        await delay(100)
      }
    })()
    const result = await world.sandbox.occ(['update', 'opencode'])
    probing = false
    await prober

    assert.equal(result.exitCode, 8, describeRun(result))
    assert.match(stderrText(result), /The build failed \(exit 1\).*BUILD_FAIL is present/)
    assert.match(stderrText(result), /Nothing was changed; opencode still runs/)
    assert.ok(answers.length >= 20, `probed ${answers.length} times`)
    assert.deepEqual([...new Set(answers)], [`200 ${FIXTURE_OPENCODE_VERSION}`], 'healthy old version during the whole build')
    assert.equal((await world.sh('cat /opt/opencode/COMMIT')).trim(), world.baseCommit)
    assert.equal(await world.opencodePid(), pid)
    assert.equal((await world.sh('ls -A /opt/opencode/.staging 2>/dev/null; ls -A /opt/opencode')).includes('releases'), false)
  })

  it('Ctrl+C during the build cancels it: the build process is gone, nothing changed', async () => {
    const world = await updateWorld('upd-sigint')
    await world.push('dev', {BUILD_SLEEP_SECONDS: '60', VERSION: '3.0.0\n'})
    const child = execa(process.execPath, [OCC_BIN, 'update', 'opencode'], {env: world.sandbox.env, reject: false, stdin: 'ignore'})
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const deadline = Date.now() + 30_000
    while (!stderr.includes('compiling') && Date.now() < deadline) await delay(50)
    child.kill('SIGINT')
    const result = await child
    assert.equal(result.exitCode, 1, describeRun(result))
    assert.equal(JSON.parse(String((await world.sandbox.occ(['update', 'opencode', '--json', '--commit', world.baseCommit])).stdout)).changed, false)
    assert.match(stderrText(result), /The update was cancelled; nothing was changed/)
    assert.equal((await world.sh('ps -eo args | grep -c "[s]leep 60" || true')).trim(), '0', 'the build was killed')
    assert.equal((await world.sh('cat /opt/opencode/COMMIT')).trim(), world.baseCommit)
    assert.equal((await world.sh('ls -A /opt/opencode/.staging; test ! -e /opt/opencode/.update-lock && echo unlocked')).trim(), 'unlocked')
    assert.equal((await world.health())?.body.version, FIXTURE_OPENCODE_VERSION)
  })

  it('rolls back an unhealthy version: the old version serves again and the error says so', async () => {
    const world = await updateWorld('upd-unhealthy')
    const bad = await world.push('dev', {HEALTH_FAIL: '', VERSION: '1.3.0\n'})

    const result = await world.sandbox.occ(['update', 'opencode', '--health-timeout', '4', '--json'])
    assert.equal(result.exitCode, 8, describeRun(result))
    const error = JSON.parse(String(result.stdout)).error
    assert.equal(error.code, 'UPDATE_ROLLED_BACK')
    assert.match(
      error.message,
      new RegExp(`Update to ${bad.slice(0, 7)} failed: the new version did not answer healthy within 4\\.0 s \\(last answer: HTTP 503 from version 1\\.3\\.0\\)\\. Rolled back to ${world.baseCommit.slice(0, 7)}, which is serving again\\.`),
    )
    const outcome = outcomeOf(result)
    assert.equal(outcome.rolledBack, true)
    assert.equal(outcome.changed, false)
    assert.equal(outcome.toCommit, world.baseCommit)

    assert.deepEqual((await world.health())?.body, {healthy: true, version: FIXTURE_OPENCODE_VERSION})
    assert.equal((await world.sh('cat /opt/opencode/COMMIT')).trim(), world.baseCommit)
    assert.equal((await world.sh('readlink /opt/opencode/current')).trim(), `releases/${world.baseCommit}`)
    assert.equal((await world.sh('ls /opt/opencode/releases')).trim(), world.baseCommit, 'the failed release is gone')

    // Without --json, people see the steps and the same message.
    const plain = await world.sandbox.occ(['update', 'opencode', '--health-timeout', '2'])
    assert.equal(plain.exitCode, 8)
    assert.match(String(plain.stderr), /Restart opencode and wait until healthy/)
    assert.match(String(plain.stderr), /Roll back to the previous release/)
    assert.match(stderrText(plain), /Rolled back to .*, which is serving again/)
  })

  it('rejects hostile refs before anything runs in the container', async () => {
    const world = await updateWorld('upd-refs')
    const docker = world.sandbox.docker
    const startedNs = BigInt(Date.now()) * 1_000_000n
    const hostile = ['$(touch /tmp/pwned)', '`touch /tmp/pwned`', 'dev;touch /tmp/pwned', 'a|b', '..', 'a..b', '-x', '--upload-pack=touch /tmp/pwned', 'a b', 'dev\ntouch', "it's", 'x"y', '']
    for (const value of hostile) {
      for (const flag of ['--branch', '--commit']) {
        const result = await world.sandbox.occ(['update', 'opencode', `${flag}=${value}`, '--json'])
        assert.equal(result.exitCode, 2, `${flag}=${JSON.stringify(value)}: ${describeRun(result)}`)
      }
    }

    for (const value of ['abc12', 'abcdefg', '1234567890123456789012345678901234567890a']) {
      const result = await world.sandbox.occ(['update', 'opencode', `--commit=${value}`])
      assert.equal(result.exitCode, 2, describeRun(result))
      assert.match(stderrText(result), /a commit is 7 to 40 hexadecimal digits/)
    }

    const both = await world.sandbox.occ(['update', 'opencode', '--branch', 'dev', '--commit', world.baseCommit])
    assert.equal(both.exitCode, 2, describeRun(both))

    // Not one exec reached the container while the refs were being refused…
    assert.deepEqual(await execEvents(docker, world.sandbox.containerName, startedNs), [], 'exec events during the rejected updates')
    // …while a valid ref does reach it (so the check above can see execs at all).
    const controlNs = BigInt(Date.now()) * 1_000_000n
    const control = await world.sandbox.occ(['update', 'opencode', '--branch', 'no-such-branch'])
    assert.equal(control.exitCode, 8, describeRun(control))
    assert.ok((await execEvents(docker, world.sandbox.containerName, controlNs)).length > 0, 'the control update ran execs')
    await assert.rejects(world.sh('test -e /tmp/pwned'))
  })

  describe('inside the sandbox (container runtime): hand-off to the host listener', () => {
    let listenerWorld: ListenerWorld | undefined
    afterEach(async () => {
      await listenerWorld?.cleanup()
      listenerWorld = undefined
    })

    it('hands the request to the listener through the command file and prints its result', async () => {
      listenerWorld = await createListenerWorld('upd-handoff')
      const world = listenerWorld
      world.sandbox.port = await freePort()
      expectOk(await world.sandbox.occ(['config', 'set', 'opencode_web_port', String(world.sandbox.port)]))
      const foreground = await world.startForeground()
      await foreground.waitForLine(/Listening for update requests/, 90_000)
      await waitForListenerActive(world)
      const sha = await world.pushBranch('handoff', {VERSION: '2.0.0\n'})

      // (occ()'s options.env replaces the world's env rather than adding to it)
      const env = {...world.sandbox.env, OPENCODE_RUNTIME: 'container'}
      const result = await world.sandbox.occ(['update', 'opencode', '--branch', 'handoff', '--json'], {env})
      assert.equal(result.exitCode, 0, `${describeRun(result)}\n--- listener\n${foreground.stderr()}`)
      const outcome = outcomeOf(result)
      assert.equal(outcome.status, 'success')
      assert.equal(outcome.changed, true)
      assert.equal(outcome.toCommit, sha)
      assert.deepEqual((await getHealth(world.sandbox.port))?.body, {healthy: true, version: '2.0.0'})

      // Errors come back the same way.
      const missing = await world.sandbox.occ(['update', 'opencode', '--branch', 'nope'], {env})
      assert.equal(missing.exitCode, 8, describeRun(missing))
      assert.match(stderrText(missing), /Branch 'nope' does not exist/)
      assert.ok(!(await world.requestPresent()), 'no request left behind')
    })

    it('fails at once when no listener answers, leaving no request behind', async () => {
      const sandbox = await createSandboxEnv('upd-nolisten')
      cleanups.push(() => sandbox.cleanup())
      const commands = path.join(sandbox.env.XDG_STATE_HOME, 'opencode', 'opencode-cloud', 'commands')
      const env = {...sandbox.env, OPENCODE_RUNTIME: 'container'}
      const none = await sandbox.occ(['update', 'opencode'], {env})
      assert.equal(none.exitCode, 6, describeRun(none))
      assert.match(stderrText(none), /No command directory/)

      await fs.mkdir(commands, {recursive: true})
      const absent = await sandbox.occ(['update', 'opencode', '--json'], {env})
      assert.equal(absent.exitCode, 8, describeRun(absent))
      assert.equal(JSON.parse(String(absent.stdout)).error.code, 'UPDATE_NO_LISTENER')
      assert.deepEqual(await fs.readdir(commands), [])
    })
  })
})

/** exec_* events of a container since a time (ns); Docker's `since` has second resolution, timeNano does not. */
async function execEvents(docker: Docker, container: string, sinceNs: bigint): Promise<string[]> {
  const stream = (await docker.getEvents({
    filters: {container: [container], type: ['container']},
    since: Number(sinceNs / 1_000_000_000n),
    until: Math.ceil(Date.now() / 1000),
  })) as unknown as NodeJS.ReadableStream
  let text = ''
  for await (const chunk of stream) text += chunk.toString()
  return (
    text
      .split('\n')
      .filter((line) => line.trim())
      // timeNano does not fit a double: read it from the text
      .map((line) => ({action: (JSON.parse(line) as {Action?: string}).Action ?? '', timeNano: BigInt(/"timeNano":(\d+)/.exec(line)?.[1] ?? '0')}))
      .filter((event) => event.action.startsWith('exec_') && event.timeNano >= sinceNs)
      .map((event) => event.action)
  )
}

function expectOk(result: Result): void {
  assert.equal(result.exitCode, 0, describeRun(result))
}

async function waitForListenerActive(world: ListenerWorld): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const status = await world.readListenerJson()
    if (status?.state === 'idle') return
    await delay(100)
  }

  throw new Error('the listener never reported idle in listener.json')
}
