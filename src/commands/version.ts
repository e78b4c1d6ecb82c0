import {Command} from '@oclif/core'

export interface VersionResult {
  name: string
  version: string
  node: string
  platform: string
}

export default class Version extends Command {
  static override description = 'Print the version of occ (same as occ --version). --json gives the parts.'

  static override enableJsonFlag = true

  static override examples = ['<%= config.bin %> version', '<%= config.bin %> version --json']

  async run(): Promise<VersionResult> {
    await this.parse(Version)
    this.log(this.config.userAgent)
    return {name: this.config.name, node: process.version, platform: `${process.platform}-${process.arch}`, version: this.config.version}
  }
}
