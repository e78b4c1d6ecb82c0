import * as z from 'zod'

import {configSchema} from './config/schema.js'
import {errorJsonSchema} from './error-schema.js'
import {listenerStatusSchema, updateCommandSchema, updateResultSchema} from './protocol/schemas.js'
import {statusViewSchema} from './runtime/status-schema.js'
import {installResultSchema, uninstallResultSchema} from './service/result-schema.js'
import {updateOutcomeSchema} from './runtime/update/outcome-schema.js'
import {containerUpdateResultSchema} from './runtime/container-update-schema.js'
import {
  resetIotpResultSchema,
  userAddResultSchema,
  userEnabledResultSchema,
  userListResultSchema,
  userPasswdResultSchema,
  userRemoveResultSchema,
} from './runtime/users/schemas.js'

export interface JsonSchemaEntry {
  /** File name in schemas/ without `.schema.json`. */
  name: string
  schema: z.ZodType
  /** Describe what is read ('input', e.g. defaults optional) or what is written ('output', the default). */
  io?: 'input' | 'output'
}

/**
 * Every contract with a JSON Schema in schemas/. Add a line here (e.g. a command's --json result),
 * then run `npm run schemas`; test/unit/schemas.test.ts fails when a committed file drifts.
 */
export const JSON_SCHEMAS: JsonSchemaEntry[] = [
  {io: 'input', name: 'update-command', schema: updateCommandSchema},
  {name: 'update-command-result', schema: updateResultSchema},
  {name: 'listener-status', schema: listenerStatusSchema},
  {name: 'status', schema: statusViewSchema},
  {io: 'input', name: 'config', schema: configSchema},
  {name: 'install-result', schema: installResultSchema},
  {name: 'uninstall-result', schema: uninstallResultSchema},
  {name: 'update-outcome', schema: updateOutcomeSchema},
  {name: 'update-container-result', schema: containerUpdateResultSchema},
  {name: 'user-add-result', schema: userAddResultSchema},
  {name: 'user-remove-result', schema: userRemoveResultSchema},
  {name: 'user-list-result', schema: userListResultSchema},
  {name: 'user-passwd-result', schema: userPasswdResultSchema},
  {name: 'user-enabled-result', schema: userEnabledResultSchema},
  {name: 'reset-iotp-result', schema: resetIotpResultSchema},
  {name: 'error', schema: errorJsonSchema},
]

/** The text of each schemas/<name>.schema.json, exactly as committed. */
export function renderJsonSchemas(entries: JsonSchemaEntry[] = JSON_SCHEMAS): Map<string, string> {
  const files = new Map<string, string>()
  for (const entry of entries) {
    const schema = z.toJSONSchema(entry.schema, {io: entry.io ?? 'output'})
    files.set(`${entry.name}.schema.json`, `${JSON.stringify(schema, null, 2)}\n`)
  }

  return files
}
