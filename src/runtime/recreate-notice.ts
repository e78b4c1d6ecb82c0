/**
 * "The sandbox container is being replaced by one under the same name": a note in occ's data dir
 * (host-only, never under a bind mount), written by whoever recreates the container (`occ start
 * --recreate`, `occ update container`) before the old one goes, and removed once the new one is
 * there; and by whoever restarts it on purpose (an update without a supervisor, the repair of an
 * unverified release, `occ restart`: HostRuntime.holdLifecycle) for as long as the restart runs.
 * Service mode (`occ start --no-daemon`) reads it when the container it watches is
 * removed or renamed: with a live note it waits for the successor instead of ending; without one
 * a removal ends service mode as it always did (`occ stop --remove`, `docker rm -f`).
 *
 * The note names its writer (pid, the pid's start time, the boot id): one whose writer is gone
 * (killed mid-recreate, or the pid reused) counts for nothing, so a crash never keeps a service
 * waiting on a recreate nobody is doing.
 */
import {randomBytes} from 'node:crypto'
import fsSync, {constants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import * as z from 'zod'

import type {ResourceNames} from '../config/instance.js'
import type {OccPaths} from '../config/paths.js'
import {writeFileAtomic} from '../config/store.js'
import {isPidAlive} from '../protocol/listener-status.js'
import {parseUntrustedJson, readUntrustedJson} from '../protocol/untrusted-json.js'
import {hostBootId, processStartTime} from './update/lock-owner.js'

const noticeSchema = z.strictObject({
  bootId: z.string().max(64),
  pid: z.number().int().positive(),
  pidStart: z.string().max(32),
  since: z.string().max(40),
  token: z.string().regex(/^[0-9a-f]{24}$/),
  why: z.string().max(200),
  /** The ID of the container being replaced. */
  replaces: z.string().regex(/^[0-9a-f]{64}$/).optional(),
})

export type RecreateNotice = z.output<typeof noticeSchema>

const MAX_NOTICE_BYTES = 4096

export function recreateNoticeFile(paths: OccPaths, names: ResourceNames): string {
  return path.join(paths.dataDir, 'locks', `${names.container}.recreate.json`)
}

export interface NoticeChecks {
  bootId: string
  isAlive: (pid: number) => boolean
  startTime: (pid: number) => string | undefined
}

const realChecks = (): NoticeChecks => ({bootId: hostBootId(), isAlive: isPidAlive, startTime: processStartTime})

/** Whether the note's writer still runs (same boot, pid alive, and the same process behind it). */
export function noticeIsLive(notice: RecreateNotice, checks: NoticeChecks): boolean {
  if (!checks.bootId || notice.bootId !== checks.bootId) return false
  if (!checks.isAlive(notice.pid)) return false
  const start = checks.startTime(notice.pid)
  return !(start !== undefined && notice.pidStart !== '' && start !== notice.pidStart)
}

/** The note, when there is one that parses (no symlink followed, size capped); else undefined. */
export async function readRecreateNotice(file: string): Promise<RecreateNotice | undefined> {
  const json = await readUntrustedJson(file, MAX_NOTICE_BYTES)
  return json.ok ? noticeSchema.safeParse(json.value).data : undefined
}

/** The note when its writer still runs; undefined when there is none or it is left over. */
export async function liveRecreateNotice(paths: OccPaths, names: ResourceNames, checks: NoticeChecks = realChecks()): Promise<RecreateNotice | undefined> {
  const notice = await readRecreateNotice(recreateNoticeFile(paths, names))
  return notice && noticeIsLive(notice, checks) ? notice : undefined
}

/**
 * For the container `departedId` that just left: is it being replaced (a live note), was its
 * replacement cut short (a note about exactly that container whose writer is gone: killed
 * mid-recreate), or neither? A left-over note about another container counts for nothing.
 */
export async function recreateNoticeState(
  paths: OccPaths,
  names: ResourceNames,
  departedId: string | undefined,
  checks: NoticeChecks = realChecks(),
  nowMs = Date.now(),
): Promise<'interrupted' | 'live' | 'none'> {
  const notice = await readRecreateNotice(recreateNoticeFile(paths, names))
  if (!notice) return 'none'
  if (noticeIsLive(notice, checks)) return 'live'
  // Recent only: a note left by a recreate killed before it removed anything must not turn a
  // deliberate removal of that container, much later, into a failure the service restarts from.
  const ageMs = nowMs - Date.parse(notice.since)
  const recent = ageMs >= 0 && ageMs < INTERRUPTED_NOTICE_MS
  return departedId !== undefined && notice.replaces === departedId && recent ? 'interrupted' : 'none'
}

/** How long a dead writer's note still says "interrupted" about the container it replaced. */
export const INTERRUPTED_NOTICE_MS = 10 * 60_000

/** A new note by this process, with a token of its own (what its withdrawal checks). */
function makeNotice(why: string, replaces?: string): RecreateNotice {
  return {
    bootId: hostBootId(),
    pid: process.pid,
    pidStart: processStartTime(process.pid) ?? '',
    since: new Date().toISOString(),
    token: randomBytes(12).toString('hex'),
    why: why.slice(0, 200),
    ...(replaces && /^[0-9a-f]{64}$/.test(replaces) ? {replaces} : {}),
  }
}

/**
 * Writes the note (atomically) and returns its withdrawal, which removes the file only while it
 * is still this note (another recreate may have written its own since). Withdrawing twice is a no-op.
 */
export async function announceRecreate(paths: OccPaths, names: ResourceNames, why: string, replaces?: string): Promise<() => Promise<void>> {
  const file = recreateNoticeFile(paths, names)
  const notice = makeNotice(why, replaces)
  await writeFileAtomic(file, `${JSON.stringify(notice)}\n`)
  let withdrawn = false
  return async () => {
    if (withdrawn) return
    withdrawn = true
    const current = await readRecreateNotice(file)
    if (current?.token !== notice.token) return
    await fs.rm(file, {force: true})
  }
}

/**
 * The same note for a planned restart of the container (an update without a supervisor, the
 * repair of an unverified release, `occ restart`) by a process that is not the service: its
 * container dies and starts again, and a restart that takes longer than the die grace must not
 * end the service. Synchronous, for HostRuntime.holdLifecycle; a failure to write is no failure
 * of the restart (returns a no-op). A service reading the note ignores its own (isOwnNotice).
 */
export function announceRestartSync(paths: OccPaths, names: ResourceNames, why: string): () => void {
  const file = recreateNoticeFile(paths, names)
  const notice = makeNotice(why)
  const tmp = `${file}.${notice.token}.tmp`
  try {
    fsSync.mkdirSync(path.dirname(file), {mode: 0o700, recursive: true})
    const fd = fsSync.openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
    try {
      fsSync.writeFileSync(fd, `${JSON.stringify(notice)}\n`)
    } finally {
      fsSync.closeSync(fd)
    }

    fsSync.renameSync(tmp, file)
  } catch {
    fsSync.rmSync(tmp, {force: true})
    return () => {}
  }

  let withdrawn = false
  return () => {
    if (withdrawn) return
    withdrawn = true
    try {
      const fd = fsSync.openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
      let current
      try {
        const stat = fsSync.fstatSync(fd)
        if (!stat.isFile() || stat.size > MAX_NOTICE_BYTES) return
        current = parseUntrustedJson(fsSync.readFileSync(fd))
      } finally {
        fsSync.closeSync(fd)
      }

      if (current.ok && noticeSchema.safeParse(current.value).data?.token === notice.token) fsSync.rmSync(file, {force: true})
    } catch {
      // Gone already, or not ours: nothing to withdraw.
    }
  }
}

/** Whether the note was written by this very process (a service's own planned restart). */
export function isOwnNotice(notice: RecreateNotice): boolean {
  return notice.pid === process.pid && notice.bootId === hostBootId()
}

/** Runs `work` with the note written first and withdrawn after, whatever `work` does. */
export async function withRecreateNotice<T>(paths: OccPaths, names: ResourceNames, why: string, replaces: string, work: () => Promise<T>): Promise<T> {
  const withdraw = await announceRecreate(paths, names, why, replaces)
  try {
    return await work()
  } finally {
    await withdraw()
  }
}
