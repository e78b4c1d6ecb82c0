import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {JSON_SCHEMAS, renderJsonSchemas} from '../../src/json-schemas.js'

const SCHEMAS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../schemas')
const FIX = 'Regenerate with `npm run schemas` and commit schemas/.'

describe('schemas/: the committed JSON Schemas match the zod schemas', () => {
  it('has no drift: each generated schema equals the committed file', async () => {
    for (const [name, text] of renderJsonSchemas()) {
      const committed = await fs.readFile(path.join(SCHEMAS_DIR, name), 'utf8').catch(() => undefined)
      assert.ok(committed !== undefined, `schemas/${name} is missing. ${FIX}`)
      assert.equal(committed, text, `schemas/${name} drifted from its zod schema. ${FIX}`)
    }
  })

  it('has no orphan: every schemas/*.schema.json has an entry in src/json-schemas.ts', async () => {
    const generated = renderJsonSchemas()
    for (const name of await fs.readdir(SCHEMAS_DIR)) {
      if (name.endsWith('.schema.json')) assert.ok(generated.has(name), `schemas/${name} has no entry in src/json-schemas.ts`)
    }
  })

  it('covers the command-file contract, with unique names', () => {
    const names = JSON_SCHEMAS.map((entry) => entry.name)
    assert.equal(new Set(names).size, names.length)
    for (const name of ['update-command', 'update-command-result', 'listener-status']) assert.ok(names.includes(name), name)
  })

  it('notices a change (a schema edited without regenerating fails)', async () => {
    const {updateResultSchema} = await import('../../src/protocol/schemas.js')
    const changed = renderJsonSchemas([{name: 'update-command-result', schema: updateResultSchema.extend({extra: updateResultSchema.shape.message})}])
    const committed = await fs.readFile(path.join(SCHEMAS_DIR, 'update-command-result.schema.json'), 'utf8')
    assert.notEqual(changed.get('update-command-result.schema.json'), committed)
  })
})
