/**
 * `occ update opencode` inside the sandbox: hand the request to the host's update listener
 * through the command file, and wait for its result.
 *
 * Why not run the plan locally: the update restarts opencode, and occ started from opencode's
 * terminal is opencode's child — it would be killed mid-update with nobody left to check health
 * or roll back. It would also need root in the sandbox to write /opt/opencode (the fixture has no
 * sudo; the published image's NOPASSWD sudo is a weakness, not a contract), and it could not
 * restart the container when that is the only restart method. The host listener runs the same
 * plan from outside, survives the restart, and keeps /opt/opencode root-owned.
 */
import {randomUUID} from 'node:crypto'
import {constants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {CONTAINER_COMMANDS_DIR} from '../../config/mounts.js'
import type {OccPaths} from '../../config/paths.js'
import {NotSupportedError, OccError, TimeoutError} from '../../errors.js'
import {COMMANDS_SUBDIR, REQUEST_FILE, RESULT_FILE} from '../../protocol/command-files.js'
import {describeListener, readListenerStatus, type ListenerView} from '../../protocol/listener-status.js'
import {resultToOutcome} from '../../protocol/result-mapping.js'
import {readUntrustedFile} from '../../protocol/safe-fs.js'
import {UPDATE_COMMAND, updateResultSchema, type UpdateResult} from '../../protocol/schemas.js'
import {parseUntrustedJson} from '../../protocol/untrusted-json.js'
import type {UpdateOutcome, UpdateRequest, UpdateStep} from '../update-types.js'
import {UpdateCancelledError} from './errors.js'
import {STEP_TITLES} from './render.js'

export interface HandoffOptions {
  commandsDir: string
  request: UpdateRequest
  requestId?: string
  /** How long to wait for the result (default 90 min: a real build takes a while). */
  timeoutMs?: number
  /** How long a request may sit unclaimed while no update is running (default 30 s). */
  claimTimeoutMs?: number
  pollMs?: number
  signal?: AbortSignal
  /** Progress for people: "host: Build …". */
  onStatus?: (line: string) => void
  /** Milliseconds on a monotonic clock (default performance.now). */
  now?: () => number
}

/** The commands dir as seen from inside the sandbox: the user's own state dir, else the image's. */
export async function findContainerCommandsDir(paths: Pick<OccPaths, 'xdgState'>): Promise<string> {
  const candidates = [path.join(paths.xdgState, 'opencode', COMMANDS_SUBDIR), CONTAINER_COMMANDS_DIR]
  for (const candidate of candidates) {
    const stat = await fs.lstat(candidate).catch(() => undefined)
    if (stat?.isDirectory()) return candidate
  }

  throw new NotSupportedError(
    `No command directory (${candidates.join(' or ')}): the host's update listener is not connected to this sandbox.`,
    {actions: ['On the host: occ install (or occ start --no-daemon), with the default mounts', 'Or update from the host: occ update opencode']},
  )
}

export async function handOffUpdate(options: HandoffOptions): Promise<UpdateOutcome> {
  // Monotonic: the claim timeout and the deadline must not move with the wall clock.
  const now = options.now ?? (() => performance.now())
  const started = now()
  const timeoutMs = options.timeoutMs ?? 90 * 60_000
  const claimTimeoutMs = options.claimTimeoutMs ?? 30_000
  const pollMs = options.pollMs ?? 250
  const requestId = options.requestId ?? `occ-${randomUUID()}`
  const dir = options.commandsDir
  const status = options.onStatus ?? (() => {})

  const listener = await readListenerStatus(dir)
  if (listener.state !== 'active') throw noListener(listener)

  const body = JSON.stringify({command: UPDATE_COMMAND, request_id: requestId, ...options.request})
  await deliver(dir, body, {claimTimeoutMs, now, pollMs, signal: options.signal, status})
  status(`Handed the update to the host's listener (request ${requestId}); waiting for its result.`)

  let lastStep: UpdateStep | undefined
  let claimed = false
  const deadline = started + timeoutMs
  for (;;) {
    if (options.signal?.aborted) {
      if (!claimed && (await withdraw(dir, requestId))) throw new UpdateCancelledError('Cancelled before the host started the update; nothing was changed.')
      throw new UpdateCancelledError('Stopped waiting; the host may still finish the update (see occ status on the host).')
    }

    const result = await readResult(dir)
    if (result?.request_id === requestId) return resultToOutcome(result, options.request)

    const view = await readListenerStatus(dir)
    if (view.state === 'active' && view.status.state === 'updating' && view.status.request_id === requestId) {
      claimed = true
      if (view.status.step && view.status.step !== lastStep) {
        lastStep = view.status.step
        status(`host: ${STEP_TITLES[lastStep]}…`)
      }
    } else if (view.state !== 'active') {
      // The listener went away. If our request was never claimed, take it back.
      if (!claimed && (await withdraw(dir, requestId))) throw noListener(view)
      throw new OccError('UPDATE_LISTENER_LOST', `The host's update listener stopped answering (${describeListener(view)}).`, {
        actions: ['Check on the host: occ status; the update may have finished anyway.'],
      })
    }

    if (!claimed && !(await requestPending(dir, requestId))) claimed = true
    if (!claimed && now() - started > claimTimeoutMs && !(view.state === 'active' && view.status.state === 'updating')) {
      if (await withdraw(dir, requestId)) {
        throw new TimeoutError(`The host's update listener did not pick up the request within ${Math.round(claimTimeoutMs / 1000)} s; it was withdrawn.`, {
          actions: ['Check the listener on the host: occ status'],
        })
      }

      claimed = true
    }

    if (now() > deadline) {
      throw new TimeoutError(`No result from the host within ${Math.round(timeoutMs / 60_000)} min; it may still be updating.`, {
        actions: ['Check on the host: occ status'],
      })
    }

    await delay(pollMs, undefined, {signal: options.signal}).catch(() => undefined)
  }
}

/**
 * Puts the request in place without ever replacing someone else's: a temp file (O_EXCL, no
 * links followed) hard-linked to the request name, which fails if the name is taken. A pending
 * request from someone else is waited out.
 */
async function deliver(
  dir: string,
  body: string,
  options: {claimTimeoutMs: number; now: () => number; pollMs: number; signal?: AbortSignal; status: (line: string) => void},
): Promise<void> {
  const tmp = path.join(dir, `.${REQUEST_FILE}.${randomUUID()}.tmp`)
  const handle = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644)
  try {
    await handle.writeFile(body)
    await handle.sync()
  } finally {
    await handle.close()
  }

  const started = options.now()
  let told = false
  try {
    for (;;) {
      try {
        await fs.link(tmp, path.join(dir, REQUEST_FILE))
        return
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      }

      if (!told) {
        options.status('Another update request is waiting for the host; queued behind it.')
        told = true
      }

      if (options.signal?.aborted) throw new UpdateCancelledError('Cancelled while queued; nothing was changed.')
      if (options.now() - started > options.claimTimeoutMs * 4) {
        throw new TimeoutError('Another update request has been waiting for the host for too long; not adding this one.', {
          actions: ['Check the listener on the host: occ status'],
        })
      }

      await delay(options.pollMs)
    }
  } finally {
    await fs.rm(tmp, {force: true})
  }
}

async function readJson(file: string): Promise<unknown> {
  const read = await readUntrustedFile(file).catch(() => undefined)
  if (read?.kind !== 'ok') return undefined
  const parsed = parseUntrustedJson(read.data)
  return parsed.ok ? parsed.value : undefined
}

async function readResult(dir: string): Promise<UpdateResult | undefined> {
  const parsed = updateResultSchema.safeParse(await readJson(path.join(dir, RESULT_FILE)))
  return parsed.success ? parsed.data : undefined
}

async function requestPending(dir: string, requestId: string): Promise<boolean> {
  const raw = (await readJson(path.join(dir, REQUEST_FILE))) as {request_id?: unknown} | undefined
  return raw?.request_id === requestId
}

/** Takes our unclaimed request back (by rename, so it cannot race with a claim). */
async function withdraw(dir: string, requestId: string): Promise<boolean> {
  const aside = `.${REQUEST_FILE}.withdrawn.${randomUUID()}`
  try {
    await fs.rename(path.join(dir, REQUEST_FILE), path.join(dir, aside))
  } catch {
    return false
  }

  const raw = (await readJson(path.join(dir, aside))) as {request_id?: unknown} | undefined
  if (raw?.request_id === requestId) {
    await fs.rm(path.join(dir, aside), {force: true})
    return true
  }

  // Someone else's request arrived after ours was claimed: put it back where it was.
  await fs.link(path.join(dir, aside), path.join(dir, REQUEST_FILE)).catch(() => undefined)
  await fs.rm(path.join(dir, aside), {force: true})
  return false
}

function noListener(view: ListenerView): OccError {
  return new OccError('UPDATE_NO_LISTENER', `No update listener is answering on the host: ${describeListener(view)}.`, {
    actions: ['On the host: occ install (the service runs the listener), or occ start --no-daemon', 'Or update from the host: occ update opencode'],
  })
}
