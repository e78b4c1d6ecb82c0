/**
 * Runs the client's cases on Bun: `bun test/bun-run.ts [name...]`. One JSON line per case
 * ({name, ok, error?}); exit 1 when any failed. Started by client.test.ts.
 */
import {cases} from './cases.js'

const only = new Set(process.argv.slice(2))
let failed = 0
for (const testCase of cases) {
  if (only.size > 0 && !only.has(testCase.name)) continue
  try {
    await testCase.run()
    console.log(JSON.stringify({name: testCase.name, ok: true}))
  } catch (error) {
    failed++
    console.log(JSON.stringify({error: error instanceof Error ? (error.stack ?? error.message) : String(error), name: testCase.name, ok: false}))
  }
}

console.log(JSON.stringify({bun: (globalThis as {Bun?: {version: string}}).Bun?.version ?? null, done: true, failed}))
process.exit(failed > 0 ? 1 : 0)
