/**
 * A directory the sandbox can rename, replace or delete under us (on the usual desktop the
 * sandbox user is the host user, so it owns `opencode-cloud/` and everything below it).
 *
 * Node has no openat(). On Linux the same effect comes from /proc: the directory is opened once
 * (O_DIRECTORY|O_NOFOLLOW) and every later operation names its entry as
 * `/proc/self/fd/<fd>/<name>`. The kernel resolves that through the open file, not through the
 * path, so renaming the directory or putting a symlink where it was cannot redirect a read, a
 * write, a rename or an unlink to anywhere else. The last component (`name`) is still looked up
 * normally: the callers never follow it (lstat, O_NOFOLLOW, rename, unlink, rmdir).
 *
 * Without /proc (macOS, a /proc mounted with restrictions) the fallback checks, immediately
 * before each operation, that the path is still the directory we opened (lstat of the path vs
 * fstat of the handle: same dev and ino) and throws DirChangedError when it is not. That narrows
 * the window to the time between the check and the call; it does not close it.
 */
import {constants, type Stats} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

const OPEN_DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW

/** The directory is no longer the one that was opened (renamed, replaced, or deleted). */
export class DirChangedError extends Error {
  override name = 'DirChangedError'
}

/** By name, not instanceof: the plugin and occ may load this module from src and lib both (bench). */
export function isDirChangedError(error: unknown): error is DirChangedError {
  return error instanceof Error && error.name === 'DirChangedError'
}

/** Where the safe-fs primitives resolve entry names: an opened directory, or a plain path. */
export interface DirRef {
  /** The directory's path, for messages. */
  readonly path: string
  /** The path to hand to one fs call for `name`, right before that call. */
  entry(name: string): Promise<string>
  /** The directory itself (readdir, watch). */
  self(): Promise<string>
  /** fsync the directory (makes a rename durable). */
  sync(): Promise<void>
}

/** An opened directory, as the listener holds it (an interface, so src and lib builds agree). */
export interface OpenedDir extends DirRef {
  /** 'proc': /proc/self/fd paths. 'checked': the path, checked against the handle before each use. */
  readonly mode: 'checked' | 'proc'
  /** Why the path no longer leads to the opened directory, or undefined. Never throws. */
  problem(): Promise<string | undefined>
  close(): Promise<void>
}

export interface OpenDirOptions {
  /** Use /proc/self/fd (default: when it works, i.e. on Linux with a usable /proc). */
  proc?: boolean
  /**
   * Open through this path instead (an entry of an already opened parent), while `dir` stays
   * the path that messages name and that the fallback compares against.
   */
  via?: string
}

export class OpenDir implements OpenedDir {
  readonly mode: 'checked' | 'proc'
  readonly path: string
  private readonly handle: fs.FileHandle
  private readonly identity: Stats
  private closed = false

  private constructor(dir: string, handle: fs.FileHandle, identity: Stats, viaProc: boolean) {
    this.path = dir
    this.handle = handle
    this.identity = identity
    this.mode = viaProc ? 'proc' : 'checked'
  }

  /**
   * Opens `dir` without following a symlink at its last component (ELOOP → an error that says
   * so). The caller makes sure the components above it are trusted or were opened the same way.
   */
  static async open(dir: string, options: OpenDirOptions = {}): Promise<OpenDir> {
    let handle: fs.FileHandle
    try {
      handle = await fs.open(options.via ?? dir, OPEN_DIR_FLAGS)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'ELOOP' && code !== 'ENOTDIR') throw error
      // O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR on Linux, ELOOP elsewhere: look (lstat).
      const link = await fs.lstat(options.via ?? dir).then((stat) => stat.isSymbolicLink(), () => code === 'ELOOP')
      throw new Error(link ? `${dir} is a symlink; refusing to follow it` : `${dir} exists and is not a directory`, {cause: error})
    }

    try {
      const identity = await handle.stat()
      const viaProc = options.proc ?? (await procWorks(handle, identity))
      return new OpenDir(dir, handle, identity, viaProc)
    } catch (error) {
      await handle.close()
      throw error
    }
  }

  /** The fd, for tests and messages. */
  get fd(): number {
    return this.handle.fd
  }

  async entry(name: string): Promise<string> {
    checkName(name)
    return path.join(await this.self(), name)
  }

  async self(): Promise<string> {
    if (this.closed) throw new Error(`${this.path}: the directory handle is closed`)
    if (this.mode === 'proc') return `/proc/self/fd/${this.handle.fd}`
    const problem = await this.problem()
    if (problem) throw new DirChangedError(problem)
    return this.path
  }

  async sync(): Promise<void> {
    await this.handle.sync()
  }

  async chmod(mode: number): Promise<void> {
    await this.handle.chmod(mode)
  }

  async stat(): Promise<Stats> {
    return this.handle.stat()
  }

  /**
   * Why the path no longer leads to the directory we opened (replaced by a symlink or another
   * directory, renamed, deleted), or undefined when it still does. Never throws.
   */
  async problem(): Promise<string | undefined> {
    if (this.closed) return `${this.path}: the directory handle is closed`
    try {
      const now = await this.handle.stat()
      if (now.nlink === 0) return `${this.path} was deleted`
      const atPath = await fs.lstat(this.path)
      if (atPath.isSymbolicLink()) return `${this.path} was replaced by a symlink`
      if (atPath.dev !== this.identity.dev || atPath.ino !== this.identity.ino) {
        return `${this.path} was replaced or moved (it is no longer the directory occ opened)`
      }

      return undefined
    } catch (error) {
      return `${this.path} is gone (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.handle.close()
  }
}

/** A directory trusted not to move (occ's own config dir): entries are plain paths. */
export function pathDir(dir: string): DirRef {
  return {
    async entry(name) {
      checkName(name)
      return path.join(dir, name)
    },
    path: dir,
    async self() {
      return dir
    },
    async sync() {
      const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
      try {
        await handle.sync()
      } finally {
        await handle.close()
      }
    },
  }
}

export function toDirRef(dir: DirRef | string): DirRef {
  return typeof dir === 'string' ? pathDir(dir) : dir
}

/** One path component: no separator, not '.' or '..', no NUL. */
function checkName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new Error(`not a plain file name: ${JSON.stringify(name)}`)
  }
}

async function procWorks(handle: fs.FileHandle, identity: Stats): Promise<boolean> {
  if (process.platform !== 'linux') return false
  try {
    const viaProc = await fs.stat(`/proc/self/fd/${handle.fd}`)
    return viaProc.isDirectory() && viaProc.dev === identity.dev && viaProc.ino === identity.ino
  } catch {
    return false
  }
}
