import * as z from 'zod'

import {UPDATE_STEPS, type UpdateOutcome} from '../update-types.js'

const stepTimingSchema = z.strictObject({
  step: z.enum(UPDATE_STEPS),
  durationMs: z.number().int().nonnegative(),
  status: z.enum(['done', 'failed', 'skipped']),
  detail: z.string().optional().describe('For people: what the step found or did.'),
})

/** What `occ update opencode --json` prints (on errors: inside error.outcome). */
export const updateOutcomeSchema = z
  .strictObject({
    status: z.enum(['success', 'error']),
    changed: z.boolean().describe('Whether the installed opencode changed.'),
    message: z.string(),
    ref: z.strictObject({branch: z.string().optional(), commit: z.string().optional()}).describe('The target: the branch asked for and the commit it resolved to.'),
    fromCommit: z.string().optional().describe('The commit installed before.'),
    toCommit: z.string().optional().describe('The commit installed after (the old one when nothing changed or it rolled back).'),
    rolledBack: z.boolean(),
    steps: z.array(stepTimingSchema).describe('Every step of the plan, in order, with its duration (empty when the host ran it).'),
    startedAt: z.iso.datetime(),
    finishedAt: z.iso.datetime(),
    fromVersion: z.string().optional(),
    toVersion: z.string().optional(),
    restartMethod: z.enum(['container', 'supervisor', 'systemd']).optional(),
    durationMs: z.number().int().nonnegative().optional(),
    error: z.strictObject({code: z.string(), exitCode: z.number().int(), actions: z.array(z.string())}).optional(),
  })
  .meta({description: 'The outcome of occ update opencode (and of an update the listener ran).', title: 'update-opencode'})

// The schema and the TypeScript type must describe the same object.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const sameShape: Same<z.output<typeof updateOutcomeSchema>, UpdateOutcome> = true
void sameShape
