/**
 * The update client's cases (cases.ts) on Node, here under mocha, and the same cases on the other
 * runtimes the package supports: Bun (the web UI's runtime) and Node 20 (the oldest its engines
 * allow; the system /usr/bin/node on these machines, or OCC_NODE20). One process per runtime runs
 * them all (run-cases.ts), and each case's outcome there is its own test.
 */
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {cases} from './cases.js'
import {BUN, NODE20} from './runtimes.js'

const here = path.dirname(fileURLToPath(import.meta.url))

describe('update client (Node)', function () {
  this.timeout(20_000)
  for (const testCase of cases) it(testCase.name, () => testCase.run())
})

const RUNTIMES: Array<{name: string; argv: string[]; version: RegExp}> = [
  {argv: [BUN], name: 'Bun', version: /^bun \d+\.\d+\.\d+/},
  // tsx only strips the types (the cases import the sources); what runs is Node 20's own runtime.
  {argv: [NODE20, '--import', 'tsx'], name: 'Node 20', version: /^node 20\.\d+\.\d+$/},
]

for (const runtime of RUNTIMES) {
  describe(`update client (${runtime.name})`, function () {
    this.timeout(20_000)
    const outcomes = new Map<string, {ok: boolean; error?: string}>()
    let ranOn: string | null = null

    before(async function () {
      this.timeout(120_000)
      const [program, ...args] = runtime.argv as [string, ...string[]]
      const stdout = await new Promise<string>((resolve) => {
        // Exit 1 when a case failed: the per-case tests below say which.
        execFile(program, [...args, path.join(here, 'run-cases.ts')], {cwd: here, timeout: 110_000}, (error, out, stderr) => {
          if (error && !out.includes('"done":true')) resolve(`${out}\n${JSON.stringify({error: `${error.message}\n${stderr}`, name: '(runtime)', ok: false})}`)
          else resolve(out)
        })
      })
      for (const line of stdout.split('\n')) {
        if (!line.startsWith('{')) continue
        const record = JSON.parse(line) as {name?: string; ok?: boolean; error?: string; runtime?: string; done?: boolean}
        if (record.done) ranOn = record.runtime ?? null
        else if (record.name) outcomes.set(record.name, {error: record.error, ok: record.ok === true})
      }
    })

    it(`ran on ${runtime.name}`, () => {
      assert.match(String(ranOn), runtime.version, `${runtime.argv[0]}: ${JSON.stringify([...outcomes])}`)
    })

    for (const testCase of cases) {
      it(testCase.name, () => {
        const outcome = outcomes.get(testCase.name)
        assert.ok(outcome, `no outcome from ${runtime.name} for this case; it said: ${JSON.stringify(outcomes.get('(runtime)'))}`)
        assert.ok(outcome.ok, outcome.error)
      })
    }
  })
}
