import type Docker from 'dockerode'

import type {ResourceNames, VolumeKey} from '../config/instance.js'
import type {MountSpec} from '../config/mounts.js'
import type {OccConfig} from '../config/schema.js'

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
 * The container as the Rust occ creates it in its non-systemd mode, plus `container_env`
 * (which the Rust occ stores but never passes). Not privileged: the sandbox runs an AI agent.
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

  return {
    Env: env,
    ExposedPorts: {[CONTAINER_PORT]: {}},
    HostConfig: {
      AutoRemove: false,
      CapAdd: ['SETUID', 'SETGID'],
      Mounts: [...volumeMounts, ...binds],
      PortBindings: {[CONTAINER_PORT]: [{HostIp: normalizeBindAddress(config.bind_address), HostPort: String(input.port)}]},
    },
    Hostname: names.hostname,
    Image: input.image,
    Labels: {...names.labels},
    WorkingDir: WORKDIR,
    name: names.container,
  }
}
