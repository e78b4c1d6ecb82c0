/**
 * Writes schemas/*.schema.json from the registry in src/json-schemas.ts, and removes generated
 * files whose entry is gone. Run: npm run schemas (tsx scripts/schemas.ts).
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {renderJsonSchemas} from '../src/json-schemas.js'
import {renderClientSchemaModule} from '../packages/update-client/scripts/render-schemas.js'

const outDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../schemas')
await fs.mkdir(outDir, {recursive: true})
const files = renderJsonSchemas()
for (const [name, text] of files) {
  await fs.writeFile(path.join(outDir, name), text)
  console.log(`wrote schemas/${name}`)
}

for (const name of await fs.readdir(outDir)) {
  if (name.endsWith('.schema.json') && !files.has(name)) {
    await fs.rm(path.join(outDir, name))
    console.log(`removed schemas/${name} (no longer in src/json-schemas.ts)`)
  }
}

// The update client (packages/update-client) validates against the same schemas, embedded.
const clientModule = path.resolve(outDir, '../packages/update-client/src/schemas.generated.ts')
await fs.writeFile(clientModule, renderClientSchemaModule())
console.log('wrote packages/update-client/src/schemas.generated.ts')
