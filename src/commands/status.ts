import {Flags} from '@oclif/core'

import {RuntimeCommand} from '../runtime/runtime-command.js'
import {describeImageUpdate, formatDuration, type StatusView} from '../runtime/status.js'
import {IOTP_FROM_LOGS, iotpResetHints} from '../runtime/users/iotp.js'

export default class Status extends RuntimeCommand<typeof Status> {
  static override description = `Show the sandbox's state: container, opencode health, broker, versions, port and mounts.

--json prints a stable object (schemas/status.schema.json). -q prints nothing and exits 0 when the container runs, 1 otherwise. The first-login password (IOTP) is masked unless --show-secrets.`

  static override examples = [
    '<%= config.bin %> status',
    '<%= config.bin %> status --json',
    '<%= config.bin %> status -q && echo running',
    '<%= config.bin %> status --show-secrets',
  ]

  static override flags = {
    'show-secrets': Flags.boolean({description: 'Show the initial one-time password (IOTP) instead of masking it (text and --json).'}),
  }

  static override supportedRuntimes = ['host' as const, 'container' as const]

  async run(): Promise<StatusView> {
    if (this.flags.quiet && !this.jsonEnabled()) {
      const state = await (await this.runtime()).containerState()
      this.exit(state.running ? 0 : 1)
    }

    const view = await this.collectStatus({showSecrets: this.flags['show-secrets']})
    if (!this.jsonEnabled()) this.render(view, this.runtimeKind === 'host' ? this.paths.configFile : undefined)
    return view
  }

  private render(view: StatusView, configFile: string | undefined): void {
    const line = (label: string, value: string): void => this.log(`${label.padEnd(15)}${value}`)
    if (!view.container.exists) {
      this.log('No service found.')
      this.log("Run 'occ start' to start the service.")
      return
    }

    line('State:', view.container.state)
    if (view.instance) line('Instance:', view.instance)
    if (view.service && view.service.manager !== 'none') {
      const active = view.service.active === undefined ? '' : view.service.active ? ', active' : ', not active'
      const linger = view.service.linger === false ? ' (lingering is off: it stops when you log out)' : ''
      line('Service:', view.service.installed ? `installed (${view.service.name}${active})${linger}` : 'not installed (occ install)')
    }

    if (view.listener) line('Listener:', view.listener.description)
    if (configFile) line('Config:', configFile)
    if (!view.container.running) {
      if (view.container.finishedAt) line('Last run:', view.container.finishedAt)
      this.log("Run 'occ start' to start the service.")
      return
    }

    this.log('\nOpenCode')
    line('URL:', view.opencode.url ?? 'unknown')
    line('Health:', view.opencode.health?.label ?? 'unknown')
    line('Version:', view.opencode.version ?? 'unknown')
    const unverified = view.opencode.unverifiedRelease
    line('Commit:', `${view.opencode.commitShort ?? 'unknown'}${unverified ? ' (the last verified install)' : ''}`)
    if (unverified) {
      const previous = unverified.previousCommit?.slice(0, 7) ?? unverified.previous?.slice(0, 12) ?? 'unknown'
      line('Unverified:', `release ${unverified.release.slice(0, 12)} was switched in and not verified healthy (previous: ${previous}); occ restart re-verifies it or rolls back`)
    }
    if (view.container.uptimeSeconds !== null) {
      line('Uptime:', `${formatDuration(view.container.uptimeSeconds)} (since ${view.container.startedAt})`)
    }

    line('Port:', `${view.port.host ?? '?'} -> container:${view.port.container}`)
    this.log('\nOpenCode Broker')
    line('Health:', view.broker.health?.label ?? 'unknown')
    this.log('\nSandbox')
    line('Container:', `${view.container.name} (${view.container.id?.slice(0, 12) ?? '?'})`)
    line('Image:', view.container.image ?? 'unknown')
    line('Image ver:', view.image.version ?? 'unknown')
    if (view.runtime === 'host') line('Image digest:', view.image.digest ?? 'none (not pulled from a registry)')
    if (view.image.update) line('Image update:', describeImageUpdate(view.image.update))
    line('CLI:', `v${this.config.version}`)
    if (view.security) {
      const security = view.security
      this.log('\nSecurity')
      line('Binding:', `${security.bindAddress} ${security.exposure === 'network-exposed' ? '[NETWORK EXPOSED]' : '[LOCAL ONLY]'}`)
      line('Auth users:', security.users.length > 0 ? security.users.join(', ') : 'None configured')
      line('Trust proxy:', security.trustProxy ? 'yes' : 'no')
      line('Rate limit:', `${security.rateLimit.attempts} attempts / ${security.rateLimit.windowSeconds}s window`)
      if (security.exposure === 'network-exposed' && security.users.length === 0 && !security.allowUnauthenticatedNetwork) {
        this.warn('Network exposed without authentication! Bind to loopback (occ config set bind_address 127.0.0.1) or configure login users.')
      }
    }

    this.renderIotp(view, line)
    if (view.mounts.length > 0) {
      this.log('\nMounts')
      for (const mount of view.mounts) this.log(`  ${mount.source} -> ${mount.target} ${mount.readOnly ? 'ro' : 'rw'} (${mount.type})`)
    }
  }

  private renderIotp(view: StatusView, line: (label: string, value: string) => void): void {
    const {iotp} = view
    if (!view.security) this.log('\nFirst login')
    line('IOTP state:', iotp.label)
    if (iotp.state === 'active') {
      line('IOTP value:', iotp.value ?? '******** (shown with: occ status --show-secrets)')
      if (iotp.createdAt) line('', `issued ${iotp.createdAt}; sign in with it and create your login user`)
    } else {
      line('IOTP value:', 'not available')
      if (iotp.detail) line('', iotp.detail)
      if (view.security?.allowUnauthenticatedNetwork) line('', 'allow_unauthenticated_network=true may skip IOTP generation by design.')
    }

    if (iotp.state !== 'user_exists' && iotp.state !== 'unavailable') {
      for (const hint of iotpResetHints(view.security?.bindAddress ?? '127.0.0.1')) line('', hint)
      if (iotp.state !== 'active') line('', `Extract manually: ${IOTP_FROM_LOGS}`)
    }
  }
}
