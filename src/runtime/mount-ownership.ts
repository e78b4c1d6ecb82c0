import fs from 'node:fs/promises'

import {formatMountSpec, type MountSpec} from '../config/mounts.js'

/** The sandbox user's ids, as the image's /etc/passwd has them (opencoder; 1000 by default). */
export interface SandboxUser {
  uid: number
  gid: number
}

export const DEFAULT_SANDBOX_USER: SandboxUser = {gid: 1000, uid: 1000}

/** What occ knows about one bind mount's host dir before it starts the container. */
export interface MountDirFacts {
  mount: MountSpec
  /** One of the config's default mounts (occ creates those dirs; it may fix their owner). */
  isDefault: boolean
  /** lstat of the host dir (undefined when it is missing). */
  stat?: {uid: number; gid: number; mode: number; isDirectory: boolean; isSymbolicLink: boolean}
}

export interface OwnershipPlan {
  /** Default mount dirs to hand to the sandbox user (only the dir itself, never recursively). */
  chown: string[]
  warnings: string[]
}

/**
 * Who must own a bind mount's host dir so the sandbox user can write it (the real opencode
 * fails at start otherwise: EACCES on ~/.cache/opencode/bin). A default mount dir owned by
 * root while occ runs as root — occ made it — is handed to the sandbox user. A dir the user
 * gave (--mount, config) is never changed: occ warns with the command that fixes it.
 */
export function planMountOwnership(dirs: MountDirFacts[], occUid: number, user: SandboxUser): OwnershipPlan {
  const plan: OwnershipPlan = {chown: [], warnings: []}
  for (const {isDefault, mount, stat} of dirs) {
    if (mount.readOnly || !stat || !stat.isDirectory || stat.isSymbolicLink) continue
    if (writableBy(stat, user)) continue
    if (isDefault && occUid === 0 && stat.uid === 0) {
      plan.chown.push(mount.host)
      continue
    }

    plan.warnings.push(
      `The sandbox user (uid ${user.uid}) cannot write ${mount.host} (mount ${formatMountSpec(mount)}; owned by uid ${stat.uid}, mode ${(stat.mode & 0o7777).toString(8)}). ` +
        `To fix it: chown ${user.uid}:${user.gid} ${mount.host}`,
    )
  }

  return plan
}

function writableBy(stat: NonNullable<MountDirFacts['stat']>, user: SandboxUser): boolean {
  if (stat.uid === user.uid) return (stat.mode & 0o300) === 0o300
  if (stat.gid === user.gid) return (stat.mode & 0o030) === 0o030
  return (stat.mode & 0o003) === 0o003
}

export async function mountDirFacts(mounts: MountSpec[], defaults: Set<string>): Promise<MountDirFacts[]> {
  return Promise.all(
    mounts.map(async (mount) => {
      const st = await fs.lstat(mount.host).catch(() => undefined)
      return {
        isDefault: defaults.has(formatMountSpec({...mount, readOnly: false})),
        mount,
        stat: st && {gid: st.gid, isDirectory: st.isDirectory(), isSymbolicLink: st.isSymbolicLink(), mode: st.mode, uid: st.uid},
      }
    }),
  )
}

/** Hands each dir to the sandbox user; lchown, so a symlink swapped in meanwhile is not followed. */
export async function applyOwnership(plan: OwnershipPlan, user: SandboxUser): Promise<string[]> {
  const failed: string[] = []
  for (const dir of plan.chown) {
    await fs.lchown(dir, user.uid, user.gid).catch((error: Error) => failed.push(`Could not hand ${dir} to uid ${user.uid}: ${error.message}`))
  }

  return failed
}

/** The uid/gid of `name` in passwd text (the image's /etc/passwd: untrusted, parsed strictly). */
export function parsePasswdUser(text: string, name: string): SandboxUser | undefined {
  for (const line of text.split('\n').slice(0, 10_000)) {
    const fields = line.split(':')
    if (fields.length < 7 || fields[0] !== name) continue
    if (!/^\d{1,9}$/.test(fields[2]) || !/^\d{1,9}$/.test(fields[3])) return undefined
    return {gid: Number(fields[3]), uid: Number(fields[2])}
  }

  return undefined
}

/** The first regular file's content in a tar stream's bytes (Docker's archive endpoint), capped. */
export function firstTarFile(tar: Buffer, maxBytes: number): Buffer | undefined {
  if (tar.length < 512) return undefined
  const header = tar.subarray(0, 512)
  const type = String.fromCodePoint(header[156])
  if (type !== '0' && type !== '\0') return undefined
  const sizeText = header.subarray(124, 136).toString('latin1').replaceAll('\0', '').trim()
  if (!/^[0-7]{1,12}$/.test(sizeText)) return undefined
  const size = Number.parseInt(sizeText, 8)
  if (size > maxBytes || 512 + size > tar.length) return undefined
  return tar.subarray(512, 512 + size)
}
