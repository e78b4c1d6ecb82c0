import {Errors, Help} from '@oclif/core'

import {failOutsideCommand, wantsJson} from './cli/output.js'
import {notFoundError} from './hooks/command-not-found.js'

/**
 * oclif's help, except for a command that does not exist: `occ help stauts`, `occ stauts --help`
 * fail as `occ stauts` does (COMMAND_NOT_FOUND, exit 2, the nearest command, JSON under --json),
 * not with oclif's bare "Command stauts not found.".
 */
export default class OccHelp extends Help {
  override async showHelp(argv: string[]): Promise<void> {
    try {
      await super.showHelp(argv)
    } catch (error) {
      const missing = error instanceof Errors.CLIError ? /^Command (\S+) not found\.$/.exec(error.message)?.[1] : undefined
      if (missing === undefined) throw error
      failOutsideCommand(notFoundError(missing, this.config), wantsJson(argv))
    }
  }
}
