/** Runs every bench/*.bench.ts in turn (each prints a JSON summary line). `npm run bench`. */
import {readdirSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {execa} from 'execa'

const dir = path.dirname(fileURLToPath(import.meta.url))
const only = process.argv.slice(2)
const files = readdirSync(dir)
  .filter((file) => file.endsWith('.bench.ts'))
  .filter((file) => only.length === 0 || only.some((name) => file.includes(name)))
  .sort()
let failed = 0
for (const file of files) {
  console.log(`\n== ${file}`)
  const result = await execa(process.execPath, ['--import', 'tsx', path.join(dir, file)], {reject: false, stdio: 'inherit'})
  if (result.exitCode !== 0) failed++
}

process.exitCode = failed > 0 ? 1 : 0
