import {Args} from '@oclif/core'

import {applyConfigValue, resolveConfigKey, saveConfig} from '../../config/store.js'
import {RuntimeCommand} from '../../runtime/runtime-command.js'

export default class ConfigSet extends RuntimeCommand<typeof ConfigSet> {
  static override args = {
    key: Args.string({description: 'Config key (or an alias such as port, host, env).', required: true}),
    value: Args.string({description: "The new value. Lists take JSON ('[\"a\",\"b\"]') or comma-separated text.", required: true}),
  }

  static override description = 'Change one config value. The file is validated and saved atomically; the previous one is kept as config.json.bak.'

  static override examples = [
    '<%= config.bin %> config set port 3100',
    '<%= config.bin %> config set image opencode-cloud-sandbox-fixture:latest',
    '<%= config.bin %> config set container_env \'["TZ=UTC"]\'',
  ]

  async run(): Promise<{key: string; value: unknown; restartRequired: boolean}> {
    const key = resolveConfigKey(this.args.key)
    const next = applyConfigValue(await this.occConfig(), key, this.args.value)
    await saveConfig(this.paths, next)
    if (!this.flags.quiet && !this.jsonEnabled()) {
      this.log(`Set ${key} = ${JSON.stringify(next[key])}`)
      this.logToStderr('Changes to the container (port, image, mounts, env) apply when it is recreated: occ start --recreate')
    }

    return {key, restartRequired: true, value: next[key]}
  }
}
