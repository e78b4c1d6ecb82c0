import {systemdEnvironmentLine, systemdExecLine, systemdText} from './escape.js'
import {DOCUMENTATION_URL, type ServiceSpec} from './spec.js'

/** Exit codes of `occ start` that no restart can fix: usage (2) and invalid config (3). */
export const NO_RESTART_EXIT_CODES = [2, 3]

/**
 * The crash-loop window. A start that fails again within about half a minute of the previous one
 * (plus the restart delay) is a tight loop; `restart_retries` of those in a row stop the unit.
 * Deaths further apart never reach the limit, so a container that dies once a day is always
 * restarted.
 */
export function startLimit(spec: Pick<ServiceSpec, 'restartDelaySec' | 'restartRetries'>): {burst: number; intervalSec: number} {
  const burst = spec.restartRetries + 1
  return {burst, intervalSec: burst * (spec.restartDelaySec + 30)}
}

/**
 * The systemd user unit. What it fixes relative to the Rust occ's unit (reference §3):
 * - no Requires=docker.service (a user manager has no such unit): ExecStartPre waits for the engine;
 * - StartLimit* in [Unit], where systemd reads them;
 * - Restart=on-failure: `start --no-daemon` exits non-zero when the container dies, 0 after `occ stop`;
 * - no ExecStop: systemd runs ExecStop after every exit, restarts included, and stopping the
 *   service (logout, reinstall) should not take opencode down; SIGTERM is the graceful stop;
 * - absolute node and entry paths, and the environment occ needs.
 */
export function renderSystemdUnit(spec: ServiceSpec): string {
  const {burst, intervalSec} = startLimit(spec)
  const lines = [
    '# Written by `occ install`. Regenerate with `occ install --force`; edits here are overwritten.',
    '[Unit]',
    `Description=${systemdText(spec.description)}`,
    `Documentation=${DOCUMENTATION_URL}`,
    `StartLimitIntervalSec=${intervalSec}`,
    `StartLimitBurst=${burst}`,
    '',
    '[Service]',
    'Type=exec',
    // `~` is the account's home; occ itself finds its files through the variables below.
    'WorkingDirectory=~',
    ...spec.environment.map(([name, value]) => systemdEnvironmentLine(name, value)),
    `ExecStartPre=${systemdExecLine(spec.waitForEngine)}`,
    `ExecStart=${systemdExecLine(spec.command)}`,
    'Restart=on-failure',
    `RestartSec=${spec.restartDelaySec}`,
    `RestartPreventExitStatus=${NO_RESTART_EXIT_CODES.join(' ')}`,
    // Covers the engine wait; the main process counts as started once it runs.
    `TimeoutStartSec=${spec.engineWaitSec + 30}`,
    // SIGTERM goes to occ only, which stops its listener cleanly; SIGKILL to everything after the timeout.
    'KillMode=mixed',
    'KillSignal=SIGTERM',
    `TimeoutStopSec=${spec.stopTimeoutSec}`,
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ]
  return lines.join('\n')
}
