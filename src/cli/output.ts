import {Errors} from '@oclif/core'

import type {OccError} from '../errors.js'

/** Whether this run prints JSON: --json before any `--`, or OCC_CONTENT_TYPE=json (as oclif does). */
export function wantsJson(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OCC_CONTENT_TYPE?.toLowerCase() === 'json') return true
  for (const arg of argv) {
    if (arg === '--') return false
    if (arg === '--json') return true
  }

  return false
}

/** An error outside any command (a topic, an unknown command) in the shape commands print. */
export function printJsonError(error: OccError): void {
  process.stdout.write(`${JSON.stringify({error: error.toJSON()}, null, 2)}\n`)
}

/**
 * Fails with `error` outside any command (a hook, the help class): as {error} JSON on stdout under
 * --json, else in oclif's own format ("Error: …", "Try this: …"). Exits with its exit code.
 */
export function failOutsideCommand(error: OccError, json: boolean): never {
  if (json) {
    printJsonError(error)
    Errors.exit(error.exitCode)
  }

  throw new Errors.CLIError(error.message, {code: error.code, exit: error.exitCode, suggestions: error.actions})
}
