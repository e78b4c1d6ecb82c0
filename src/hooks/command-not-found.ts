import {Errors, type Hook, type Interfaces, toConfiguredId} from '@oclif/core'

import {OccError, UsageError} from '../errors.js'
import {failOutsideCommand, wantsJson} from '../cli/output.js'

/**
 * `occ stauts`: in a terminal, @oclif/plugin-not-found asks "Did you mean status?" and runs it;
 * anywhere else (scripts, the service, --json) nothing may prompt, so occ names the closest
 * command and fails as a usage error (exit 2), as JSON under --json.
 */
const commandNotFound: Hook<'command_not_found'> = async function (options) {
  const argv = options.argv ?? []
  // `occ --json` or `occ -q` alone: global flags and no command (oclif takes the flag for the id).
  const flagsOnly = options.id.startsWith('-')
  const json = wantsJson(flagsOnly ? [options.id, ...argv] : argv)
  if (flagsOnly) {
    const typed = ['occ', options.id, ...argv].join(' ')
    failOutsideCommand(new UsageError(`'${typed}' names no command.`, {actions: [`Put a command after the flags: ${typed} <command>`, 'List the commands: occ help']}), json)
  }

  if (!json && process.stdin.isTTY && process.stderr.isTTY) {
    const {default: notFound} = await import('@oclif/plugin-not-found')
    // plugin-not-found takes the first of the ids nearest by plain edit distance; order them by
    // ours (a swap of two letters is one typo), so `stauts` asks about `status`, not `start`.
    const ordered = [...options.config.commandIDs].sort((a, b) => typoDistance(options.id, a) - typoDistance(options.id, b))
    const config = new Proxy(options.config, {
      get: (target, property) => (property === 'commandIDs' ? ordered : Reflect.get(target, property, target)),
    })
    try {
      return await notFound.call(this, {...options, config})
    } catch (error) {
      // Declined or unanswered: a usage error like everywhere else (plugin-not-found exits 127).
      if (error instanceof Errors.CLIError && error.oclif?.exit === 127) this.error(error.message, {exit: 2})
      throw error
    }
  }

  failOutsideCommand(notFoundError(options.id, options.config), json)
}

/** `id` (oclif's form, `config:shw`) names no command: the error, with the nearest visible one. */
export function notFoundError(id: string, config: Interfaces.Config): OccError {
  const visible = config.commands.filter((command) => !command.hidden)
  const ids = [...visible.map((command) => command.id), ...visible.flatMap((command) => command.aliases)]
  const suggestion = closest(id, ids)
  return new OccError('COMMAND_NOT_FOUND', `'${toConfiguredId(id, config)}' is not an occ command.`, {
    actions: [...(suggestion ? [`Did you mean: occ ${toConfiguredId(suggestion, config)}`] : []), 'List the commands: occ help'],
  })
}

/** The id nearest to what was typed, if it is near enough to be a typo. */
export function closest(typed: string, ids: string[]): string | undefined {
  let best: {distance: number; id: string} | undefined
  for (const id of ids) {
    const distance = typoDistance(typed, id)
    if (!best || distance < best.distance) best = {distance, id}
  }

  return best && best.distance <= Math.max(2, Math.floor(typed.length / 3)) ? best.id : undefined
}

/** Edits from a to b: insert, delete, replace, or swap two neighbours (each counts one). */
export function typoDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({length: a.length + 1}, (_, i) => Array.from({length: b.length + 1}, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1)
    }
  }

  return rows[a.length][b.length]
}

export default commandNotFound
