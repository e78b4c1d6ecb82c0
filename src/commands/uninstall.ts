import {Flags} from '@oclif/core'

import {UsageError} from '../errors.js'
import {detectServiceHost} from '../service/host.js'
import {removeInstanceData, type InstanceDataRemoval} from '../service/instance-data.js'
import {uninstallService, type UninstallResult} from '../service/service.js'
import {RuntimeCommand} from '../runtime/runtime-command.js'

export type UninstallOutput = UninstallResult & {data?: InstanceDataRemoval}

export default class Uninstall extends RuntimeCommand<typeof Uninstall> {
  static override description = `Remove the service that \`occ install\` registered (stop it, disable it, delete its file).

The sandbox container keeps running (stop it with \`occ stop\`); config and data directories are kept. With --volumes --force it also removes this instance's container and then this instance's Docker volumes (opencode's data, state, workspace, users, ssh keys) — other instances are not touched. Never prompts.`

  static override examples = [
    '<%= config.bin %> uninstall',
    '<%= config.bin %> uninstall --sandbox-instance work',
    '<%= config.bin %> uninstall --volumes --force',
  ]

  static override flags = {
    force: Flags.boolean({char: 'f', description: 'Confirm deleting data (required with --volumes).'}),
    volumes: Flags.boolean({description: "Also remove this instance's container and Docker volumes (needs --force)."}),
  }

  async run(): Promise<UninstallOutput> {
    if (this.flags.volumes && !this.flags.force) {
      throw new UsageError('The --volumes flag requires --force to confirm data deletion.', {
        actions: [`Delete the service and this instance's volumes: occ uninstall --volumes --force${this.instanceFlag()}`],
      })
    }

    const result: UninstallOutput = await uninstallService({host: detectServiceHost({paths: this.paths}), instance: this.names.instance})
    for (const warning of result.warnings) this.warn(warning)
    if (this.flags.volumes) result.data = await removeInstanceData(this.names)
    if (!this.jsonEnabled()) this.render(result)
    return result
  }

  private render(result: UninstallOutput): void {
    if (result.action === 'not-installed') this.log(`Service not installed (no ${result.unitPath}).`)
    else this.log(`Removed: ${result.unitPath} (${result.name})`)
    if (result.data) {
      const {data} = result
      this.log(data.container === 'removed' ? `Removed container: ${data.containerName}` : `No container ${data.containerName}.`)
      this.log(data.volumesRemoved.length > 0 ? `Removed volumes: ${data.volumesRemoved.join(', ')}` : 'No volumes to remove.')
    } else if (!this.flags.quiet) {
      this.log('The sandbox container, if any, keeps running; stop it with: occ stop')
    }

    if (!this.flags.quiet) this.log(`Kept (for a reinstall): ${this.paths.configDir} and ${this.paths.dataDir}`)
  }

  private instanceFlag(): string {
    return this.names.instance ? ` --sandbox-instance ${this.names.instance}` : ''
  }
}
