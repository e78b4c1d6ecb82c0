import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import net from 'node:net'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import Docker from 'dockerode'
import {execa, type Options, type Result} from 'execa'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const OCC_BIN = path.join(REPO_ROOT, 'bin/run.js')
/** The fixture image's tag (OCC_FIXTURE_IMAGE overrides it; see repo-helpers.mjs). */
export const FIXTURE_IMAGE = process.env.OCC_FIXTURE_IMAGE || 'opencode-cloud-sandbox-fixture:latest'
/** The test image with the real opencode binary (scripts/fixture-build-real.mjs; OCC_REAL_IMAGE overrides it). */
export const REAL_IMAGE = process.env.OCC_REAL_IMAGE || 'opencode-cloud-sandbox-real:latest'
/** The real image's opencode version, and the prebuilt binaries its opencode-build recipe installs from. */
export const REAL_OPENCODE_VERSION = '1.18.34'
export const REAL_DIST_DIR = path.join(REPO_ROOT, '.cache', 'opencode-dist')

/**
 * An isolated world for one integration test: its own sandbox instance name, its own HOME and
 * XDG dirs (so config and bind mounts never touch the real user's), a free host port, and a
 * cleanup that removes every container and volume it created.
 */
export interface SandboxEnv {
  instance: string
  root: string
  home: string
  port: number
  env: Record<string, string>
  containerName: string
  configFile: string
  /** Runs `occ` (bin/run.js, the built CLI) in this world. Never throws on a non-zero exit. */
  occ(args: string[], options?: Options): Promise<Result>
  docker: Docker
  cleanup(): Promise<void>
}

/** A TCP port nobody listens on right now (the OS picks it), for a sandbox's published port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** One run of occ (or anything execa ran), for assertion messages. */
export function describeRun(result: Result): string {
  const command = result.command?.includes(OCC_BIN) ? `occ ${result.command.split(OCC_BIN)[1]?.trim() ?? ''}` : (result.command ?? '')
  const how = `${result.signal ? ` (${result.signal})` : ''}${result.timedOut ? ' (timed out)' : ''}`
  return `${command} → exit ${result.exitCode}${how}\n--- stdout\n${String(result.stdout ?? '')}\n--- stderr\n${String(result.stderr ?? '')}`
}

/** A run's stdout as text. */
export function out(result: Result): string {
  return String(result.stdout ?? '')
}

/** Asserts a run ended (not timed out) with `code`, showing the whole run when it did not. */
export function expectExit(result: Result, code: number): void {
  assert.equal(result.timedOut, false, `timed out: ${describeRun(result)}`)
  assert.equal(result.exitCode, code, describeRun(result))
}

/** A run's stdout parsed as JSON; fails the test, showing the run, when it is not JSON. */
export function json<T = Record<string, unknown>>(result: Result): T {
  try {
    return JSON.parse(out(result)) as T
  } catch {
    assert.fail(`stdout is not JSON: ${describeRun(result)}`)
  }
}

export async function createSandboxEnv(label = 't', options: {instance?: string} = {}): Promise<SandboxEnv> {
  const instance = options.instance ?? `${label}-${randomBytes(4).toString('hex')}`.slice(0, 32)
  const root = await fs.mkdtemp(path.join(os.tmpdir(), `occ-${label}-`))
  const home = path.join(root, 'home')
  await fs.mkdir(home, {recursive: true})
  const port = await freePort()
  const env: Record<string, string> = {
    HOME: home,
    NO_COLOR: '1',
    OPENCODE_RUNTIME: 'host',
    OPENCODE_SANDBOX_INSTANCE: instance,
    XDG_CACHE_HOME: path.join(home, '.cache'),
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_DATA_HOME: path.join(home, '.local/share'),
    XDG_STATE_HOME: path.join(home, '.local/state'),
  }
  const docker = new Docker()
  const containerName = `opencode-cloud-sandbox-${instance}`
  const sandbox: SandboxEnv = {
    async cleanup() {
      await removeInstance(docker, instance)
      await fs.rm(root, {force: true, recursive: true})
    },
    configFile: path.join(env.XDG_CONFIG_HOME, 'opencode-cloud/config.json'),
    containerName,
    docker,
    env,
    home,
    instance,
    occ(args, options = {}) {
      return execa(process.execPath, [OCC_BIN, ...args], {
        reject: false,
        stdin: 'ignore',
        timeout: 180_000,
        ...options,
        // Extra variables add to this world's; they never drop its HOME and XDG dirs.
        env: {...env, ...(options.env as Record<string, string> | undefined)},
      }) as Promise<Result>
    },
    port,
    root,
  }
  return sandbox
}

/** Writes a config for this world that uses the fixture image (or `image`) and a free port. */
export async function useFixtureImage(sandbox: SandboxEnv, extra: Record<string, string> = {}, image = FIXTURE_IMAGE): Promise<void> {
  const settings = {image, opencode_web_port: String(sandbox.port), ...extra}
  for (const [key, value] of Object.entries(settings)) {
    const result = await sandbox.occ(['config', 'set', key, value])
    if (result.exitCode !== 0) throw new Error(`occ config set ${key} failed: ${result.stderr}`)
  }
}

export async function removeInstance(docker: Docker, instance: string): Promise<void> {
  const filters = {label: [`opencode-cloud.instance=${instance}`]}
  const containers = await docker.listContainers({all: true, filters})
  await Promise.all(containers.map((info) => docker.getContainer(info.Id).remove({force: true, v: true}).catch(() => {})))
  const {Volumes} = await docker.listVolumes({filters})
  await Promise.all((Volumes ?? []).map((volume) => docker.getVolume(volume.Name).remove({force: true}).catch(() => {})))
}
