import type Docker from 'dockerode'

import type {ResourceNames, VolumeKey} from '../config/instance.js'
import type {MountSpec} from '../config/mounts.js'
import {DEFAULT_PIDS_LIMIT, parseMemoryLimit, type OccConfig} from '../config/schema.js'
import {seccompSecurityOpt} from './seccomp.js'

export const CONTAINER_PORT = '3000/tcp'
export const WORKDIR = '/home/opencoder/workspace'

/** The 7 named volumes and where they go (reference §2). A bind mount on the same target wins. */
export const VOLUME_TARGETS: Record<VolumeKey, string> = {
  cache: '/home/opencoder/.cache/opencode',
  config: '/home/opencoder/.config/opencode',
  data: '/home/opencoder/.local/share/opencode',
  ssh: '/home/opencoder/.ssh',
  state: '/home/opencoder/.local/state/opencode',
  users: '/var/lib/opencode-users',
  workspace: WORKDIR,
}

export interface ContainerSpecInput {
  config: OccConfig
  names: ResourceNames
  image: string
  port: number
  bindMounts: MountSpec[]
  /** OPENCODE_CLOUD_ENV from the host, forwarded when set. */
  cloudEnv?: string
}

/** 'localhost' is not an address Docker can bind; the wildcard is kept as given. */
export function normalizeBindAddress(address: string): string {
  const lower = address.toLowerCase()
  if (lower === 'localhost') return '127.0.0.1'
  if (address.startsWith('[') && address.endsWith(']')) return address.slice(1, -1)
  return address
}

/** Where to reach a published port from this host: a wildcard bind is reached on loopback. */
export function reachableAddress(bindAddress: string): string {
  const address = normalizeBindAddress(bindAddress)
  if (address === '0.0.0.0' || address === '') return '127.0.0.1'
  if (address === '::') return '::1'
  return address
}

export function urlHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address
}

/**
 * Capabilities the sandbox never needs (Docker grants them by default): device nodes, raw
 * sockets, chroot, file capabilities and changing capability sets, and FSETID: with it, root's
 * write to a setuid/setgid file keeps the bits, so root in the container could put its own
 * program into such a file a host user left in a bind mount (seccomp.ts refuses setting the bits,
 * not writing a file that has them); without it the kernel clears them on the write. SYS_ADMIN is
 * not granted by default; it is listed so no daemon default can bring it in. Kept (the entrypoint
 * and occ's update steps need them): CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETUID, SETGID,
 * NET_BIND_SERVICE, AUDIT_WRITE.
 */
export const DROPPED_CAPABILITIES = ['MKNOD', 'NET_RAW', 'SYS_ADMIN', 'SYS_CHROOT', 'SETFCAP', 'SETPCAP', 'FSETID']

/** The container log on the host: json-file, rotated, at most LOG_MAX_FILES × LOG_MAX_SIZE. */
export const LOG_MAX_SIZE = '5m'
export const LOG_MAX_FILES = 3

/**
 * The container as the Rust occ creates it in its non-systemd mode, plus `container_env`
 * (which the Rust occ stores but never passes). Not privileged: the sandbox runs an AI agent.
 * Hardened: no-new-privileges (no setuid/sudo path to root inside), occ's seccomp profile (Docker's
 * default allowlist, tighter, and no setuid/setgid bit set on any file: see seccomp.ts),
 * DROPPED_CAPABILITIES, a pids limit, log rotation, and the optional memory/CPU limits.
 */
export function buildContainerSpec(input: ContainerSpecInput): Docker.ContainerCreateOptions {
  const {bindMounts, config, names} = input
  const bindTargets = new Set(bindMounts.map((mount) => mount.container))
  const volumeMounts = (Object.keys(VOLUME_TARGETS) as VolumeKey[])
    .filter((key) => !bindTargets.has(VOLUME_TARGETS[key]))
    .map((key) => ({ReadOnly: false, Source: names.volumes[key], Target: VOLUME_TARGETS[key], Type: 'volume' as const}))
  const binds = bindMounts.map((mount) => ({
    ReadOnly: mount.readOnly,
    Source: mount.host,
    Target: mount.container,
    Type: 'bind' as const,
  }))

  const env = [...config.container_env]
  if (input.cloudEnv) {
    env.push(`OPENCODE_CLOUD_ENV=${input.cloudEnv}`)
  } else {
    env.push(
      'XDG_DATA_HOME=/home/opencoder/.local/share',
      'XDG_STATE_HOME=/home/opencoder/.local/state',
      'XDG_CONFIG_HOME=/home/opencoder/.config',
      'XDG_CACHE_HOME=/home/opencoder/.cache',
    )
  }

  const memory = config.memory_limit === undefined ? undefined : parseMemoryLimit(config.memory_limit)
  return {
    Env: env,
    ExposedPorts: {[CONTAINER_PORT]: {}},
    HostConfig: {
      AutoRemove: false,
      CapDrop: [...DROPPED_CAPABILITIES],
      LogConfig: {Config: {'max-file': String(LOG_MAX_FILES), 'max-size': LOG_MAX_SIZE}, Type: 'json-file'},
      Mounts: [...volumeMounts, ...binds],
      PidsLimit: config.pids_limit ?? DEFAULT_PIDS_LIMIT,
      PortBindings: {[CONTAINER_PORT]: [{HostIp: normalizeBindAddress(config.bind_address), HostPort: String(input.port)}]},
      SecurityOpt: ['no-new-privileges:true', seccompSecurityOpt()],
      ...(memory === undefined ? {} : {Memory: memory, MemorySwap: memory}),
      ...(config.cpu_limit === undefined ? {} : {NanoCpus: Math.round(config.cpu_limit * 1e9)}),
    },
    Hostname: names.hostname,
    Image: input.image,
    Labels: {...names.labels},
    WorkingDir: WORKDIR,
    name: names.container,
  }
}

const DEFAULT_XDG_ENV = new Set([
  'XDG_DATA_HOME=/home/opencoder/.local/share',
  'XDG_STATE_HOME=/home/opencoder/.local/state',
  'XDG_CONFIG_HOME=/home/opencoder/.config',
  'XDG_CACHE_HOME=/home/opencoder/.cache',
])

/**
 * The spec for a container that replaces `info` on another image (update container, rollback):
 * everything the old one had — its port and bind address, bind mounts, volumes, the env it was
 * given (container_env, OPENCODE_CLOUD_ENV), memory/CPU/pids limits and labels — built through
 * buildContainerSpec, so the hardening is the current one. What came from the old image (its ENV,
 * its labels) is not carried over: the new image brings its own.
 */
export function replacementSpec(
  info: Docker.ContainerInspectInfo,
  oldImage: Pick<Docker.ImageInspectInfo, 'Config'> | undefined,
  input: {config: OccConfig; names: ResourceNames; image: string},
): Docker.ContainerCreateOptions {
  const imageEnv = new Set(oldImage?.Config?.Env ?? [])
  let cloudEnv: string | undefined
  const containerEnv: string[] = []
  for (const entry of info.Config?.Env ?? []) {
    if (imageEnv.has(entry) || DEFAULT_XDG_ENV.has(entry)) continue
    if (entry.startsWith('OPENCODE_CLOUD_ENV=')) cloudEnv = entry.slice('OPENCODE_CLOUD_ENV='.length)
    else containerEnv.push(entry)
  }

  const binding = info.HostConfig?.PortBindings?.[CONTAINER_PORT]?.[0]
  const port = Number(binding?.HostPort)
  const host = info.HostConfig as (Docker.HostConfig & {NanoCpus?: number}) | undefined
  const config: OccConfig = {
    ...input.config,
    bind_address: binding?.HostIp || input.config.bind_address,
    container_env: containerEnv,
    cpu_limit: host?.NanoCpus ? host.NanoCpus / 1e9 : undefined,
    memory_limit: host?.Memory ? String(host.Memory) : undefined,
    pids_limit: host?.PidsLimit && host.PidsLimit > 0 ? host.PidsLimit : undefined,
  }
  const bindMounts: MountSpec[] = (info.Mounts ?? [])
    .filter((mount) => mount.Type === 'bind')
    .map((mount) => ({container: mount.Destination, host: mount.Source, readOnly: !mount.RW}))
  const spec = buildContainerSpec({
    bindMounts,
    cloudEnv,
    config,
    image: input.image,
    names: input.names,
    port: Number.isInteger(port) && port > 0 ? port : input.config.opencode_web_port,
  })
  // Volumes as they were (a volume the old container had on another target stays there).
  const volumes = (info.Mounts ?? [])
    .filter((mount) => mount.Type === 'volume' && mount.Name)
    .map((mount) => ({ReadOnly: !mount.RW, Source: mount.Name as string, Target: mount.Destination, Type: 'volume' as const}))
  if (volumes.length > 0) {
    const binds = (spec.HostConfig?.Mounts ?? []).filter((mount) => mount.Type === 'bind')
    spec.HostConfig = {...spec.HostConfig, Mounts: [...volumes, ...binds]}
  }

  const imageLabels = oldImage?.Config?.Labels ?? {}
  const labels: Record<string, string> = {}
  for (const [key, value] of Object.entries(info.Config?.Labels ?? {})) if (imageLabels[key] !== value) labels[key] = value
  spec.Labels = {...labels, ...input.names.labels}
  return spec
}
