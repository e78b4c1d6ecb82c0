import assert from 'node:assert/strict'

import {resourceNames} from '../../src/config/instance.js'
import {defaultMounts, MOUNT_STATE, parseMountSpec, type MountSpec} from '../../src/config/mounts.js'
import {resolvePaths} from '../../src/config/paths.js'
import {parseConfigText} from '../../src/config/store.js'
import type {OccConfig} from '../../src/config/schema.js'
import {buildContainerSpec, normalizeBindAddress, reachableAddress, VOLUME_TARGETS} from '../../src/docker/container-spec.js'
import {seccompProfile, type SeccompProfile} from '../../src/docker/seccomp.js'

const paths = resolvePaths({HOME: '/home/u'})

function config(overrides: Partial<OccConfig> = {}): OccConfig {
  return {...parseConfigText('{"version": 1}', paths.configFile, paths), ...overrides}
}

function spec(options: {bindMounts?: MountSpec[]; cloudEnv?: string; config?: Partial<OccConfig>; instance?: string; port?: number} = {}) {
  return buildContainerSpec({
    bindMounts: options.bindMounts ?? [],
    cloudEnv: options.cloudEnv,
    config: config(options.config),
    image: 'opencode-cloud-sandbox-fixture:latest',
    names: resourceNames('instance' in options ? options.instance : 'dev-1'),
    port: options.port ?? 3100,
  })
}

type Mount = {ReadOnly?: boolean; Source?: string; Target?: string; Type?: string}
const mountsOf = (created: ReturnType<typeof spec>): Mount[] => (created.HostConfig?.Mounts ?? []) as Mount[]

describe('buildContainerSpec', () => {
  it('names the container and its hostname after the instance, from the configured image', () => {
    const created = spec()
    assert.equal(created.name, 'opencode-cloud-sandbox-dev-1')
    assert.equal(created.Hostname, 'opencode-cloud-sandbox-dev-1')
    assert.equal(created.Image, 'opencode-cloud-sandbox-fixture:latest')
    assert.equal(created.WorkingDir, '/home/opencoder/workspace')
  })

  it('uses the shared names without an instance', () => {
    const created = spec({instance: undefined})
    assert.equal(created.name, 'opencode-cloud-sandbox')
    assert.equal(created.Hostname, 'opencode-cloud-sandbox')
    assert.deepEqual(created.Labels, {'managed-by': 'opencode-cloud'})
  })

  it('labels the container managed-by=opencode-cloud and with the instance', () => {
    assert.deepEqual(spec().Labels, {'managed-by': 'opencode-cloud', 'opencode-cloud.instance': 'dev-1'})
  })

  it('does not share the label object with the resource names', () => {
    const names = resourceNames('dev-1')
    const created = buildContainerSpec({bindMounts: [], config: config(), image: 'i', names, port: 3100})
    ;(created.Labels as Record<string, string>).extra = 'x'
    assert.equal(names.labels.extra, undefined)
  })

  it('publishes 3000/tcp on bind_address:port', () => {
    const created = spec({config: {bind_address: '127.0.0.1'}, port: 3123})
    assert.deepEqual(created.ExposedPorts, {'3000/tcp': {}})
    assert.deepEqual(created.HostConfig?.PortBindings, {'3000/tcp': [{HostIp: '127.0.0.1', HostPort: '3123'}]})
  })

  it('binds localhost as 127.0.0.1 (Docker cannot bind a name) and [v6] without brackets', () => {
    const hostIp = (address: string): string => (spec({config: {bind_address: address}}).HostConfig?.PortBindings as Record<string, Array<{HostIp: string}>>)['3000/tcp'][0].HostIp
    assert.equal(hostIp('localhost'), '127.0.0.1')
    assert.equal(hostIp('LOCALHOST'), '127.0.0.1')
    assert.equal(hostIp('[::1]'), '::1')
    assert.equal(hostIp('0.0.0.0'), '0.0.0.0')
    assert.equal(hostIp('::'), '::')
  })

  it('mounts the 7 named volumes of the instance when there are no bind mounts', () => {
    const mounts = mountsOf(spec())
    assert.equal(mounts.length, 7)
    assert.ok(mounts.every((mount) => mount.Type === 'volume' && mount.ReadOnly === false))
    assert.deepEqual(
      Object.fromEntries(mounts.map((mount) => [mount.Target, mount.Source])),
      {
        '/home/opencoder/.cache/opencode': 'opencode-cache-dev-1',
        '/home/opencoder/.config/opencode': 'opencode-config-dev-1',
        '/home/opencoder/.local/share/opencode': 'opencode-data-dev-1',
        '/home/opencoder/.local/state/opencode': 'opencode-state-dev-1',
        '/home/opencoder/.ssh': 'opencode-ssh-dev-1',
        '/home/opencoder/workspace': 'opencode-workspace-dev-1',
        '/var/lib/opencode-users': 'opencode-users-dev-1',
      },
    )
    assert.equal(VOLUME_TARGETS.state, MOUNT_STATE)
  })

  it('with the 6 default bind mounts, keeps only the users volume, and mounts the binds rw', () => {
    const binds = defaultMounts(paths).map((text) => parseMountSpec(text))
    const mounts = mountsOf(spec({bindMounts: binds}))
    const volumes = mounts.filter((mount) => mount.Type === 'volume')
    assert.deepEqual(volumes, [{ReadOnly: false, Source: 'opencode-users-dev-1', Target: '/var/lib/opencode-users', Type: 'volume'}])
    const bindMounts = mounts.filter((mount) => mount.Type === 'bind')
    assert.deepEqual(
      bindMounts,
      binds.map((bind) => ({ReadOnly: false, Source: bind.host, Target: bind.container, Type: 'bind'})),
    )
    assert.ok(bindMounts.some((mount) => mount.Target === MOUNT_STATE && mount.Source === '/home/u/.local/state/opencode'), 'the state mount is missing')
    const targets = mounts.map((mount) => mount.Target)
    assert.equal(new Set(targets).size, targets.length, 'two mounts on one target')
  })

  it('keeps ro on read-only bind mounts and the volumes not shadowed by a bind', () => {
    const mounts = mountsOf(spec({bindMounts: [{container: '/home/opencoder/workspace', host: '/srv/code', readOnly: true}]}))
    assert.deepEqual(mounts.find((mount) => mount.Type === 'bind'), {ReadOnly: true, Source: '/srv/code', Target: '/home/opencoder/workspace', Type: 'bind'})
    assert.equal(mounts.filter((mount) => mount.Type === 'volume').length, 6)
    assert.ok(!mounts.some((mount) => mount.Type === 'volume' && mount.Target === '/home/opencoder/workspace'))
  })

  it('passes container_env through, before the XDG defaults', () => {
    const env = spec({config: {container_env: ['FOO=bar', 'URL=http://x/?a=b,c']}}).Env ?? []
    assert.deepEqual(env.slice(0, 2), ['FOO=bar', 'URL=http://x/?a=b,c'])
    assert.ok(env.includes('XDG_DATA_HOME=/home/opencoder/.local/share'))
    assert.ok(env.includes('XDG_STATE_HOME=/home/opencoder/.local/state'))
    assert.ok(env.includes('XDG_CONFIG_HOME=/home/opencoder/.config'))
    assert.ok(env.includes('XDG_CACHE_HOME=/home/opencoder/.cache'))
  })

  it('forwards OPENCODE_CLOUD_ENV instead of the XDG defaults when set (as the Rust occ does)', () => {
    const env = spec({cloudEnv: 'staging', config: {container_env: ['A=1']}}).Env ?? []
    assert.deepEqual(env, ['A=1', 'OPENCODE_CLOUD_ENV=staging'])
  })

  it('is not privileged, adds no capabilities, drops the ones it never needs, no new privileges, and is not auto-removed', () => {
    const host = spec().HostConfig ?? {}
    assert.ok(!host.Privileged, 'the sandbox must not be privileged')
    assert.deepEqual(host.CapAdd ?? [], [])
    for (const cap of ['MKNOD', 'NET_RAW', 'SYS_ADMIN', 'FSETID']) assert.ok(host.CapDrop?.includes(cap), `${cap} is not dropped`)
    for (const cap of ['CHOWN', 'SETUID', 'SETGID', 'DAC_OVERRIDE', 'FOWNER', 'KILL']) assert.ok(!host.CapDrop?.includes(cap), `${cap} is needed`)
    assert.equal(host.SecurityOpt?.length, 2)
    assert.equal(host.SecurityOpt?.[0], 'no-new-privileges:true')
    assert.ok(!host.AutoRemove)
    assert.equal(host.NetworkMode === 'host', false)
    assert.equal(host.PidMode === 'host', false)
  })

  it('passes occ\'s seccomp profile inline, and its JSON refuses setuid/setgid modes', () => {
    const option = spec().HostConfig?.SecurityOpt?.[1] ?? ''
    assert.ok(option.startsWith('seccomp={'), option.slice(0, 40))
    const profile = JSON.parse(option.slice('seccomp='.length)) as SeccompProfile
    assert.deepEqual(profile, seccompProfile())
    assert.equal(profile.defaultAction, 'SCMP_ACT_ERRNO')
    const chmod = profile.syscalls.filter((rule) => rule.names.includes('chmod'))
    assert.deepEqual(chmod, [{action: 'SCMP_ACT_ALLOW', args: [{index: 1, op: 'SCMP_CMP_MASKED_EQ', value: 0o6000, valueTwo: 0}], names: ['chmod']}])
  })

  it('rotates the json-file log and limits pids by default; no memory or CPU limit unless configured', () => {
    const host = spec().HostConfig ?? {}
    assert.deepEqual(host.LogConfig, {Config: {'max-file': '3', 'max-size': '5m'}, Type: 'json-file'})
    assert.equal(host.PidsLimit, 4096)
    assert.equal(host.Memory, undefined)
    assert.equal(host.NanoCpus, undefined)
  })

  it('applies memory_limit, cpu_limit and pids_limit from the config', () => {
    const host = spec({config: {cpu_limit: 1.5, memory_limit: '1.5g', pids_limit: 512}}).HostConfig ?? {}
    assert.equal(host.Memory, 1.5 * 1024 ** 3)
    assert.equal(host.MemorySwap, 1.5 * 1024 ** 3)
    assert.equal(host.NanoCpus, 1_500_000_000)
    assert.equal(host.PidsLimit, 512)
  })
})

describe('bind addresses', () => {
  it('normalizeBindAddress', () => {
    assert.equal(normalizeBindAddress('localhost'), '127.0.0.1')
    assert.equal(normalizeBindAddress('[::1]'), '::1')
    assert.equal(normalizeBindAddress('10.0.0.5'), '10.0.0.5')
  })

  it('reachableAddress: a wildcard bind is reached on loopback', () => {
    assert.equal(reachableAddress('0.0.0.0'), '127.0.0.1')
    assert.equal(reachableAddress('::'), '::1')
    assert.equal(reachableAddress('[::]'), '::1')
    assert.equal(reachableAddress('localhost'), '127.0.0.1')
    assert.equal(reachableAddress('192.168.1.20'), '192.168.1.20')
  })
})
