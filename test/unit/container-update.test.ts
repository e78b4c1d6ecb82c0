import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import type Docker from 'dockerode'

import {rustSpellings} from '../../src/cli/argv.js'
import {resourceNames} from '../../src/config/instance.js'
import {resolvePaths} from '../../src/config/paths.js'
import {parseConfigText} from '../../src/config/store.js'
import type {OccConfig} from '../../src/config/schema.js'
import {buildContainerSpec, replacementSpec} from '../../src/docker/container-spec.js'
import {seccompSecurityOpt} from '../../src/docker/seccomp.js'
import {classifyPullError, pullError, repoDigestsFor, repositoryOf} from '../../src/docker/image.js'
import {keptContainerName, rollbackTag, waitForSwap} from '../../src/runtime/container-update.js'
import type {HostRuntime} from '../../src/runtime/host-runtime.js'
import {announceRecreate} from '../../src/runtime/recreate-notice.js'
import {createPullView, PullTracker} from '../../src/runtime/pull-progress.js'
import {acquireHostUpdateLock, hostLockFile} from '../../src/runtime/update-lock.js'
import type {OwnerChecks} from '../../src/runtime/update/lock-owner.js'

const paths = resolvePaths({HOME: '/home/u'})
const config = (overrides: Partial<OccConfig> = {}): OccConfig => ({...parseConfigText('{"version": 1}', paths.configFile, paths), ...overrides})

describe('update container: pure parts', () => {
  describe('PullTracker and the pull view', () => {
    const events = [
      {id: 'latest', status: 'Pulling from occ-sandbox'},
      {id: 'aaaaaaaaaaaa', progressDetail: {}, status: 'Already exists'},
      {id: 'bbbbbbbbbbbb', status: 'Pulling fs layer'},
      {id: 'bbbbbbbbbbbb', progressDetail: {current: 1024, total: 3 * 1024 * 1024}, status: 'Downloading'},
      {id: 'bbbbbbbbbbbb', progressDetail: {current: 2 * 1024 * 1024, total: 3 * 1024 * 1024}, status: 'Downloading'},
      {id: 'bbbbbbbbbbbb', status: 'Download complete'},
      {id: 'bbbbbbbbbbbb', progressDetail: {current: 10, total: 100}, status: 'Extracting'},
      {id: 'bbbbbbbbbbbb', status: 'Pull complete'},
      {status: 'Digest: sha256:00'},
      {status: 'Status: Downloaded newer image for x:latest'},
    ]

    it('counts layers done and bytes downloaded (the tag event is no layer)', () => {
      const tracker = new PullTracker()
      tracker.onEvent(events[0])
      tracker.onEvent(events[1])
      tracker.onEvent(events[2])
      tracker.onEvent(events[3])
      assert.deepEqual(tracker.snapshot(), {bytesDone: 1024, bytesTotal: 3 * 1024 * 1024, layers: 2, layersDone: 1})
      for (const event of events.slice(4)) tracker.onEvent(event)
      assert.deepEqual(tracker.snapshot(), {bytesDone: 3 * 1024 * 1024, bytesTotal: 3 * 1024 * 1024, layers: 2, layersDone: 2})
    })

    it('plain lines: one per pulled layer, the layers already present in one line; nothing when silent', () => {
      const lines: string[] = []
      const view = createPullView({silent: false, tty: false, write: (text) => lines.push(text)})
      for (const event of events) view.onEvent(event)
      view.end()
      assert.deepEqual(lines, ['Layer bbbbbbbbbbbb pulled (3.0 MB): 2/2 layers done, 3.0 MB of 3.0 MB downloaded\n', '1 layer already present\n'])
      assert.ok(lines.every((line) => !line.includes('\u001B')), 'no escape sequences off a terminal')

      const silent: string[] = []
      const quiet = createPullView({silent: true, tty: true, write: (text) => silent.push(text)})
      for (const event of events) quiet.onEvent(event)
      quiet.end()
      assert.deepEqual(silent, [])
    })

    it('on a terminal: one line rewritten in place (throttled), ended with a newline', () => {
      let clock = 0
      const out: string[] = []
      const view = createPullView({now: () => clock, redrawMs: 100, silent: false, tty: true, write: (text) => out.push(text)})
      for (const event of events) {
        clock += 10
        view.onEvent(event)
      }

      view.end()
      assert.ok(out.length >= 2 && out.length < events.length, `throttled: ${out.length} writes`)
      assert.ok(out.slice(0, -1).every((text) => text.startsWith('\r\u001B[2KPulling: ') && !text.includes('\n')))
      assert.equal(out.at(-1), '\r\u001B[2KPull: 2/2 layers done, 3.0 MB of 3.0 MB downloaded\n')
    })
  })

  describe('why a pull failed', () => {
    const cases: Array<[string, ReturnType<typeof classifyPullError>]> = [
      ['Get "http://127.0.0.1:40123/v2/": dial tcp 127.0.0.1:40123: connect: connection refused', 'unreachable'],
      ['Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io: no such host', 'unreachable'],
      ['Get "https://r.example/v2/": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)', 'unreachable'],
      ['http: server gave HTTP response to HTTPS client', 'unreachable'],
      ['manifest for 127.0.0.1:5000/x:nope not found: manifest unknown: manifest unknown', 'not-found'],
      ["pull access denied for nosuch, repository does not exist or may require 'docker login': denied: requested access to the resource is denied", 'not-found'],
      ['unauthorized: authentication required', 'unauthorized'],
      ['Head "https://r.example/v2/x/manifests/latest": no basic auth credentials', 'unauthorized'],
      ['something else entirely', 'other'],
    ]
    for (const [message, kind] of cases) {
      it(`${kind}: ${message.slice(0, 60)}`, () => assert.equal(classifyPullError(message), kind))
    }

    it('each kind has its own code and says which registry', () => {
      assert.equal(pullError('127.0.0.1:5000/x:latest', new Error('connect: connection refused')).code, 'REGISTRY_UNREACHABLE')
      assert.equal(pullError('127.0.0.1:5000/x:latest', new Error('manifest unknown')).code, 'IMAGE_NOT_FOUND')
      const denied = pullError('ghcr.io/o/x:latest', new Error('unauthorized: authentication required'))
      assert.equal(denied.code, 'REGISTRY_UNAUTHORIZED')
      assert.match(denied.message, /ghcr\.io refused access/)
      assert.match(pullError('debian:12', new Error('connection refused')).message, /docker\.io/)
    })
  })

  describe('names', () => {
    it('rollback tag and kept container: the Rust convention; an underscore no instance name can have', () => {
      assert.equal(rollbackTag('ghcr.io/prizz/opencode-cloud-sandbox:latest', resourceNames(undefined)), 'ghcr.io/prizz/opencode-cloud-sandbox:previous')
      assert.equal(rollbackTag('127.0.0.1:5000/occ:latest', resourceNames('dev-1')), '127.0.0.1:5000/occ:instance-dev-1-previous')
      assert.equal(keptContainerName(resourceNames('a')), 'opencode-cloud-sandbox-a_previous')
      assert.equal(repositoryOf('127.0.0.1:5000/occ@sha256:abc'), '127.0.0.1:5000/occ')
      assert.deepEqual(repoDigestsFor({RepoDigests: ['127.0.0.1:5000/occ@sha256:1', 'other/x@sha256:2']} as Docker.ImageInspectInfo, '127.0.0.1:5000/occ'), ['sha256:1'])
      assert.deepEqual(repoDigestsFor({RepoDigests: ['debian@sha256:3']} as Docker.ImageInspectInfo, 'docker.io/library/debian'), ['sha256:3'])
    })

    it('occ update --rollback is occ update container --rollback; other topic uses are left alone', () => {
      assert.deepEqual(rustSpellings(['update', '--rollback']), ['update', 'container', '--rollback'])
      assert.deepEqual(rustSpellings(['update', '--json', '--rollback', '-y']), ['update', 'container', '--json', '--rollback', '-y'])
      assert.deepEqual(rustSpellings(['update', '--yes']), ['update', '--yes'])
      assert.deepEqual(rustSpellings(['update', 'container', '--rollback']), ['update', 'container', '--rollback'])
      assert.deepEqual(rustSpellings(['status', '--rollback']), ['status', '--rollback'])
    })
  })

  describe('replacementSpec', () => {
    const names = resourceNames('dev-1')
    const imageEnv = ['PATH=/usr/bin:/bin', 'LANG=C.UTF-8']
    const imageLabels = {'org.opencode-cloud.version': 'v1'}
    const original = buildContainerSpec({
      bindMounts: [{container: '/home/opencoder/project', host: '/srv/project', readOnly: true}],
      cloudEnv: undefined,
      config: config({bind_address: '0.0.0.0', container_env: ['A=1', 'B=two words'], cpu_limit: 1.5, memory_limit: '512m', pids_limit: 900}),
      image: 'repo:latest',
      names,
      port: 3111,
    })
    /** The old container as the Engine reports it: the image's env and labels merged in. */
    const inspected = {
      Config: {Env: [...imageEnv, ...(original.Env ?? [])], Image: 'repo:latest', Labels: {...imageLabels, ...original.Labels}},
      HostConfig: original.HostConfig,
      Id: 'old',
      Image: 'sha256:old',
      Mounts: (original.HostConfig?.Mounts ?? []).map((mount) => ({
        Destination: mount.Target,
        Name: mount.Type === 'volume' ? mount.Source : undefined,
        RW: !mount.ReadOnly,
        Source: mount.Type === 'bind' ? mount.Source : `/var/lib/docker/volumes/${mount.Source}/_data`,
        Type: mount.Type,
      })),
    } as unknown as Docker.ContainerInspectInfo

    it('is the container it replaces on the new image: port, bind address, mounts, env, limits, labels', () => {
      // The config may have changed since: what the container had wins.
      const next = replacementSpec(inspected, {Config: {Env: imageEnv, Labels: imageLabels}} as unknown as Docker.ImageInspectInfo, {
        config: config({container_env: ['C=3'], opencode_web_port: 4000}),
        image: 'repo:latest',
        names,
      })
      const sortMounts = (spec: Docker.ContainerCreateOptions) => [...(spec.HostConfig?.Mounts ?? [])].sort((a, b) => String(a.Target).localeCompare(String(b.Target)))
      assert.deepEqual(sortMounts(next), sortMounts(original))
      assert.deepEqual({...next, HostConfig: {...next.HostConfig, Mounts: []}}, {...original, HostConfig: {...original.HostConfig, Mounts: []}})
    })

    it('gives a container an older occ created (no seccomp profile) the current hardening', () => {
      const old = {...inspected, HostConfig: {...inspected.HostConfig, SecurityOpt: ['no-new-privileges:true']}} as unknown as Docker.ContainerInspectInfo
      const next = replacementSpec(old, {Config: {Env: imageEnv, Labels: imageLabels}} as unknown as Docker.ImageInspectInfo, {config: config(), image: 'repo:v2', names})
      assert.deepEqual(next.HostConfig?.SecurityOpt, ['no-new-privileges:true', seccompSecurityOpt()])
    })

    it('keeps OPENCODE_CLOUD_ENV and drops what came from the old image (its env, its labels)', () => {
      const withCloud = buildContainerSpec({bindMounts: [], cloudEnv: 'prod', config: config(), image: 'repo:latest', names, port: 3000})
      const info = {
        ...inspected,
        Config: {...inspected.Config, Env: [...imageEnv, ...(withCloud.Env ?? [])], Labels: {...imageLabels, 'x.extra': 'kept', ...withCloud.Labels}},
      } as unknown as Docker.ContainerInspectInfo
      const next = replacementSpec(info, {Config: {Env: imageEnv, Labels: imageLabels}} as unknown as Docker.ImageInspectInfo, {config: config(), image: 'repo:v2', names})
      assert.deepEqual(next.Env, ['OPENCODE_CLOUD_ENV=prod'])
      assert.equal(next.Image, 'repo:v2')
      assert.equal(next.Labels?.['org.opencode-cloud.version'], undefined)
      assert.equal(next.Labels?.['x.extra'], 'kept')
    })
  })

  describe('the host update lock', () => {
    let dir: string
    const names = resourceNames('lock-1')
    const checks = (overrides: Partial<OwnerChecks> = {}): OwnerChecks => ({
      bootId: 'boot-a',
      held: new Set(),
      isAlive: () => true,
      pid: 1,
      pidStart: '1',
      startTime: () => '1',
      ...overrides,
    })

    beforeEach(async () => {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-lock-'))
    })
    afterEach(async () => {
      await fs.rm(dir, {force: true, recursive: true})
    })

    it('one holder: a second is refused naming the update that runs; released, it can be taken', async () => {
      const lockPaths = resolvePaths({HOME: dir})
      const first = await acquireHostUpdateLock(lockPaths, names, 'update container')
      await assert.rejects(acquireHostUpdateLock(lockPaths, names, 'update opencode'), (error: Error & {code?: string}) => {
        assert.equal(error.code, 'UPDATE_BUSY')
        assert.match(error.message, new RegExp(`occ update container \\(pid ${process.pid}`))
        return true
      })
      // Another instance has its own lock.
      const other = await acquireHostUpdateLock(lockPaths, resourceNames('lock-2'), 'update opencode')
      await other.release()
      await first.release()
      const again = await acquireHostUpdateLock(lockPaths, names, 'update opencode')
      await again.release()
      await assert.rejects(fs.stat(hostLockFile(lockPaths, names)))
    })

    it('a dead owner on this boot is taken over at once; a live one or one from another boot is not', async () => {
      const lockPaths = resolvePaths({HOME: dir})
      const file = hostLockFile(lockPaths, names)
      await fs.mkdir(path.dirname(file), {recursive: true})
      const record = (bootId: string) => JSON.stringify({bootId, kind: 'update container', pid: 999_999, pidStart: '1', since: '2026-01-01T00:00:00Z', token: 'ab'.repeat(12)})
      await fs.writeFile(file, record('boot-a'))
      await assert.rejects(acquireHostUpdateLock(lockPaths, names, 'update opencode', checks()), /pid 999999/)
      const taken = await acquireHostUpdateLock(lockPaths, names, 'update opencode', checks({isAlive: () => false}))
      await taken.release()
      await fs.writeFile(file, record('boot-b'))
      await assert.rejects(acquireHostUpdateLock(lockPaths, names, 'update opencode', checks({isAlive: () => false})), /UPDATE_BUSY|Another update/)
    })

    it('a lock file that is not ours to read (a symlink, garbage) is never followed; an old unreadable one is replaced', async () => {
      const lockPaths = resolvePaths({HOME: dir})
      const file = hostLockFile(lockPaths, names)
      await fs.mkdir(path.dirname(file), {recursive: true})
      await fs.writeFile(file, 'not json')
      await assert.rejects(acquireHostUpdateLock(lockPaths, names, 'update container'), /being written/)
      const old = new Date(Date.now() - 60_000)
      await fs.utimes(file, old, old)
      const taken = await acquireHostUpdateLock(lockPaths, names, 'update container')
      await taken.release()
      const target = path.join(dir, 'elsewhere')
      await fs.writeFile(target, 'keep')
      await fs.symlink(target, file)
      await assert.rejects(acquireHostUpdateLock(lockPaths, names, 'update container'))
      assert.equal(await fs.readFile(target, 'utf8'), 'keep')
    })
  })

  describe('waitForSwap (occ restart, occ stop)', () => {
    let root: string
    beforeEach(async () => {
      root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-wait-swap-'))
    })
    afterEach(async () => {
      await fs.rm(root, {force: true, recursive: true})
    })

    const hostIn = (dir: string): HostRuntime => {
      const hostPaths = resolvePaths({HOME: dir, XDG_DATA_HOME: path.join(dir, 'data')})
      return {names: resourceNames(undefined), paths: hostPaths} as unknown as HostRuntime
    }

    it('returns at once without a note; waits while a live one is there and returns once it is withdrawn', async () => {
      const host = hostIn(root)
      const said: string[] = []
      await waitForSwap(host, (message) => said.push(message), {pollMs: 10})
      assert.equal(said.length, 0, 'no note without a recreate')
      const withdraw = await announceRecreate(host.paths, host.names, 'occ update container')
      let done = false
      const waiting = waitForSwap(host, (message) => said.push(message), {pollMs: 10}).then(() => {
        done = true
      })
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.equal(done, false, 'still waiting while the note is live')
      assert.equal(said.length, 1)
      assert.match(said[0], /occ update container \(pid \d+, since .*\) is replacing the sandbox container\. Waiting for it to finish\./)
      await withdraw()
      await waiting
      assert.equal(done, true)
    })

    it('gives up after waitMs with UPDATE_BUSY', async () => {
      const host = hostIn(root)
      await announceRecreate(host.paths, host.names, 'occ start --recreate')
      await assert.rejects(waitForSwap(host, () => {}, {pollMs: 10, waitMs: 50}), (error: {code?: string; message: string}) => error.code === 'UPDATE_BUSY' && /did not finish in time/.test(error.message))
    })
  })
})
