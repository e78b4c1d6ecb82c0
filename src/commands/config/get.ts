import {Args} from '@oclif/core'

import {resolveConfigKey} from '../../config/store.js'
import {RuntimeCommand} from '../../runtime/runtime-command.js'
import {maskSecrets} from './show.js'

export default class ConfigGet extends RuntimeCommand<typeof ConfigGet> {
  static override args = {key: Args.string({description: 'Config key (or an alias such as port, host, env).', required: true})}

  static override description = 'Print one config value.'

  static override examples = ['<%= config.bin %> config get port', '<%= config.bin %> config get image --json']

  async run(): Promise<{key: string; value: unknown}> {
    const key = resolveConfigKey(this.args.key)
    const value = maskSecrets(await this.occConfig())[key]
    if (!this.jsonEnabled()) {
      if (Array.isArray(value)) this.log(key === 'users' ? (value.length > 0 ? value.join(',') : '(none)') : JSON.stringify(value))
      else this.log(value === null || value === undefined ? '' : String(value))
    }

    return {key, value}
  }
}
