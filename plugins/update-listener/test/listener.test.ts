import assert from 'node:assert/strict'
import {createHook} from 'node:async_hooks'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {
  claimFileName,
  isQuarantineName,
  LISTENER_FILE,
  listenerStatusSchema,
  readListenerStatus,
  REQUEST_FILE,
  RESULT_FILE,
  updateResultSchema,
} from 'opencode-cloud/internal'

import {exists, fakeUpdate, flipSubdirsToSymlinks, makeWorld, sleep, waitFor, waitForListenerJson, type World} from './helpers.js'

const quarantined = async (dir: string) => (await fs.readdir(dir)).filter((name) => isQuarantineName(name))

describe('update listener (real temp dirs, fake update plan)', () => {
  let world: World
  beforeEach(async () => {
    world = await makeWorld()
  })
  afterEach(() => world.cleanup())

  describe('the seed contract', () => {
    it('claims a request within 100 ms of the rename and answers with a success result', async () => {
      const {calls, update} = fakeUpdate({steps: [['resolve', 5]]})
      world.start({updateOpencode: update})
      await sleep(50)
      // The event's time is the listener's monotonic clock (performance.now), so is this one.
      const before = performance.now()
      await world.request({branch: 'feature/x', command: 'update_opencode', request_id: 'r-1'})
      await waitFor(() => world.events.some((event) => event.type === 'claimed'))
      const claimed = world.events.find((event) => event.type === 'claimed') as {at: number}
      assert.ok(claimed.at - before < 100, `claimed ${claimed.at - before} ms after the write began`)
      const [result] = await world.waitForResults(1)
      assert.deepEqual(calls.map((call) => call.request), [{branch: 'feature/x'}])
      assert.equal(result.status, 'success')
      assert.equal(result.request_id, 'r-1')
      assert.equal(result.message, 'Update completed')
      assert.equal(result.changed, true)
      assert.equal(result.from_commit, 'a'.repeat(40))
      assert.equal(result.to_commit, 'b'.repeat(40))
      assert.match(result.started_at, /Z$/)
      assert.match(result.finished_at, /Z$/)
      // On disk: the same, schema-valid, and the request and the claim are gone.
      assert.deepEqual(updateResultSchema.parse(await world.readResult()), result)
      const names = await fs.readdir(world.dir)
      assert.deepEqual(names.filter((name) => !name.startsWith('.')).sort(), [LISTENER_FILE, RESULT_FILE])
    })

    it('reacts within 100 ms (watch), measured from the rename', async () => {
      world.start({pollMs: 60_000})
      await sleep(30)
      const latencies: number[] = []
      for (let i = 0; i < 10; i++) {
        const before = world.events.length
        const renamedAt = await world.request({command: 'update_opencode', request_id: `r${i}`})
        await waitFor(() => world.events.slice(before).some((event) => event.type === 'claimed'), 2000)
        latencies.push(performance.now() - renamedAt)
        await world.waitForResults(i + 1)
      }

      latencies.sort((a, b) => a - b)
      assert.ok(latencies[latencies.length - 1] < 100, `latencies ${latencies.map((ms) => ms.toFixed(1)).join(', ')}`)
    })

    it('still answers when file events are lost: the periodic poll picks the request up', async () => {
      world.start({pollMs: 50, watch: false})
      await world.request({command: 'update_opencode', request_id: 'polled'})
      const [result] = await world.waitForResults(1, 2000)
      assert.equal(result.request_id, 'polled')
    })

    it('does nothing when there is no request', async () => {
      const {calls, update} = fakeUpdate()
      world.start({pollMs: 20, updateOpencode: update})
      await sleep(150)
      assert.equal(calls.length, 0)
      assert.equal(await world.readResult(), undefined)
    })

    it('answers "already up to date" as a success that says nothing changed', async () => {
      const {update} = fakeUpdate({outcome: {changed: false, message: 'Already up to date (abc1234); nothing changed.', toCommit: 'a'.repeat(40)}})
      world.start({updateOpencode: update})
      await world.request({command: 'update_opencode', commit: 'abc1234', request_id: 'same'})
      const [result] = await world.waitForResults(1)
      assert.equal(result.status, 'success')
      assert.equal(result.changed, false)
      assert.match(result.message, /nothing changed/)
    })

    it('answers a failed update with an error result carrying its message', async () => {
      const failing = fakeUpdate({outcome: {changed: false, message: 'Build failed: exit 2 (rolled back)', status: 'error'}})
      world.start({updateOpencode: failing.update})
      await world.request({command: 'update_opencode', request_id: 'f1'})
      const [result] = await world.waitForResults(1)
      assert.equal(result.status, 'error')
      assert.equal(result.error_code, 'update_failed')
      assert.equal(result.message, 'Build failed: exit 2 (rolled back)')
    })

    it('answers an update that throws with an error result', async () => {
      world.start({updateOpencode: fakeUpdate({throws: 'engine went away'}).update})
      await world.request({command: 'update_opencode', request_id: 't1'})
      const [result] = await world.waitForResults(1)
      assert.deepEqual(
        {code: result.error_code, id: result.request_id, message: result.message, status: result.status},
        {code: 'update_failed', id: 't1', message: 'engine went away', status: 'error'},
      )
      assert.equal(result.changed, undefined)
    })

    it('rejects an unsupported command, branch + commit, an unknown field and a bad ref, without updating', async () => {
      const {calls, update} = fakeUpdate()
      world.start({updateOpencode: update})
      const cases: Array<[unknown, string, RegExp]> = [
        [{command: 'reboot', request_id: 'a'}, 'unsupported_command', /Unsupported command 'reboot'. Expected: update_opencode/],
        [{branch: 'dev', command: 'update_opencode', commit: 'abcdef0', request_id: 'b'}, 'conflicting_target', /Specify only one of branch or commit/],
        [{command: 'update_opencode', request_id: 'c', force: true}, 'invalid_request', /Unknown field 'force'/],
        [{branch: '--upload-pack=evil', command: 'update_opencode', request_id: 'd'}, 'invalid_ref', /Invalid branch/],
      ]
      for (const [index, [body, code, message]] of cases.entries()) {
        await world.request(body)
        const results = await world.waitForResults(index + 1)
        const result = results[index]
        assert.equal(result.status, 'error')
        assert.equal(result.error_code, code)
        assert.match(result.message, message)
        assert.equal(result.request_id, (body as {request_id: string}).request_id)
        assert.equal(result.changed, false)
      }

      assert.equal(calls.length, 0)
      assert.equal(await exists(path.join(world.dir, REQUEST_FILE)), false)
    })
  })

  describe('invalid JSON and the grace window', () => {
    it('waits for a request written in place (no rename) to become valid', async () => {
      const {calls, update} = fakeUpdate()
      world.start({graceMs: 1000, updateOpencode: update})
      const file = path.join(world.dir, REQUEST_FILE)
      // One open, two writes (a slow writer) ...
      const handle = await fs.open(file, 'w')
      await handle.write('{"command": "update_op')
      await sleep(150)
      await handle.write('encode", "request_id": "slow"}')
      await handle.close()
      // ... and a writer that reopens the file by name to append.
      await world.waitForResults(1)
      await fs.writeFile(file, '{"command": "update_opencode", ')
      await sleep(150)
      await fs.appendFile(file, '"request_id": "reopened"}')
      const results = await world.waitForResults(2)
      assert.deepEqual(results.map((result) => [result.status, result.request_id]), [['success', 'slow'], ['success', 'reopened']])
      assert.equal(calls.length, 2)
    })

    it('answers invalid JSON with an error once the file is older than the grace window, and removes it', async () => {
      world.start({graceMs: 150})
      const started = Date.now()
      await world.request('{"command": ')
      const [result] = await world.waitForResults(1)
      assert.ok(Date.now() - started >= 140, 'waited for the grace window')
      assert.equal(result.error_code, 'invalid_json')
      assert.match(result.message, /^Invalid update command JSON: /)
      assert.equal(await exists(path.join(world.dir, REQUEST_FILE)), false)
      assert.deepEqual((await fs.readdir(world.dir)).filter((name) => name.includes('claimed')), [])
    })

    it('answers at once when the invalid file is already older than the grace window', async () => {
      const file = path.join(world.dir, REQUEST_FILE)
      await fs.writeFile(file, 'not json')
      const old = new Date(Date.now() - 60_000)
      await fs.utimes(file, old, old)
      world.start({graceMs: 5000})
      const [result] = await world.waitForResults(1, 1000)
      assert.equal(result.error_code, 'invalid_json')
    })

    it('does not let a future mtime stretch the grace window', async () => {
      const file = path.join(world.dir, REQUEST_FILE)
      await fs.writeFile(file, '{')
      const future = new Date(Date.now() + 3_600_000)
      await fs.utimes(file, future, future)
      world.start({graceMs: 100})
      const [result] = await world.waitForResults(1, 2000)
      assert.equal(result.error_code, 'invalid_json')
    })
  })

  describe('rate limit', () => {
    it('starts at most one request per interval; a waiting request is handled once it elapses', async () => {
      const {calls, update} = fakeUpdate()
      const started: number[] = []
      world.start({
        rateLimitMs: 400,
        updateOpencode: async (request, progress) => {
          started.push(Date.now())
          return update(request, progress)
        },
      })
      await world.request({command: 'update_opencode', request_id: 'first'})
      await world.waitForResults(1)
      await world.request({command: 'update_opencode', request_id: 'second'})
      await sleep(100)
      assert.ok(!(await exists(path.join(world.dir, REQUEST_FILE))), 'the second request is claimed at once, into the queue')
      // The claim (a rename) comes first, listener.json just after: wait for it to show the queue.
      const status = await waitForListenerJson(world, (view) => (view.queue?.length ?? 0) > 0)
      assert.ok(Date.parse(status.next_command_at!) >= started[0] + 399, 'listener.json says when the next one may start')
      assert.deepEqual(status.queue?.map((item) => item.request_id), ['second'], 'and that it waits')
      const results = await world.waitForResults(2)
      assert.deepEqual(results.map((result) => result.request_id), ['first', 'second'])
      assert.equal(calls.length, 2)
      assert.ok(started[1] - started[0] >= 400, `second started ${started[1] - started[0]} ms after the first`)
      assert.ok(started[1] - Date.parse(results[0].finished_at) >= 395, 'and at least the interval after the first was answered')
    })

    it('counts the interval from each answer, rejected ones too: results never come back to back', async () => {
      const {calls, update} = fakeUpdate()
      world.start({rateLimitMs: 300, updateOpencode: update})
      const bodies = [{command: 'reboot', request_id: 'r0'}, {command: 'update_opencode', force: 1, request_id: 'r1'}, {command: 'update_opencode', request_id: 'r2'}]
      for (const body of bodies) {
        await waitFor(() => exists(path.join(world.dir, REQUEST_FILE)).then((present) => !present))
        await world.request(body)
      }

      const results = await world.waitForResults(3)
      assert.deepEqual(results.map((result) => [result.request_id, result.status]), [['r0', 'error'], ['r1', 'error'], ['r2', 'success']])
      assert.equal(calls.length, 1)
      const finished = results.map((result) => Date.parse(result.finished_at))
      for (let i = 1; i < finished.length; i++) assert.ok(finished[i] - finished[i - 1] >= 300, `result ${i} came ${finished[i] - finished[i - 1]} ms after the previous`)
    })

    it('says in listener.json when the next command may start: the last answer plus the interval', async () => {
      const {update} = fakeUpdate({steps: [['build', 300]]})
      world.start({rateLimitMs: 1000, updateOpencode: update})
      await world.request({command: 'update_opencode', request_id: 'slow'})
      const [result] = await world.waitForResults(1)
      const file = path.join(world.dir, LISTENER_FILE)
      await waitFor(async () => listenerStatusSchema.parse(JSON.parse(await fs.readFile(file, 'utf8'))).state === 'idle')
      const status = listenerStatusSchema.parse(JSON.parse(await fs.readFile(file, 'utf8')))
      const next = Date.parse(status.next_command_at!)
      const finished = Date.parse(result.finished_at)
      assert.ok(next >= finished + 1000 && next <= finished + 1000 + 500, `next_command_at ${next - finished} ms after finished_at`)
    })

    it('handles a burst: every request answered, in order, none lost, none twice', async () => {
      const {calls, update} = fakeUpdate({steps: [['build', 20]]})
      world.start({rateLimitMs: 50, updateOpencode: update})
      const ids = Array.from({length: 8}, (_, i) => `burst-${i}`)
      for (const id of ids) {
        // The web UI writes the next request only once the previous one left the request path.
        await waitFor(() => exists(path.join(world.dir, REQUEST_FILE)).then((present) => !present))
        await world.request({command: 'update_opencode', request_id: id})
      }

      const results = await world.waitForResults(ids.length, 10_000)
      assert.deepEqual(results.map((result) => result.request_id), ids)
      assert.equal(calls.length, ids.length)
    })
  })

  describe('nothing lost, nothing twice', () => {
    it('claims a request written during an update into the queue at once, and handles it next', async () => {
      const {calls, update} = fakeUpdate({steps: [['fetch', 50], ['build', 250]]})
      world.start({updateOpencode: update})
      await world.request({command: 'update_opencode', request_id: 'running'})
      await waitFor(() => calls.length === 1)
      await world.request({command: 'update_opencode', request_id: 'queued'})
      await sleep(100)
      assert.ok(!(await exists(path.join(world.dir, REQUEST_FILE))), 'claimed while busy, so a later request cannot be renamed over it')
      // The claim (a rename) comes first, listener.json just after: wait for it to show the queue.
      const status = await waitForListenerJson(world, (view) => (view.queue?.length ?? 0) > 0)
      assert.equal(status.state, 'updating')
      assert.equal(status.request_id, 'running')
      assert.deepEqual(status.queue?.map((item) => item.request_id), ['queued'])
      const results = await world.waitForResults(2)
      assert.deepEqual(results.map((result) => result.request_id), ['running', 'queued'])
    })

    it('answers a claim left by a killed listener with "interrupted" and its request_id', async () => {
      const deadPid = 4_000_000
      const claim = claimFileName(deadPid)
      await fs.writeFile(path.join(world.dir, claim), JSON.stringify({command: 'update_opencode', request_id: 'was-running'}))
      world.start({isAlive: (pid) => pid !== deadPid})
      const [result] = await world.waitForResults(1)
      assert.equal(result.status, 'error')
      assert.equal(result.error_code, 'interrupted')
      assert.equal(result.request_id, 'was-running')
      assert.match(result.message, /interrupted/)
      assert.equal(await exists(path.join(world.dir, claim)), false)
    })

    it('does not answer a dead claim twice when its result was already written', async () => {
      const claim = claimFileName(4_000_001)
      await fs.writeFile(path.join(world.dir, claim), JSON.stringify({command: 'update_opencode', request_id: 'done'}))
      await sleep(20)
      const answered = {finished_at: new Date().toISOString(), message: 'Update completed', request_id: 'done', started_at: new Date().toISOString(), status: 'success'}
      await fs.writeFile(path.join(world.dir, RESULT_FILE), JSON.stringify(answered))
      world.start({isAlive: () => false})
      await waitFor(() => world.events.some((event) => event.type === 'recovered'))
      assert.deepEqual(await world.readResult(), answered)
      assert.equal(await exists(path.join(world.dir, claim)), false)
    })

    it('leaves the claim of a live listener alone', async () => {
      const claim = claimFileName(4_000_002)
      await fs.writeFile(path.join(world.dir, claim), JSON.stringify({command: 'update_opencode'}))
      world.start({isAlive: () => true})
      await sleep(100)
      assert.ok(await exists(path.join(world.dir, claim)))
      assert.equal(await world.readResult(), undefined)
    })

    it('two listeners on one directory never handle the same request', async () => {
      const handled: string[] = []
      const make = () =>
        fakeUpdate({steps: [['build', 5]]}).update
      const wrap = (update: ReturnType<typeof make>) =>
        (async (request, progress) => {
          handled.push('x')
          return update(request, progress)
        }) as typeof update
      world.start({isAlive: () => true, pid: 111, updateOpencode: wrap(make())})
      world.start({isAlive: () => true, pid: 222, updateOpencode: wrap(make())})
      const ids = Array.from({length: 30}, (_, i) => `two-${i}`)
      for (const id of ids) {
        await waitFor(() => exists(path.join(world.dir, REQUEST_FILE)).then((present) => !present))
        await world.request({command: 'update_opencode', request_id: id})
      }

      const results = await world.waitForResults(ids.length, 10_000)
      await sleep(100)
      assert.equal(results.length, ids.length)
      assert.deepEqual(results.map((result) => result.request_id).sort(), [...ids].sort())
      assert.equal(handled.length, ids.length)
    })
  })

  describe('untrusted input', () => {
    let outside: string
    beforeEach(async () => {
      outside = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-host-file-'))
    })
    afterEach(() => fs.rm(outside, {force: true, recursive: true}))

    it('never writes through a symlink planted at the result path or at listener.json', async () => {
      const victim = path.join(outside, 'victim.txt')
      const victim2 = path.join(outside, 'victim2.txt')
      await fs.writeFile(victim, 'host file')
      await fs.writeFile(victim2, 'host file 2')
      await fs.symlink(victim, path.join(world.dir, RESULT_FILE))
      await fs.symlink(victim2, path.join(world.dir, LISTENER_FILE))
      world.start()
      await world.request({command: 'update_opencode', request_id: 'sym'})
      await world.waitForResults(1)
      await sleep(50)
      assert.equal(await fs.readFile(victim, 'utf8'), 'host file')
      assert.equal(await fs.readFile(victim2, 'utf8'), 'host file 2')
      assert.ok((await fs.lstat(path.join(world.dir, RESULT_FILE))).isFile())
      assert.ok((await fs.lstat(path.join(world.dir, LISTENER_FILE))).isFile())
    })

    it('refuses a symlink as the request (does not read its target), a FIFO without hanging, and a directory', async () => {
      const {calls, update} = fakeUpdate()
      world.start({updateOpencode: update})
      const target = path.join(outside, 'request.json')
      await fs.writeFile(target, JSON.stringify({command: 'update_opencode', request_id: 'via-link'}))
      await fs.symlink(target, path.join(world.dir, REQUEST_FILE))
      let [result] = await world.waitForResults(1)
      assert.equal(result.error_code, 'not_regular_file')
      assert.match(result.message, /regular file, not a symlink/)
      assert.equal(result.request_id, undefined)
      assert.ok(await exists(target), 'the target is untouched')

      execFileSync('mkfifo', [path.join(world.dir, '.fifo')])
      await fs.rename(path.join(world.dir, '.fifo'), path.join(world.dir, REQUEST_FILE))
      ;[, result] = await world.waitForResults(2)
      assert.match(result.message, /not a fifo/)

      await fs.mkdir(path.join(world.dir, '.dir', 'inner'), {recursive: true})
      await fs.rename(path.join(world.dir, '.dir'), path.join(world.dir, REQUEST_FILE))
      ;[, , result] = await world.waitForResults(3)
      assert.match(result.message, /not a directory/)
      assert.equal(calls.length, 0)
      assert.equal(await exists(path.join(world.dir, REQUEST_FILE)), false)
      // Neither the link, the FIFO nor the directory was ever claimed under a claim name.
      assert.deepEqual((await fs.readdir(world.dir)).filter((name) => name.includes('claimed')), [])
    })

    it('never deletes a tree: an empty directory at the request path is removed, a non-empty one set aside whole', async () => {
      world.start()
      await fs.mkdir(path.join(world.dir, '.empty'))
      await fs.rename(path.join(world.dir, '.empty'), path.join(world.dir, REQUEST_FILE))
      let [result] = await world.waitForResults(1)
      assert.equal(result.error_code, 'not_regular_file')
      assert.deepEqual(await quarantined(world.dir), [], 'the empty directory was removed (rmdir)')

      await fs.mkdir(path.join(world.dir, '.tree', 'd1', 'd2'), {recursive: true})
      await fs.writeFile(path.join(world.dir, '.tree', 'd1', 'd2', 'theirs'), 'sandbox data')
      await fs.symlink(outside, path.join(world.dir, '.tree', 'd1', 'escape'))
      await fs.writeFile(path.join(outside, 'host'), 'host data')
      await fs.rename(path.join(world.dir, '.tree'), path.join(world.dir, REQUEST_FILE))
      ;[, result] = await world.waitForResults(2)
      assert.equal(result.error_code, 'not_regular_file')
      assert.match(result.message, /not a directory/)
      assert.equal(await exists(path.join(world.dir, REQUEST_FILE)), false)
      const aside = await quarantined(world.dir)
      assert.equal(aside.length, 1)
      assert.equal(await fs.readFile(path.join(world.dir, aside[0], 'd1', 'd2', 'theirs'), 'utf8'), 'sandbox data', 'not walked into')
      assert.equal(await fs.readFile(path.join(outside, 'host'), 'utf8'), 'host data')
      assert.match(world.logs.join('\n'), /left as \.rejected\.[0-9a-f]+ for the sandbox to remove/)
      // The set-aside entry is ignored from then on: a new request is answered normally.
      await world.request({command: 'update_opencode', request_id: 'after'})
      ;[, , result] = await world.waitForResults(3)
      assert.equal(result.request_id, 'after')
      assert.equal(result.status, 'success')
    })

    it('never walks a tree: no recursive rm, and no listing of anything but the commands dir itself', async () => {
      // Node's recursive rm walks by path (lstat, then readdir), so a subdirectory flipped to a
      // symlink between the two makes it empty a host dir. The listener must never start such a walk.
      const calls: string[] = []
      const spied = {opendir: fs.opendir, readdir: fs.readdir, rm: fs.rm}
      const mutable = fs as unknown as Record<string, (...args: unknown[]) => unknown>
      for (const name of ['rm', 'readdir', 'opendir'] as const) {
        mutable[name] = (...args: unknown[]) => {
          calls.push(`${name} ${String(args[0])} ${JSON.stringify(args[1] ?? {})}`)
          return (spied[name] as (...a: unknown[]) => unknown)(...args)
        }
      }

      try {
        const claim = claimFileName(4_000_005)
        await fs.mkdir(path.join(world.dir, claim, 'sub'), {recursive: true})
        await fs.mkdir(path.join(world.dir, RESULT_FILE, 'sub'), {recursive: true})
        world.start({isAlive: (pid) => pid !== 4_000_005})
        await fs.mkdir(path.join(world.dir, '.tree', 'sub', 'deeper'), {recursive: true})
        await fs.rename(path.join(world.dir, '.tree'), path.join(world.dir, REQUEST_FILE))
        await world.waitForResults(1)
        await world.request({command: 'update_opencode', request_id: 'ok'})
        await world.waitForResults(2)
      } finally {
        Object.assign(fs, spied)
      }

      const ownCalls = calls.filter((call) => !call.includes('/staging') && !call.includes('.web-ui-'))
      assert.ok(ownCalls.some((call) => call.startsWith('readdir ')), 'the spy sees the listener (it lists the dir at start)')
      assert.deepEqual(ownCalls.filter((call) => call.startsWith('rm ') || call.startsWith('opendir ')), [])
      for (const call of ownCalls) assert.match(call, /^readdir (\/proc\/self\/fd\/\d+|\S+\/commands) /, call)
    })

    it('never empties a host dir while the sandbox flips subdirectories of a rejected tree to symlinks (race)', async () => {
      const victims = Array.from({length: 30}, (_, i) => `host-${i}`)
      for (const name of victims) await fs.writeFile(path.join(outside, name), 'host data')
      world.start()
      const subdirs = 20
      for (let round = 0; round < 3; round++) {
        const staging = path.join(world.dir, `.attack-${round}`)
        for (let i = 0; i < subdirs; i++) {
          await fs.mkdir(path.join(staging, `d${i}`), {recursive: true})
          await Promise.all(Array.from({length: 30}, (_, j) => fs.writeFile(path.join(staging, `d${i}`, `f${j}`), '')))
        }

        // Wherever the tree is (request path, claim, set aside), the sandbox keeps flipping its dN.
        const attack = flipSubdirsToSymlinks(world.dir, outside, (name) => name === REQUEST_FILE || isQuarantineName(name) || name.includes('claimed'), subdirs)
        await fs.rename(staging, path.join(world.dir, REQUEST_FILE))
        await world.waitForResults(round + 1)
        await sleep(50)
        await attack.stop()
      }

      assert.deepEqual((await fs.readdir(outside)).sort(), [...victims].sort())
      assert.ok(world.results.every((result) => result.error_code === 'not_regular_file'))
    })

    it('sets aside, never walks, a directory planted at the result path or at listener.json', async () => {
      for (const name of [RESULT_FILE, LISTENER_FILE]) {
        await fs.mkdir(path.join(world.dir, name, 'sub'), {recursive: true})
        await fs.writeFile(path.join(world.dir, name, 'sub', 'theirs'), name)
        await fs.symlink(outside, path.join(world.dir, name, 'escape'))
      }

      await fs.writeFile(path.join(outside, 'host'), 'host data')
      world.start()
      await world.request({command: 'update_opencode', request_id: 'through'})
      const [result] = await world.waitForResults(1)
      assert.equal(result.request_id, 'through')
      assert.ok((await fs.lstat(path.join(world.dir, RESULT_FILE))).isFile())
      assert.ok((await fs.lstat(path.join(world.dir, LISTENER_FILE))).isFile())
      const aside = await quarantined(world.dir)
      assert.equal(aside.length, 2)
      const kept = await Promise.all(aside.map((name) => fs.readFile(path.join(world.dir, name, 'sub', 'theirs'), 'utf8')))
      assert.deepEqual(kept.sort(), [LISTENER_FILE, RESULT_FILE].sort())
      assert.equal(await fs.readFile(path.join(outside, 'host'), 'utf8'), 'host data')
    })

    it('sets aside, never walks, a directory left under a dead claim name', async () => {
      const claim = claimFileName(4_000_003)
      await fs.mkdir(path.join(world.dir, claim, 'sub'), {recursive: true})
      await fs.writeFile(path.join(world.dir, claim, 'sub', 'theirs'), 'sandbox data')
      await fs.symlink(outside, path.join(world.dir, claim, 'escape'))
      await fs.writeFile(path.join(outside, 'host'), 'host data')
      const empty = claimFileName(4_000_004)
      await fs.mkdir(path.join(world.dir, empty))
      world.start({isAlive: () => false})
      await waitFor(async () => !(await exists(path.join(world.dir, claim))) && !(await exists(path.join(world.dir, empty))))
      const aside = await quarantined(world.dir)
      assert.equal(aside.length, 1, 'the empty one was removed, the other set aside')
      assert.equal(await fs.readFile(path.join(world.dir, aside[0], 'sub', 'theirs'), 'utf8'), 'sandbox data')
      assert.equal(await fs.readFile(path.join(outside, 'host'), 'utf8'), 'host data')
      assert.equal(world.results.length, 0, 'nothing to answer for a claim that is not a request')
    })

    it('caps the request at 64 KiB', async () => {
      world.start()
      await world.request(JSON.stringify({command: 'update_opencode', request_id: 'x'.repeat(70_000)}))
      const [result] = await world.waitForResults(1)
      assert.equal(result.error_code, 'too_large')
    })
  })

  describe('the commands dir swapped under the listener', () => {
    let outside: string
    beforeEach(async () => {
      outside = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-host-dir-'))
    })
    afterEach(() => fs.rm(outside, {force: true, recursive: true}))

    /** The sandbox, mid-update: moves the commands dir away and puts a link to a host dir in its place. */
    async function swap(target: World): Promise<string> {
      const moved = path.join(path.dirname(target.dir), 'moved')
      await fs.rename(target.dir, moved)
      await fs.symlink(outside, target.dir)
      return moved
    }

    async function swapDuringUpdate(target: World): Promise<{moved: string; failure: unknown}> {
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      // The swap takes two steps (rename, then symlink). Nothing may look at the path between
      // them, or the listener sees it gone instead of replaced: no watch, no poll (the request is
      // there before the listener starts, so its first scan finds it), a slow heartbeat.
      await target.request({command: 'update_opencode', request_id: 'swapped'})
      const running = target.start({
        heartbeatMs: 10_000,
        pollMs: 60_000,
        updateOpencode: async (request, progress) => {
          await gate
          return fakeUpdate().update(request, progress)
        },
        watch: false,
      })
      let failure: unknown
      const done = running.done.catch((error: unknown) => {
        failure = error
      })
      // Swap once the update runs and listener.json says so (its write at the start is done).
      await waitFor(async () => (await fs.readFile(path.join(target.dir, LISTENER_FILE), 'utf8').catch(() => '')).includes('"swapped"'))
      const moved = await swap(target)
      release()
      await waitFor(() => failure !== undefined, 5000, () => target.logs.join('\n'))
      await done
      return {failure, moved}
    }

    if (process.platform === 'linux') {
      it('answers into the directory it opened, never through the swapped path, then stops with a clear error', async () => {
        const {failure, moved} = await swapDuringUpdate(world)
        assert.deepEqual(await fs.readdir(outside), [], 'nothing written, renamed or removed in the host dir')
        const result = JSON.parse(await fs.readFile(path.join(moved, RESULT_FILE), 'utf8'))
        assert.equal(result.request_id, 'swapped')
        assert.equal(result.status, 'success')
        assert.deepEqual((await fs.readdir(moved)).filter((name) => name.includes('claimed')), [], 'the claim was removed there too')
        assert.match(String(failure), /Update listener stopped: .*replaced by a symlink/)
      })
    }

    it('without /proc: refuses to touch the swapped path and stops with a clear error', async () => {
      const fallback = await makeWorld({proc: false})
      try {
        const {failure} = await swapDuringUpdate(fallback)
        assert.deepEqual(await fs.readdir(outside), [], 'nothing written in the host dir')
        assert.match(String(failure), /Update listener stopped: .*replaced by a symlink/)
      } finally {
        await fs.unlink(fallback.dir).catch(() => {})
        await fallback.cleanup()
      }
    })

    it('stops (the service restarts it) when the dir is replaced while idle', async () => {
      const running = world.start({heartbeatMs: 30})
      let failure: unknown
      const done = running.done.catch((error: unknown) => {
        failure = error
      })
      await waitFor(() => exists(path.join(world.dir, LISTENER_FILE)))
      await fs.rename(world.dir, path.join(path.dirname(world.dir), 'moved'))
      await fs.mkdir(world.dir)
      await done
      assert.match(String(failure), /was replaced or moved/)
    })
  })

  describe('listener.json', () => {
    it('is written at start, refreshed by the heartbeat, shows the update step, and goes away at stop', async () => {
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      const running = world.start({
        heartbeatMs: 100,
        updateOpencode: async (_request, progress) => {
          progress.onStep?.('fetch')
          await sleep(20)
          progress.onStep?.('build')
          await gate
          return (await fakeUpdate().update({}, {})) as never
        },
      })
      const file = path.join(world.dir, LISTENER_FILE)
      await waitFor(() => exists(file))
      const first = listenerStatusSchema.parse(JSON.parse(await fs.readFile(file, 'utf8')))
      assert.equal(first.state, 'idle')
      assert.equal(first.pid, process.pid)
      assert.equal(first.version, '0.0.0-test')
      assert.equal(first.heartbeat_interval_ms, 100)
      await sleep(250)
      const later = listenerStatusSchema.parse(JSON.parse(await fs.readFile(file, 'utf8')))
      assert.ok(Date.parse(later.heartbeat_at) > Date.parse(first.heartbeat_at))
      assert.equal((await readListenerStatus(world.dir)).state, 'active')

      await world.request({command: 'update_opencode', request_id: 'stepper'})
      await waitFor(async () => JSON.parse(await fs.readFile(file, 'utf8')).step === 'build')
      const busy = listenerStatusSchema.parse(JSON.parse(await fs.readFile(file, 'utf8')))
      assert.equal(busy.state, 'updating')
      assert.equal(busy.request_id, 'stepper')
      assert.ok(busy.step_started_at && busy.update_started_at)
      assert.equal(busy.next_command_at, undefined)
      release()
      await world.waitForResults(1)
      await running.stop()
      assert.equal(await exists(file), false)
      assert.deepEqual(await readListenerStatus(world.dir), {state: 'absent'})
    })
  })

  describe('stopping (SIGINT/SIGTERM, container stopped)', () => {
    it('passes the signal to the update and writes the result of a safely stopped update', async () => {
      // The fetch step outlasts the test: the stop comes during it, however loaded the machine.
      const {calls, update} = fakeUpdate({steps: [['fetch', 60_000], ['build', 100], ['activate', 100]]})
      const running = world.start({updateOpencode: update})
      await world.request({command: 'update_opencode', request_id: 'sigterm'})
      await waitFor(() => calls.length === 1)
      await running.stop()
      assert.equal(calls[0].signal?.aborted, true)
      const result = await world.readResult()
      assert.equal(result?.status, 'error')
      assert.equal(result?.error_code, 'interrupted')
      assert.equal(result?.request_id, 'sigterm')
      assert.match(result!.message, /Update stopped before step build/)
      assert.deepEqual((await fs.readdir(world.dir)).filter((name) => !name.startsWith('.')), [RESULT_FILE])
    })

    it('lets the current step finish when the update completes anyway', async () => {
      const {calls, update} = fakeUpdate({honourAbort: false, steps: [['restart', 150]]})
      const running = world.start({updateOpencode: update})
      await world.request({command: 'update_opencode', request_id: 'finish'})
      // Started, not only claimed: a request still queued at the stop is answered without starting.
      await waitFor(() => calls.length === 1)
      await running.stop()
      assert.equal((await world.readResult())?.status, 'success')
    })

    it('does not wait forever for an update that ignores the signal: an "interrupted" result after the grace', async () => {
      let started = false
      const running = world.start({
        shutdownGraceMs: 100,
        updateOpencode: () => {
          started = true
          return new Promise(() => {})
        },
      })
      await world.request({command: 'update_opencode', request_id: 'stuck'})
      await waitFor(() => started)
      const before = Date.now()
      await running.stop()
      assert.ok(Date.now() - before < 1000)
      const result = await world.readResult()
      assert.equal(result?.error_code, 'interrupted')
      assert.equal(result?.request_id, 'stuck')
      assert.match(result!.message, /still running/)
    })

    it('leaves nothing of its own running once it returned after the shutdown deadline (timers, watcher)', async () => {
      // Every timer and watcher the listener's code creates during the test, until it is cleared.
      const live = new Map<number, string>()
      const hook = createHook({
        destroy: (id) => live.delete(id),
        init: (id, type) => {
          if (type !== 'Timeout' && type !== 'FSEVENTWRAP') return
          const stack = new Error(type).stack ?? ''
          if (stack.includes(`${path.sep}update-listener${path.sep}src${path.sep}`)) live.set(id, stack)
        },
      })
      hook.enable()
      try {
        let lateStep: ((step: 'build') => void) | undefined
        const running = world.start({
          heartbeatMs: 20,
          pollMs: 20,
          shutdownGraceMs: 50,
          updateOpencode: (_request, progress) => {
            lateStep = progress.onStep as typeof lateStep
            return new Promise(() => {})
          },
        })
        await world.request({command: 'update_opencode', request_id: 'outlives'})
        await waitFor(() => lateStep !== undefined)
        await sleep(50)
        assert.ok(live.size >= 3, `the listener's timers and watcher are seen (${live.size})`)
        await running.stop()
        assert.equal((await world.readResult())?.error_code, 'interrupted')
        await sleep(10)
        assert.deepEqual([...live.values()], [], 'still alive after the listener returned')
        // The update goes on without us: its late progress writes nothing.
        lateStep?.('build')
        await sleep(50)
        assert.equal(await exists(path.join(world.dir, LISTENER_FILE)), false)
      } finally {
        hook.disable()
      }
    })

    it('answers, without starting it, a request claimed just as the listener stops', async () => {
      const {calls, update} = fakeUpdate()
      const controller = new AbortController()
      const running = world.start({
        onEvent: (event) => {
          if (event.type === 'claimed') controller.abort()
          if (event.type === 'result') world.results.push(event.result)
        },
        updateOpencode: update,
      })
      controller.signal.addEventListener('abort', () => running.controller.abort())
      await world.request({command: 'update_opencode', request_id: 'late'})
      await running.done
      assert.equal(calls.length, 0)
      const result = await world.readResult()
      assert.equal(result?.error_code, 'interrupted')
      assert.equal(result?.request_id, 'late')
    })

    it('does not claim new requests once stopping', async () => {
      const running = world.start({pollMs: 10})
      await running.stop()
      await world.request({command: 'update_opencode'})
      await sleep(50)
      assert.ok(await exists(path.join(world.dir, REQUEST_FILE)))
    })
  })
})
