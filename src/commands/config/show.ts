import {RuntimeCommand} from '../../runtime/runtime-command.js'
import type {OccConfig} from '../../config/schema.js'

export function maskSecrets(config: OccConfig): OccConfig {
  return {...config, auth_password: config.auth_password ? '********' : config.auth_password}
}

export default class ConfigShow extends RuntimeCommand<typeof ConfigShow> {
  static override description = 'Show the configuration, with defaults filled in. Secrets are masked.'

  static override examples = ['<%= config.bin %> config show', '<%= config.bin %> config show --json']

  async run(): Promise<{config: OccConfig; path: string}> {
    const config = maskSecrets(await this.occConfig())
    if (!this.jsonEnabled()) {
      this.log(`# ${this.paths.configFile}`)
      const width = Math.max(...Object.keys(config).map((key) => key.length)) + 2
      for (const [key, value] of Object.entries(config)) {
        if (key.startsWith('cockpit')) continue
        if (Array.isArray(value)) {
          this.log(`${key.padEnd(width)}${value.length === 0 ? '(none)' : ''}`)
          for (const item of value) this.log(`${''.padEnd(width)}${item}`)
        } else {
          this.log(`${key.padEnd(width)}${value === null || value === undefined ? '(unset)' : String(value)}`)
        }
      }
    }

    return {config, path: this.paths.configFile}
  }
}
