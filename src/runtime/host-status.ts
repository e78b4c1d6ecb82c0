import {findStateMount, hostCommandsDir, parseMountSpec} from '../config/mounts.js'
import {listenerMountProblem} from '../protocol/commands-dir.js'
import {describeListener, isPidAlive, readListenerStatus} from '../protocol/listener-status.js'
import {inspectImage, repoDigestsFor, repositoryOf} from '../docker/image.js'
import {serviceStatus} from '../service/service.js'
import {bindMountSpecs, type HostRuntime} from './host-runtime.js'
import {imageCheckFiles, imageUpdateView, readImageCheck, startImageCheckRefresh} from './image-check.js'
import type {StatusView} from './status.js'

/**
 * The parts of `occ status` that only the host knows: is a listener answering the web UI
 * (from listener.json in the state mount's commands dir), and is the service registered.
 * Takes the shared view as a promise so the service check runs while Docker answers.
 */
export async function withHostStatus(host: HostRuntime, viewPromise: Promise<StatusView>): Promise<StatusView> {
  const servicePromise = serviceStatus({instance: host.names.instance, paths: host.paths}).catch(() => null)
  const view = await viewPromise
  const [listener, service, image] = await Promise.all([listenerView(host, view), servicePromise, imageView(host, view)])
  return {...view, image, listener, security: securityView(host.config), service}
}

/**
 * The running image's registry digest and, per update_check, whether the registry has a newer
 * one: from the cache, with a background refresh when it is missing or due (image-check.ts).
 * Never waits for the registry; a failure here leaves the rest of status as it was.
 */
async function imageView(host: HostRuntime, view: StatusView): Promise<StatusView['image']> {
  if (!view.container.exists || !view.container.imageId) return view.image
  try {
    const image = host.config.image
    const [inspected, cache] = await Promise.all([
      inspectImage(host.docker, view.container.imageId),
      readImageCheck(imageCheckFiles(host.paths, host.names).cache),
    ])
    const localDigests = repoDigestsFor(inspected, repositoryOf(image))
    const {refresh, view: update} = imageUpdateView({cache, image, localDigests, mode: host.config.update_check, nowMs: Date.now()})
    if (refresh) await startImageCheckRefresh(imageCheckFiles(host.paths, host.names), image, localDigests[0] ?? null)
    return {...view.image, digest: localDigests[0] ?? null, update}
  } catch {
    return view.image
  }
}

/** "Exposed" = bound to a wildcard address (reachable from the network), as the Rust occ judges it. */
export function securityView(config: HostRuntime['config']): NonNullable<StatusView['security']> {
  const address = config.bind_address.replace(/^\[|\]$/g, '')
  return {
    allowUnauthenticatedNetwork: config.allow_unauthenticated_network,
    bindAddress: config.bind_address,
    exposure: address === '0.0.0.0' || address === '::' ? 'network-exposed' : 'local-only',
    rateLimit: {attempts: config.rate_limit_attempts, windowSeconds: config.rate_limit_window_seconds},
    trustProxy: config.trust_proxy,
    users: config.users,
  }
}

async function listenerView(host: HostRuntime, view: StatusView): Promise<StatusView['listener']> {
  // The container's real mounts when it exists; otherwise what the config would create.
  const mounts = view.container.exists ? bindMountSpecs(view.mounts) : host.config.mounts.map((spec) => parseMountSpec(spec))
  const problem = listenerMountProblem(mounts)
  const stateMount = findStateMount(mounts)
  if (problem || !stateMount) {
    return {activity: 'disabled', description: `disabled: ${problem}`, heartbeatAt: null, pid: null, state: 'disabled'}
  }

  const found = await readListenerStatus(hostCommandsDir(stateMount), {isAlive: isPidAlive})
  const status = 'status' in found ? found.status : undefined
  return {
    activity: status?.state ?? null,
    description: describeListener(found),
    heartbeatAt: status?.heartbeat_at ?? null,
    pid: status?.pid ?? null,
    state: found.state,
  }
}
