import os from 'node:os'
import path from 'node:path'

import type {OccConfig} from '../config/schema.js'
import {NotSupportedError} from '../errors.js'
import {assertEnvName, assertExpressible} from './escape.js'
import {ServiceValueError} from './errors.js'

export type ServiceManagerKind = 'launchd' | 'systemd'

/**
 * Everything a unit or a plist says, decided once so both formats carry the same command, the
 * same environment and the same restart policy. Rendering is a pure function of this.
 */
export interface ServiceSpec {
  /** The sandbox instance (undefined: the default one). */
  instance: string | undefined
  description: string
  /** Absolute argv: node, occ's bin/run.js, then `start --no-daemon`. */
  command: string[]
  /** Absolute argv that waits for the Docker engine before `command` (systemd's ExecStartPre). */
  waitForEngine: string[]
  /** How long `waitForEngine` waits, in seconds. */
  engineWaitSec: number
  /** Variables the service needs, in a stable order. */
  environment: Array<[string, string]>
  restartDelaySec: number
  /** Restarts allowed in a tight crash loop before the manager gives up (systemd only). */
  restartRetries: number
  /** How long SIGTERM may take before SIGKILL: the listener finishes or stops its step and writes its result. */
  stopTimeoutSec: number
  /** launchd: where stdout and stderr go (systemd uses the journal). */
  stdoutPath: string
  stderrPath: string
  workingDirectory: string
}

/** How long the unit waits for the engine at boot before it counts as a failed start. */
export const ENGINE_WAIT_SEC = 120
/**
 * SIGTERM → SIGKILL grace. start --no-daemon reacts to SIGTERM by letting the listener finish or
 * safely abort its current step (a restart-and-health-wait takes up to about a minute) and write
 * the result; three minutes leaves room for that without making logout or shutdown hang for long.
 */
export const STOP_TIMEOUT_SEC = 180

/** Variables carried from the install-time environment into the service when they are set. */
export const CARRIED_ENV = [
  'PATH',
  'DOCKER_HOST',
  'DOCKER_CONTEXT',
  'DOCKER_CERT_PATH',
  'DOCKER_TLS_VERIFY',
  'OPENCODE_SANDBOX_INSTANCE',
  'OPENCODE_CLOUD_ENV',
  'XDG_CONFIG_HOME',
  'XDG_DATA_HOME',
  'XDG_STATE_HOME',
  'XDG_CACHE_HOME',
] as const

export const DOCUMENTATION_URL = 'https://github.com/pRizz/opencode-cloud'

/** `opencode-cloud.service`, or `opencode-cloud-<instance>.service` so instances never collide. */
export function systemdUnitName(instance: string | undefined): string {
  return instance ? `opencode-cloud-${instance}.service` : 'opencode-cloud.service'
}

/** `com.opencode-cloud.service` (the Rust occ's label), or `com.opencode-cloud.<instance>`. */
export function launchdLabel(instance: string | undefined): string {
  if (instance === 'service') {
    // com.opencode-cloud.service is the default instance's label.
    throw new ServiceValueError("The sandbox instance 'service' would share the default instance's launchd label.", {
      actions: ['Use another instance name for a launchd service.'],
    })
  }

  return instance ? `com.opencode-cloud.${instance}` : 'com.opencode-cloud.service'
}

export function serviceName(manager: ServiceManagerKind, instance: string | undefined): string {
  return manager === 'systemd' ? systemdUnitName(instance) : launchdLabel(instance)
}

export function serviceFileName(manager: ServiceManagerKind, instance: string | undefined): string {
  return manager === 'systemd' ? systemdUnitName(instance) : `${launchdLabel(instance)}.plist`
}

export interface ServiceSpecInput {
  instance: string | undefined
  config: Pick<OccConfig, 'boot_mode' | 'restart_delay' | 'restart_retries'>
  /** The node binary that runs occ (process.execPath): absolute, so nvm/volta/prefix installs work. */
  nodePath: string
  /** occ's package root (oclif's config.root); bin/run.js and lib/ live under it. */
  packageRoot: string
  /** The install-time environment. */
  env: NodeJS.ProcessEnv
  /** The account's home directory (os.userInfo().homedir); HOME is carried only when it differs. */
  accountHome?: string
  /** The home the service runs in (HOME at install time). */
  home: string
}

/** Builds the spec from the install-time facts. Pure: no file system, no processes. */
export function buildServiceSpec(input: ServiceSpecInput): ServiceSpec {
  const {instance} = input
  if (input.config.boot_mode === 'system') {
    throw new NotSupportedError("boot_mode 'system' (a system-wide service) is not supported; occ installs a per-user service.", {
      actions: [
        'Switch to the user service: occ config set boot_mode user',
        'To start it at boot without logging in (Linux): loginctl enable-linger $USER',
      ],
    })
  }

  for (const [what, value] of [
    ['The node path', input.nodePath],
    ["occ's package root", input.packageRoot],
  ] as const) {
    if (!path.isAbsolute(value)) throw new ServiceValueError(`${what} must be absolute (got '${value}').`)
    assertExpressible(what, value)
  }

  const environment = serviceEnvironment(input)
  const suffix = instance ? `-${instance}` : ''
  const logDir = path.join(input.home, 'Library', 'Logs')
  const restartDelaySec = Math.max(1, input.config.restart_delay)
  return {
    command: [input.nodePath, path.join(input.packageRoot, 'bin', 'run.js'), 'start', '--no-daemon'],
    description: `opencode-cloud sandbox${instance ? ` '${instance}'` : ''} (occ start --no-daemon and its update listener)`,
    engineWaitSec: ENGINE_WAIT_SEC,
    environment,
    instance,
    restartDelaySec,
    restartRetries: input.config.restart_retries,
    stderrPath: path.join(logDir, `opencode-cloud${suffix}.stderr.log`),
    stdoutPath: path.join(logDir, `opencode-cloud${suffix}.stdout.log`),
    stopTimeoutSec: STOP_TIMEOUT_SEC,
    waitForEngine: [
      input.nodePath,
      path.join(input.packageRoot, 'lib', 'service', 'wait-for-engine.js'),
      '--timeout',
      String(ENGINE_WAIT_SEC),
    ],
    workingDirectory: input.home,
  }
}

function serviceEnvironment(input: ServiceSpecInput): Array<[string, string]> {
  const out = new Map<string, string>()
  const accountHome = input.accountHome ?? safeAccountHome()
  // systemd and launchd set HOME to the account's home; carry it only when occ was installed
  // with another one, so the service reads the same config the install did.
  if (accountHome !== undefined && path.resolve(input.home) !== path.resolve(accountHome)) out.set('HOME', input.home)
  for (const name of CARRIED_ENV) {
    const value = input.env[name]
    if (value === undefined || value === '') continue
    out.set(name, value)
  }

  if (input.instance) out.set('OPENCODE_SANDBOX_INSTANCE', input.instance)
  else out.delete('OPENCODE_SANDBOX_INSTANCE')
  // Put node's own directory on PATH so anything occ starts with `#!/usr/bin/env node` finds the same node.
  const nodeDir = path.dirname(input.nodePath)
  const pathEntries = (out.get('PATH') ?? '/usr/local/bin:/usr/bin:/bin').split(':')
  if (!pathEntries.includes(nodeDir)) out.set('PATH', [nodeDir, ...pathEntries].join(':'))
  for (const [name, value] of out) {
    assertEnvName(name)
    assertExpressible(`The environment variable ${name}`, value)
  }

  const order = ['HOME', ...CARRIED_ENV] as string[]
  return [...out.entries()].sort(([a], [b]) => order.indexOf(a) - order.indexOf(b))
}

function safeAccountHome(): string | undefined {
  try {
    return os.userInfo().homedir
  } catch {
    return undefined
  }
}
