import Docker from 'dockerode'

import {EngineUnreachableError} from '../errors.js'

/**
 * A dockerode client for DOCKER_HOST (unix://, tcp://, npipe://; docker-modem reads it) or the
 * default socket. No API version is pinned: requests go unversioned and the engine answers with
 * its own, so old and new engines both work.
 */
export function createDockerClient(env: NodeJS.ProcessEnv = process.env): Docker {
  const host = env.DOCKER_HOST
  if (host && host.startsWith('unix://')) return new Docker({socketPath: host.slice('unix://'.length)})
  return new Docker()
}

export function describeEngine(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'
}

/** Pings the engine; a failure becomes one clear error that says what to do. */
export async function pingEngine(docker: Docker, timeoutMs = 5000, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const where = describeEngine(env)
  try {
    await withTimeout(docker.ping(), timeoutMs, `no answer within ${timeoutMs} ms`)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    const reason =
      code === 'ENOENT'
        ? 'Docker socket not found'
        : code === 'EACCES'
          ? 'Permission denied accessing Docker'
          : code === 'ECONNREFUSED'
            ? 'Docker is not accepting connections'
            : `Cannot connect to Docker (${(error as Error).message})`
    const actions =
      code === 'EACCES'
        ? ['Add your user to the docker group (then log in again), or run occ with access to the socket.']
        : ['Start Docker (e.g. `sudo systemctl start docker`) or set DOCKER_HOST to a reachable engine.']
    throw new EngineUnreachableError(`${reason} at ${where}.`, {actions, cause: error})
  }
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(message), {code: 'ETIMEDOUT'})), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export function isNotFound(error: unknown): boolean {
  return (error as {statusCode?: number})?.statusCode === 404
}

/** True when a Docker call failed because the engine itself is gone (not a 4xx/5xx answer). */
export function isConnectionError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code
  return code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' || code === 'ECONNRESET' || code === 'EPIPE'
}
