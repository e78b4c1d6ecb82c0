import path from 'node:path'

import {LISTENER_FILE} from './command-files.js'
import {readUntrustedFile} from './safe-fs.js'
import {type ListenerStatusFile, listenerStatusSchema} from './schemas.js'

/** What `occ status` shows about the update listener. */
export type ListenerView =
  | {state: 'absent'}
  | {state: 'active'; status: ListenerStatusFile; heartbeatAgeMs: number}
  | {state: 'disabled'; status: ListenerStatusFile; reason: string}
  | {state: 'stale'; reason: string; status?: ListenerStatusFile}

export interface ReadListenerOptions {
  now?: Date
  /**
   * Whether a host pid is alive. Pass it on the host only (inside the sandbox the pid means
   * nothing); without it, staleness is judged from the heartbeat alone.
   */
  isAlive?: (pid: number) => boolean
}

/** A listener is stale when its heartbeat is older than this many heartbeat intervals. */
export const STALE_AFTER_INTERVALS = 3

/**
 * Reads listener.json from a commands dir (host or container path) with the same care as a
 * request: no symlinks, capped size, strict schema. Never throws.
 */
export async function readListenerStatus(commandsDir: string, options: ReadListenerOptions = {}): Promise<ListenerView> {
  let read
  try {
    read = await readUntrustedFile(path.join(commandsDir, LISTENER_FILE))
  } catch (error) {
    return {reason: `cannot read ${LISTENER_FILE}: ${(error as Error).message}`, state: 'stale'}
  }

  if (read.kind === 'missing') return {state: 'absent'}
  if (read.kind !== 'ok') return {reason: `${LISTENER_FILE} is unreadable (${read.kind})`, state: 'stale'}
  let raw: unknown
  try {
    raw = JSON.parse(read.data.toString('utf8'))
  } catch {
    return {reason: `${LISTENER_FILE} is not valid JSON`, state: 'stale'}
  }

  const parsed = listenerStatusSchema.safeParse(raw)
  if (!parsed.success) return {reason: `${LISTENER_FILE} does not match its schema`, state: 'stale'}
  return judgeListenerStatus(parsed.data, options)
}

/** The pure part of readListenerStatus: active, stale or disabled, from a parsed file. */
export function judgeListenerStatus(status: ListenerStatusFile, options: ReadListenerOptions = {}): ListenerView {
  const now = (options.now ?? new Date()).getTime()
  if (options.isAlive && !options.isAlive(status.pid)) {
    return {reason: `the listener process (pid ${status.pid}) is gone`, state: 'stale', status}
  }

  const age = now - Date.parse(status.heartbeat_at)
  const limit = STALE_AFTER_INTERVALS * status.heartbeat_interval_ms
  if (age > limit) return {reason: `no heartbeat for ${formatAge(age)}`, state: 'stale', status}
  if (status.state === 'disabled') return {reason: status.disabled_reason ?? 'disabled', state: 'disabled', status}
  return {heartbeatAgeMs: Math.max(0, age), state: 'active', status}
}

/** One line for `occ status`, e.g. "active (idle, pid 4242, heartbeat 3s ago)". */
export function describeListener(view: ListenerView): string {
  switch (view.state) {
    case 'absent': {
      return 'absent (no occ start --no-daemon is answering the web UI)'
    }

    case 'disabled': {
      return `disabled: ${view.reason}`
    }

    case 'stale': {
      return `stale (${view.reason})`
    }

    case 'active': {
      const {status} = view
      const heartbeat = `heartbeat ${formatAge(view.heartbeatAgeMs)} ago`
      if (status.state === 'updating') {
        const request = status.request_id === undefined ? '' : ` ${JSON.stringify(status.request_id)}`
        const step = status.step ? `, step ${status.step}` : ''
        return `active (updating${request}${step}, pid ${status.pid}, ${heartbeat})`
      }

      return `active (idle, pid ${status.pid}, ${heartbeat})`
    }
  }
}

export function formatAge(ms: number): string {
  const seconds = Math.round(ms / 1000)
  if (seconds < 60) return `${seconds}s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) return `${minutes}m ${seconds % 60}s`
  const hours = Math.floor(minutes / 60)
  return `${hours}h ${minutes % 60}m`
}

/** `process.kill(pid, 0)`: true when the pid exists (EPERM means it exists but is not ours). */
export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
