/**
 * Reads Docker's container events to tell how the sandbox stopped, which decides the exit code of
 * `occ start --no-daemon` (and so whether a service manager restarts it):
 * - `docker stop` / `occ stop`: kill, die, stop — expected (exit 0);
 * - a crash or `docker kill`: die alone — unexpected;
 * - `docker restart` / `occ restart` / an update's container restart: kill, die, stop, start,
 *   restart — not an end at all: keep going;
 * - removal (`occ stop --remove`): destroy — expected;
 * - a rename (the container leaves our name, as `occ update container` sets the old one aside):
 *   expected; whether a successor comes under our name is for the caller to find out.
 * Each event gives a decision; timers are the caller's, so this stays a pure state machine.
 */
export interface StopVerdict {
  expected: boolean
  exitCode?: number
  /** The container no longer has our name: removed, or renamed away. */
  departure?: 'removed' | 'renamed'
  /** The container watched (set by the host runtime). */
  containerId?: string
  /** Host path of its state mount, when it had one (set by the host runtime). */
  stateMount?: string
}

export type StopDecision =
  | {kind: 'cancel'}
  | {kind: 'end'; verdict: StopVerdict}
  | {kind: 'ignore'}
  | {kind: 'wait'; ms: number; verdict: StopVerdict}

/**
 * After `die`, how long a `stop` or a `start` may take to follow (then it was a crash). An update
 * without a supervisor ends opencode itself and starts the container again: `die`, then `start`,
 * with no `stop` between, and on a loaded machine the start may take seconds.
 */
export const DIE_GRACE_MS = 5000
/** After `stop`, how long a `start` may take to follow (then it was a restart, not a stop). */
export const RESTART_GRACE_MS = 3000

export class StopTracker {
  private exitCode?: number

  onEvent(action: string | undefined, attributes: Record<string, string> = {}): StopDecision {
    switch (action) {
      case 'die': {
        const code = Number(attributes.exitCode)
        this.exitCode = Number.isFinite(code) ? code : undefined
        return {kind: 'wait', ms: DIE_GRACE_MS, verdict: {exitCode: this.exitCode, expected: false}}
      }

      case 'stop': {
        return {kind: 'wait', ms: RESTART_GRACE_MS, verdict: {exitCode: this.exitCode, expected: true}}
      }

      case 'start':
      case 'restart': {
        this.exitCode = undefined
        return {kind: 'cancel'}
      }

      case 'destroy': {
        return {kind: 'end', verdict: {departure: 'removed', exitCode: this.exitCode, expected: true}}
      }

      case 'rename': {
        return {kind: 'end', verdict: {departure: 'renamed', exitCode: this.exitCode, expected: true}}
      }

      default: {
        return {kind: 'ignore'}
      }
    }
  }
}
