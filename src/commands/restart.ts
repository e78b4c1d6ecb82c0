import {Flags} from '@oclif/core'

import {restartSandbox, resumeInstalledService, type RestartResult} from '../runtime/lifecycle.js'
import {RuntimeCommand} from '../runtime/runtime-command.js'

export default class Restart extends RuntimeCommand<typeof Restart> {
  static override description = 'Restart the sandbox container and wait until opencode and the broker are ready again. While another occ replaces the container (occ update container, occ start --recreate), waits for it first; what an interrupted update left is set right as occ start does.'

  static override flags = {
    timeout: Flags.integer({char: 't', default: 30, description: 'Seconds to wait for a graceful stop before killing.', min: 0}),
  }

  async run(): Promise<RestartResult> {
    const host = await this.hostRuntime()
    const result = await restartSandbox(host, {onProgress: (message) => this.note(message), timeoutSeconds: this.flags.timeout})
    if (result.repair?.kind === 'busy' || result.repair?.kind === 'failed') this.warn(result.repair.message)
    const resumed = await resumeInstalledService(host)
    if (resumed.note) this.note(resumed.note)
    if (resumed.warning) this.warn(resumed.warning)
    if (!this.flags.quiet) {
      this.log('Service restarted')
      this.log(`URL:        ${result.url ?? 'unknown'}`)
      this.log(`Container:  ${result.container}`)
      if (result.repair && result.repair.kind !== 'busy' && result.repair.kind !== 'failed') this.log(`Repaired:   ${result.repair.message}`)
    }

    return result
  }
}
