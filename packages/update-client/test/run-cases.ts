/**
 * Runs the client's cases outside mocha, on another runtime: `bun test/run-cases.ts [name...]`,
 * `node --import tsx test/run-cases.ts [name...]` (Node 20, the oldest the package supports). One
 * JSON line per case ({name, ok, error?}), then {done, runtime, failed}; exit 1 when any failed.
 * Started by client.test.ts.
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

const bun = (globalThis as {Bun?: {version: string}}).Bun?.version
console.log(JSON.stringify({done: true, failed, runtime: bun === undefined ? `node ${process.versions.node}` : `bun ${bun}`}))
process.exit(failed > 0 ? 1 : 0)
