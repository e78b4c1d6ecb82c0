/**
 * The update client's cases (cases.ts) on Node, here under mocha, and the same cases on Bun: one
 * Bun process runs them all (bun-run.ts), and each case's outcome there is its own test.
 */
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {cases} from './cases.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const BUN = path.resolve(here, '../../../node_modules/.bin/bun')

describe('update client (Node)', function () {
  this.timeout(20_000)
  for (const testCase of cases) it(testCase.name, () => testCase.run())
})

describe('update client (Bun)', function () {
  this.timeout(20_000)
  const outcomes = new Map<string, {ok: boolean; error?: string}>()
  let bunVersion: string | null = null

  before(async function () {
    this.timeout(120_000)
    const stdout = await new Promise<string>((resolve) => {
      // Exit 1 when a case failed: the per-case tests below say which.
      execFile(BUN, [path.join(here, 'bun-run.ts')], {cwd: here, timeout: 110_000}, (error, out, stderr) => {
        if (error && !out.includes('"done":true')) resolve(`${out}\n${JSON.stringify({error: `${error.message}\n${stderr}`, name: '(bun)', ok: false})}`)
        else resolve(out)
      })
    })
    for (const line of stdout.split('\n')) {
      if (!line.startsWith('{')) continue
      const record = JSON.parse(line) as {name?: string; ok?: boolean; error?: string; bun?: string; done?: boolean}
      if (record.done) bunVersion = record.bun ?? null
      else if (record.name) outcomes.set(record.name, {error: record.error, ok: record.ok === true})
    }
  })

  it('ran on Bun', () => {
    assert.match(String(bunVersion), /^\d+\.\d+\.\d+/, JSON.stringify([...outcomes]))
  })

  for (const testCase of cases) {
    it(testCase.name, () => {
      const outcome = outcomes.get(testCase.name)
      assert.ok(outcome, `no outcome from Bun for this case; Bun said: ${JSON.stringify(outcomes.get('(bun)'))}`)
      assert.ok(outcome.ok, outcome.error)
    })
  }
})
