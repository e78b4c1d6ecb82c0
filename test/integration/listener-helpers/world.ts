/**
 * The world of the listener's integration tests: a sandbox instance of its own (HOME, XDG dirs,
 * port), the fixture image, a fixture opencode repo bind-mounted into the container, the
 * third-party fixture plugin linked, and `occ start --no-daemon` processes run as the service
 * manager would. Requests are written from inside the container as the web UI does it: as the
 * sandbox user, a temp file, then `mv` into place.
 */
import fs from 'node:fs/promises'
import path from 'node:path'

import {execa, type ResultPromise} from 'execa'

import {CONTAINER_COMMANDS_DIR, LISTENER_FILE, MOUNT_STATE, REQUEST_FILE, RESULT_FILE, type UpdateResult} from '../../../src/index.js'
import {createFixtureRepo, MAKE_REPO_SCRIPT, pushCommit} from '../../fixtures/sandbox/repo-helpers.mjs'
import {createSandboxEnv, OCC_BIN, type SandboxEnv, useFixtureImage} from '../../helpers/sandbox-env.js'
import {linkThirdPartyPlugin} from './third-party-plugin.js'

/** Where the fixture repo is mounted inside the container (the update plan's opencode_repo). */
export const CONTAINER_REPO = '/srv/opencode.git'

export interface Foreground {
  child: ResultPromise
  pid: number
  stderr: () => string
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<void>
  /** Resolves with the exit code. */
  exited: Promise<number | undefined>
}

export interface ListenerWorld {
  sandbox: SandboxEnv
  /** Host path of the commands dir (under the state mount). */
  commandsDir: string
  repoDir: string
  baseCommit: string
  markerFile: string
  /** Extra argv for every `occ start --no-daemon` (the repo mount). */
  startArgs: string[]
  startForeground(extra?: string[]): Promise<Foreground>
  /** As the web UI: `printf > tmp && mv tmp update-command.json`, as opencoder, inside the container. */
  webUiWrite(body: string | object): Promise<void>
  /** Runs a shell script in the container (argv after the script are $1, $2...). */
  containerSh(script: string, args?: string[], user?: string): Promise<{exitCode: number | undefined; stdout: string; stderr: string}>
  /** Runs a Node script in the container as opencoder (process.argv[1], [2]... are the args): a fast in-sandbox attacker. */
  containerNode(script: string, args?: string[]): Promise<{exitCode: number | undefined; stdout: string; stderr: string}>
  readResult(): Promise<UpdateResult | undefined>
  waitForResult(predicate: (result: UpdateResult) => boolean, timeoutMs?: number): Promise<UpdateResult>
  readListenerJson(): Promise<Record<string, unknown> | undefined>
  requestPresent(): Promise<boolean>
  pushBranch(branch: string, files: Record<string, string>): Promise<string>
  cleanup(): Promise<void>
}

export interface ListenerWorldOptions {
  mountRepo?: boolean
  /** Another image (default the fixture image). */
  image?: string
  /** The source tree the repo's main is made from (default the fixture's; must match the image's COMMIT). */
  sourceDir?: string
  /** More `--mount host:container[:ro]` for every start. */
  mounts?: string[]
}

export async function createListenerWorld(label: string, options: ListenerWorldOptions = {}): Promise<ListenerWorld> {
  const sandbox = await createSandboxEnv(label)
  const repoDir = path.join(sandbox.root, 'opencode.git')
  const baseCommit = options.sourceDir ? await createRepoFrom(repoDir, options.sourceDir) : (await createFixtureRepo(repoDir)).commit
  // The container's git (another uid) reads the repo: world-readable.
  await execa('chmod', ['-R', 'a+rX', sandbox.root])
  await useFixtureImage(sandbox, {opencode_repo: CONTAINER_REPO}, options.image)
  await linkThirdPartyPlugin(sandbox)
  const markerFile = path.join(sandbox.root, 'third-party-marker.json')
  const commandsDir = path.join(sandbox.env.XDG_STATE_HOME, 'opencode', 'opencode-cloud', 'commands')
  const startArgs = [
    ...(options.mountRepo === false ? [] : ['--mount', `${repoDir}:${CONTAINER_REPO}:ro`]),
    ...(options.mounts ?? []).flatMap((mount) => ['--mount', mount]),
  ]
  const running: Foreground[] = []

  const world: ListenerWorld = {
    baseCommit,
    async cleanup() {
      for (const foreground of running) foreground.child.kill('SIGKILL')
      await Promise.all(running.map((foreground) => foreground.exited))
      await sandbox.cleanup()
    },
    commandsDir,
    async containerSh(script, args = [], user = 'opencoder') {
      const result = await execa('docker', ['exec', '-u', user, sandbox.containerName, 'sh', '-c', script, 'sh', ...args], {reject: false})
      return {exitCode: result.exitCode, stderr: String(result.stderr), stdout: String(result.stdout)}
    },
    async containerNode(script, args = []) {
      const result = await execa('docker', ['exec', '-u', 'opencoder', sandbox.containerName, 'node', '-e', script, ...args], {reject: false})
      return {exitCode: result.exitCode, stderr: String(result.stderr), stdout: String(result.stdout)}
    },
    markerFile,
    async pushBranch(branch, files) {
      const sha = await pushCommit(repoDir, {base: 'main', branch, files})
      await execa('chmod', ['-R', 'a+rX', repoDir])
      return sha
    },
    async readListenerJson() {
      try {
        return JSON.parse(await fs.readFile(path.join(commandsDir, LISTENER_FILE), 'utf8'))
      } catch {
        return undefined
      }
    },
    async readResult() {
      try {
        return JSON.parse(await fs.readFile(path.join(commandsDir, RESULT_FILE), 'utf8'))
      } catch {
        return undefined
      }
    },
    repoDir,
    async requestPresent() {
      return fs.lstat(path.join(commandsDir, REQUEST_FILE)).then(
        () => true,
        () => false,
      )
    },
    sandbox,
    startArgs,
    async startForeground(extra = []) {
      let stderr = ''
      const child = execa(process.execPath, [OCC_BIN, 'start', '--no-daemon', ...startArgs, ...extra], {
        env: {...sandbox.env, OCC_TEST_FOREGROUND_MARKER: markerFile, OCLIF_DISABLE_LINKED_ESM_WARNING: '1'},
        // A service manager waits its stop timeout (90 s) before SIGKILL; execa's default is 5 s.
        forceKillAfterDelay: false,
        reject: false,
        stdin: 'ignore',
      })
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      const exited = child.then((result) => result.exitCode)
      const foreground: Foreground = {
        child,
        exited,
        pid: child.pid!,
        stderr: () => stderr,
        async waitForLine(pattern, timeoutMs = 60_000) {
          await waitUntil(async () => pattern.test(stderr), timeoutMs, () => `no line ${pattern} in stderr:\n${stderr}`)
        },
      }
      running.push(foreground)
      return foreground
    },
    async waitForResult(predicate, timeoutMs = 60_000) {
      let last: UpdateResult | undefined
      await waitUntil(
        async () => {
          last = await world.readResult()
          return last !== undefined && predicate(last)
        },
        timeoutMs,
        () => `no matching result; last: ${JSON.stringify(last)}`,
      )
      return last!
    },
    async webUiWrite(body) {
      const text = typeof body === 'string' ? body : JSON.stringify(body)
      const result = await world.containerSh(
        'tmp="$2/.update-command.$$.tmp" && printf "%s" "$1" > "$tmp" && mv "$tmp" "$2/update-command.json"',
        [text, CONTAINER_COMMANDS_DIR],
      )
      if (result.exitCode !== 0) throw new Error(`the web UI could not write its request: ${result.stderr}`)
    },
  }
  return world
}

/** A bare repo whose main is `sourceDir` committed as the images' build does it (the same SHA as their COMMIT). */
async function createRepoFrom(repoDir: string, sourceDir: string): Promise<string> {
  const {stdout} = await execa('sh', [MAKE_REPO_SCRIPT, repoDir, sourceDir])
  const commit = stdout.trim().split('\n').pop() ?? ''
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`make-opencode-repo.sh printed no commit: ${stdout}`)
  return commit
}

export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

export {CONTAINER_COMMANDS_DIR, MOUNT_STATE}
