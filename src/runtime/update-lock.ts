/**
 * One update at a time per sandbox instance, on the host: `update container` and `update
 * opencode` (from the CLI or the service's listener) take this lock for their whole run. It is a
 * file created exclusively (O_EXCL) under occ's data dir, holding who took it. A lock whose owner
 * is provably gone (same boot, dead pid or a reused one) is taken over at once; the in-sandbox
 * release store keeps its own lock for what runs inside one container.
 */
import {randomBytes} from 'node:crypto'
import {constants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import * as z from 'zod'

import type {ResourceNames} from '../config/instance.js'
import type {OccPaths} from '../config/paths.js'
import type {HostRuntimeApi, Runtime} from './runtime.js'
import type {UpdateOutcome} from './update-types.js'
import {UpdateBusyError} from './update/errors.js'
import {hostBootId, ownerChecks, processStartTime, type OwnerChecks} from './update/lock-owner.js'

export type UpdateKind = 'update container' | 'update opencode'

const recordSchema = z.strictObject({
  bootId: z.string().max(64),
  kind: z.enum(['update container', 'update opencode']),
  pid: z.number().int().positive(),
  pidStart: z.string().max(32),
  since: z.string().max(40),
  token: z.string().regex(/^[0-9a-f]{24}$/),
})

export type HostLockRecord = z.output<typeof recordSchema>

export interface HostUpdateLock {
  token: string
  release(): Promise<void>
}

export function hostLockFile(paths: OccPaths, names: ResourceNames): string {
  return path.join(paths.dataDir, 'locks', `${names.container}.update.lock`)
}

/** The lock's record, or undefined when there is none (or it is unreadable: a half-written file). */
export async function readHostLock(file: string): Promise<HostLockRecord | 'unreadable' | undefined> {
  let handle: fs.FileHandle
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    return 'unreadable'
  }

  try {
    const stat = await handle.stat()
    if (!stat.isFile() || stat.size > 4096) return 'unreadable'
    const text = (await handle.readFile()).toString('utf8')
    const parsed = recordSchema.safeParse(JSON.parse(text))
    return parsed.success ? parsed.data : 'unreadable'
  } catch {
    return 'unreadable'
  } finally {
    await handle.close()
  }
}

/** Why a held lock may be taken over now, or undefined when its owner may still be running. */
export function hostLockOwnerGone(record: HostLockRecord, me: Pick<OwnerChecks, 'bootId' | 'isAlive' | 'pid' | 'startTime'>, held: ReadonlySet<string>): string | undefined {
  if (!me.bootId || record.bootId !== me.bootId) return undefined
  if (record.pid === me.pid) return held.has(record.token) ? undefined : 'it was left by this process'
  if (!me.isAlive(record.pid)) return `its owner (pid ${record.pid}) is gone`
  const start = me.startTime(record.pid)
  if (start !== undefined && record.pidStart && start !== record.pidStart) return `its owner (pid ${record.pid}) is gone (the pid was reused)`
  return undefined
}

/** Tokens of the host locks this process holds. */
const heldHostLocks = new Set<string>()

export function describeHolder(record: HostLockRecord): string {
  return `occ ${record.kind} (pid ${record.pid}, since ${record.since})`
}

/**
 * Takes the instance's update lock, or fails with UPDATE_BUSY naming the update that holds it.
 * A lock file that cannot be read (half-written by a killed occ) older than 10 s is taken over.
 */
export async function acquireHostUpdateLock(paths: OccPaths, names: ResourceNames, kind: UpdateKind, checks: OwnerChecks = ownerChecks()): Promise<HostUpdateLock> {
  const file = hostLockFile(paths, names)
  await fs.mkdir(path.dirname(file), {mode: 0o700, recursive: true})
  const token = randomBytes(12).toString('hex')
  const record: HostLockRecord = {
    bootId: hostBootId(),
    kind,
    pid: process.pid,
    pidStart: processStartTime(process.pid) ?? '',
    since: new Date().toISOString(),
    token,
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
      try {
        await handle.writeFile(`${JSON.stringify(record)}\n`)
      } finally {
        await handle.close()
      }

      heldHostLocks.add(token)
      return {
        async release() {
          heldHostLocks.delete(token)
          const now = await readHostLock(file)
          if (now !== undefined && now !== 'unreadable' && now.token === token) await fs.rm(file, {force: true})
        },
        token,
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }

    const held = await readHostLock(file)
    if (held === undefined) continue
    if (held === 'unreadable') {
      const stat = await fs.lstat(file).catch(() => undefined)
      if (stat && Date.now() - stat.mtimeMs > 10_000) {
        await fs.rm(file, {force: true})
        continue
      }

      throw new UpdateBusyError('Another update of this sandbox is starting (its lock file is being written).', {actions: ['Wait a moment, then try again: occ status']})
    }

    if (hostLockOwnerGone(held, checks, heldHostLocks)) {
      // Removed only if it is still that record (another occ may have taken it over already).
      const again = await readHostLock(file)
      if (again !== undefined && again !== 'unreadable' && again.token === held.token) await fs.rm(file, {force: true})
      continue
    }

    throw new UpdateBusyError(`Another update of this sandbox is running: ${describeHolder(held)}.`, {
      actions: ['Wait for it to finish, then try again (occ status shows the sandbox).'],
    })
  }

  throw new UpdateBusyError('Another update of this sandbox keeps taking the lock.', {actions: ['Wait for it to finish, then try again.']})
}

/** The live holder of the instance's update lock, if any (for occ start: no repair under a running update). */
export async function liveHostLockHolder(paths: OccPaths, names: ResourceNames, checks: OwnerChecks = ownerChecks()): Promise<HostLockRecord | undefined> {
  const held = await readHostLock(hostLockFile(paths, names))
  if (held === undefined || held === 'unreadable') return undefined
  return hostLockOwnerGone(held, checks, heldHostLocks) ? undefined : held
}

/** An update opencode refused because another update holds the lock, as the plan reports outcomes. */
export function busyOutcome(error: UpdateBusyError, request: {branch?: string; commit?: string}): UpdateOutcome {
  const now = new Date().toISOString()
  return {
    changed: false,
    error: {actions: error.actions, code: error.code, exitCode: error.exitCode},
    finishedAt: now,
    message: error.message,
    ref: {...(request.branch === undefined ? {} : {branch: request.branch}), ...(request.commit === undefined ? {} : {commit: request.commit})},
    rolledBack: false,
    startedAt: now,
    status: 'error',
    steps: [],
  }
}

/**
 * Runs an update opencode under the instance's host lock when it runs on the host (the CLI and
 * the listener); refused with UPDATE_BUSY while an update container (or another one) runs.
 */
export async function withHostLockForOpencode(
  runtime: Runtime,
  request: {branch?: string; commit?: string},
  run: () => Promise<UpdateOutcome>,
): Promise<UpdateOutcome> {
  const host = runtime as Partial<HostRuntimeApi> & {paths?: OccPaths; names?: ResourceNames}
  if (runtime.kind !== 'host' || !host.paths || !host.names) return run()
  let lock: HostUpdateLock
  try {
    lock = await acquireHostUpdateLock(host.paths, host.names, 'update opencode')
  } catch (error) {
    if (error instanceof UpdateBusyError) return busyOutcome(error, request)
    throw error
  }

  try {
    return await run()
  } finally {
    await lock.release()
  }
}
