import type Docker from 'dockerode'

import type {ResourceNames, VolumeKey} from '../config/instance.js'
import type {MountSpec} from '../config/mounts.js'
import {DEFAULT_PIDS_LIMIT, parseMemoryLimit, type OccConfig} from '../config/schema.js'

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
 * sockets, chroot, file capabilities and changing capability sets. SYS_ADMIN is not granted by
 * default; it is listed so no daemon default can bring it in. Kept (the entrypoint and occ's
 * update steps need them): CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETUID, SETGID,
 * NET_BIND_SERVICE, AUDIT_WRITE.
 */
export const DROPPED_CAPABILITIES = ['MKNOD', 'NET_RAW', 'SYS_ADMIN', 'SYS_CHROOT', 'SETFCAP', 'SETPCAP']

/** The container log on the host: json-file, rotated, at most LOG_MAX_FILES × LOG_MAX_SIZE. */
export const LOG_MAX_SIZE = '5m'
export const LOG_MAX_FILES = 3

/**
 * The container as the Rust occ creates it in its non-systemd mode, plus `container_env`
 * (which the Rust occ stores but never passes). Not privileged: the sandbox runs an AI agent.
 * Hardened: no-new-privileges (no setuid/sudo path to root inside), DROPPED_CAPABILITIES, a pids
 * limit, log rotation, and the optional memory/CPU limits from the config.
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
      SecurityOpt: ['no-new-privileges:true'],
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
