import type {OccPaths} from '../../config/paths.js'
import type {OccConfig} from '../../config/schema.js'
import {loadConfig, saveConfig} from '../../config/store.js'
import type {Runtime} from '../runtime.js'
import {iotpView, type StatusView} from '../status.js'
import {iotpResetHints, IOTP_FROM_LOGS, runBootstrap} from './iotp.js'
import {UserStore} from './store.js'

/**
 * config.users mirrors the managed users (the records are the truth). The host writes it after
 * every change it makes, and after each restore, so a change made from inside the sandbox
 * (container runtime, where the host's config is out of reach) reaches it at the next start,
 * restart or `occ user` on the host.
 */
export async function syncConfigUsers(host: {config: OccConfig; paths: OccPaths}, users: string[]): Promise<void> {
  const sorted = [...users].sort()
  if (sameList(host.config.users, sorted)) return
  // Re-read first: only `users` changes, whatever else changed on disk meanwhile is kept.
  const {config} = await loadConfig(host.paths)
  await saveConfig(host.paths, {...config, users: sorted})
  host.config.users = sorted
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().every((name, index) => name === b[index])
}

/** Said after `occ user add/remove` inside the sandbox, where the host's config is out of reach. */
export const CONTAINER_CONFIG_NOTE =
  "The host's config.users follows at the next occ start, occ restart or occ user command run on the host."

/** The user flow for a runtime: on the host with config.users kept in sync. */
export function userStoreFor(runtime: Runtime, host?: {config: OccConfig; paths: OccPaths}): UserStore {
  return new UserStore(runtime, host ? {onUsersChanged: (users) => syncConfigUsers(host, users)} : {})
}

export interface FirstLogin {
  /**
   * The IOTP in the shape `occ status --json` has (state, label, createdAt, value, masked, detail).
   * Unlike status, the value is always there when there is one (masked: false): printing it is
   * what the first-login block of `occ start` is for, in text and in --json alike.
   */
  iotp: StatusView['iotp']
  /** What to run for a new one (with --force when not bound to localhost). */
  hints: string[]
  /** The fallback: the line the image logs at start. */
  fromLogs: string
}

/**
 * The end of `occ start` when nobody can log in yet (no user, and unauthenticated network access
 * not allowed): the IOTP from `opencode-cloud-bootstrap status --include-secret`, or why there is none.
 */
export async function firstLogin(runtime: Runtime, config: OccConfig): Promise<FirstLogin | null> {
  if (config.users.length > 0 || config.allow_unauthenticated_network) return null
  const iotp = iotpView(await runBootstrap(runtime, 'status', true), true)
  return {fromLogs: IOTP_FROM_LOGS, hints: iotpResetHints(config.bind_address), iotp}
}

/** The flow for a command's runtime, checked for use (root inside, a running container). */
export async function openUserStore(runtime: Runtime): Promise<UserStore> {
  const host = runtime.kind === 'host' ? (runtime as unknown as {config: OccConfig; paths: OccPaths}) : undefined
  const store = userStoreFor(runtime, host)
  await store.preflight()
  return store
}
