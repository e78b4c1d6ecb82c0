/**
 * The update listener end to end: the built CLI's `occ start --no-daemon` against a real
 * container from the fixture image, requests written from inside the container the way the web
 * UI writes them (as opencoder: temp file, then mv), real updates of a fixture opencode repo.
 * Needs: npm run build, npm run fixture:build, a Docker engine.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'

import {execa} from 'execa'

import {MOUNT_STATE, UPDATE_STEPS, type UpdateResult, updateResultSchema} from '../../src/index.js'
import {createListenerWorld, type Foreground, type ListenerWorld, waitUntil} from './listener-helpers/world.js'

const SANDBOX_USER_OWNS_HOST_DIR = process.getuid?.() === 1000

/**
 * Runs inside the sandbox as opencoder (Node 18, argv: commands dir, host dir to aim at). Builds a
 * tree of 20 subdirectories, flips each dN of any tree at the request, claim or set-aside names
 * to a symlink to the host dir and back while it renames the tree into place, until the result
 * file shows the answer. Prints {answered}.
 */
const FLIP_ATTACK = `
const fs = require('fs/promises'); const path = require('path')
const [dir, victim] = process.argv.slice(1)
const SUB = 20
const pick = (n) => n === 'update-command.json' || n.startsWith('.rejected.') || n.includes('claimed')
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
;(async () => {
  const staging = path.join(dir, '.attack')
  for (let i = 0; i < SUB; i++) {
    await fs.mkdir(path.join(staging, 'd' + i), {recursive: true})
    await Promise.all(Array.from({length: 30}, (_, j) => fs.writeFile(path.join(staging, 'd' + i, 'f' + j), '')))
  }
  const result = path.join(dir, 'update-command.result.json')
  const before = await fs.readFile(result, 'utf8').catch(() => '')
  let racing = true
  const flipping = (async () => {
    while (racing) {
      const names = (await fs.readdir(dir).catch(() => [])).filter(pick)
      await Promise.all(names.flatMap((n) => Array.from({length: SUB}, async (_, i) => {
        const sub = path.join(dir, n, 'd' + i)
        try { await fs.rename(sub, sub + '.real'); await fs.symlink(victim, sub); await sleep(2); await fs.unlink(sub); await fs.rename(sub + '.real', sub) } catch {}
      })))
      await new Promise((r) => setImmediate(r))
    }
  })()
  await fs.rename(staging, path.join(dir, 'update-command.json'))
  let answer = before
  for (const deadline = Date.now() + 30000; Date.now() < deadline; await sleep(20)) {
    answer = await fs.readFile(result, 'utf8').catch(() => before)
    if (answer !== before && answer.includes('not_regular_file')) break
  }
  await sleep(300)
  racing = false
  await flipping
  console.log(JSON.stringify({answered: answer !== before}))
})().catch((error) => { console.error(error); process.exit(1) })
`

/** Reads the result file until every id has an answer (results overwrite each other). */
async function collectResults(world: ListenerWorld, ids: string[], timeoutMs = 60_000): Promise<Map<string, UpdateResult>> {
  const seen = new Map<string, UpdateResult>()
  await waitUntil(
    async () => {
      const result = await world.readResult()
      if (result?.request_id !== undefined && ids.includes(result.request_id) && !seen.has(result.request_id)) {
        seen.set(result.request_id, result)
      }

      return seen.size === ids.length
    },
    timeoutMs,
    () => `answered: ${[...seen.keys()].join(', ')} of ${ids.join(', ')}`,
  )
  return seen
}

/** Writes each request once the previous one has left the request path (a UI that waits its turn). */
async function writeInTurn(world: ListenerWorld, bodies: object[]): Promise<void> {
  for (const body of bodies) {
    await waitUntil(async () => !(await world.requestPresent()), 60_000, () => 'the previous request was never claimed')
    await world.webUiWrite(body)
  }
}

async function waitForUpdating(world: ListenerWorld, requestId: string, step?: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  let last: Record<string, unknown> | undefined
  await waitUntil(
    async () => {
      last = await world.readListenerJson()
      return last?.state === 'updating' && last.request_id === requestId && (step === undefined || last.step === step)
    },
    timeoutMs,
    () => `listener.json: ${JSON.stringify(last)}`,
  )
  return last!
}

function updatingLines(stderr: string, requestId: string): number {
  return stderr.split('\n').filter((line) => line.startsWith('Updating opencode') && line.includes(`(request_id ${JSON.stringify(requestId)})`)).length
}

describe('update listener, end to end (occ start --no-daemon, real container)', function () {
  this.timeout(180_000)
  let world: ListenerWorld
  let foreground: Foreground

  before(async () => {
    world = await createListenerWorld('lsn')
    foreground = await world.startForeground()
    await foreground.waitForLine(/Listening for update requests/)
  })
  after(async () => {
    await world?.cleanup()
  })

  it('starts with the service: listener.json, occ status, a dir the sandbox user can write, and a third-party hook', async () => {
    // The listener's first job is the release check (step "repair"); idle once it found nothing.
    let status: Record<string, unknown> | undefined
    await waitUntil(
      async () => {
        status = await world.readListenerJson()
        return status?.state === 'idle'
      },
      30_000,
      () => `listener.json: ${JSON.stringify(status)}`,
    )
    assert.equal(status?.pid, foreground.pid)
    assert.ok(Number(status?.heartbeat_interval_ms) <= 10_000)
    const occStatus = await world.sandbox.occ(['status'])
    assert.match(String(occStatus.stdout), new RegExp(`Listener:\\s+active \\(idle, pid ${foreground.pid}, heartbeat \\d+s ago\\)`))
    const mode = (await fs.stat(world.commandsDir)).mode & 0o7777
    assert.equal(mode, SANDBOX_USER_OWNS_HOST_DIR ? 0o700 : 0o1777)
    const probe = await world.containerSh('touch "$1/.probe" && rm "$1/.probe" && cat "$1/listener.json"', [`${MOUNT_STATE}/opencode-cloud/commands`])
    assert.equal(probe.exitCode, 0, probe.stderr)
    assert.equal(JSON.parse(probe.stdout).pid, foreground.pid, 'the web UI can read listener.json')
    const marker = JSON.parse(await fs.readFile(world.markerFile, 'utf8'))
    assert.deepEqual({container: marker.container, state: marker.state}, {container: world.sandbox.containerName, state: 'started'})
  })

  it('answers a default request with "already up to date": success, nothing changed, request_id echoed, UTC timestamps', async () => {
    await world.webUiWrite({command: 'update_opencode', request_id: 'up-to-date'})
    const written = Date.now()
    await waitUntil(async () => !(await world.requestPresent()), 5000, () => 'not claimed')
    const claimMs = Date.now() - written
    const result = await world.waitForResult((r) => r.request_id === 'up-to-date')
    updateResultSchema.parse(result)
    assert.equal(result.status, 'success')
    assert.equal(result.changed, false)
    assert.equal(result.from_commit, world.baseCommit)
    assert.equal(result.to_commit, world.baseCommit)
    assert.match(result.message, /nothing to do|up to date/i)
    assert.match(result.started_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
    assert.match(result.finished_at, /Z$/)
    assert.ok(claimMs < 1000, `claimed ${claimMs} ms after docker exec returned`)
    const fromInside = await world.containerSh('cat "$1/update-command.result.json"', [`${MOUNT_STATE}/opencode-cloud/commands`])
    assert.equal(JSON.parse(fromInside.stdout).request_id, 'up-to-date', 'the web UI can read the result')
  })

  it('answers an unsupported command, branch + commit, an unknown field and a bad branch with error results, and removes each', async () => {
    const cases: Array<[object, string, RegExp]> = [
      [{command: 'reboot', request_id: 'bad-1'}, 'unsupported_command', /^Unsupported command 'reboot'. Expected: update_opencode$/],
      [{branch: 'dev', command: 'update_opencode', commit: 'abcdef0', request_id: 'bad-2'}, 'conflicting_target', /^Specify only one of branch or commit.$/],
      [{command: 'update_opencode', force: true, request_id: 'bad-3'}, 'invalid_request', /Unknown field 'force'/],
      [{branch: '--upload-pack=touch /tmp/x', command: 'update_opencode', request_id: 'bad-4'}, 'invalid_ref', /Invalid branch/],
    ]
    const finished: number[] = []
    for (const [body, code, message] of cases) {
      const id = (body as {request_id: string}).request_id
      await world.webUiWrite(body)
      const result = await world.waitForResult((r) => r.request_id === id)
      assert.equal(result.status, 'error')
      assert.equal(result.error_code, code)
      assert.match(result.message, message)
      assert.equal(await world.requestPresent(), false)
      finished.push(Date.parse(result.finished_at))
    }

    // Rejections count for the rate limit too: each answer at least 5 s after the previous one,
    // so a web UI polling for its request_id cannot miss it.
    for (let i = 1; i < finished.length; i++) assert.ok(finished[i] - finished[i - 1] >= 4900, `answer ${i}: ${finished[i] - finished[i - 1]} ms after the previous`)

    for (const id of ['bad-1', 'bad-2', 'bad-3', 'bad-4']) assert.equal(updatingLines(foreground.stderr(), id), 0, 'no update ran')
  })

  it('answers invalid JSON once it is older than the grace window, and removes it', async () => {
    const before = Date.now()
    await world.webUiWrite('{"command": "update_open')
    const result = await world.waitForResult((r) => r.error_code === 'invalid_json' && Date.parse(r.finished_at) >= before)
    assert.match(result.message, /^Invalid update command JSON: /)
    assert.ok(Date.now() - before >= 1500, 'it waited for the grace window')
    assert.equal(await world.requestPresent(), false)
  })

  it('never writes through a symlink planted at the result path; the sandbox cannot replace the result', async () => {
    const victim = path.join(world.sandbox.root, 'host-victim.txt')
    await fs.writeFile(victim, 'host data')
    await fs.chmod(world.sandbox.root, 0o755)
    const dir = `${MOUNT_STATE}/opencode-cloud/commands`
    if (!SANDBOX_USER_OWNS_HOST_DIR) {
      // Sticky dir: the sandbox user cannot rename over or delete occ's files.
      const replace = await world.containerSh('ln -sf "$2" "$1/update-command.result.json"', [dir, victim])
      assert.notEqual(replace.exitCode, 0, 'opencoder replaced the host-owned result file')
      assert.ok((await fs.lstat(path.join(world.commandsDir, 'update-command.result.json'))).isFile())
    }

    // Before the first result exists the name is free: the sandbox can plant a link there.
    await fs.rm(path.join(world.commandsDir, 'update-command.result.json'))
    const plant = await world.containerSh('ln -s "$2" "$1/update-command.result.json"', [dir, victim])
    assert.equal(plant.exitCode, 0, plant.stderr)
    assert.ok((await fs.lstat(path.join(world.commandsDir, 'update-command.result.json'))).isSymbolicLink())
    await world.webUiWrite({command: 'update_opencode', request_id: 'symlink'})
    await waitUntil(
      async () => (await fs.lstat(path.join(world.commandsDir, 'update-command.result.json'))).isFile(),
      30_000,
      () => 'the result never replaced the link',
    )
    assert.equal((await world.readResult())?.request_id, 'symlink')
    assert.equal(await fs.readFile(victim, 'utf8'), 'host data')
  })

  it('never walks a directory renamed into place, while the sandbox flips its subdirectories to symlinks to a host dir', async () => {
    const victim = path.join(world.sandbox.root, 'host-victim-dir')
    await fs.mkdir(victim, {recursive: true})
    const victims = Array.from({length: 20}, (_, i) => `host-file-${i}`)
    for (const name of victims) await fs.writeFile(path.join(victim, name), 'host data')
    // The attacker, as opencoder: a tree with many subdirectories, renamed into place as the
    // request; meanwhile every dN of it (wherever occ moves it) flips to a symlink to the host dir
    // and back. A host that deleted the rejected tree recursively, walking by path, would follow one.
    const attack = await world.containerNode(FLIP_ATTACK, [`${MOUNT_STATE}/opencode-cloud/commands`, victim])
    assert.equal(attack.exitCode, 0, attack.stderr)
    const outcome = JSON.parse(attack.stdout) as {answered: boolean}
    assert.equal(outcome.answered, true, 'the web UI saw its answer')
    const result = await world.readResult()
    assert.equal(result?.error_code, 'not_regular_file')
    assert.match(result!.message, /not a directory/)
    assert.equal(await world.requestPresent(), false)
    assert.deepEqual((await fs.readdir(victim)).sort(), [...victims].sort(), 'the host dir is untouched')
    // The tree was set aside whole (never deleted by the host) for the sandbox to remove.
    const aside = (await fs.readdir(world.commandsDir)).filter((name) => name.startsWith('.rejected.'))
    assert.equal(aside.length, 1)
    assert.ok((await fs.readdir(path.join(world.commandsDir, aside[0]))).length > 0)
    const clean = await world.containerSh('rm -rf "$1"/.rejected.*', [`${MOUNT_STATE}/opencode-cloud/commands`])
    assert.equal(clean.exitCode, 0, clean.stderr)
    assert.deepEqual((await fs.readdir(world.commandsDir)).filter((name) => name.startsWith('.rejected.')), [])
  })

  it('updates to a branch with a new commit: success, changed, from/to commits; listener.json shows the steps', async () => {
    const sha = await world.pushBranch('feature-x', {'NOTES.md': 'a change\n'})
    const steps = new Set<string>()
    let done = false
    const watcher = (async () => {
      while (!done) {
        const status = await world.readListenerJson()
        if (status?.state === 'updating' && status.request_id === 'feature' && typeof status.step === 'string') steps.add(status.step)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()
    await world.webUiWrite({branch: 'feature-x', command: 'update_opencode', request_id: 'feature'})
    const result = await world.waitForResult((r) => r.request_id === 'feature', 120_000)
    done = true
    await watcher
    assert.equal(result.status, 'success', result.message)
    assert.equal(result.changed, true)
    assert.equal(result.from_commit, world.baseCommit)
    assert.equal(result.to_commit, sha)
    assert.ok(steps.size > 0, 'listener.json showed the update steps')
    for (const step of steps) assert.ok((UPDATE_STEPS as readonly string[]).includes(step), step)
  })

  it('claims a request written during an update into its queue at once, and handles it next', async () => {
    const slowSha = await world.pushBranch('slow', {BUILD_SLEEP_SECONDS: '6\n'})
    await world.webUiWrite({branch: 'slow', command: 'update_opencode', request_id: 'slow'})
    await waitForUpdating(world, 'slow', 'build')
    await world.webUiWrite({command: 'update_opencode', request_id: 'queued'})
    await waitUntil(async () => !(await world.requestPresent()), 10_000, () => 'the request was not claimed during the update')
    // The claim (a rename) comes first, listener.json a moment later: give it 2 s, not a heartbeat.
    let queued: Record<string, unknown> | undefined
    await waitUntil(async () => {
      queued = await world.readListenerJson()
      return Array.isArray(queued?.queue) && queued.queue.length > 0
    }, 2000, () => `the queue never showed in listener.json: ${JSON.stringify(queued)}`)
    assert.deepEqual((queued?.queue as Array<{request_id?: string}> | undefined)?.map((item) => item.request_id), ['queued'], JSON.stringify(queued))
    assert.equal(queued?.request_id, 'slow')
    const results = await collectResults(world, ['slow', 'queued'], 120_000)
    assert.equal(results.get('slow')?.to_commit, slowSha)
    assert.equal(results.get('queued')?.status, 'success')
    assert.ok(Date.parse(results.get('queued')!.started_at) >= Date.parse(results.get('slow')!.finished_at))
  })

  it('rate-limits a burst: at most one start every 5 s, each request answered once, in order', async () => {
    const ids = ['burst-0', 'burst-1', 'burst-2']
    const collecting = collectResults(world, ids)
    await writeInTurn(world, ids.map((id) => ({command: 'update_opencode', request_id: id})))
    const results = await collecting
    const starts = ids.map((id) => Date.parse(results.get(id)!.started_at))
    for (let i = 1; i < starts.length; i++) assert.ok(starts[i] - starts[i - 1] >= 4900, `gap ${starts[i] - starts[i - 1]} ms`)
    for (const id of ids) assert.equal(updatingLines(foreground.stderr(), id), 1, id)
  })

  it('two listeners on the same directory never handle the same request', async () => {
    const second = await world.startForeground()
    await second.waitForLine(/Listening for update requests/)
    const ids = ['two-0', 'two-1', 'two-2', 'two-3']
    const collecting = collectResults(world, ids)
    await writeInTurn(world, ids.map((id) => ({command: 'update_opencode', request_id: id})))
    await collecting
    for (const id of ids) {
      assert.equal(updatingLines(foreground.stderr(), id) + updatingLines(second.stderr(), id), 1, `${id} handled once`)
    }

    second.child.kill('SIGTERM')
    assert.equal(await second.exited, 0)
  })

  it('answers into the dir it opened when the sandbox swaps the commands dir for a symlink mid-update, then fails loudly', async () => {
    // On the usual desktop the sandbox user owns opencode-cloud/ and can rename commands/; here
    // (occ runs as another uid) it gets that by a chown, as it would have it there.
    const parent = path.dirname(world.commandsDir)
    const moved = `${world.commandsDir}.moved`
    const victim = path.join(world.sandbox.root, 'host-victim-swap')
    await fs.mkdir(victim, {recursive: true})
    await fs.writeFile(path.join(victim, 'marker'), 'host data')
    await world.pushBranch('slow-swap', {BUILD_SLEEP_SECONDS: '4\n'})
    await fs.chown(parent, 1000, 1000)
    try {
      await world.webUiWrite({branch: 'slow-swap', command: 'update_opencode', request_id: 'swap'})
      await waitForUpdating(world, 'swap', 'build')
      const swap = await world.containerSh('mv "$1" "$1.moved" && ln -s "$2" "$1"', [`${MOUNT_STATE}/opencode-cloud/commands`, victim])
      assert.equal(swap.exitCode, 0, swap.stderr)
      let result: UpdateResult | undefined
      await waitUntil(
        async () => {
          result = await fs.readFile(path.join(moved, 'update-command.result.json'), 'utf8').then((text) => JSON.parse(text), () => undefined)
          return result?.request_id === 'swap'
        },
        120_000,
        () => `no result in the moved dir; stderr:\n${foreground.stderr()}`,
      )
      assert.equal(result?.status, 'success', result?.message)
      assert.deepEqual(await fs.readdir(victim), ['marker'], 'nothing written, renamed or removed through the swapped path')
      // The listener then stops with a clear error and its hook throws (the heartbeat notices the swap).
      await foreground.waitForLine(/Update listener failed: Update listener stopped: .*commands was replaced by a symlink/, 30_000)
      // The hook calls fail(): occ start --no-daemon ends by itself, non-zero (the third-party
      // fixture hook, still waiting for the signal, gets the abort), so a service manager restarts it.
      assert.equal(await foreground.exited, 1, foreground.stderr())
      assert.deepEqual(await fs.readdir(victim), ['marker'])
    } finally {
      await fs.unlink(world.commandsDir).catch(() => {})
      await fs.rename(moved, world.commandsDir).catch(() => {})
      await fs.chown(parent, process.getuid?.() ?? 0, process.getgid?.() ?? 0)
    }

    foreground = await world.startForeground()
    await foreground.waitForLine(/Listening for update requests/)
  })

  it('SIGTERM during an update: the build is stopped safely, an error result is written, exit 0', async () => {
    await world.pushBranch('very-slow', {BUILD_SLEEP_SECONDS: '120\n'})
    await world.webUiWrite({branch: 'very-slow', command: 'update_opencode', request_id: 'sigterm'})
    await waitForUpdating(world, 'sigterm', 'build')
    foreground.child.kill('SIGTERM')
    // The result comes once the build is stopped (not after the 120 s build).
    const result = await world.waitForResult((r) => r.request_id === 'sigterm', 30_000)
    assert.equal(result.status, 'error')
    assert.equal(result.error_code, 'interrupted')
    assert.equal(result.changed, false, result.message)
    // And the service stops soon after (well inside a service manager's stop timeout).
    const exit = await Promise.race([foreground.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 30_000))])
    assert.equal(exit, 0, `occ start --no-daemon after SIGTERM: ${String(exit)}\n${foreground.stderr()}`)
    assert.equal(await world.readListenerJson(), undefined, 'listener.json removed: nobody is listening')
    assert.equal(JSON.parse(await fs.readFile(world.markerFile, 'utf8')).state, 'stopped', 'the third-party hook got the signal too')
  })

  it('SIGKILL during an update, then a restart: the claimed request gets an "interrupted" result with its request_id', async () => {
    const killed = await world.startForeground()
    await killed.waitForLine(/Listening for update requests/)
    await world.webUiWrite({branch: 'very-slow', command: 'update_opencode', request_id: 'sigkill'})
    await waitForUpdating(world, 'sigkill')
    killed.child.kill('SIGKILL')
    await killed.exited
    const claims = (await fs.readdir(world.commandsDir)).filter((name) => /^update-command\.claimed\.\d+-[0-9a-f]+\.json$/.test(name))
    assert.equal(claims.length, 1, 'the claim is the evidence')
    const status = await world.sandbox.occ(['status'])
    assert.match(String(status.stdout), /Listener:\s+stale \(the listener process \(pid \d+\) is gone\)/)

    const restarted = await world.startForeground()
    foreground = restarted // the next tests use it, also when an assertion here fails
    const result = await world.waitForResult((r) => r.request_id === 'sigkill')
    assert.equal(result.status, 'error')
    assert.equal(result.error_code, 'interrupted')
    assert.match(result.message, /interrupted/)
    // Leftover claims are answered and removed before the listener says it listens.
    await restarted.waitForLine(/Listening for update requests/)
    assert.deepEqual((await fs.readdir(world.commandsDir)).filter((name) => name.includes('claimed')), [])
  })

  it('exits 0 when the container is stopped (occ stop), and listener.json goes away', async () => {
    await waitUntil(async () => (await world.readListenerJson())?.pid === foreground.pid, 15_000, () => 'no listener.json')
    const stop = await world.sandbox.occ(['stop', '--timeout', '5'])
    assert.equal(stop.exitCode, 0, String(stop.stderr))
    assert.equal(await foreground.exited, 0)
    assert.equal(await world.readListenerJson(), undefined)
  })

  it('exits non-zero when the container dies unexpectedly', async () => {
    const fg = await world.startForeground()
    await fg.waitForLine(/Listening for update requests/)
    await execa('docker', ['kill', world.sandbox.containerName])
    assert.notEqual(await fg.exited, 0)
    assert.equal(await world.readListenerJson(), undefined)
  })
})

describe('update listener disabled (no state mount, read-only state mount)', function () {
  this.timeout(120_000)
  let world: ListenerWorld
  before(async () => {
    world = await createListenerWorld('lsnoff', {mountRepo: false})
  })
  after(async () => {
    await world?.cleanup()
  })

  it('without the state mount: says why on stderr, and occ status says it is disabled', async () => {
    const fg = await world.startForeground(['--no-mounts'])
    await fg.waitForLine(/Update listener disabled: no bind mount for \/home\/opencoder\/\.local\/state\/opencode/)
    const status = await world.sandbox.occ(['status'])
    assert.match(String(status.stdout), /Listener:\s+disabled: no bind mount/)
    fg.child.kill('SIGTERM')
    assert.equal(await fg.exited, 0)
    assert.equal((await world.sandbox.occ(['stop', '--remove', '--timeout', '2'])).exitCode, 0)
  })

  it('with a read-only state mount: says why on stderr, in occ status and in listener.json; requests cannot arrive', async () => {
    const stateHost = path.join(world.sandbox.env.XDG_STATE_HOME, 'opencode')
    const fg = await world.startForeground(['--no-mounts', '--mount', `${stateHost}:${MOUNT_STATE}:ro`])
    await fg.waitForLine(/Update listener disabled: the bind mount for \/home\/opencoder\/\.local\/state\/opencode is read-only/)
    await waitUntil(async () => (await world.readListenerJson())?.state === 'disabled', 15_000, () => 'no listener.json')
    const fromInside = await world.containerSh('cat "$1/listener.json"', [`${MOUNT_STATE}/opencode-cloud/commands`])
    assert.match(JSON.parse(fromInside.stdout).disabled_reason, /read-only/, 'the web UI can tell why nobody answers')
    const status = await world.sandbox.occ(['status'])
    assert.match(String(status.stdout), /Listener:\s+disabled: the bind mount .* is read-only/)
    await assert.rejects(world.webUiWrite({command: 'update_opencode'}), /could not write/)
    fg.child.kill('SIGTERM')
    assert.equal(await fg.exited, 0)
    assert.equal(await world.readListenerJson(), undefined)
  })
})
