import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import type {OccPaths} from '../config/paths.js'
import {execaRunner, type CommandRunner} from './runner.js'
import type {ServiceManagerKind} from './spec.js'

/**
 * The facts about this machine that install/uninstall/status act on. Everything is a plain
 * value or the injected runner, so tests point `unitDir` at a temp dir and record the calls.
 */
export interface ServiceHost {
  /** undefined: this platform has no supported service manager. */
  manager: ServiceManagerKind | undefined
  run: CommandRunner
  /** ~/.config/systemd/user (honouring XDG_CONFIG_HOME, as systemd does) or ~/Library/LaunchAgents. */
  unitDir: string
  user: string
  uid: number
  /** Where systemd-logind keeps one file per lingering user. */
  lingerDir: string
  /** Waits between launchctl retries (tests pass a no-op). */
  sleep?: (ms: number) => Promise<void>
}

export interface DetectOptions {
  paths: OccPaths
  platform?: NodeJS.Platform
  run?: CommandRunner
}

export function detectServiceHost(options: DetectOptions): ServiceHost {
  const platform = options.platform ?? process.platform
  const manager: ServiceManagerKind | undefined = platform === 'linux' ? 'systemd' : platform === 'darwin' ? 'launchd' : undefined
  // paths.configDir is $XDG_CONFIG_HOME/opencode-cloud; systemd's user unit dir sits beside it.
  const unitDir =
    manager === 'launchd'
      ? path.join(options.paths.home, 'Library', 'LaunchAgents')
      : path.join(path.dirname(options.paths.configDir), 'systemd', 'user')
  const info = safeUserInfo()
  return {
    lingerDir: '/var/lib/systemd/linger',
    manager,
    run: options.run ?? execaRunner,
    uid: process.getuid?.() ?? info?.uid ?? -1,
    unitDir,
    user: info?.username ?? process.env.USER ?? process.env.LOGNAME ?? '',
  }
}

/** Whether a systemd user manager answers (it does not in containers or some SSH sessions). */
export async function systemdUserManagerReachable(host: ServiceHost): Promise<boolean> {
  const result = await host.run('systemctl', ['--user', 'show', '--property=Version'])
  return result.exitCode === 0
}

/** Whether the user's launchd GUI domain exists (it does not over a plain SSH login). */
export async function launchdDomainReachable(host: ServiceHost): Promise<boolean> {
  const result = await host.run('launchctl', ['print', `gui/${host.uid}`])
  return result.exitCode === 0
}

/**
 * Whether systemd keeps this user's manager running without a login session. Without it a user
 * unit stops at logout and only starts at the next login. undefined: cannot tell.
 */
export async function detectLinger(host: ServiceHost): Promise<boolean | undefined> {
  if (!host.user) return undefined
  const result = await host.run('loginctl', ['show-user', host.user, '-p', 'Linger'])
  const match = /^Linger=(yes|no)$/m.exec(result.stdout)
  if (result.exitCode === 0 && match) return match[1] === 'yes'
  // logind unreachable, or the user has no session: the marker file is the source of truth.
  if (await exists(path.join(host.lingerDir, host.user))) return true
  return (await exists(host.lingerDir)) ? false : undefined
}

export function lingerFixCommand(user: string): string {
  return `loginctl enable-linger ${user}`
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}

function safeUserInfo(): os.UserInfo<string> | undefined {
  try {
    return os.userInfo()
  } catch {
    return undefined
  }
}
