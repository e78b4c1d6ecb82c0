/**
 * Who owns the update lock, and when a held lock may be taken over at once: its owner ran on
 * this host (same boot id) and is dead (no such pid, or a pid reused by another process: a
 * different start time), or it is this very process with no update of its own running (left
 * over from an update cut short, e.g. by a container restart). Owners on another host are
 * judged by the lock's heartbeat only (release-store.sh's stale seconds).
 */
import {readFileSync} from 'node:fs'

import {isPidAlive} from '../../protocol/listener-status.js'
import type {LockOwner, LockRecord} from './release-store.js'

/** Tokens of the locks this process holds right now (an update of ours is running). */
export const heldLockTokens = new Set<string>()

let bootIdCache: string | undefined

/** This host's boot id (Linux); '' where there is none (then only the heartbeat rule applies). */
export function hostBootId(): string {
  if (bootIdCache === undefined) {
    try {
      const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
      bootIdCache = /^[0-9a-f-]{8,64}$/.test(id) ? id : ''
    } catch {
      bootIdCache = ''
    }
  }

  return bootIdCache
}

/** A process's start time in clock ticks since boot (/proc/<pid>/stat field 22), when known. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const start = fields[19]
    return start && /^\d+$/.test(start) ? start : undefined
  } catch {
    return undefined
  }
}

export function lockOwner(token: string, description: string): LockOwner {
  return {bootId: hostBootId(), description, pid: process.pid, pidStart: processStartTime(process.pid) ?? '', token}
}

export interface OwnerChecks {
  bootId: string
  pid: number
  pidStart: string
  held: ReadonlySet<string>
  isAlive: (pid: number) => boolean
  startTime: (pid: number) => string | undefined
}

export function ownerChecks(): OwnerChecks {
  return {
    bootId: hostBootId(),
    held: heldLockTokens,
    isAlive: isPidAlive,
    pid: process.pid,
    pidStart: processStartTime(process.pid) ?? '',
    startTime: processStartTime,
  }
}

/** Why a held lock may be taken over at once, or undefined when its owner may still be working. */
export function lockOwnerGone(record: LockRecord, me: OwnerChecks): string | undefined {
  if (!record.token) return undefined
  if (!me.bootId || record.bootId !== me.bootId || record.pid === undefined) return undefined
  if (record.pid === me.pid && record.pidStart === me.pidStart) {
    return me.held.has(record.token) ? undefined : 'it was left by this process (an update cut short)'
  }

  if (!me.isAlive(record.pid)) return `its owner (pid ${record.pid}) is gone`
  const start = me.startTime(record.pid)
  if (start !== undefined && record.pidStart && start !== record.pidStart) return `its owner (pid ${record.pid}) is gone (the pid was reused)`
  return undefined
}
