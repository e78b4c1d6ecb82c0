import * as z from 'zod'

import {OCC_ERROR_CODES, type OccErrorJson} from './errors.js'
import {updateOutcomeSchema} from './runtime/update/outcome-schema.js'

/** What every occ command prints on stdout under --json when it fails (schemas/error.schema.json). */
export const errorJsonSchema = z
  .strictObject({
    error: z.strictObject({
      code: z.enum(OCC_ERROR_CODES as [string, ...string[]]).describe('Stable machine-readable reason (the table in src/errors.ts).'),
      message: z.string().describe('For people: what went wrong.'),
      actions: z.array(z.string()).describe('What to do next; commands named here are real occ commands.'),
      exitCode: z.number().int().min(1).max(255).describe("occ's exit code for this error."),
      bug: z.boolean().describe('True when this is a bug in occ (the message says how to report it), false for a known error.'),
      name: z.string().describe('The error class, for debugging.'),
      outcome: updateOutcomeSchema.optional().describe('For update errors: what the update did before it failed.'),
      rolledBack: z.boolean().optional().describe('For update container errors: true when the sandbox runs its previous container again.'),
    }),
  })
  .meta({description: 'The JSON error every occ command prints on stdout under --json.', title: 'occ-error'})

// The schema and the TypeScript type must describe the same object.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const sameShape: Same<Omit<z.output<typeof errorJsonSchema>['error'], 'code' | 'outcome' | 'rolledBack'>, Omit<OccErrorJson, 'code'>> = true
void sameShape
