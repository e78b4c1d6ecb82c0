import {Flags} from '@oclif/core'

import {ContainerMissingError, ContainerNotRunningError, OccError, UsageError} from '../../errors.js'
import {RuntimeCommand} from '../../runtime/runtime-command.js'
import {iotpView} from '../../runtime/status.js'
import {exposedBind, runBootstrap} from '../../runtime/users/iotp.js'
import type {ResetIotpResult} from '../../runtime/users/schemas.js'

export default class ResetIotp extends RuntimeCommand<typeof ResetIotp> {
  static override description = `Issue a new initial one-time password (IOTP) for the first login, and print it.

Only while no login user exists (after that, use occ user add / occ user passwd). Refused when the sandbox binds a non-localhost address, unless --force: anyone who can reach it could then use the new IOTP.`

  static override examples = ['<%= config.bin %> reset iotp', '<%= config.bin %> reset iotp --json', '<%= config.bin %> reset iotp --force']

  static override flags = {force: Flags.boolean({char: 'f', description: 'Reset it even when the sandbox is reachable from the network.'})}

  async run(): Promise<ResetIotpResult> {
    const host = await this.hostRuntime()
    const state = await host.containerState()
    // The config's bind_address, and the address the container was really created with (a config
    // changed since then applies only when it is recreated).
    const bind = exposedBind(host.config.bind_address, state.hostIp)
    if (bind !== undefined && !this.flags.force) {
      throw new UsageError(`The sandbox binds ${bind}, not localhost: a new IOTP would be usable from the network.`, {
        actions: [
          'If that is what you want: occ reset iotp --force',
          'Or bind to loopback first: occ config set bind_address 127.0.0.1, then occ stop --remove && occ start',
        ],
      })
    }

    if (!state.exists) throw new ContainerMissingError(host.names.container)
    if (!state.running) throw new ContainerNotRunningError(host.names.container)
    const iotp = await runBootstrap(host, 'reset', true)
    if (iotp.state === 'user_exists') {
      throw new OccError('IOTP_INACTIVE', 'A login user exists, so there is no first-login password to reset.', {
        actions: ['Change a password with: occ user passwd <name>', 'See the users with: occ user list'],
      })
    }

    if (iotp.state !== 'active' || !iotp.otp) {
      throw new OccError('IOTP_RESET_FAILED', `The IOTP could not be reset: ${iotp.label}${iotp.detail ? ` (${iotp.detail})` : ''}.`, {
        actions: ['See the sandbox logs: occ logs --no-follow'],
      })
    }

    const result: ResetIotpResult = {iotp: iotpView(iotp, true)}
    if (!this.jsonEnabled()) {
      if (this.flags.quiet) this.log(iotp.otp)
      else {
        this.log('A new IOTP was issued (the previous one no longer works).')
        this.log(`Initial One-Time Password (IOTP): ${iotp.otp}`)
      }
    }

    return result
  }
}
