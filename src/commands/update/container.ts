import {Flags} from '@oclif/core'

import type {ContainerUpdateResult} from '../../runtime/container-update.js'
import {RuntimeCommand} from '../../runtime/runtime-command.js'

export default class UpdateContainer extends RuntimeCommand<typeof UpdateContainer> {
  static override summary = 'Recreate the sandbox on the newest image from its registry (or --rollback to the one before), health-checked.'

  static override description = `Asks the registry for the digest of the configured image (occ config get image) and compares it with the image the sandbox runs: the same → "already up to date", nothing changes. Otherwise the new image is pulled while the sandbox keeps serving (progress per layer on a terminal, plain lines otherwise), then the container is recreated on it with everything it had — bind mounts, volumes, port, env, limits, labels — its login users restored, and occ waits until opencode and the broker are ready.

The old container is never removed before the new one is ready: it is stopped and kept as <name>_previous. If the new one is not ready within --health-timeout, it is removed, the old one is started again and verified, and the update fails saying it rolled back (CONTAINER_UPDATE_ROLLED_BACK, exit 8). After a good update the old image becomes this instance's rollback tag (<repository>:previous, or :instance-<id>-previous) and dangling images of the same repository are removed; nothing else on the host is touched.

--rollback recreates the sandbox on the rollback tag the same way (and the image it leaves becomes the rollback tag). An update container and an update opencode never run at the same time: the second is refused (UPDATE_BUSY, exit 9) naming the one that runs. If occ is killed mid-swap, the next occ start or occ update container finishes or undoes it.

There is no confirmation prompt (the old container stays until the new one is ready); --yes is accepted for scripts written for the Rust occ.`

  static override examples = [
    '<%= config.bin %> update container',
    '<%= config.bin %> update container --json',
    '<%= config.bin %> update container --rollback',
    '<%= config.bin %> update --rollback',
  ]

  static override flags = {
    'health-timeout': Flags.integer({
      default: 60,
      description: 'Seconds the new container gets to be ready (opencode healthy, broker ready) before occ rolls back.',
      max: 3600,
      min: 1,
    }),
    rollback: Flags.boolean({description: "Go back to the image the sandbox ran before the last update (this instance's rollback tag)."}),
    yes: Flags.boolean({char: 'y', description: 'Accepted for compatibility; the update never asks.'}),
  }

  async run(): Promise<ContainerUpdateResult> {
    const host = await this.hostRuntime()
    const pull = await this.pullView()
    const {updateContainer} = await import('../../runtime/container-update.js')
    try {
      const result = await updateContainer(host, {
        healthTimeoutMs: this.flags['health-timeout'] * 1000,
        onProgress: (message) => {
          pull.end()
          this.note(message)
        },
        onPullEvent: (event) => pull.onEvent(event),
        rollback: this.flags.rollback,
      })
      if (!this.jsonEnabled()) this.log(result.message)
      return result
    } finally {
      pull.end()
    }
  }
}
