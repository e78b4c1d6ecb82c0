import {existsSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {cleanText} from '../runtime/status.js'
import {LISTENER_FILE} from './command-files.js'
import {readUntrustedFile} from './safe-fs.js'
import {type ListenerStatusFile, listenerStatusSchema} from './schemas.js'
import {parseUntrustedJson} from './untrusted-json.js'

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
  /**
   * With isAlive: whether that live pid is an occ process at all (the sandbox can write
   * listener.json, e.g. with pid 1). Default: processLooksLikeOcc.
   */
  looksLikeOcc?: (pid: number) => boolean
}

/** Reads of listener.json that met an atomic replace before one counts as unreadable. */
const READ_ATTEMPTS = 5

/** A listener is stale when its heartbeat is older than this many heartbeat intervals. */
export const STALE_AFTER_INTERVALS = 3

/**
 * Reads listener.json from a commands dir (host or container path) with the same care as a
 * request: no symlinks, capped size, strict schema. Never throws.
 */
export async function readListenerStatus(commandsDir: string, options: ReadListenerOptions = {}): Promise<ListenerView> {
  let read
  try {
    // The listener replaces the file (temp + rename) on every heartbeat: a read that met the
    // replace ('changed': the name moved to a new inode between lstat and open) is read again,
    // never taken for a stale listener.
    for (let attempt = 0; ; attempt++) {
      read = await readUntrustedFile(path.join(commandsDir, LISTENER_FILE))
      if (read.kind !== 'changed' || attempt >= READ_ATTEMPTS - 1) break
      await delay(5 * (attempt + 1))
    }
  } catch (error) {
    return {reason: `cannot read ${LISTENER_FILE}: ${(error as Error).message}`, state: 'stale'}
  }

  if (read.kind === 'missing') return {state: 'absent'}
  if (read.kind !== 'ok') return {reason: `${LISTENER_FILE} is unreadable (${read.kind})`, state: 'stale'}
  const json = parseUntrustedJson(read.data)
  if (!json.ok) return {reason: `${LISTENER_FILE} is not valid JSON`, state: 'stale'}
  const parsed = listenerStatusSchema.safeParse(json.value)
  if (!parsed.success) return {reason: `${LISTENER_FILE} does not match its schema`, state: 'stale'}
  return judgeListenerStatus(cleanStatus(parsed.data), options)
}

/**
 * The file's free-text fields came from a directory the sandbox can write and end up on a
 * terminal (`occ status`): control characters stripped, length capped (cleanText).
 */
export function cleanStatus(status: ListenerStatusFile): ListenerStatusFile {
  const clean: ListenerStatusFile = {...status, version: cleanText(status.version) ?? '?'}
  if (status.request_id !== undefined) clean.request_id = cleanText(status.request_id) ?? ''
  if (status.disabled_reason !== undefined) clean.disabled_reason = cleanText(status.disabled_reason) ?? 'disabled'
  return clean
}

/** The pure part of readListenerStatus: active, stale or disabled, from a parsed file. */
export function judgeListenerStatus(status: ListenerStatusFile, options: ReadListenerOptions = {}): ListenerView {
  const now = (options.now ?? new Date()).getTime()
  if (options.isAlive) {
    if (!options.isAlive(status.pid)) return {reason: `the listener process (pid ${status.pid}) is gone`, state: 'stale', status}
    if (!(options.looksLikeOcc ?? processLooksLikeOcc)(status.pid)) {
      return {reason: `pid ${status.pid} is not an occ process`, state: 'stale', status}
    }
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

/**
 * Whether a live pid looks like `occ start --no-daemon`: on Linux, an argument in
 * /proc/<pid>/cmdline is oclif's bin/run.js or bin/dev.js, or a program named occ*. A heuristic
 * against a planted pid (1, a shell): a process can name itself anything. Where /proc cannot
 * tell (other systems, hidepid), the answer is yes and staleness rests on the heartbeat.
 */
export function processLooksLikeOcc(pid: number): boolean {
  if (process.platform !== 'linux') return true
  let cmdline: string
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    // The pid's entry is gone (it died meanwhile) when /proc itself works; otherwise we cannot tell.
    return !existsSync('/proc/self/cmdline')
  }

  if (cmdline === '') return false // a kernel thread, or a zombie
  return cmdline
    .split('\0')
    .slice(0, 8)
    .some((arg) => {
      const base = path.basename(arg)
      return base === 'run.js' || base === 'dev.js' || /^occ\b/.test(base)
    })
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
