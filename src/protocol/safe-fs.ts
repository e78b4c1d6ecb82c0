/**
 * File primitives for a directory the sandbox can write to. Everything found there is untrusted:
 * a symlink is never followed, a FIFO or socket never blocks a read, sizes are capped, and what
 * the host writes appears whole (temp file + rename) and never through a planted link.
 */
import {randomBytes} from 'node:crypto'
import {constants, type Stats} from 'node:fs'
import fs from 'node:fs/promises'

import {isQuarantineName, MAX_REQUEST_BYTES, quarantineName} from './command-files.js'
import {type DirRef, toDirRef} from './safe-dir.js'

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
  /** The final file's mode, exactly (not reduced by the umask). */
  mode?: number
  /** fsync the file and the directory (results, config: yes; the heartbeat: not worth the disk flush). */
  fsync?: boolean
  /**
   * A directory planted at `name` (which makes the rename fail): remove it if it is empty, else
   * set it aside under a quarantine name; never descend into it. Off: the write fails (EISDIR).
   */
  clearDirectory?: boolean
  /**
   * When the temp file cannot be written because the disk is full (ENOSPC, EDQUOT), overwrite
   * the existing file in place instead, if that needs no new space (see overwriteInPlace). For a
   * status file that must stay current on a full disk (listener.json); never for an answer.
   */
  inPlaceWhenFull?: boolean
}

/**
 * Writes `dir/name` so that a reader never sees half a file and a link planted at `name` is
 * replaced, not written through: a temp file created with O_CREAT|O_EXCL|O_NOFOLLOW under a
 * random name, written, fsynced, then renamed over `name`, then the directory fsynced. The one
 * atomic writer in occ (config, service units, the commands dir).
 */
export async function writeFileNoFollow(dir: DirRef | string, name: string, data: string, options: WriteOptions = {}): Promise<void> {
  const ref = toDirRef(dir)
  try {
    await writeAtomically(ref, name, data, options)
  } catch (error) {
    if (!options.inPlaceWhenFull || !isNoSpace(error)) throw error
    if (!(await overwriteInPlace(ref, name, data))) throw error
  }
}

function isNoSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code
  return code === 'ENOSPC' || code === 'EDQUOT'
}

const OVERWRITE_FLAGS = constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK

/**
 * A full disk's fallback: writes `data` over the regular file at dir/name, in place, only when
 * that takes no new space (it fits in the blocks the file already has), so the write cannot stop
 * half way. Never through a link (O_NOFOLLOW), never into a FIFO or device (fstat: regular file),
 * never into a file with other names (a hard link the sandbox made to something else). The text
 * is padded with spaces to the old length rather than truncated after: a reader never sees new
 * text followed by the old tail, and JSON ignores the trailing blanks. false: not possible.
 */
export async function overwriteInPlace(dir: DirRef | string, name: string, data: string, maxBytes = MAX_REQUEST_BYTES): Promise<boolean> {
  const ref = toDirRef(dir)
  const bytes = Buffer.from(data)
  if (bytes.length > maxBytes) return false
  let handle: fs.FileHandle
  try {
    handle = await fs.open(await ref.entry(name), OVERWRITE_FLAGS)
  } catch {
    return false // missing, a link (ELOOP), a FIFO without reader (ENXIO), …
  }

  try {
    const stat = await handle.stat()
    if (!stat.isFile() || stat.nlink !== 1) return false
    if (bytes.length > stat.blocks * 512) return false
    const padded = stat.size > bytes.length && stat.size <= maxBytes ? Buffer.concat([bytes, Buffer.alloc(stat.size - bytes.length, 0x20)]) : bytes
    const {bytesWritten} = await handle.write(padded, 0, padded.length, 0)
    if (bytesWritten !== padded.length) return false
    // Only a planted oversized file is cut (that frees space; it was never ours to pad to).
    if (stat.size > padded.length) await handle.truncate(padded.length)
    return true
  } catch {
    return false
  } finally {
    await handle.close()
  }
}

async function writeAtomically(ref: DirRef, name: string, data: string, options: WriteOptions): Promise<void> {
  const {clearDirectory = false, fsync = true, mode = 0o644} = options
  const tmpName = `.${name}.${randomBytes(8).toString('hex')}.tmp`
  const handle = await fs.open(await ref.entry(tmpName), CREATE_FLAGS, mode)
  try {
    try {
      await handle.writeFile(data)
      await handle.chmod(mode) // open()'s mode is reduced by the umask
      if (fsync) await handle.sync()
    } finally {
      await handle.close()
    }

    for (let attempt = 0; ; attempt++) {
      try {
        await fs.rename(await ref.entry(tmpName), await ref.entry(name))
        break
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        const directoryInTheWay = code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST'
        if (!clearDirectory || !directoryInTheWay || attempt >= 3) throw error
        await disposeEntry(ref, name)
      }
    }
  } catch (error) {
    // unlink, not rm: if the name now holds something else, it is not ours to walk into.
    await fs.unlink(await ref.entry(tmpName)).catch(() => {})
    throw error
  }

  if (fsync) await ref.sync()
}

export type Disposal = 'missing' | 'quarantined' | 'removed'

/**
 * Gets whatever is at dir/name out of the way without ever descending into it or following a
 * link: unlink (a file, a symlink, a FIFO, a socket), else rmdir (an empty directory), else
 * rename to a quarantine name (a non-empty directory, or an entry that keeps changing kind) that
 * is left for the sandbox to clean up. 'missing' means it was gone before we touched it (someone
 * else took it). The host never deletes recursively in a directory the sandbox can write: a
 * recursive delete walks by path, and the sandbox can swap a subdirectory for a symlink mid-walk.
 */
export async function disposeEntry(dir: DirRef | string, name: string): Promise<Disposal> {
  const ref = toDirRef(dir)
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fs.unlink(await ref.entry(name))
      return 'removed'
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return 'missing'
      // Linux says EISDIR for a directory, macOS EPERM.
      if (code !== 'EISDIR' && code !== 'EPERM') throw error
    }

    try {
      await fs.rmdir(await ref.entry(name))
      return 'removed'
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return 'missing'
      if (code === 'ENOTDIR') continue // swapped back to a non-directory meanwhile: unlink again
      if (code === 'ENOTEMPTY' || code === 'EEXIST') break
      throw error
    }
  }

  if (isQuarantineName(name)) return 'quarantined'
  try {
    await fs.rename(await ref.entry(name), await ref.entry(quarantineName()))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing'
    throw error
  }

  return 'quarantined'
}

/**
 * Claims `from` by renaming it to `to` within `dir`. Rename is atomic and never follows a link:
 * when two listeners race for the same entry exactly one wins; the other gets ENOENT (false).
 */
export async function claimByRename(dir: DirRef | string, from: string, to: string): Promise<boolean> {
  const ref = toDirRef(dir)
  try {
    await fs.rename(await ref.entry(from), await ref.entry(to))
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}

/** readUntrustedFile for dir/name, resolved through the directory reference. */
export async function readUntrustedEntry(dir: DirRef | string, name: string, maxBytes = MAX_REQUEST_BYTES): Promise<UntrustedRead> {
  return readUntrustedFile(await toDirRef(dir).entry(name), maxBytes)
}

/** lstat of dir/name; undefined when it is not there. */
export async function lstatEntry(dir: DirRef | string, name: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(await toDirRef(dir).entry(name))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

export async function syncDir(dir: DirRef | string): Promise<void> {
  await toDirRef(dir).sync()
}
