import {Flags} from '@oclif/core'

import {stopSandbox, type StopResult} from '../runtime/lifecycle.js'
import {RuntimeCommand} from '../runtime/runtime-command.js'

export default class Stop extends RuntimeCommand<typeof Stop> {
  static override description = 'Stop the sandbox container gracefully. Stopping a stopped or missing container succeeds. Volumes are always kept.'

  static override examples = ['<%= config.bin %> stop', '<%= config.bin %> stop --timeout 5 --remove']

  static override flags = {
    remove: Flags.boolean({description: 'Also remove the container (volumes and bind-mounted data are kept).'}),
    timeout: Flags.integer({char: 't', default: 30, description: 'Seconds to wait for a graceful stop before killing.', min: 0}),
  }

  async run(): Promise<StopResult> {
    const host = await this.hostRuntime()
    const result = await stopSandbox(host, {remove: this.flags.remove, timeoutSeconds: this.flags.timeout})
    if (!this.flags.quiet) {
      if (!result.existed) this.log('No sandbox container exists; nothing to stop.')
      else if (result.wasRunning) this.log(`Service stopped (${(result.durationMs / 1000).toFixed(1)} s)`)
      else this.log('Service is already stopped.')
      if (result.removed) this.log(`Container ${result.container} removed (volumes kept).`)
    }

    return result
  }
}
