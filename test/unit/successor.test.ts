import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {resourceNames} from '../../src/config/instance.js'
import {resolvePaths} from '../../src/config/paths.js'
import {
  announceRecreate,
  announceRestartSync,
  INTERRUPTED_NOTICE_MS,
  isOwnNotice,
  liveRecreateNotice,
  noticeIsLive,
  readRecreateNotice,
  recreateNoticeFile,
  recreateNoticeState,
  type RecreateNotice,
} from '../../src/runtime/recreate-notice.js'
import {awaitSuccessor, decideSuccessor, NOTICE_WAIT_MAX_MS, SUCCESSOR_WAIT_MS, SwapGate, type Candidate, type SuccessorFacts} from '../../src/runtime/successor.js'
import {hostBootId, processStartTime} from '../../src/runtime/update/lock-owner.js'

const base: SuccessorFacts = {departedId: 'old', elapsedMs: 0, notice: false, noticeSeen: false, sinceNoticeMs: 0}

describe('decideSuccessor: is another container coming under our name?', () => {
  it('nothing under our name and no recreate announced (occ stop --remove, docker rm -f): none, at once', () => {
    assert.deepEqual(decideSuccessor(base), {kind: 'none'})
  })

  it('the departed container itself, stopped (occ stop): none', () => {
    assert.deepEqual(decideSuccessor({...base, candidate: {id: 'old', running: false}}), {kind: 'none'})
  })

  it('a running container under our name, no recreate in progress: attach (a new ID, or the old one renamed back)', () => {
    assert.deepEqual(decideSuccessor({...base, candidate: {id: 'new', running: true}}), {containerId: 'new', kind: 'attach'})
    assert.deepEqual(decideSuccessor({...base, candidate: {id: 'old', running: true}, noticeSeen: true}), {containerId: 'old', kind: 'attach'})
  })

  it('a live recreate note: wait, even with a running container (a container update may still roll it back), up to the cap', () => {
    assert.deepEqual(decideSuccessor({...base, notice: true}), {kind: 'wait'})
    assert.deepEqual(decideSuccessor({...base, candidate: {id: 'new', running: true}, notice: true}), {kind: 'wait'})
    assert.equal(decideSuccessor({...base, elapsedMs: NOTICE_WAIT_MAX_MS, notice: true}).kind, 'give-up')
  })

  it('a new container created but not running, without a note: waits up to SUCCESSOR_WAIT_MS, then gives up', () => {
    const created: Candidate = {id: 'new', running: false}
    assert.deepEqual(decideSuccessor({...base, candidate: created, elapsedMs: 5000, sinceNoticeMs: 5000}), {kind: 'wait'})
    const late = decideSuccessor({...base, candidate: created, elapsedMs: SUCCESSOR_WAIT_MS, sinceNoticeMs: SUCCESSOR_WAIT_MS})
    assert.equal(late.kind, 'give-up')
    assert.match((late as {why: string}).why, /did not start within 120 s/)
  })

  it('killed mid-recreate (a note about this container, its writer gone): give up (exit 1) so the restarted service repairs it, running successor or not', () => {
    assert.equal(decideSuccessor({...base, interrupted: true}).kind, 'give-up')
    assert.equal(decideSuccessor({...base, candidate: {id: 'new', running: true}, interrupted: true}).kind, 'give-up')
  })

  it('a recreate that withdrew its note with nothing running under our name: give up (exit 1), not "stopped"', () => {
    assert.equal(decideSuccessor({...base, noticeSeen: true}).kind, 'give-up')
    assert.equal(decideSuccessor({...base, candidate: {id: 'old', running: false}, noticeSeen: true}).kind, 'give-up')
  })
})

describe('awaitSuccessor', () => {
  it('polls until the recreate is done and the new container runs', async () => {
    const script: Array<{notice: boolean; candidate?: Candidate}> = [
      {notice: true},
      {candidate: {id: 'new', running: false}, notice: true},
      {candidate: {id: 'new', running: true}, notice: true},
      {candidate: {id: 'new', running: true}, notice: false},
    ]
    let step = -1
    const outcome = await awaitSuccessor(
      {
        async candidate() {
          return script[step].candidate
        },
        async notice() {
          step++
          return script[step].notice ? 'live' : 'none'
        },
        pollMs: 1,
      },
      'old',
      new AbortController().signal,
    )
    assert.deepEqual(outcome, {containerId: 'new', kind: 'attach'})
    assert.equal(step, 3)
  })

  it('the give-up clock runs from the last live note, not from the departure', async () => {
    let now = 0
    let calls = 0
    const outcome = await awaitSuccessor(
      {
        async candidate() {
          return {id: 'new', running: false}
        },
        async notice() {
          calls++
          now += 60_000
          return calls <= 3 ? 'live' : 'none' // live for three minutes, then withdrawn
        },
        now: () => now,
        pollMs: 1,
      },
      'old',
      new AbortController().signal,
    )
    assert.equal(outcome.kind, 'give-up')
    // Note last seen at 180 s; given up once 120 s passed after it (at 300 s), not at 120 s.
    assert.equal(now, 300_000)
  })

  it('ends with "aborted" when its signal aborts', async () => {
    const controller = new AbortController()
    const waiting = awaitSuccessor({candidate: async () => undefined, notice: async () => 'live', pollMs: 5}, 'old', controller.signal)
    setTimeout(() => controller.abort(), 20)
    assert.deepEqual(await waiting, {kind: 'aborted'})
  })
})

describe('SwapGate', () => {
  it('passes at once when open; waits while closed; opens for every waiter', async () => {
    const gate = new SwapGate()
    await gate.pass()
    gate.close()
    const order: string[] = []
    const a = gate.pass().then(() => order.push('a'))
    const b = gate.pass(new AbortController().signal).then(() => order.push('b'))
    await new Promise((resolve) => setTimeout(resolve, 5))
    assert.deepEqual(order, [])
    gate.open()
    await Promise.all([a, b])
    assert.deepEqual(order.sort(), ['a', 'b'])
  })

  it('rejects a waiter whose signal aborts (already or later)', async () => {
    const gate = new SwapGate()
    gate.close()
    const controller = new AbortController()
    const waiting = gate.pass(controller.signal)
    controller.abort(new Error('occ is stopping'))
    await assert.rejects(waiting, /occ is stopping/)
    await assert.rejects(gate.pass(controller.signal), /occ is stopping/)
  })
})

describe('the recreate note', () => {
  let root: string
  const names = resourceNames('notice-test')
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-notice-'))
  })
  afterEach(async () => {
    await fs.rm(root, {force: true, recursive: true})
  })

  const pathsIn = (): ReturnType<typeof resolvePaths> => resolvePaths({HOME: root})

  it('is live while its writer runs, and gone once withdrawn (twice is a no-op)', async () => {
    const paths = pathsIn()
    const withdraw = await announceRecreate(paths, names, 'occ start --recreate')
    const notice = await liveRecreateNotice(paths, names)
    assert.equal(notice?.pid, process.pid)
    assert.equal(notice?.why, 'occ start --recreate')
    assert.equal((await fs.stat(recreateNoticeFile(paths, names))).mode & 0o777, 0o600)
    await withdraw()
    await withdraw()
    assert.equal(await liveRecreateNotice(paths, names), undefined)
  })

  it('a planned restart (announceRestartSync, what holdLifecycle writes): live while held, our own, withdrawn once; a later note is left alone', async () => {
    const paths = pathsIn()
    const withdraw = announceRestartSync(paths, names, 'update to abc1234')
    const notice = await liveRecreateNotice(paths, names)
    assert.equal(notice?.why, 'update to abc1234')
    assert.equal(isOwnNotice(notice!), true)
    assert.equal(isOwnNotice({...notice!, pid: notice!.pid + 1}), false)
    assert.equal((await fs.stat(recreateNoticeFile(paths, names))).mode & 0o777, 0o600)
    withdraw()
    withdraw()
    assert.equal(await readRecreateNotice(recreateNoticeFile(paths, names)), undefined)
    assert.deepEqual((await fs.readdir(path.dirname(recreateNoticeFile(paths, names)))).filter((name) => name.endsWith('.tmp')), [])

    const mine = announceRestartSync(paths, names, 'restart')
    const later = await announceRecreate(paths, names, 'occ start --recreate')
    mine()
    assert.equal((await liveRecreateNotice(paths, names))?.why, 'occ start --recreate')
    await later()
  })

  it("a withdrawal leaves a later recreate's note alone", async () => {
    const paths = pathsIn()
    const first = await announceRecreate(paths, names, 'first')
    const second = await announceRecreate(paths, names, 'second')
    await first()
    assert.equal((await liveRecreateNotice(paths, names))?.why, 'second')
    await second()
    assert.equal(await readRecreateNotice(recreateNoticeFile(paths, names)), undefined)
  })

  it('a note whose writer is gone: "interrupted" for the container it replaces, nothing for any other', async () => {
    const paths = pathsIn()
    const file = recreateNoticeFile(paths, names)
    await fs.mkdir(path.dirname(file), {recursive: true})
    const old = 'd'.repeat(64)
    const dead = {bootId: 'another-boot', pid: 1, pidStart: '1', replaces: old, since: new Date().toISOString(), token: 'e'.repeat(24), why: 'killed'}
    await fs.writeFile(file, JSON.stringify(dead))
    assert.equal(await recreateNoticeState(paths, names, old), 'interrupted')
    assert.equal(await recreateNoticeState(paths, names, old, undefined, Date.now() + INTERRUPTED_NOTICE_MS), 'none', 'an old note still counts')
    assert.equal(await recreateNoticeState(paths, names, 'f'.repeat(64)), 'none')
    assert.equal(await recreateNoticeState(paths, names, undefined), 'none')
    const withdraw = await announceRecreate(paths, names, 'live', old)
    assert.equal(await recreateNoticeState(paths, names, old), 'live')
    await withdraw()
    assert.equal(await recreateNoticeState(paths, names, old), 'none')
  })

  it('counts for nothing when its writer is gone (dead pid, reused pid, another boot)', () => {
    const notice: RecreateNotice = {bootId: 'boot-a', pid: 4242, pidStart: '100', since: new Date().toISOString(), token: 'a'.repeat(24), why: 'x'}
    const alive = {bootId: 'boot-a', isAlive: () => true, startTime: () => '100'}
    assert.equal(noticeIsLive(notice, alive), true)
    assert.equal(noticeIsLive(notice, {...alive, isAlive: () => false}), false)
    assert.equal(noticeIsLive(notice, {...alive, startTime: () => '999'}), false)
    assert.equal(noticeIsLive(notice, {...alive, bootId: 'boot-b'}), false)
    assert.equal(noticeIsLive(notice, {...alive, bootId: ''}), false)
  })

  it('a note left by a real process that has exited is not live', async () => {
    const paths = pathsIn()
    const file = recreateNoticeFile(paths, names)
    await fs.mkdir(path.dirname(file), {recursive: true})
    const {execa} = await import('execa')
    const gone = await execa(process.execPath, ['-e', 'console.log(process.pid)'])
    const pid = Number(gone.stdout)
    await fs.writeFile(file, JSON.stringify({bootId: hostBootId(), pid, pidStart: processStartTime(process.pid) ?? '', since: 'x', token: 'b'.repeat(24), why: 'killed'}))
    assert.ok(await readRecreateNotice(file), 'the note itself parses')
    assert.equal(await liveRecreateNotice(paths, names), undefined)
  })

  it('is not followed through a symlink, and junk, extra fields or an oversized file are no note', async () => {
    const paths = pathsIn()
    const file = recreateNoticeFile(paths, names)
    await fs.mkdir(path.dirname(file), {recursive: true})
    const good = {bootId: hostBootId(), pid: process.pid, pidStart: processStartTime(process.pid) ?? '', since: 'now', token: 'c'.repeat(24), why: 'x'}
    const target = path.join(root, 'elsewhere.json')
    await fs.writeFile(target, JSON.stringify(good))
    await fs.symlink(target, file)
    assert.equal(await readRecreateNotice(file), undefined)
    await fs.rm(file)
    for (const body of ['{', JSON.stringify({...good, extra: 1}), JSON.stringify({...good, pid: -1}), JSON.stringify({...good, why: 'x'.repeat(5000)})]) {
      await fs.writeFile(file, body)
      assert.equal(await readRecreateNotice(file), undefined, body.slice(0, 40))
    }

    await fs.writeFile(file, JSON.stringify(good))
    assert.ok(await liveRecreateNotice(paths, names))
  })
})
