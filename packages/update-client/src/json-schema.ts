/**
 * A small, strict JSON Schema validator for the subset that occ's generated schemas use (they are
 * made from occ's zod schemas by `npm run schemas`). Compiling a schema that uses any other
 * keyword throws, so a schema this validator cannot fully check is never half-checked.
 * String lengths count Unicode code points, as the spec says and as occ's zod does.
 */

export type JsonSchema = boolean | {readonly [keyword: string]: unknown}

export type Validation = {ok: false; path: string; message: string} | {ok: true}

export type Validator = (value: unknown) => Validation

/** Keywords that only describe; they never change what is valid. */
const ANNOTATIONS = new Set(['$schema', '$id', '$comment', 'title', 'description', 'default', 'examples', 'deprecated', 'readOnly', 'writeOnly'])

const CHECKED = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'enum',
  'const',
  'anyOf',
  'allOf',
  'oneOf',
  'not',
  'pattern',
  'minLength',
  'maxLength',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'format',
  'items',
  'minItems',
  'maxItems',
])

const TYPES = new Set(['array', 'boolean', 'integer', 'null', 'number', 'object', 'string'])

// RFC 3339 date-time (the shape only; occ's schemas add a stricter pattern next to it).
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/

type Check = (value: unknown, path: string) => string | undefined | {path: string; message: string}

/** Compiles a schema into a validator; throws on a keyword outside the supported subset. */
export function compileSchema(schema: JsonSchema): Validator {
  const check = compile(schema, '#')
  return (value) => {
    const problem = check(value, '')
    if (problem === undefined) return {ok: true}
    return typeof problem === 'string' ? {message: problem, ok: false, path: ''} : {...problem, ok: false}
  }
}

function compile(schema: JsonSchema, where: string): (value: unknown, path: string) => {path: string; message: string} | undefined {
  if (schema === true) return () => undefined
  if (schema === false) return (_value, path) => ({message: 'nothing is allowed here', path})
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) throw new Error(`${where}: a schema must be an object or a boolean`)

  const checks: Check[] = []
  for (const keyword of Object.keys(schema)) {
    if (!ANNOTATIONS.has(keyword) && !CHECKED.has(keyword)) throw new Error(`${where}: unsupported JSON Schema keyword '${keyword}'`)
  }

  const s = schema as Record<string, unknown>
  if (s.type !== undefined) checks.push(typeCheck(s.type, where))
  if (s.enum !== undefined) {
    if (!Array.isArray(s.enum)) throw new Error(`${where}/enum: must be an array`)
    const options = s.enum as unknown[]
    checks.push((value) => (options.some((option) => jsonEqual(option, value)) ? undefined : `must be one of ${options.map((o) => JSON.stringify(o)).join(', ')}`))
  }

  if (Object.hasOwn(s, 'const')) {
    const expected = s.const
    checks.push((value) => (jsonEqual(expected, value) ? undefined : `must be ${JSON.stringify(expected)}`))
  }

  addStringChecks(s, where, checks)
  addNumberChecks(s, where, checks)
  addObjectChecks(s, where, checks)
  addArrayChecks(s, where, checks)
  addCombinators(s, where, checks)

  return (value, path) => {
    for (const check of checks) {
      const problem = check(value, path)
      if (problem !== undefined) return typeof problem === 'string' ? {message: problem, path} : problem
    }

    return undefined
  }
}

function typeCheck(type: unknown, where: string): Check {
  const types = Array.isArray(type) ? type : [type]
  for (const name of types) if (typeof name !== 'string' || !TYPES.has(name)) throw new Error(`${where}/type: unknown type ${JSON.stringify(name)}`)
  return (value) => (types.some((name) => hasType(value, name as string)) ? undefined : `must be ${types.join(' or ')} (got ${typeOf(value)})`)
}

function addStringChecks(s: Record<string, unknown>, where: string, checks: Check[]): void {
  const isString = (value: unknown): value is string => typeof value === 'string'
  if (s.pattern !== undefined) {
    if (typeof s.pattern !== 'string') throw new Error(`${where}/pattern: must be a string`)
    // No flags, like the RegExp the pattern came from in occ's zod schema.
    const regex = new RegExp(s.pattern)
    checks.push((value) => (isString(value) && !regex.test(value) ? 'does not have the required form' : undefined))
  }

  if (s.minLength !== undefined) {
    const min = count(s.minLength, `${where}/minLength`)
    checks.push((value) => (isString(value) && codePoints(value) < min ? `must be at least ${min} characters` : undefined))
  }

  if (s.maxLength !== undefined) {
    const max = count(s.maxLength, `${where}/maxLength`)
    checks.push((value) => (isString(value) && codePoints(value) > max ? `must be at most ${max} characters` : undefined))
  }

  if (s.format !== undefined) {
    if (s.format !== 'date-time') throw new Error(`${where}/format: unsupported format ${JSON.stringify(s.format)}`)
    checks.push((value) => (isString(value) && !DATE_TIME.test(value) ? 'must be an ISO-8601 date-time' : undefined))
  }
}

function addNumberChecks(s: Record<string, unknown>, where: string, checks: Check[]): void {
  const bound = (keyword: string, fails: (value: number, limit: number) => boolean, words: string): void => {
    if (s[keyword] === undefined) return
    const limit = s[keyword]
    if (typeof limit !== 'number') throw new Error(`${where}/${keyword}: must be a number`)
    checks.push((value) => (typeof value === 'number' && fails(value, limit) ? `must be ${words} ${limit}` : undefined))
  }

  bound('minimum', (value, limit) => value < limit, 'at least')
  bound('maximum', (value, limit) => value > limit, 'at most')
  bound('exclusiveMinimum', (value, limit) => value <= limit, 'greater than')
  bound('exclusiveMaximum', (value, limit) => value >= limit, 'less than')
}

function addObjectChecks(s: Record<string, unknown>, where: string, checks: Check[]): void {
  const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value)
  const properties = new Map<string, ReturnType<typeof compile>>()
  if (s.properties !== undefined) {
    if (!isObject(s.properties)) throw new Error(`${where}/properties: must be an object`)
    for (const [name, sub] of Object.entries(s.properties)) properties.set(name, compile(sub as JsonSchema, `${where}/properties/${name}`))
  }

  if (s.required !== undefined) {
    if (!Array.isArray(s.required) || s.required.some((name) => typeof name !== 'string')) throw new Error(`${where}/required: must be an array of names`)
    const required = s.required as string[]
    checks.push((value) => {
      if (!isObject(value)) return undefined
      const missing = required.find((name) => !Object.hasOwn(value, name))
      return missing === undefined ? undefined : `is missing the field '${missing}'`
    })
  }

  if (properties.size > 0) {
    checks.push((value, path) => {
      if (!isObject(value)) return undefined
      for (const [name, check] of properties) {
        if (!Object.hasOwn(value, name)) continue
        const problem = check(value[name], `${path}/${name}`)
        if (problem) return problem
      }

      return undefined
    })
  }

  if (s.additionalProperties !== undefined) {
    const extra = compile(s.additionalProperties as JsonSchema, `${where}/additionalProperties`)
    const forbidden = s.additionalProperties === false
    checks.push((value, path) => {
      if (!isObject(value)) return undefined
      for (const name of Object.keys(value)) {
        if (properties.has(name)) continue
        if (forbidden) return {message: `has an unknown field '${clip(name)}'`, path}
        const problem = extra(value[name], `${path}/${name}`)
        if (problem) return problem
      }

      return undefined
    })
  }
}

function addArrayChecks(s: Record<string, unknown>, where: string, checks: Check[]): void {
  if (s.items !== undefined) {
    if (Array.isArray(s.items)) throw new Error(`${where}/items: tuple form is not supported`)
    const item = compile(s.items as JsonSchema, `${where}/items`)
    checks.push((value, path) => {
      if (!Array.isArray(value)) return undefined
      for (const [index, element] of value.entries()) {
        const problem = item(element, `${path}/${index}`)
        if (problem) return problem
      }

      return undefined
    })
  }

  if (s.minItems !== undefined) {
    const min = count(s.minItems, `${where}/minItems`)
    checks.push((value) => (Array.isArray(value) && value.length < min ? `must have at least ${min} items` : undefined))
  }

  if (s.maxItems !== undefined) {
    const max = count(s.maxItems, `${where}/maxItems`)
    checks.push((value) => (Array.isArray(value) && value.length > max ? `must have at most ${max} items` : undefined))
  }
}

function addCombinators(s: Record<string, unknown>, where: string, checks: Check[]): void {
  const list = (keyword: string) => {
    const subs = s[keyword]
    if (!Array.isArray(subs) || subs.length === 0) throw new Error(`${where}/${keyword}: must be a non-empty array`)
    return subs.map((sub, index) => compile(sub as JsonSchema, `${where}/${keyword}/${index}`))
  }

  if (s.allOf !== undefined) {
    const all = list('allOf')
    checks.push((value, path) => {
      for (const check of all) {
        const problem = check(value, path)
        if (problem) return problem
      }

      return undefined
    })
  }

  if (s.anyOf !== undefined) {
    const any = list('anyOf')
    checks.push((value, path) => {
      let first: {path: string; message: string} | undefined
      for (const check of any) {
        const problem = check(value, path)
        if (!problem) return undefined
        first ??= problem
      }

      return first
    })
  }

  if (s.oneOf !== undefined) {
    const one = list('oneOf')
    checks.push((value, path) => {
      const passing = one.filter((check) => !check(value, path)).length
      return passing === 1 ? undefined : {message: passing === 0 ? 'matches none of the allowed forms' : 'matches more than one allowed form', path}
    })
  }

  if (s.not !== undefined) {
    const not = compile(s.not as JsonSchema, `${where}/not`)
    const why = typeof s.not === 'object' && s.not !== null && typeof (s.not as {description?: unknown}).description === 'string'
    checks.push((value, path) => (not(value, path) ? undefined : {message: why ? String((s.not as {description: string}).description) : 'has a forbidden form', path}))
  }
}

function codePoints(text: string): number {
  let n = 0
  for (const _ of text) n++
  return n
}

function count(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new Error(`${where}: must be a non-negative integer`)
  return value
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case 'array': {
      return Array.isArray(value)
    }

    case 'integer': {
      return typeof value === 'number' && Number.isInteger(value)
    }

    case 'null': {
      return value === null
    }

    case 'number': {
      return typeof value === 'number' && Number.isFinite(value)
    }

    case 'object': {
      return value !== null && typeof value === 'object' && !Array.isArray(value)
    }

    default: {
      return typeof value === type
    }
  }
}

function typeOf(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value
}

/** JSON equality (for enum and const): same type, same members. */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((item, index) => jsonEqual(item, (b as unknown[])[index]))
  const keysA = Object.keys(a as object)
  const keysB = Object.keys(b as object)
  return keysA.length === keysB.length && keysA.every((key) => Object.hasOwn(b as object, key) && jsonEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]))
}

export function clip(text: string, max = 80): string {
  // eslint-disable-next-line no-control-regex
  const oneLine = text.replaceAll(/[\u0000-\u001F\u007F]/g, '?')
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine
}
