import fs from 'node:fs/promises'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import type {OccPaths} from '../config/paths.js'
import {configSchema, type OccConfig} from '../config/schema.js'
import {parseConfigText, writeFileAtomic} from '../config/store.js'
import {NotSupportedError} from '../errors.js'
import {ServiceCommandError, ServiceManagerUnavailableError, ServiceValueError} from './errors.js'
import {
  detectLinger,
  detectServiceHost,
  exists,
  launchdDomainReachable,
  lingerFixCommand,
  systemdUserManagerReachable,
  type ServiceHost,
} from './host.js'
import {renderLaunchdPlist} from './launchd-plist.js'
import {describeFailure} from './runner.js'
import {serviceFileName, serviceName, type ServiceManagerKind, type ServiceSpec} from './spec.js'
import {renderSystemdUnit} from './systemd-unit.js'

/** Where this instance's service lives and what it is called. */
export interface ServiceTarget {
  manager: ServiceManagerKind
  /** The systemd unit name or the launchd label. */
  name: string
  unitPath: string
}

export function serviceTarget(host: ServiceHost, instance: string | undefined): ServiceTarget {
  const manager = requireManager(host)
  return {manager, name: serviceName(manager, instance), unitPath: path.join(host.unitDir, serviceFileName(manager, instance))}
}

export function renderService(manager: ServiceManagerKind, spec: ServiceSpec): string {
  return manager === 'systemd' ? renderSystemdUnit(spec) : renderLaunchdPlist(spec)
}

// ---------------------------------------------------------------------------------------------
// status

export interface ServiceStatus {
  /** 'none': no supported service manager on this platform. */
  manager: ServiceManagerKind | 'none'
  /** The systemd unit name or launchd label (absent when manager is 'none'). */
  name?: string
  /** Where the unit file or plist is (or would be). */
  unitPath?: string
  /** The unit file or plist exists. */
  installed: boolean
  /** Whether systemd's user manager / launchd's GUI domain answered; when false, active and enabled are unknown. */
  reachable?: boolean
  /** The service is running (systemd ActiveState=active, launchd state=running). */
  active?: boolean
  /** systemd's ActiveState (active, inactive, failed, activating, …) or launchd's state. */
  state?: string
  /** Enabled at login/boot (systemd is-enabled) or loaded (launchd). */
  enabled?: boolean
  /** systemd only: lingering is on (the unit keeps running after logout and starts at boot). */
  linger?: boolean
}

export interface ServiceStatusOptions {
  instance: string | undefined
  paths: OccPaths
  /** Injected in tests; detected from the platform otherwise. */
  host?: ServiceHost
}

/** What `occ status` shows about the service. Never throws for a missing or unreachable manager. */
export async function serviceStatus(options: ServiceStatusOptions): Promise<ServiceStatus> {
  const host = options.host ?? detectServiceHost({paths: options.paths})
  if (!host.manager) return {installed: false, manager: 'none'}
  const target = serviceTarget(host, options.instance)
  const status: ServiceStatus = {
    installed: await exists(target.unitPath),
    manager: target.manager,
    name: target.name,
    unitPath: target.unitPath,
  }
  // Nothing to ask the manager about a service that is not installed (and `occ status` stays fast).
  if (!status.installed) return status
  Object.assign(status, await managerOps(host, target).state())
  if (target.manager === 'systemd') status.linger = await detectLinger(host)
  return status
}

// ---------------------------------------------------------------------------------------------
// install

export type ResumeAction = 'already-active' | 'failed' | 'not-installed' | 'started' | 'unreachable'

/**
 * After `occ stop` the service stays stopped (on purpose); a later plain `occ start` brings the
 * container back but no listener would answer the web UI. This starts the installed service
 * again, whose `start --no-daemon` finds the container running and runs the listener.
 */
export async function resumeService(options: ServiceStatusOptions): Promise<{action: ResumeAction; detail?: string; name?: string}> {
  const host = options.host ?? detectServiceHost({paths: options.paths})
  if (!host.manager) return {action: 'not-installed'}
  const target = serviceTarget(host, options.instance)
  if (!(await exists(target.unitPath))) return {action: 'not-installed'}
  const ops = managerOps(host, target)
  const state = await ops.state()
  if (!state.reachable) return {action: 'unreachable', name: target.name}
  if (state.active) return {action: 'already-active', name: target.name}
  const failure = await ops.resume()
  return failure ? {action: 'failed', detail: failure, name: target.name} : {action: 'started', name: target.name}
}

export type ServiceConfig = Pick<OccConfig, 'boot_mode' | 'restart_delay' | 'restart_retries'>

/** The settings the service needs, read without creating the config file (for --dry-run). */
export async function readServiceConfig(paths: OccPaths): Promise<ServiceConfig> {
  const text = await readIfExists(paths.configFile)
  if (text !== undefined) return parseConfigText(text, paths.configFile, paths)
  return configSchema.parse({version: 1})
}

export type InstallAction = 'dry-run' | 'installed' | 'reinstalled' | 'unchanged'

export interface InstallResult {
  action: InstallAction
  manager: ServiceManagerKind
  name: string
  unitPath: string
  /** A service file was there before this run. */
  wasInstalled: boolean
  /** The file on disk is exactly what occ would write now (absent when there is none). */
  upToDate?: boolean
  /** The unit or plist (dry-run only). */
  content?: string
  active?: boolean
  state?: string
  enabled?: boolean
  /** Whether the manager answered the state queries. */
  reachable?: boolean
  linger?: boolean
  /** Things the user should fix, each with the command that fixes it. */
  warnings: string[]
}

export interface InstallOptions {
  host: ServiceHost
  spec: ServiceSpec
  force?: boolean
  dryRun?: boolean
}

export async function installService(options: InstallOptions): Promise<InstallResult> {
  const {host, spec} = options
  const target = serviceTarget(host, spec.instance)
  const content = renderService(target.manager, spec)
  const existing = await readIfExists(target.unitPath)
  const ops = managerOps(host, target)
  const base = {
    manager: target.manager,
    name: target.name,
    unitPath: target.unitPath,
    upToDate: existing === undefined ? undefined : existing === content,
    wasInstalled: existing !== undefined,
  }
  const warnings: string[] = []
  const linger = target.manager === 'systemd' ? await detectLinger(host) : undefined
  if (linger === false) {
    warnings.push(
      `Lingering is off for ${host.user}: the service stops when you log out and starts only at your next login. Fix: ${lingerFixCommand(host.user)}`,
    )
  }

  if (options.dryRun) return {...base, action: 'dry-run', content, linger, warnings}
  if (existing !== undefined && !options.force) {
    return {...base, action: 'unchanged', linger, warnings, ...(await ops.state())}
  }

  await requireEntryPoints(spec)
  await ops.ensureReachable()
  if (target.manager === 'launchd') {
    await fs.mkdir(path.dirname(spec.stdoutPath), {recursive: true})
    await fs.mkdir(path.dirname(spec.stderrPath), {recursive: true})
  }

  await writeFileAtomic(target.unitPath, content, 0o644)
  await ops.activate(existing === undefined)
  const state = await ops.state()
  return {...base, action: existing === undefined ? 'installed' : 'reinstalled', linger, upToDate: true, warnings, ...state}
}

// ---------------------------------------------------------------------------------------------
// uninstall

export interface UninstallResult {
  action: 'not-installed' | 'removed'
  manager: ServiceManagerKind
  name: string
  unitPath: string
  warnings: string[]
}

export async function uninstallService(options: {host: ServiceHost; instance: string | undefined}): Promise<UninstallResult> {
  const {host} = options
  const target = serviceTarget(host, options.instance)
  const base = {manager: target.manager, name: target.name, unitPath: target.unitPath}
  if (!(await exists(target.unitPath))) return {...base, action: 'not-installed', warnings: []}
  const ops = managerOps(host, target)
  const warnings: string[] = []
  const reachable = await ops.reachable()
  if (reachable) warnings.push(...(await ops.deactivate()))
  else warnings.push(`No ${target.manager === 'systemd' ? 'systemd user manager' : 'launchd session'} answered, so only the file was removed.`)
  await fs.rm(target.unitPath, {force: true})
  if (reachable) warnings.push(...(await ops.afterRemove()))
  return {...base, action: 'removed', warnings}
}

// ---------------------------------------------------------------------------------------------
// the two managers

interface ManagerState {
  reachable: boolean
  active?: boolean
  state?: string
  enabled?: boolean
}

interface ManagerOps {
  reachable(): Promise<boolean>
  /** Throws a ServiceManagerUnavailableError with next steps when the manager does not answer. */
  ensureReachable(): Promise<void>
  /** Loads and starts the service whose file was just written. */
  activate(fresh: boolean): Promise<void>
  /** Stops and unloads it; returns warnings (never throws for an already stopped service). */
  deactivate(): Promise<string[]>
  afterRemove(): Promise<string[]>
  state(): Promise<ManagerState>
  /** Starts an installed, loaded service that is not running; returns a failure text or undefined. */
  resume(): Promise<string | undefined>
}

function managerOps(host: ServiceHost, target: ServiceTarget): ManagerOps {
  return target.manager === 'systemd' ? systemdOps(host, target) : launchdOps(host, target)
}

function systemdOps(host: ServiceHost, target: ServiceTarget): ManagerOps {
  const unit = target.name
  const systemctl = async (...args: string[]) => {
    const argv = ['--user', ...args]
    return {argv, result: await host.run('systemctl', argv)}
  }

  const must = async (...args: string[]) => {
    const {argv, result} = await systemctl(...args)
    if (result.exitCode !== 0) {
      throw new ServiceCommandError(`systemd refused a step: ${describeFailure('systemctl', argv, result)}`, {
        actions: [`See: systemctl --user status ${unit}`, `Logs: journalctl --user -u ${unit}`],
      })
    }
  }

  const ops: ManagerOps = {
    async activate(fresh) {
      await must('daemon-reload')
      await must('enable', unit)
      const {argv, result} = await systemctl(fresh ? 'start' : 'restart', unit)
      if (result.exitCode !== 0) {
        throw new ServiceCommandError(
          `The service is installed and enabled, but it did not start: ${describeFailure('systemctl', argv, result)}`,
          {actions: [`See why: journalctl --user -u ${unit} -n 50`, `Try again: systemctl --user restart ${unit}`]},
        )
      }
    },
    async afterRemove() {
      const warnings: string[] = []
      const {argv, result} = await systemctl('daemon-reload')
      if (result.exitCode !== 0) warnings.push(describeFailure('systemctl', argv, result))
      // Forget a failed state so the unit name does not linger in `systemctl --user --failed`.
      await systemctl('reset-failed', unit)
      return warnings
    },
    async deactivate() {
      const {argv, result} = await systemctl('disable', '--now', unit)
      return result.exitCode === 0 ? [] : [describeFailure('systemctl', argv, result)]
    },
    async ensureReachable() {
      if (await ops.reachable()) return
      throw new ServiceManagerUnavailableError('No systemd user manager answers (`systemctl --user` cannot connect).', {
        actions: [
          'Run occ install from a login session (desktop or SSH); in `su`/`sudo` shells set XDG_RUNTIME_DIR=/run/user/$(id -u).',
          `To keep a user manager running without a login: ${lingerFixCommand(host.user || '$USER')}`,
          'To only see the unit: occ install --dry-run',
        ],
      })
    },
    reachable: () => systemdUserManagerReachable(host),
    async resume() {
      const {argv, result} = await systemctl('start', unit)
      return result.exitCode === 0 ? undefined : describeFailure('systemctl', argv, result)
    },
    async state() {
      if (!(await ops.reachable())) return {reachable: false}
      const active = await systemctl('is-active', unit)
      const enabled = await systemctl('is-enabled', unit)
      const state = active.result.stdout.trim() || undefined
      return {active: state === 'active', enabled: enabled.result.stdout.trim() === 'enabled', reachable: true, state}
    },
  }
  return ops
}

/** launchctl's answers for "that job is not loaded". */
const LAUNCHD_NOT_LOADED = /no such process|could not find|not find service/i

function launchdOps(host: ServiceHost, target: ServiceTarget): ManagerOps {
  const domain = `gui/${host.uid}`
  const service = `${domain}/${target.name}`
  const bootout = async (): Promise<string[]> => {
    const result = await host.run('launchctl', ['bootout', service])
    if (result.exitCode === 0 || LAUNCHD_NOT_LOADED.test(result.stderr + result.stdout)) return []
    return [describeFailure('launchctl', ['bootout', service], result)]
  }

  const ops: ManagerOps = {
    async activate() {
      // bootout of a loaded job returns before launchd has finished removing it, and bootstrap
      // fails with "Input/output error" meanwhile: unload first, then retry bootstrap briefly.
      await bootout()
      let last = await host.run('launchctl', ['bootstrap', domain, target.unitPath])
      for (let attempt = 1; last.exitCode !== 0 && attempt < 5; attempt++) {
        await (host.sleep ?? sleep)(1000)
        last = await host.run('launchctl', ['bootstrap', domain, target.unitPath])
      }

      if (last.exitCode !== 0) {
        throw new ServiceCommandError(
          `The agent is installed, but launchd did not load it: ${describeFailure('launchctl', ['bootstrap', domain, target.unitPath], last)}`,
          {actions: [`See: launchctl print ${service}`, `Try again: launchctl bootstrap ${domain} ${target.unitPath}`]},
        )
      }
    },
    afterRemove: async () => [],
    deactivate: bootout,
    async ensureReachable() {
      if (await ops.reachable()) return
      throw new ServiceManagerUnavailableError(`launchd has no GUI session for uid ${host.uid} (launchctl print ${domain} failed).`, {
        actions: ['Run occ install from a logged-in macOS desktop session (a plain SSH login has no GUI domain).'],
      })
    },
    reachable: () => launchdDomainReachable(host),
    async resume() {
      const result = await host.run('launchctl', ['kickstart', service])
      return result.exitCode === 0 ? undefined : describeFailure('launchctl', ['kickstart', service], result)
    },
    async state() {
      const result = await host.run('launchctl', ['print', service])
      if (result.exitCode !== 0) return {active: false, enabled: false, reachable: await ops.reachable(), state: 'not loaded'}
      const state = /^\s*state = (.+)$/m.exec(result.stdout)?.[1]?.trim()
      return {active: state === 'running', enabled: true, reachable: true, state}
    },
  }
  return ops
}

// ---------------------------------------------------------------------------------------------

function requireManager(host: ServiceHost): ServiceManagerKind {
  if (host.manager) return host.manager
  throw new NotSupportedError(`Service registration is not supported on ${process.platform}.`, {
    actions: ['Run occ start --no-daemon under your own supervisor instead.'],
  })
}

async function requireEntryPoints(spec: ServiceSpec): Promise<void> {
  for (const file of [spec.command[0], spec.command[1], spec.waitForEngine[1]]) {
    if (!(await exists(file))) {
      throw new ServiceValueError(`The service would run ${file}, which does not exist.`, {
        actions: ['Build occ first (npm run build), or install it as a package, then run occ install again.'],
      })
    }
  }
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}
