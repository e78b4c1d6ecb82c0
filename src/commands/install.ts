import {Flags} from '@oclif/core'

import {detectServiceHost} from '../service/host.js'
import {installService, readServiceConfig, type InstallResult} from '../service/service.js'
import {buildServiceSpec} from '../service/spec.js'
import {RuntimeCommand} from '../runtime/runtime-command.js'

export default class Install extends RuntimeCommand<typeof Install> {
  static override description = `Register occ as a user service that keeps the sandbox and its update listener running.

On Linux this writes a systemd user unit (~/.config/systemd/user/opencode-cloud[-<instance>].service), on macOS a launchd agent (~/Library/LaunchAgents/com.opencode-cloud.<service|instance>.plist). The service runs \`occ start --no-daemon\` with this node and this occ (absolute paths) and the environment occ needs (PATH, DOCKER_HOST, OPENCODE_SANDBOX_INSTANCE, XDG dirs). It is restarted when the container dies unexpectedly, not after \`occ stop\`.

Never prompts: an existing service is left alone unless --force is given.`

  static override examples = [
    '<%= config.bin %> install',
    '<%= config.bin %> install --dry-run',
    '<%= config.bin %> install --force',
    '<%= config.bin %> install --sandbox-instance work',
  ]

  static override flags = {
    'dry-run': Flags.boolean({description: 'Print the unit file or plist that would be written, and change nothing.'}),
    force: Flags.boolean({char: 'f', description: 'Reinstall (rewrite and restart) when the service is already installed.'}),
  }

  async run(): Promise<InstallResult> {
    const dryRun = this.flags['dry-run']
    // A dry run must not even create the default config, so it reads without writing.
    const config = dryRun ? await readServiceConfig(this.paths) : await this.occConfig()
    const spec = buildServiceSpec({
      config,
      env: process.env,
      home: this.paths.home,
      instance: this.names.instance,
      nodePath: process.execPath,
      packageRoot: this.config.root,
    })
    const result = await installService({dryRun, force: this.flags.force, host: detectServiceHost({paths: this.paths}), spec})
    for (const warning of result.warnings) this.warn(warning)
    if (!this.jsonEnabled()) this.render(result)
    return result
  }

  private render(result: InstallResult): void {
    const kind = result.manager === 'systemd' ? 'systemd user unit' : 'launchd agent'
    if (result.action === 'dry-run') {
      this.note(`Dry run: would write ${result.unitPath} (${kind} ${result.name}); nothing was changed.`)
      this.log((result.content ?? '').trimEnd())
      return
    }

    if (result.action === 'unchanged') {
      this.log(`Service already installed: ${result.name}`)
      this.log(`File:    ${result.unitPath}`)
      if (result.state) this.log(`Status:  ${result.state}`)
      this.log(
        result.upToDate
          ? 'Nothing changed. To reinstall it anyway: occ install --force'
          : 'Nothing changed, but the file differs from what this occ would write. To update it: occ install --force',
      )
      return
    }

    this.log(`Service ${result.action}: ${result.name}`)
    this.log(`File:    ${result.unitPath}`)
    this.log(`Status:  ${result.state ?? 'unknown'}`)
    if (this.flags.quiet) return
    if (result.manager === 'launchd') this.log('It starts when you log in.')
    else if (result.linger) this.log('It starts at boot and keeps running after you log out (lingering is on).')
    else this.log('It starts when you log in.')
    this.log(
      result.manager === 'systemd'
        ? `Logs: journalctl --user -u ${result.name} -f`
        : `Logs: ~/Library/Logs/opencode-cloud${this.names.instance ? `-${this.names.instance}` : ''}.{stdout,stderr}.log`,
    )
  }
}
