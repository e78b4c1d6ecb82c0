/**
 * The client and occ agree on the contract: the embedded JSON Schemas are exactly what occ
 * generates from its zod schemas, the client's validator compiles every schema occ generates and
 * accepts exactly what zod accepts, the branch rules in the schema are the host's, and the
 * constants and types match. Node only (it imports occ's sources).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import fc from 'fast-check'
import type * as z from 'zod'

import {CONTAINER_COMMANDS_DIR} from '../../../src/config/mounts.js'
import {LISTENER_FILE as OCC_LISTENER_FILE, MAX_REQUEST_BYTES, REQUEST_FILE as OCC_REQUEST_FILE, RESULT_FILE as OCC_RESULT_FILE} from '../../../src/protocol/command-files.js'
import {STALE_AFTER_INTERVALS as OCC_STALE} from '../../../src/protocol/listener-status.js'
import {BRANCH_CHARSET, BRANCH_RULES, MAX_BRANCH_LENGTH, validateBranch} from '../../../src/protocol/refs.js'
import {checkUpdateCommand, listenerStatusSchema, MAX_REQUEST_ID_LENGTH, requestIdFits, updateCommandSchema, updateResultSchema} from '../../../src/protocol/schemas.js'
import {UPDATE_STEPS} from '../../../src/runtime/update-types.js'
import {CLIENT_SCHEMAS, renderClientSchemaModule} from '../scripts/render-schemas.js'
import {buildUpdateCommand, compileSchema, DEFAULT_COMMANDS_DIR, LISTENER_FILE, MAX_FILE_BYTES, REQUEST_FILE, RESULT_FILE, STALE_AFTER_INTERVALS} from '../src/index.js'
import * as embedded from '../src/schemas.generated.js'
import type {ListenerStatus, UpdateCommand, UpdateResult, UpdateStep} from '../src/types.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const SCHEMAS_DIR = path.resolve(here, '../../../schemas')

// Compile-time: the client's types have the same fields, and mutually assignable types, as zod's.
type Mutual<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
type Same<A, B> = Mutual<A, B> extends true ? (Mutual<keyof A, keyof B> extends true ? true : false) : false
const typesAgree: [
  Same<UpdateResult, z.output<typeof updateResultSchema>>,
  Same<ListenerStatus, z.output<typeof listenerStatusSchema>>,
  Same<UpdateCommand, z.input<typeof updateCommandSchema>>,
  Same<UpdateStep, (typeof UPDATE_STEPS)[number]>,
] = [true, true, true, true]

const timestamp = fc.date({max: new Date('2099-12-31T00:00:00Z'), min: new Date('2000-01-01T00:00:00Z'), noInvalidDate: true}).map((d) => d.toISOString())
const json = fc.jsonValue({maxDepth: 2})
/**
 * A field's value: usually of the right kind, sometimes anything. listener.json has 16 fields, so
 * one junk value in 13 left only ~1.6 % of samples valid (below the check after the property now
 * and then); one in 30 still puts junk into most samples.
 */
const either = <T>(good: fc.Arbitrary<T>) => fc.oneof({arbitrary: good, weight: 30}, {arbitrary: json, weight: 1})
const branchish = fc.stringMatching(/^[A-Za-z0-9._/-]{0,12}$/).chain((s) => fc.constantFrom(s, `${s}..x`, `.${s}`, `${s}.lock`, `-${s}`, 'HEAD', `${s}/`, `a//${s}`))

/**
 * Records built from per-field arbitraries: the usual fields mostly present, others left out; at
 * the top level also unknown fields and values that are not objects at all.
 */
function objects(fields: Record<string, fc.Arbitrary<unknown>>, usuallyPresent: string[] = [], nested = false): fc.Arbitrary<unknown> {
  const record = fc.oneof({arbitrary: fc.record(fields, {requiredKeys: usuallyPresent}), weight: 3}, {arbitrary: fc.record(fields, {requiredKeys: []}), weight: 1})
  if (nested) return record
  return fc.oneof(
    {arbitrary: record, weight: 8},
    {arbitrary: fc.tuple(record, fc.string({maxLength: 8}), json).map(([r, k, v]) => ({...r, [k]: v})), weight: 2},
    {arbitrary: json, weight: 1},
  )
}

const samples: Record<keyof typeof CLIENT_SCHEMAS, {zod: z.ZodType; values: fc.Arbitrary<unknown>}> = {
  listenerStatus: {
    values: objects({
      disabled_reason: either(fc.string()),
      heartbeat_at: either(fc.oneof({arbitrary: timestamp, weight: 6}, {arbitrary: fc.constantFrom('2026-02-30T00:00:00Z', '2026-01-01T00:00:00+00:00', '2026-01-01'), weight: 1})),
      heartbeat_interval_ms: either(fc.oneof({arbitrary: fc.integer({max: 100_000, min: -5}), weight: 5}, {arbitrary: fc.double({max: 10, min: 0}), weight: 1})),
      next_command_at: either(timestamp),
      pid: either(fc.integer({max: 2 ** 31, min: -1})),
      request_id: either(fc.string()),
      started_at: either(timestamp),
      state: either(fc.constantFrom('idle', 'updating', 'disabled', 'idle', 'updating', 'busy')),
      step: either(fc.constantFrom(...UPDATE_STEPS, 'compile')),
      step_started_at: either(timestamp),
      update_started_at: either(timestamp),
      version: either(fc.string()),
      queue: either(fc.array(objects({claimed_at: either(timestamp), request_id: either(fc.string({maxLength: 210}))}, ['claimed_at'], true), {maxLength: 9})),
      opencode_health: either(objects({checked_at: either(timestamp), detail: either(fc.string({maxLength: 210})), state: either(fc.constantFrom('healthy', 'unhealthy', 'unknown', 'sick'))}, ['state', 'checked_at'], true)),
      pending_result: either(
        objects(
          {next_retry_at: either(timestamp), reason: either(fc.string({maxLength: 510})), request_id: either(fc.string()), since: either(timestamp), status: either(fc.constantFrom('success', 'error', 'maybe'))},
          ['status', 'since', 'reason', 'next_retry_at'],
          true,
        ),
      ),
    }, ['pid', 'version', 'started_at', 'heartbeat_at', 'heartbeat_interval_ms', 'state']),
    zod: listenerStatusSchema,
  },
  updateCommand: {
    values: objects({
      branch: either(fc.oneof(branchish, fc.constant(null), fc.string({maxLength: 210, minLength: 199}))),
      command: either(fc.constantFrom('update_opencode', 'update_everything')),
      commit: either(fc.oneof(fc.stringMatching(/^[0-9a-fA-Fg]{5,42}$/), fc.constant(null))),
      request_id: either(fc.oneof(fc.string(), fc.string({maxLength: 202, minLength: 198, unit: 'grapheme'}), fc.constant(null))),
    }),
    zod: updateCommandSchema,
  },
  updateResult: {
    values: objects({
      changed: either(fc.boolean()),
      error_code: either(fc.constantFrom('update_failed', 'interrupted', 'invalid_ref', 'busy', 'oops')),
      finished_at: either(timestamp),
      from_commit: either(fc.string()),
      message: either(fc.oneof(fc.string(), fc.string({maxLength: 4100, minLength: 4090}))),
      request_id: either(fc.string()),
      started_at: either(timestamp),
      status: either(fc.constantFrom('success', 'error', 'ok')),
      to_commit: either(fc.string()),
      rolled_back: either(fc.boolean()),
      code: either(fc.constantFrom('UPDATE_ROLLED_BACK', 'BUILD_FAILED', 'lower_case', '9LIVES', `A${'B'.repeat(63)}`, `A${'B'.repeat(64)}`)),
    }, ['status', 'message', 'started_at', 'finished_at']),
    zod: updateResultSchema,
  },
}

describe('update client: the contract is occ’s', () => {
  it('embeds exactly the JSON Schemas occ generates (src/schemas.generated.ts has no drift)', async () => {
    const committed = await fs.readFile(path.resolve(here, '../src/schemas.generated.ts'), 'utf8')
    assert.equal(committed, renderClientSchemaModule(), 'Regenerate with `npm run schemas` and commit packages/update-client/src/schemas.generated.ts.')
    for (const [name, file] of Object.entries(CLIENT_SCHEMAS)) {
      const onDisk = JSON.parse(await fs.readFile(path.join(SCHEMAS_DIR, file), 'utf8'))
      assert.deepEqual(embedded[`${name}Schema` as keyof typeof embedded], onDisk, file)
    }
  })

  it('compiles every schema in schemas/, and refuses a keyword it does not check', async () => {
    const files = (await fs.readdir(SCHEMAS_DIR)).filter((name) => name.endsWith('.schema.json'))
    assert.ok(files.length >= 8)
    for (const file of files) compileSchema(JSON.parse(await fs.readFile(path.join(SCHEMAS_DIR, file), 'utf8')))
    assert.throws(() => compileSchema({properties: {a: {$ref: '#/$defs/a'}}, type: 'object'}), /unsupported JSON Schema keyword '\$ref'/)
    assert.throws(() => compileSchema({format: 'email', type: 'string'}), /unsupported format/)
  })

  for (const [name, {zod, values}] of Object.entries(samples)) {
    it(`accepts exactly what occ's zod schema accepts: ${CLIENT_SCHEMAS[name as keyof typeof CLIENT_SCHEMAS]}`, () => {
      const validate = compileSchema(embedded[`${name}Schema` as keyof typeof embedded])
      let accepted = 0
      fc.assert(
        fc.property(values, (value) => {
          const ours = validate(value).ok
          if (ours) accepted++
          assert.equal(ours, zod.safeParse(value).success, `${JSON.stringify(value)}: client ${ours ? 'accepts' : 'refuses'}, zod does not agree`)
        }),
        {numRuns: 3000},
      )
      assert.ok(accepted > 50, `only ${accepted} samples were valid: the generator does not reach valid values`)
    })
  }

  it("carries the host's branch rules: the schema's pattern agrees with validateBranch", () => {
    fc.assert(
      fc.property(fc.oneof(branchish, fc.string({maxLength: 30})), (branch) => {
        const bySchema = branch.length <= MAX_BRANCH_LENGTH && BRANCH_CHARSET.test(branch) && BRANCH_RULES.test(branch)
        assert.equal(bySchema, validateBranch(branch).ok, JSON.stringify(branch))
      }),
      {numRuns: 5000},
    )
  })

  it('counts request_id as the host does (code points, requestIdFits): every id the client sends is accepted and echoed', () => {
    const validate = compileSchema(embedded.updateCommandSchema)
    // Around the cap, in code points that take one or two UTF-16 units, lone surrogates included.
    const ids = fc.oneof(
      fc.string({maxLength: 210, minLength: 190, unit: 'binary'}),
      fc.string({maxLength: 210, minLength: 95, unit: fc.constantFrom('a', '\u{1F600}', '\u{10FFFF}', '\uD800', '\uDC00', 'é')}),
    )
    fc.assert(
      fc.property(ids, (id) => {
        const client = validate({command: 'update_opencode', request_id: id}).ok
        assert.equal(requestIdFits(id), client, JSON.stringify(id))
        assert.equal(checkUpdateCommand({command: 'update_opencode', request_id: id}).ok, client, JSON.stringify(id))
        // Refused for another reason, the host still names an id the client could have sent.
        const refused = checkUpdateCommand({branch: 'a..b', command: 'update_opencode', request_id: id})
        assert.equal(refused.ok ? 'accepted' : refused.requestId, client ? id : undefined, JSON.stringify(id))
      }),
      {numRuns: 2000},
    )
    const wide = '\u{1F600}'.repeat(MAX_REQUEST_ID_LENGTH) // 200 code points, 400 UTF-16 units
    assert.equal(buildUpdateCommand({requestId: wide}).request_id, wide)
    assert.equal(checkUpdateCommand({command: 'update_opencode', request_id: wide}).ok, true)
    assert.throws(() => buildUpdateCommand({requestId: `${wide}a`}), /request_id/)
    assert.equal(checkUpdateCommand({command: 'update_opencode', request_id: `${wide}a`}).ok, false)
  })

  it('uses the same file names, commands dir, size cap and staleness rule', () => {
    assert.equal(typesAgree.every(Boolean), true)
    assert.deepEqual([REQUEST_FILE, RESULT_FILE, LISTENER_FILE], [OCC_REQUEST_FILE, OCC_RESULT_FILE, OCC_LISTENER_FILE])
    assert.equal(DEFAULT_COMMANDS_DIR, CONTAINER_COMMANDS_DIR)
    assert.equal(MAX_FILE_BYTES, MAX_REQUEST_BYTES)
    assert.equal(STALE_AFTER_INTERVALS, OCC_STALE)
  })
})
