/**
 * The commands dir is shared with anything else running in the sandbox: nothing found there is
 * trusted. Reads never follow a symlink, never block on a FIFO, and stop at the contract's cap;
 * JSON is decoded as strict UTF-8 and checked against the contract's schema.
 */
import {randomUUID} from 'node:crypto'
import {constants, type Stats} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {compileSchema, type Validator} from './json-schema.js'
import {listenerStatusSchema, updateCommandSchema, updateResultSchema} from './schemas.generated.js'
import type {ListenerStatus, UpdateResult} from './types.js'

/** The commands dir inside the sandbox (the state bind mount's opencode-cloud/commands). */
export const DEFAULT_COMMANDS_DIR = '/home/opencoder/.local/state/opencode/opencode-cloud/commands'
export const REQUEST_FILE = 'update-command.json'
export const RESULT_FILE = 'update-command.result.json'
export const LISTENER_FILE = 'listener.json'
/** The cap occ applies to every file in the commands dir. */
export const MAX_FILE_BYTES = 64 * 1024
/** A listener whose heartbeat is older than this many of its intervals is gone. */
export const STALE_AFTER_INTERVALS = 3

export const validateCommand: Validator = compileSchema(updateCommandSchema)
export const validateResult: Validator = compileSchema(updateResultSchema)
export const validateListenerStatus: Validator = compileSchema(listenerStatusSchema)

export type ContractRead<T> = {kind: 'invalid'; reason: string} | {kind: 'missing'} | {kind: 'ok'; value: T}

const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
// As occ reads these files (src/protocol/untrusted-json.ts): strict UTF-8, and ignoreBOM false
// drops exactly one leading BOM (some editors write one); a second one is not JSON.
const utf8 = new TextDecoder('utf-8', {fatal: true, ignoreBOM: false})

/** Reads dir/name as JSON checked by `validate`: missing, invalid (with why) or the value. */
export async function readContractFile<T>(dir: string, name: string, validate: Validator): Promise<ContractRead<T>> {
  const bytes = await readNoFollow(path.join(dir, name))
  if (bytes.kind !== 'ok') return bytes
  let value: unknown
  try {
    value = JSON.parse(utf8.decode(bytes.data))
  } catch {
    return {kind: 'invalid', reason: `${name} is not valid JSON (UTF-8)`}
  }

  const check = validate(value)
  if (!check.ok) return {kind: 'invalid', reason: `${name} does not match its schema: ${check.path || 'the file'} ${check.message}`}
  return {kind: 'ok', value: value as T}
}

export function readResultFile(dir: string): Promise<ContractRead<UpdateResult>> {
  return readContractFile<UpdateResult>(dir, RESULT_FILE, validateResult)
}

export function readListenerFile(dir: string): Promise<ContractRead<ListenerStatus>> {
  return readContractFile<ListenerStatus>(dir, LISTENER_FILE, validateListenerStatus)
}

/** lstat → a regular file within the cap → open without following links or blocking → same inode → read ≤ cap. */
export async function readNoFollow(file: string, maxBytes = MAX_FILE_BYTES): Promise<{kind: 'invalid'; reason: string} | {kind: 'missing'} | {kind: 'ok'; data: Uint8Array}> {
  const name = path.basename(file)
  let before: Stats
  try {
    before = await fs.lstat(file)
  } catch (error) {
    return missingOr(error, name)
  }

  if (before.isSymbolicLink()) return {kind: 'invalid', reason: `${name} is a symlink (not followed)`}
  if (!before.isFile()) return {kind: 'invalid', reason: `${name} is not a regular file`}
  if (before.size > maxBytes) return {kind: 'invalid', reason: `${name} is larger than ${maxBytes / 1024} KiB`}
  let handle: fs.FileHandle
  try {
    handle = await fs.open(file, READ_FLAGS)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ELOOP') return {kind: 'invalid', reason: `${name} is a symlink (not followed)`}
    if (code === 'ENXIO' || code === 'ENODEV') return {kind: 'invalid', reason: `${name} changed while it was read`}
    return missingOr(error, name)
  }

  try {
    const after = await handle.stat()
    if (after.ino !== before.ino || after.dev !== before.dev || !after.isFile()) return {kind: 'invalid', reason: `${name} changed while it was read`}
    const buffer = new Uint8Array(maxBytes + 1)
    let total = 0
    while (total < buffer.length) {
      const {bytesRead} = await handle.read(buffer, total, buffer.length - total, total)
      if (bytesRead === 0) break
      total += bytesRead
    }

    if (total > maxBytes) return {kind: 'invalid', reason: `${name} is larger than ${maxBytes / 1024} KiB`}
    return {data: buffer.subarray(0, total), kind: 'ok'}
  } catch (error) {
    return {kind: 'invalid', reason: `${name} could not be read: ${(error as Error).message}`}
  } finally {
    await handle.close()
  }
}

function missingOr(error: unknown, name: string): {kind: 'invalid'; reason: string} | {kind: 'missing'} {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOENT' || code === 'ENOTDIR') return {kind: 'missing'}
  return {kind: 'invalid', reason: `${name} could not be read: ${(error as Error).message}`}
}

/**
 * Writes a uniquely named temp file in `dir` (O_EXCL, no link followed), whole, synced. The name
 * starts with a dot and ends in .tmp, so the listener never mistakes it for a request.
 */
export async function writeTempFile(dir: string, body: string): Promise<string> {
  const tmp = path.join(dir, `.${REQUEST_FILE}.${randomUUID()}.tmp`)
  const handle = await fs.open(tmp, CREATE_FLAGS, 0o644)
  try {
    await handle.writeFile(body)
    await handle.chmod(0o644) // readable by the host's listener whatever our umask
    await handle.sync()
  } catch (error) {
    await handle.close()
    await fs.unlink(tmp).catch(() => {})
    throw error
  }

  await handle.close()
  return tmp
}

/**
 * Puts the temp file in place as the request unless a request is already waiting there: a hard
 * link fails when the name is taken, where a rename would replace (and so lose) someone else's
 * request. Where hard links are not supported, falls back to a rename when the name is free.
 * Returns false when the name is taken.
 */
export async function placeRequest(dir: string, tmp: string): Promise<boolean> {
  const target = path.join(dir, REQUEST_FILE)
  try {
    await fs.link(tmp, target)
    return true
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return false
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw error
  }

  // No hard links here: a rename when the name is free (a tiny window remains; better than none).
  if (await exists(target)) return false
  await fs.rename(tmp, target)
  return true
}

async function exists(file: string): Promise<boolean> {
  return fs.lstat(file).then(
    () => true,
    () => false,
  )
}

/** Whether the file at the request path is the request with this id. */
export async function requestWaiting(dir: string, requestId: string): Promise<boolean> {
  return (await requestIdIn(path.join(dir, REQUEST_FILE))) === requestId
}

async function requestIdIn(file: string): Promise<unknown> {
  const read = await readNoFollow(file)
  if (read.kind !== 'ok') return undefined
  try {
    return (JSON.parse(utf8.decode(read.data)) as {request_id?: unknown} | null)?.request_id
  } catch {
    return undefined
  }
}

/**
 * Takes our request back if the listener has not claimed it yet. The rename is atomic against the
 * listener's claim (exactly one of us gets it); if what we took turns out to be someone else's
 * request (ours was claimed meanwhile and another arrived), it is linked back where it was.
 */
export async function withdrawRequest(dir: string, requestId: string): Promise<boolean> {
  if (!(await requestWaiting(dir, requestId))) return false
  const aside = path.join(dir, `.${REQUEST_FILE}.withdrawn.${randomUUID()}.tmp`)
  try {
    await fs.rename(path.join(dir, REQUEST_FILE), aside)
  } catch {
    return false
  }

  if ((await requestIdIn(aside)) === requestId) {
    await fs.unlink(aside).catch(() => {})
    return true
  }

  // Put it back the way requests are placed (never over a newer one), retrying while one waits;
  // if it cannot go back, it stays under the aside name rather than being lost.
  for (let attempt = 0; attempt < 50; attempt++) {
    const placed = await placeRequest(dir, aside).catch(() => undefined)
    if (placed === undefined) return false
    if (placed) {
      await fs.unlink(aside).catch(() => {}) // the link's second name (gone already after a rename)
      return false
    }

    await new Promise((resolve) => setTimeout(resolve, 100))
  }

  return false
}
