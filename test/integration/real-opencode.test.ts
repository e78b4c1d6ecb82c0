import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import type Docker from 'dockerode'

import {defaultMounts} from '../../src/config/mounts.js'
import {resolvePaths} from '../../src/config/paths.js'
import {seccompSecurityOpt} from '../../src/docker/seccomp.js'
import {statusViewSchema} from '../../src/runtime/status-schema.js'
import type {StatusView} from '../../src/runtime/status.js'
import {createSandboxEnv, expectExit, freePort, json, REAL_IMAGE, REAL_OPENCODE_VERSION, type SandboxEnv, useFixtureImage} from '../helpers/sandbox-env.js'

/*
 * The real opencode (npm opencode-linux-x64) in an image shaped like the published one's tini
 * mode: no supervisor, opencode takes seconds to start and writes into every bind-mounted dir.
 * One shared container for the read-only scenarios; a second world for the ones that break or
 * recreate containers.
 */

const PROVISION = 'Run `npm run fixture:build-real` first (npm test does it), and `npm run build` for the CLI.'



async function health(port: number): Promise<{healthy?: boolean; version?: string}> {
  const response = await fetch(`http://127.0.0.1:${port}/global/health`, {signal: AbortSignal.timeout(5000)})
  assert.equal(response.status, 200)
  return (await response.json()) as {healthy?: boolean; version?: string}
}

/** The capabilities the container keeps, and their bit in /proc/<pid>/status's CapEff. */
const KEPT_CAPABILITIES = {CHOWN: 0, DAC_OVERRIDE: 1, FOWNER: 3, KILL: 5, SETGID: 6, SETUID: 7}

/**
 * Writes /usr/local/bin/occ-suid-id, the container's /usr/bin/id with mode 04755, through the
 * archive endpoint: Docker extracts it outside the container's seccomp profile, which refuses the setuid bit.
 */
async function plantSetuidId(docker: Docker, container: string): Promise<void> {
  const stream = (await docker.getContainer(container).getArchive({path: '/usr/bin/id'})) as NodeJS.ReadableStream
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  const tar = Buffer.concat(chunks)
  assert.equal(tar.subarray(0, 3).toString('latin1'), 'id\u0000', 'the archive does not start with id')
  tar.fill(0, 0, 100)
  tar.write('occ-suid-id', 0, 'ascii')
  tar.write('0004755\u0000', 100, 8, 'ascii')
  tar.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of tar.subarray(0, 512)) sum += byte
  tar.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii')
  await docker.getContainer(container).putArchive(tar, {path: '/usr/local/bin'})
}

/** Runs argv in the container through the Engine API (the test's own exec, not occ's). */
async function execIn(docker: Docker, container: string, argv: string[], user = 'root'): Promise<{exitCode: number; output: string}> {
  const exec = await docker.getContainer(container).exec({AttachStderr: true, AttachStdout: true, Cmd: argv, User: user})
  const stream = await exec.start({hijack: true, stdin: false})
  const chunks: Buffer[] = []
  stream.on('data', (chunk: Buffer) => chunks.push(chunk))
  await new Promise((resolve) => stream.on('end', resolve))
  const {ExitCode} = await exec.inspect()
  // Strip the 8-byte multiplexing headers.
  const raw = Buffer.concat(chunks)
  let output = ''
  for (let offset = 0; offset + 8 <= raw.length; ) {
    const size = raw.readUInt32BE(offset + 4)
    output += raw.subarray(offset + 8, offset + 8 + size).toString('utf8')
    offset += 8 + size
  }

  return {exitCode: ExitCode ?? -1, output}
}

/** The exec_create events Docker reports for `container` while `action` runs. */
async function execsDuring(docker: Docker, containerId: string, action: () => Promise<unknown>): Promise<string[]> {
  const stream = (await docker.getEvents({filters: {container: [containerId], event: ['exec_create'], type: ['container']}})) as NodeJS.ReadableStream & {
    destroy(): void
  }
  const seen: string[] = []
  let buffer = ''
  stream.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8')
    for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
      const event = JSON.parse(buffer.slice(0, nl)) as {Action?: string}
      buffer = buffer.slice(nl + 1)
      if (event.Action) seen.push(event.Action)
    }
  })
  try {
    await action()
    await delay(500)
  } finally {
    stream.destroy()
  }

  return seen
}

async function statusJson(sandbox: SandboxEnv): Promise<StatusView> {
  const result = await sandbox.occ(['status', '--json'])
  expectExit(result, 0)
  const parsed = statusViewSchema.safeParse(json(result))
  assert.ok(parsed.success, `status --json does not match its schema: ${parsed.error?.message}`)
  return parsed.data as StatusView
}

async function imageExists(docker: Docker): Promise<void> {
  try {
    await docker.getImage(REAL_IMAGE).inspect()
  } catch (error) {
    assert.fail(`The real image ${REAL_IMAGE} is missing (${(error as Error).message}). ${PROVISION}`)
  }
}

describe('the real opencode in the sandbox (real image)', function () {
  this.timeout(240_000)

  describe('one sandbox with the default bind mounts, started as root', () => {
    let sandbox: SandboxEnv
    let containerId = ''

    before(async () => {
      sandbox = await createSandboxEnv('real')
      await imageExists(sandbox.docker)
      await useFixtureImage(sandbox, {}, REAL_IMAGE)
    })

    after(async () => {
      await sandbox?.cleanup()
    })

    it('starts healthy with the real version: the default mount dirs occ made as root are handed to the sandbox user', async () => {
      assert.equal(process.getuid?.(), 0, 'this suite runs as root, as CI does (the scenario is occ running as root)')
      const result = await sandbox.occ(['start', '--json'])
      expectExit(result, 0)
      const started = json<{containerId: string; readiness: {opencode: {version?: string}}}>(result)
      containerId = started.containerId
      assert.equal(started.readiness.opencode.version, REAL_OPENCODE_VERSION)
      assert.deepEqual(await health(sandbox.port), {healthy: true, version: REAL_OPENCODE_VERSION})
      const paths = resolvePaths(sandbox.env)
      for (const spec of defaultMounts(paths)) {
        const host = spec.split(':')[0]
        const stat = await fs.stat(host)
        assert.equal(`${stat.uid}:${stat.gid}`, '1000:1000', `${host} is not owned by the sandbox user`)
      }

      // opencode really wrote into the bind-mounted dirs.
      const dataDir = path.join(sandbox.env.XDG_DATA_HOME, 'opencode')
      assert.ok((await fs.readdir(dataDir)).some((name) => name.startsWith('opencode.db')), `no opencode.db in ${dataDir}`)
    })

    it('status: the real version and commit from one exec that never runs opencode', async () => {
      const commit = (await execIn(sandbox.docker, sandbox.containerName, ['cat', '/opt/opencode/COMMIT'])).output.trim()
      let view: StatusView | undefined
      const execs = await execsDuring(sandbox.docker, containerId, async () => {
        view = await statusJson(sandbox)
      })
      assert.ok(execs.length <= 1, `status ran ${execs.length} execs: ${execs.join('\n')}`)
      for (const action of execs) assert.doesNotMatch(action, /opencode(\s|")+--version|bin\/opencode\s/, action)
      assert.equal(view?.opencode.health?.state, 'healthy')
      assert.equal(view?.opencode.version, REAL_OPENCODE_VERSION)
      assert.equal(view?.opencode.commit, commit)
      assert.equal(view?.image.version, 'real-1')
      assert.equal(view?.broker.health?.state, 'healthy')
    })

    it('logs: real lines of the entrypoint and of opencode', async () => {
      // opencode's own line: its banner's address, written once its server listens (colour codes
      // around it, stripped here). The start saw it answer healthy; the line may reach the log a
      // moment after that, so occ logs is read again for a few seconds.
      const localAccess = /^\s*Local access:\s+http:\/\/localhost:3000\s*$/m
      const deadline = Date.now() + 15_000
      let text: string
      for (;;) {
        const result = await sandbox.occ(['logs', '--no-follow', '-n', '200'])
        expectExit(result, 0)
        // eslint-disable-next-line no-control-regex
        text = String(result.stdout).replaceAll(/\u001B\[[0-9;]*m/g, '')
        if (localAccess.test(text)) break
        assert.ok(Date.now() < deadline, `opencode's own "Local access: http://localhost:3000" never showed in occ logs within 15 s:\n${text}`)
        await delay(250)
      }

      assert.match(text, /^\[opencode-cloud\] Starting opencode on 0\.0\.0\.0:3000$/m)
      assert.match(text, /^opencode-broker: listening/m)
    })

    it('is hardened: no new privileges, no mknod even as root, the capabilities the entrypoint needs kept, pids limited', async () => {
      const info = await sandbox.docker.getContainer(sandbox.containerName).inspect()
      const [noNewPrivileges, seccomp, ...otherOptions] = info.HostConfig.SecurityOpt ?? []
      assert.equal(noNewPrivileges, 'no-new-privileges:true')
      assert.ok(seccomp === seccompSecurityOpt(), `not occ's seccomp profile: ${String(seccomp).slice(0, 60)}`)
      assert.deepEqual(otherOptions, [])
      for (const cap of ['MKNOD', 'NET_RAW', 'SYS_ADMIN', 'FSETID']) assert.ok(info.HostConfig.CapDrop?.includes(cap), `${cap} not dropped`)
      assert.equal(info.HostConfig.PidsLimit, 4096)
      assert.deepEqual(info.HostConfig.LogConfig, {Config: {'max-file': '3', 'max-size': '5m'}, Type: 'json-file'})

      // Kept: what the entrypoint (chown of the mounts, runuser) and occ's update steps use.
      const capEff = (await execIn(sandbox.docker, sandbox.containerName, ['grep', '^CapEff:', '/proc/1/status'])).output
      const effective = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(capEff)?.[1] ?? '0'}`)
      for (const [cap, bit] of Object.entries(KEPT_CAPABILITIES)) {
        assert.ok(!info.HostConfig.CapDrop?.includes(cap), `${cap} dropped`)
        assert.ok((effective >> BigInt(bit)) & 1n, `${cap} not in the container's CapEff (${capEff.trim()})`)
      }

      const mknod = await execIn(sandbox.docker, sandbox.containerName, ['mknod', '/tmp/occ-null', 'c', '1', '3'])
      assert.notEqual(mknod.exitCode, 0, 'mknod worked as root in the container')
      assert.match(mknod.output, /not permitted/i)

      // A setuid-root program does not raise the agent's privileges (the way to root through sudo
      // is closed too). Nothing in the container can set the bit, so Docker writes the file.
      await plantSetuidId(sandbox.docker, sandbox.containerName)
      const planted = await execIn(sandbox.docker, sandbox.containerName, ['stat', '-c', '%a %U', '/usr/local/bin/occ-suid-id'])
      assert.equal(planted.output.trim(), '4755 root')
      const asAgent = await execIn(sandbox.docker, sandbox.containerName, ['/usr/local/bin/occ-suid-id', '-u'], 'opencoder')
      assert.equal(asAgent.output.trim(), '1000', 'a setuid-root binary gave the sandbox user euid 0')
      const status = await execIn(sandbox.docker, sandbox.containerName, ['grep', '^NoNewPrivs:', '/proc/1/status'])
      assert.match(status.output, /NoNewPrivs:\s+1/)
    })

    it('no setuid or setgid file can be made in a bind mount, neither as root nor as the agent; plain modes still work', async () => {
      const workspace = path.join(sandbox.home, 'opencode')
      /** The setuid/setgid bits of a workspace file as the host sees it; undefined when it was not created. */
      const setIdBits = async (name: string): Promise<number | undefined> => {
        try {
          return (await fs.lstat(path.join(workspace, name))).mode & 0o6000
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
          throw error
        }
      }

      const ws = '/home/opencoder/workspace'
      await plantSetuidId(sandbox.docker, sandbox.containerName)
      for (const user of ['root', 'opencoder']) {
        const run = (argv: string[]) => execIn(sandbox.docker, sandbox.containerName, argv, user)
        const tag = `occ-${user}`
        const made = await run(['sh', '-c', `cp /usr/bin/id ${ws}/${tag}-u && cp /usr/bin/id ${ws}/${tag}-g && echo hi > ${ws}/${tag}-plain`])
        assert.equal(made.exitCode, 0, `${user}: creating files in the workspace: ${made.output}`)
        const attempts: Array<[string, string[]]> = [
          [`${tag}-u`, ['chmod', '4755', `${ws}/${tag}-u`]],
          [`${tag}-g`, ['chmod', 'g+s', `${ws}/${tag}-g`]],
          [`${tag}-install`, ['install', '-m', '4755', '/usr/bin/id', `${ws}/${tag}-install`]],
          [`${tag}-dir`, ['mkdir', '-m', '2755', `${ws}/${tag}-dir`]],
          [`${tag}-cp`, ['cp', '-p', '/usr/local/bin/occ-suid-id', `${ws}/${tag}-cp`]],
          // open(2) with O_CREAT and a setuid mode, as a program would ask for it directly.
          [`${tag}-open`, ['perl', '-MFcntl', '-e', `sysopen(my $f, "${ws}/${tag}-open", O_CREAT | O_WRONLY, 04755) or exit 3`]],
        ]
        for (const [name, argv] of attempts) {
          const result = await run(argv)
          const bits = await setIdBits(name)
          // chmod acts on an existing file; install and cp create theirs before they set the mode.
          if (!name.endsWith('-dir') && !name.endsWith('-open')) assert.notEqual(bits, undefined, `${user}: ${name} was not created`)
          assert.equal(bits ?? 0, 0, `${user}: \`${argv.join(' ')}\` left a setuid/setgid bit on the host (exit ${result.exitCode}: ${result.output})`)
          if (name.endsWith('-u') || name.endsWith('-g')) assert.notEqual(result.exitCode, 0, `${user}: \`${argv.join(' ')}\` reported success`)
        }

        const plain = await run(['chmod', '755', `${ws}/${tag}-plain`])
        assert.equal(plain.exitCode, 0, `${user}: chmod 755: ${plain.output}`)
        const stat = await fs.stat(path.join(workspace, `${tag}-plain`))
        assert.equal(stat.mode & 0o7777, 0o755)
        assert.equal(stat.uid, user === 'root' ? 0 : 1000)
        assert.equal(await fs.readFile(path.join(workspace, `${tag}-plain`), 'utf8'), 'hi\n')
      }

      // A setuid/setgid file put in the workspace from the host: root in the container may write
      // it (DAC_OVERRIDE), but the write clears the bits, so its content cannot be replaced by a
      // program of the sandbox's that keeps them (with FSETID the kernel would leave them).
      for (const [name, argv] of [
        ['occ-host-append', ['sh', '-c', `echo x >> ${ws}/occ-host-append`]],
        ['occ-host-cp', ['cp', '/usr/bin/id', `${ws}/occ-host-cp`]],
        ['occ-host-truncate', ['truncate', '-s', '0', `${ws}/occ-host-truncate`]],
      ] as Array<[string, string[]]>) {
        await fs.copyFile('/bin/true', path.join(workspace, name))
        await fs.chmod(path.join(workspace, name), 0o6755)
        assert.equal(await setIdBits(name), 0o6000)
        const result = await execIn(sandbox.docker, sandbox.containerName, argv)
        assert.equal(result.exitCode, 0, `root: \`${argv.join(' ')}\`: ${result.output}`)
        assert.equal(await setIdBits(name), 0, `root: \`${argv.join(' ')}\` kept the setuid/setgid bits of a host file`)
      }

      assert.deepEqual(await health(sandbox.port), {healthy: true, version: REAL_OPENCODE_VERSION})
    })

    it('rotates the container log: a 20 MB write does not grow the host log past the cap', async () => {
      const write = await execIn(sandbox.docker, sandbox.containerName, [
        'sh',
        '-c',
        "head -c 20000000 /dev/zero | tr '\\000' x | fold -w 1000 > /proc/1/fd/1",
      ])
      assert.equal(write.exitCode, 0, write.output)
      const info = await sandbox.docker.getContainer(sandbox.containerName).inspect()
      const dir = path.dirname(info.LogPath)
      let total = 0
      let files: string[] = []
      // dockerd writes asynchronously: wait until the 20 MB went through (the last rotation settled).
      for (let attempt = 0; attempt < 50; attempt++) {
        files = (await fs.readdir(dir)).filter((name) => name.startsWith(path.basename(info.LogPath)))
        total = 0
        for (const name of files) total += (await fs.stat(path.join(dir, name))).size
        if (files.length >= 3) break
        await delay(200)
      }

      assert.ok(files.length >= 2, `the log was not rotated: ${files.join(', ')}`)
      assert.ok(total <= 3 * 5 * 1024 * 1024 + 1024 * 1024, `the host log holds ${total} bytes in ${files.join(', ')}`)
      // And opencode kept serving.
      assert.equal((await health(sandbox.port)).healthy, true)
    })

    it('restart: ready again on the same port, with the real version', async () => {
      const result = await sandbox.occ(['restart', '--json'])
      expectExit(result, 0)
      assert.equal(json<{port: number}>(result).port, sandbox.port)
      assert.equal((await health(sandbox.port)).version, REAL_OPENCODE_VERSION)
    })

    it('stop, then start: healthy again in the same container', async () => {
      expectExit(await sandbox.occ(['stop']), 0)
      const stopped = await statusJson(sandbox)
      assert.equal(stopped.container.running, false)
      const result = await sandbox.occ(['start', '--json'])
      expectExit(result, 0)
      const started = json<{containerId: string; created: boolean}>(result)
      assert.equal(started.created, false)
      assert.equal(started.containerId, containerId)
      assert.equal((await health(sandbox.port)).version, REAL_OPENCODE_VERSION)
    })

    it('an image without VERSION: status and the update preflight report the real version, and opencode --version runs once in all', async () => {
      // The published image may ship no /opt/opencode/VERSION. A wrapper in bin/opencode counts
      // the --version runs (the server, started through it after the restart, execs the real one).
      const runs = '/tmp/occ-version-runs'
      const wrapper = `#!/bin/sh\n[ "$1" = --version ] && echo run >> ${runs}\nexec /opt/opencode/bin/opencode.real "$@"\n`
      const setup = await execIn(sandbox.docker, sandbox.containerName, [
        'sh',
        '-ec',
        'rm /opt/opencode/VERSION; mv /opt/opencode/bin/opencode /opt/opencode/bin/opencode.real; printf "%s" "$1" > /opt/opencode/bin/opencode; chmod 0755 /opt/opencode/bin/opencode; : > "$2"; chmod 0666 "$2"',
        'sh',
        wrapper,
        runs,
      ])
      assert.equal(setup.exitCode, 0, setup.output)
      const count = async (): Promise<number> => (await execIn(sandbox.docker, sandbox.containerName, ['cat', runs])).output.split('\n').filter(Boolean).length
      const commit = (await execIn(sandbox.docker, sandbox.containerName, ['cat', '/opt/opencode/COMMIT'])).output.trim()

      assert.equal((await statusJson(sandbox)).opencode.version, REAL_OPENCODE_VERSION)
      assert.equal(await count(), 0, 'status never runs opencode')
      for (let round = 0; round < 2; round++) {
        const result = await sandbox.occ(['update', 'opencode', '--commit', commit, '--json'])
        expectExit(result, 0)
        const outcome = json<{changed: boolean; toVersion?: string}>(result)
        assert.deepEqual([outcome.changed, outcome.toVersion], [false, REAL_OPENCODE_VERSION])
        assert.equal(await count(), 1, `after update ${round + 1} (each inspects twice): one --version run in all`)
      }

      // The restart's repair inspects again, in a container started anew: still the cached value.
      expectExit(await sandbox.occ(['restart']), 0)
      assert.equal((await statusJson(sandbox)).opencode.version, REAL_OPENCODE_VERSION)
      const again = await sandbox.occ(['update', 'opencode', '--commit', commit, '--json'])
      expectExit(again, 0)
      assert.equal(json<{toVersion?: string}>(again).toVersion, REAL_OPENCODE_VERSION)
      assert.equal(await count(), 1, 'a container restart keeps the cache valid')
    })
  })

  describe('containers that die, fail to start, or change', () => {
    let sandbox: SandboxEnv

    before(async () => {
      sandbox = await createSandboxEnv('realx')
      await imageExists(sandbox.docker)
      await useFixtureImage(sandbox, {}, REAL_IMAGE)
    })

    after(async () => {
      await sandbox?.cleanup()
    })

    it('a dying container is not a timeout: its own code, the exit code and the last log lines; a mount the user gave is not chowned, only warned about', async () => {
      const cache = path.join(sandbox.root, 'my-cache')
      await fs.mkdir(cache, {mode: 0o755})
      const started = Date.now()
      const result = await sandbox.occ(['start', '--no-mounts', '--mount', `${cache}:/home/opencoder/.cache/opencode`, '--json'])
      expectExit(result, 5)
      assert.ok(Date.now() - started < 60_000, 'it waited for a timeout')
      const {error} = json<{error: {actions: string[]; code: string; message: string}}>(result)
      assert.equal(error.code, 'SANDBOX_STOPPED')
      assert.match(error.message, /stopped while starting \(exit \d+\)/)
      assert.match(error.message, /EACCES/)
      assert.ok(error.actions.some((action) => action.includes(`chown 1000:1000 ${cache}`)), `no fix for the mount among the actions:\n${error.actions.join('\n')}`)
      assert.equal((await fs.stat(cache)).uid, 0, 'occ changed the owner of a dir the user gave')
    })

    it('--recreate with --no-mounts: only named volumes, healthy', async () => {
      const result = await sandbox.occ(['start', '--recreate', '--no-mounts', '--json'])
      expectExit(result, 0)
      assert.equal(json<{recreated: boolean}>(result).recreated, true)
      const view = await statusJson(sandbox)
      assert.equal(view.opencode.version, REAL_OPENCODE_VERSION)
      assert.ok(view.mounts.length > 0)
      assert.ok(view.mounts.every((mount) => mount.type === 'volume'), JSON.stringify(view.mounts))
    })

    it('start --port M on a container with another port recreates it there, keeping the volumes', async () => {
      const marker = await execIn(sandbox.docker, sandbox.containerName, ['sh', '-c', 'echo kept > ~/workspace/marker'], 'opencoder')
      assert.equal(marker.exitCode, 0, marker.output)
      const port = await freePort()
      const result = await sandbox.occ(['start', '--no-mounts', '--port', String(port), '--json'])
      expectExit(result, 0)
      assert.equal(json<{port: number; recreated: boolean}>(result).recreated, true)
      assert.equal((await health(port)).version, REAL_OPENCODE_VERSION)
      const read = await execIn(sandbox.docker, sandbox.containerName, ['cat', '/home/opencoder/workspace/marker'])
      assert.equal(read.output.trim(), 'kept')
    })

    it('a container occ created and could not start is removed: the next start on a free port works', async () => {
      expectExit(await sandbox.occ(['stop', '--remove']), 0)
      const busy = net.createServer()
      const busyPort = await freePort()
      await new Promise<void>((resolve) => busy.listen(busyPort, '127.0.0.1', resolve))
      try {
        const failed = await sandbox.occ(['start', '--no-mounts', '--port', String(busyPort), '--json'])
        expectExit(failed, 1)
        assert.equal(json<{error: {code: string}}>(failed).error.code, 'PORT_IN_USE')
        const left = await sandbox.docker.listContainers({all: true, filters: {name: [sandbox.containerName]}})
        assert.deepEqual(left.filter((info) => info.Names.includes(`/${sandbox.containerName}`)), [], 'the failed container was left behind')
      } finally {
        busy.close()
      }

      const port = await freePort()
      expectExit(await sandbox.occ(['start', '--no-mounts', '--port', String(port)]), 0)
      assert.equal((await health(port)).healthy, true)
    })
  })
})
