import * as z from 'zod'

import type {ContainerUpdateResult} from './container-update.js'
import {brokerHealthSchema, opencodeHealthSchema} from './status-schema.js'

const imageFactsSchema = z.strictObject({
  id: z.string().describe("The image's ID (sha256:…)."),
  digest: z.string().nullable().describe('Its registry digest (sha256:…) in the configured repository; null for an image that came from no registry.'),
  version: z.string().nullable().describe('Its org.opencode-cloud.version label.'),
})

/** What `occ update container --json` prints on success (errors: schemas/error.schema.json, with rolledBack). */
export const containerUpdateResultSchema = z
  .strictObject({
    action: z.enum(['update', 'rollback']),
    changed: z.boolean().describe('Whether the sandbox now runs another image (false: already up to date).'),
    rolledBack: z.boolean().describe('Always false on success; a failed update that rolled back is an error with rolledBack true.'),
    message: z.string(),
    image: z.string().describe('The configured image (config image).'),
    rollbackImage: z.string().describe("This instance's rollback tag: the image the sandbox ran before the last update."),
    from: imageFactsSchema.describe('The image the sandbox ran before.'),
    to: imageFactsSchema.describe('The image it runs now.'),
    container: z.string(),
    containerId: z.string(),
    repair: z.string().optional().describe('What occ set right first, when an earlier update had been interrupted.'),
    pruned: z.array(z.string()).describe('Dangling images of this repository removed afterwards.'),
    readiness: z.strictObject({opencode: opencodeHealthSchema, broker: brokerHealthSchema, elapsedMs: z.number()}).optional(),
    durationMs: z.number().int().nonnegative(),
  })
  .meta({description: 'The result of occ update container (and --rollback).', title: 'update-container-result'})

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const sameShape: Same<z.output<typeof containerUpdateResultSchema>, ContainerUpdateResult> = true
void sameShape
