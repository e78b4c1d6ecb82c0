import fs from 'node:fs/promises'
import path from 'node:path'

import {CONTAINER_COMMANDS_DIR, findStateMount, hostCommandsDir, MOUNT_STATE, type MountSpec} from '../config/mounts.js'

/** The sandbox image's user (opencoder) that the web UI runs as. */
export const CONTAINER_UID = 1000

/**
 * The commands dir's mode. The web UI runs as uid 1000 inside the sandbox and must create files
 * here. When occ itself runs as uid 1000 (the usual single-user desktop) 0700 is enough. Otherwise
 * the dir is world-writable with the sticky bit, like /tmp: the sandbox can create its request
 * and rename it into place, but it cannot rename or delete the files occ owns (the result,
 * listener.json), because in a sticky dir only a file's owner or the dir's owner may.
 */
export function commandsDirMode(hostUid: number | undefined, containerUid = CONTAINER_UID): number {
  return hostUid === containerUid ? 0o700 : 0o1777
}

/** Why the listener cannot work with these mounts, or undefined when it can. */
export function listenerMountProblem(mounts: MountSpec[]): string | undefined {
  const state = findStateMount(mounts)
  if (!state) {
    return `no bind mount for ${MOUNT_STATE} (the web UI writes its update requests under it); enable the default mounts`
  }

  if (state.readOnly) {
    return `the bind mount for ${MOUNT_STATE} is read-only, so the web UI cannot write ${CONTAINER_COMMANDS_DIR}`
  }

  return undefined
}

export interface PreparedDir {
  dir: string
  /** realpath of dir when it was prepared: later checks compare against it. */
  realDir: string
  mode: number
}

/**
 * Creates `<state mount host path>/opencode-cloud/commands` if needed and checks that neither
 * part is a symlink (the sandbox may be able to write the mount's root). Sets the mode when we
 * own the dir.
 */
export async function prepareCommandsDir(stateMount: MountSpec, options: {hostUid?: number; containerUid?: number} = {}): Promise<PreparedDir> {
  const hostUid = options.hostUid ?? process.getuid?.()
  const dir = hostCommandsDir(stateMount)
  const parent = path.dirname(dir)
  const stateRoot = await fs.realpath(stateMount.host)
  await ensureRealDir(parent, 0o755)
  const mode = commandsDirMode(hostUid, options.containerUid)
  await ensureRealDir(dir, mode)
  const stat = await fs.lstat(dir)
  if (hostUid !== undefined && stat.uid === hostUid && (stat.mode & 0o7777) !== mode) await fs.chmod(dir, mode)
  const realDir = await fs.realpath(dir)
  const expected = path.join(stateRoot, 'opencode-cloud', 'commands')
  if (realDir !== expected) throw new Error(`${dir} resolves to ${realDir}, not ${expected}; refusing to use it`)
  return {dir, mode, realDir}
}

/**
 * Checks, before each round of work, that the dir is still the real directory we prepared (not
 * replaced by a symlink). Node has no openat(), so this narrows the window rather than closing it.
 */
export async function commandsDirIntact(prepared: PreparedDir): Promise<boolean> {
  try {
    const stat = await fs.lstat(prepared.dir)
    if (!stat.isDirectory()) return false
    return (await fs.realpath(prepared.dir)) === prepared.realDir
  } catch {
    return false
  }
}

async function ensureRealDir(dir: string, mode: number): Promise<void> {
  try {
    await fs.mkdir(dir, {mode})
    await fs.chmod(dir, mode) // mkdir's mode is reduced by the umask
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
  }

  const stat = await fs.lstat(dir)
  if (stat.isSymbolicLink()) throw new Error(`${dir} is a symlink; refusing to follow it`)
  if (!stat.isDirectory()) throw new Error(`${dir} exists and is not a directory`)
}
