/**
 * The detached refresher `occ status` starts (image-check.ts): asks the registry for the digest
 * of the image's tag through the Engine (registryDigest), writes the answer — or why there is
 * none — to the cache atomically, removes its claim and exits. Bounded by REFRESH_TIMEOUT_MS.
 * Run as `node image-check-refresh.js '<json>'`; nothing to see on stdout or stderr.
 */
import fs from 'node:fs/promises'

import * as z from 'zod'

import {writeFileAtomic} from '../config/store.js'
import {createDockerClient} from '../docker/connection.js'
import {registryDigest} from '../docker/image.js'
import {errorMessage} from '../errors.js'
import {type ImageCheckRecord, imageCheckRecordSchema, REFRESH_TIMEOUT_MS} from './image-check.js'

const argsSchema = z.strictObject({
  cache: z.string().min(1),
  claim: z.string().min(1),
  image: z.string().min(1).max(512),
  localDigest: z.string().nullable(),
})

async function main(): Promise<void> {
  const args = argsSchema.parse(JSON.parse(process.argv[2] ?? ''))
  const write = async (answer: Pick<ImageCheckRecord, 'error' | 'remoteDigest'>): Promise<void> => {
    const record = imageCheckRecordSchema.parse({
      ...answer,
      checkedAt: new Date().toISOString(),
      error: answer.error === null ? null : answer.error.slice(0, 500),
      image: args.image,
      localDigest: args.localDigest && /^sha256:[0-9a-f]{64}$/.test(args.localDigest) ? args.localDigest : null,
    })
    await writeFileAtomic(args.cache, `${JSON.stringify(record)}\n`)
    await fs.rm(args.claim, {force: true})
  }

  const controller = new AbortController()
  const timer = setTimeout(() => {
    controller.abort()
    void write({error: `the registry gave no answer within ${REFRESH_TIMEOUT_MS / 1000} s`, remoteDigest: null}).finally(() => process.exit(0))
  }, REFRESH_TIMEOUT_MS)
  try {
    const remoteDigest = await registryDigest(createDockerClient(), args.image, {signal: controller.signal})
    await write({error: null, remoteDigest})
  } catch (error) {
    if (!controller.signal.aborted) await write({error: errorMessage(error).split('\n')[0], remoteDigest: null})
  } finally {
    if (!controller.signal.aborted) clearTimeout(timer)
  }
}

main().then(
  () => process.exit(0),
  () => process.exit(1),
)
