import fs from 'node:fs/promises'
import path from 'node:path'

import {findStateMount, hostCommandsDir, MOUNT_STATE, type MountSpec} from '../config/mounts.js'
import {OpenDir, type OpenedDir} from './safe-dir.js'

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
    // Short enough for `occ status` (sandbox-side text there is capped at 120 characters).
    return `no bind mount for ${MOUNT_STATE}, where the web UI writes update requests; enable default mounts`
  }

  if (state.readOnly) {
    return `the bind mount for ${MOUNT_STATE} is read-only, so the web UI cannot write its update requests`
  }

  return undefined
}

export interface PreparedDir {
  /** The host path of the commands dir. */
  dir: string
  /** realpath of dir when it was prepared. */
  realDir: string
  mode: number
  /**
   * The commands dir, opened once (O_DIRECTORY|O_NOFOLLOW). Every later file operation goes
   * through it, so a dir renamed or replaced by the sandbox cannot redirect one (see OpenDir).
   * Whoever prepared the dir closes it when done.
   */
  handle: OpenedDir
}

export interface PrepareOptions {
  hostUid?: number
  containerUid?: number
  /** Force /proc/self/fd use on or off (default: when it works). Tests turn it off for the fallback. */
  proc?: boolean
  /** Test seam: runs after `commands` was created or found, before it is opened (a sandbox racing us). */
  beforeOpen?: () => Promise<void>
}

/**
 * Creates `<state mount host path>/opencode-cloud/commands` if needed and opens it. Each level
 * is opened with O_DIRECTORY|O_NOFOLLOW through the one above it (on Linux via /proc/self/fd),
 * so a symlink at either name is refused, and the mode is set through the handle (fchmod), never
 * by path: a path the sandbox swapped for a symlink cannot make occ chmod a host file. The mode
 * is set on a dir occ created or owns.
 */
export async function prepareCommandsDir(stateMount: MountSpec, options: PrepareOptions = {}): Promise<PreparedDir> {
  const hostUid = options.hostUid ?? process.getuid?.()
  const dir = hostCommandsDir(stateMount)
  // The mount root itself cannot be renamed from inside (it is the container's mount point), and
  // the components above it are the host user's own.
  const stateRoot = await fs.realpath(stateMount.host)
  const expected = path.join(stateRoot, 'opencode-cloud', 'commands')
  const root = await OpenDir.open(stateRoot, {proc: options.proc})
  let handle: OpenDir | undefined
  try {
    const parent = await openChild(root, 'opencode-cloud', path.dirname(dir), {hostUid, mode: 0o755, proc: options.proc})
    try {
      const mode = commandsDirMode(hostUid, options.containerUid)
      handle = await openChild(parent, 'commands', dir, {beforeOpen: options.beforeOpen, fixMode: true, hostUid, mode, proc: options.proc})
      // The host path must lead to the dir we opened, and to where it should be.
      const problem = await handle.problem()
      if (problem) throw new Error(`${problem}; refusing to use it`)
      const realDir = await fs.realpath(dir)
      if (realDir !== expected) throw new Error(`${dir} resolves to ${realDir}, not ${expected}; refusing to use it`)
      return {dir, handle, mode, realDir}
    } finally {
      await parent.close()
    }
  } catch (error) {
    await handle?.close()
    throw error
  } finally {
    await root.close()
  }
}

/** Whether the host path still leads to the dir that was prepared (not replaced, moved or deleted). */
export async function commandsDirIntact(prepared: PreparedDir): Promise<boolean> {
  return (await prepared.handle.problem()) === undefined
}

async function openChild(
  parent: OpenDir,
  name: string,
  hostPath: string,
  options: {mode: number; hostUid?: number; fixMode?: boolean; proc?: boolean; beforeOpen?: () => Promise<void>},
): Promise<OpenDir> {
  let created = false
  try {
    await fs.mkdir(await parent.entry(name), {mode: options.mode})
    created = true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
  }

  await options.beforeOpen?.()
  const child = await OpenDir.open(hostPath, {proc: options.proc, via: await parent.entry(name)})
  try {
    const stat = await child.stat()
    const ours = options.hostUid !== undefined && stat.uid === options.hostUid
    // mkdir's mode is reduced by the umask; fchmod through the handle, never chmod by path.
    if ((created || (options.fixMode && ours)) && (stat.mode & 0o7777) !== options.mode) await child.chmod(options.mode)
    return child
  } catch (error) {
    await child.close()
    throw error
  }
}
