/**
 * File primitives for a directory the sandbox can write to. Everything found there is untrusted:
 * a symlink is never followed, a FIFO or socket never blocks a read, sizes are capped, and what
 * the host writes appears whole (temp file + rename) and never through a planted link.
 */
import {randomBytes} from 'node:crypto'
import {constants, type Stats} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {MAX_REQUEST_BYTES} from './command-files.js'

export type FileKind = 'block-device' | 'character-device' | 'directory' | 'fifo' | 'file' | 'socket' | 'symlink' | 'unknown'

export function fileKind(stat: Stats): FileKind {
  if (stat.isFile()) return 'file'
  if (stat.isDirectory()) return 'directory'
  if (stat.isSymbolicLink()) return 'symlink'
  if (stat.isFIFO()) return 'fifo'
  if (stat.isSocket()) return 'socket'
  if (stat.isCharacterDevice()) return 'character-device'
  if (stat.isBlockDevice()) return 'block-device'
  return 'unknown'
}

export type UntrustedRead =
  | {kind: 'changed'}
  | {kind: 'missing'}
  | {kind: 'not-regular'; fileKind: FileKind}
  | {kind: 'ok'; data: Buffer; mtimeMs: number}
  | {kind: 'too-large'; size: number}
  | {kind: 'unreadable'; error: string}

// O_NONBLOCK: opening a FIFO that was swapped in after the lstat returns at once instead of
// waiting for a writer. O_NOFOLLOW: a symlink swapped in fails with ELOOP.
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW

/**
 * Reads a file the sandbox may have planted: lstat → must be a regular file within the cap →
 * open without following links or blocking → fstat must be the same inode → read at most
 * `maxBytes` + 1. Never throws for anything the other side can arrange; only for our own faults.
 */
export async function readUntrustedFile(file: string, maxBytes = MAX_REQUEST_BYTES): Promise<UntrustedRead> {
  let before: Stats
  try {
    before = await fs.lstat(file)
  } catch (error) {
    return missingOr(error)
  }

  if (!before.isFile()) return {fileKind: fileKind(before), kind: 'not-regular'}
  if (before.size > maxBytes) return {kind: 'too-large', size: before.size}

  let handle: fs.FileHandle
  try {
    handle = await fs.open(file, READ_FLAGS)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ELOOP') return {fileKind: 'symlink', kind: 'not-regular'}
    if (code === 'ENXIO' || code === 'ENODEV') return {kind: 'changed'}
    return missingOr(error)
  }

  try {
    const after = await handle.stat()
    if (after.ino !== before.ino || after.dev !== before.dev) return {kind: 'changed'}
    if (!after.isFile()) return {fileKind: fileKind(after), kind: 'not-regular'}
    // Read at most one byte past the cap: the file may have grown since the fstat.
    const buffer = Buffer.alloc(maxBytes + 1)
    let total = 0
    while (total < buffer.length) {
      const {bytesRead} = await handle.read(buffer, total, buffer.length - total, total)
      if (bytesRead === 0) break
      total += bytesRead
    }

    if (total > maxBytes) return {kind: 'too-large', size: Math.max(after.size, total)}
    return {data: buffer.subarray(0, total), kind: 'ok', mtimeMs: after.mtimeMs}
  } catch (error) {
    return {error: (error as Error).message, kind: 'unreadable'}
  } finally {
    await handle.close()
  }
}

function missingOr(error: unknown): UntrustedRead {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOENT' || code === 'ENOTDIR') return {kind: 'missing'}
  if (code === 'EACCES' || code === 'EPERM') return {error: (error as Error).message, kind: 'unreadable'}
  throw error
}

export interface WriteOptions {
  /** The final file's mode. The sandbox must be able to read results and listener.json. */
  mode?: number
  /** fsync the file and the directory (results: yes; the heartbeat: not worth the disk flush). */
  fsync?: boolean
}

/**
 * Writes `dir/name` so that a reader never sees half a file and a link planted at `name` is
 * replaced, not written through: a temp file created with O_EXCL|O_NOFOLLOW under a random
 * name, written, fsynced, then renamed over `name`. A directory planted at `name` (which would
 * make rename fail) is moved aside and removed first.
 */
export async function writeFileNoFollow(dir: string, name: string, data: string, options: WriteOptions = {}): Promise<void> {
  const {fsync = true, mode = 0o644} = options
  const tmp = path.join(dir, `.${name}.${randomBytes(8).toString('hex')}.tmp`)
  const handle = await fs.open(tmp, CREATE_FLAGS, mode)
  try {
    try {
      await handle.writeFile(data)
      await handle.chmod(mode) // open()'s mode is reduced by the umask
      if (fsync) await handle.sync()
    } finally {
      await handle.close()
    }

    const target = path.join(dir, name)
    try {
      await fs.rename(tmp, target)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'EISDIR' && code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw error
      await removeEntry(dir, name)
      await fs.rename(tmp, target)
    }
  } catch (error) {
    await fs.rm(tmp, {force: true}).catch(() => {})
    throw error
  }

  if (fsync) await syncDir(dir)
}

/** Removes whatever is at dir/name (a file, a link, or a tree) without following links. */
export async function removeEntry(dir: string, name: string): Promise<void> {
  const aside = path.join(dir, `.${name}.removed.${randomBytes(8).toString('hex')}`)
  try {
    // Move it out of the way first, so the name is free even if the tree cannot be removed.
    await fs.rename(path.join(dir, name), aside)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
    throw error
  }

  // fs.rm does not follow symlinks inside the tree (it unlinks them).
  await fs.rm(aside, {force: true, recursive: true})
}

/**
 * Claims `from` by renaming it to `to` within `dir`. Rename is atomic: when two listeners race
 * for the same request exactly one wins; the other gets ENOENT (false here).
 */
export async function claimByRename(dir: string, from: string, to: string): Promise<boolean> {
  try {
    await fs.rename(path.join(dir, from), path.join(dir, to))
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
