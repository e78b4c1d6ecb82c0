import path from 'node:path'

import type {OccPaths} from './paths.js'

/** Where the container keeps opencode's state; the update listener's command files live under it. */
export const MOUNT_STATE = '/home/opencoder/.local/state/opencode'
export const CONTAINER_COMMANDS_DIR = `${MOUNT_STATE}/opencode-cloud/commands`

export interface MountSpec {
  host: string
  container: string
  readOnly: boolean
}

/**
 * Parses `host:container[:ro|rw]`. Like the Rust occ, a path cannot contain ':'; unlike it, the
 * container side must be absolute too.
 */
export function parseMountSpec(spec: string): MountSpec {
  const parts = spec.split(':')
  if (parts.length !== 2 && parts.length !== 3) {
    throw new Error(`Invalid mount format. Expected: /host/path:/container/path[:ro] (got: ${spec})`)
  }

  const [host, container, mode] = parts
  let readOnly = false
  if (mode !== undefined) {
    const lower = mode.toLowerCase()
    if (lower !== 'ro' && lower !== 'rw') throw new Error(`Invalid mount mode '${mode}' in '${spec}'. Use ro or rw.`)
    readOnly = lower === 'ro'
  }

  if (!path.isAbsolute(host) || !path.posix.isAbsolute(container)) {
    throw new Error(`Mount paths must be absolute (got: ${spec})`)
  }

  return {container: path.posix.normalize(container), host: path.normalize(host), readOnly}
}

export function formatMountSpec(mount: MountSpec): string {
  return `${mount.host}:${mount.container}${mount.readOnly ? ':ro' : ''}`
}

/** The Rust occ's default bind mounts, built from the host's (XDG-aware) paths. */
export function defaultMounts(paths: OccPaths): string[] {
  return [
    `${path.join(paths.xdgData, 'opencode')}:/home/opencoder/.local/share/opencode`,
    `${path.join(paths.xdgState, 'opencode')}:${MOUNT_STATE}`,
    `${path.join(paths.xdgCache, 'opencode')}:/home/opencoder/.cache/opencode`,
    `${path.join(paths.home, 'opencode')}:/home/opencoder/workspace`,
    `${path.join(paths.configDir, 'opencode')}:/home/opencoder/.config/opencode`,
    `${path.join(paths.dataDir, 'ssh')}:/home/opencoder/.ssh`,
  ]
}

/** Keeps the last mount per container target (the Rust occ warns and does the same). */
export function dedupeMounts(mounts: MountSpec[]): {mounts: MountSpec[]; dropped: MountSpec[]} {
  const byTarget = new Map<string, MountSpec>()
  const dropped: MountSpec[] = []
  for (const mount of mounts) {
    const earlier = byTarget.get(mount.container)
    if (earlier) {
      dropped.push(earlier)
      byTarget.delete(mount.container)
    }

    byTarget.set(mount.container, mount)
  }

  return {dropped, mounts: [...byTarget.values()]}
}

/** The bind mount that carries the state dir, if any: the command-file channel needs it. */
export function findStateMount(mounts: MountSpec[]): MountSpec | undefined {
  return mounts.find((mount) => mount.container === MOUNT_STATE)
}

/** Host path of the command-file directory for a state mount. */
export function hostCommandsDir(stateMount: MountSpec): string {
  return path.join(stateMount.host, 'opencode-cloud', 'commands')
}
