import type Docker from 'dockerode'

import {DEFAULT_IMAGE, DOCKER_HUB_IMAGE} from '../config/schema.js'
import {OccError, errorMessage} from '../errors.js'
import {isNotFound} from './connection.js'

export type PullProgress = (message: string) => void

export async function imageExists(docker: Docker, ref: string): Promise<boolean> {
  try {
    await docker.getImage(ref).inspect()
    return true
  } catch (error) {
    if (isNotFound(error)) return false
    throw error
  }
}

/**
 * Uses the image when it is present, else pulls it. The published image falls back to Docker
 * Hub and is then tagged with its ghcr name, so the container is created from the name we asked for.
 */
export async function ensureImage(docker: Docker, ref: string, onProgress: PullProgress): Promise<'present' | 'pulled'> {
  if (await imageExists(docker, ref)) return 'present'
  const sources = ref === DEFAULT_IMAGE ? [DEFAULT_IMAGE, DOCKER_HUB_IMAGE] : [ref]
  const failures: string[] = []
  for (const source of sources) {
    try {
      onProgress(`Pulling ${source}…`)
      await pull(docker, source, onProgress)
      if (source !== ref) await docker.getImage(source).tag(splitRef(ref))
      return 'pulled'
    } catch (error) {
      failures.push(`${source}: ${errorMessage(error)}`)
    }
  }

  throw new OccError('IMAGE_UNAVAILABLE', `Could not get the sandbox image ${ref}.\n${failures.join('\n')}`, {
    actions: [
      'Check that this machine can reach the registry, then run occ start again.',
      'Or use an image that is present locally: occ config set image <ref>',
    ],
  })
}

async function pull(docker: Docker, ref: string, onProgress: PullProgress): Promise<void> {
  const stream = await docker.pull(ref)
  let last = 0
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null, output: Array<{error?: string}>) => {
        const failed = output?.find((event) => event.error)
        if (error || failed) reject(error ?? new Error(failed?.error))
        else resolve()
      },
      (event: {id?: string; progress?: string; status?: string}) => {
        const now = Date.now()
        // Progress events arrive many times a second; a line every second is enough.
        if (now - last < 1000 && event.status !== 'Download complete') return
        last = now
        onProgress([event.id, event.status, event.progress].filter(Boolean).join(' '))
      },
    )
  })
}

function splitRef(ref: string): {repo: string; tag: string} {
  const slash = ref.lastIndexOf('/')
  const colon = ref.lastIndexOf(':')
  if (colon > slash) return {repo: ref.slice(0, colon), tag: ref.slice(colon + 1)}
  return {repo: ref, tag: 'latest'}
}
