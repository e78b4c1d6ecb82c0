import {Flags} from '@oclif/core'

import {RuntimeCommand} from '../../runtime/runtime-command.js'
import type {UpdateOutcome} from '../../runtime/update-types.js'
import {outcomeError} from '../../runtime/update/errors.js'
import {findContainerCommandsDir, handOffUpdate} from '../../runtime/update/handoff.js'
import {runUpdateInteractive} from '../../runtime/update/run.js'
import {parseUpdateTarget} from '../../runtime/update/target.js'

export default class UpdateOpencode extends RuntimeCommand<typeof UpdateOpencode> {
  static override summary = 'Update opencode in the sandbox to a branch or commit; downtime is one restart.'

  static override description = `Fetches and builds the new opencode while the old one keeps serving, switches to it in one atomic step, restarts opencode and waits until it answers healthy. If it does not, occ switches back to the previous version and says so. A failed fetch or build changes nothing.

Without --branch or --commit, updates to the tip of the dev branch. The source comes from opencode_repo in the config.

There is no confirmation prompt: nothing is stopped until the new version is built, and a bad one is rolled back on its own. --yes is accepted for scripts written for the Rust occ.

Inside the sandbox (container runtime) the request is handed to the host's update listener (occ install / occ start --no-daemon) through the command file, and occ waits for its result: the restart would otherwise end occ itself when it runs in opencode's terminal.`

  static override examples = [
    '<%= config.bin %> update opencode',
    '<%= config.bin %> update opencode --branch main',
    '<%= config.bin %> update opencode --commit 1a2b3c4',
    '<%= config.bin %> update opencode --json',
  ]

  static override flags = {
    branch: Flags.string({description: 'Update to the tip of this branch (default: dev).', exclusive: ['commit']}),
    commit: Flags.string({description: 'Update to this commit: 7 to 40 hex digits.', exclusive: ['branch']}),
    'health-timeout': Flags.integer({
      default: 60,
      description: 'Seconds the new version gets to answer healthy before it is rolled back.',
      max: 3600,
      min: 1,
    }),
    yes: Flags.boolean({char: 'y', description: 'Accepted for compatibility; the update never asks.'}),
  }

  static override supportedRuntimes = ['host' as const, 'container' as const]

  async run(): Promise<UpdateOutcome> {
    const request = {
      ...(this.flags.branch === undefined ? {} : {branch: this.flags.branch}),
      ...(this.flags.commit === undefined ? {} : {commit: this.flags.commit}),
    }
    // Refs are checked before anything reaches the sandbox (or the host's listener).
    parseUpdateTarget(request)

    const outcome =
      this.runtimeKind === 'container'
        ? await handOffUpdate({
            commandsDir: await findContainerCommandsDir(this.paths),
            onStatus: (line) => this.note(line),
            request,
          })
        : await runUpdateInteractive(await this.runtime(), await this.occConfig(), request, {
            json: this.jsonEnabled(),
            note: (message) => this.note(message),
            plan: {healthTimeoutMs: this.flags['health-timeout'] * 1000},
            quiet: this.flags.quiet,
          })

    if (outcome.status === 'error') throw outcomeError(outcome)
    if (!this.jsonEnabled()) this.log(outcome.message)
    return outcome
  }
}
