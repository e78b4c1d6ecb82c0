import {Flags} from '@oclif/core'

import {stopSandbox, type StopResult} from '../runtime/lifecycle.js'
import {RuntimeCommand} from '../runtime/runtime-command.js'

export default class Stop extends RuntimeCommand<typeof Stop> {
  static override description = 'Stop the sandbox container gracefully. Stopping a stopped or missing container succeeds. Volumes are always kept. While another occ replaces the container (occ update container, occ start --recreate), waits for it first. --remove also removes the old container an interrupted update kept aside (<name>_previous).'

  static override examples = ['<%= config.bin %> stop', '<%= config.bin %> stop --timeout 5 --remove']

  static override flags = {
    remove: Flags.boolean({description: 'Also remove the container (volumes and bind-mounted data are kept).'}),
    timeout: Flags.integer({char: 't', default: 30, description: 'Seconds to wait for a graceful stop before killing.', min: 0}),
  }

  async run(): Promise<StopResult> {
    const host = await this.hostRuntime()
    const result = await stopSandbox(host, {onProgress: (message) => this.note(message), remove: this.flags.remove, timeoutSeconds: this.flags.timeout})
    if (!this.flags.quiet) {
      if (!result.existed) this.log('No sandbox container exists; nothing to stop.')
      else if (result.wasRunning) this.log(`Service stopped (${(result.durationMs / 1000).toFixed(1)} s)`)
      else this.log('Service is already stopped.')
      if (result.removed) this.log(`Container ${result.container} removed (volumes kept).`)
      if (result.removedKept) this.log(`Container ${result.removedKept} (the old container an interrupted update kept aside) removed.`)
    }

    return result
  }
}
