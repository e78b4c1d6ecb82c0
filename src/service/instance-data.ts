import type Docker from 'dockerode'

import {INSTANCE_LABEL, type ResourceNames} from '../config/instance.js'
import {createDockerClient, pingEngine} from '../docker/connection.js'
import {OccError, errorMessage} from '../errors.js'

export interface InstanceDataRemoval {
  container: 'absent' | 'removed'
  containerName: string
  volumesRemoved: string[]
  volumesAbsent: string[]
}

/**
 * `uninstall --volumes`: removes this instance's container, then this instance's volumes. Docker
 * refuses to remove a volume a container still uses, even a stopped one, so the container goes
 * first (the Rust occ only stops it, and its --volumes then fails). Only the volume names derived
 * from this instance are touched, and a volume labelled for another instance is refused.
 */
export async function removeInstanceData(names: ResourceNames, docker: Docker = createDockerClient()): Promise<InstanceDataRemoval> {
  const result: InstanceDataRemoval = {container: 'absent', containerName: names.container, volumesAbsent: [], volumesRemoved: []}
  await pingEngine(docker)

  // The old container an interrupted update container kept aside is this instance's too.
  for (const name of [names.container, names.keptContainer]) {
    const container = docker.getContainer(name)
    const info = await container.inspect().catch(notFoundAsUndefined)
    if (!info) continue
    if (info.State.Running) await container.stop({t: 30}).catch(ignoreStatus(304, 404))
    await container.remove({force: true, v: true}).catch(ignoreStatus(404))
    if (name === names.container) result.container = 'removed'
  }

  for (const name of Object.values(names.volumes)) {
    const volume = docker.getVolume(name)
    const details = await volume.inspect().catch(notFoundAsUndefined)
    if (!details) {
      result.volumesAbsent.push(name)
      continue
    }

    const owner = details.Labels?.[INSTANCE_LABEL]
    if (owner !== undefined && owner !== (names.instance ?? '')) {
      throw new OccError('VOLUME_NOT_OURS', `Volume ${name} is labelled for sandbox instance '${owner}', not this one; it was left alone.`)
    }

    try {
      await volume.remove()
    } catch (error) {
      if (statusOf(error) === 404) {
        result.volumesAbsent.push(name)
        continue
      }

      throw new OccError('VOLUME_IN_USE', `Could not remove volume ${name}: ${errorMessage(error)}`, {
        actions: [`See which container uses it: docker ps -a --filter volume=${name}`],
        cause: error,
      })
    }

    result.volumesRemoved.push(name)
  }

  return result
}

function statusOf(error: unknown): number | undefined {
  return (error as {statusCode?: number})?.statusCode
}

function notFoundAsUndefined(error: unknown): undefined {
  if (statusOf(error) === 404) return undefined
  throw error
}

function ignoreStatus(...codes: number[]) {
  return (error: unknown): void => {
    if (!codes.includes(statusOf(error) ?? -1)) throw error
  }
}
