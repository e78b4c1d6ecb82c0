import type {RestartMethod} from './runtime.js'

/**
 * How opencode is restarted inside the sandbox, found out (never assumed), in order: the
 * systemd unit when the sandbox runs systemd, the fixture-style supervisor when its control
 * program exists, else only the whole container can be restarted. One table for both runtimes.
 */
const MARKERS: Array<{method: Exclude<RestartMethod, 'container'>; path: string; test: '-d' | '-x'}> = [
  {method: 'systemd', path: '/run/systemd/system', test: '-d'},
  {method: 'supervisor', path: '/usr/local/bin/opencode-supervisorctl', test: '-x'},
]

/** Prints the method; run in the sandbox (constant text, no input in it). */
export const RESTART_METHOD_SCRIPT = `${MARKERS.map(({method, path, test}) => `if [ ${test} ${path} ]; then echo ${method}; exit 0; fi`).join('; ')}; echo container`

export function parseRestartMethod(stdout: string): RestartMethod {
  const method = stdout.trim()
  return method === 'systemd' || method === 'supervisor' ? method : 'container'
}

/** The same decision from local file checks (occ running inside the sandbox). */
export function restartMethodFrom(isDirectory: (path: string) => boolean, isExecutable: (path: string) => boolean): RestartMethod {
  for (const {method, path, test} of MARKERS) {
    if (test === '-d' ? isDirectory(path) : isExecutable(path)) return method
  }

  return 'container'
}

/** argv that restarts opencode in place (not for 'container', which needs the engine). */
export function restartArgv(method: Exclude<RestartMethod, 'container'>): string[] {
  return method === 'systemd' ? ['systemctl', 'restart', 'opencode.service'] : ['/usr/local/bin/opencode-supervisorctl', 'restart']
}

/**
 * For the 'container' method: SIGTERM to opencode itself (found by its process name; constant
 * text, no input in it); exits 1 when there was none. The published image's tini mode ends in
 * `exec runuser … opencode web`, and a stop through PID 1 makes runuser (util-linux) wait 2 s
 * after passing SIGTERM on before it exits; ended directly, opencode takes the container down
 * as soon as it has exited (about 0.3 s here instead of 2.2 s).
 */
export const STOP_OPENCODE_SCRIPT =
  'found=; for p in /proc/[0-9]*; do [ "$(cat "$p/comm" 2>/dev/null)" = opencode ] || continue; kill -TERM "${p#/proc/}" 2>/dev/null && found=1; done; [ -n "$found" ]'
