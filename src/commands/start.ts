import {Flags} from '@oclif/core'

import {FOREGROUND_EVENT, type OccHooks} from '../runtime/hooks.js'
import {serveInForeground, type ForegroundResult} from '../runtime/foreground.js'
import {resumeInstalledService, startSandbox, type StartResult} from '../runtime/lifecycle.js'
import {RuntimeCommand} from '../runtime/runtime-command.js'

export type StartOutput = StartResult & {foreground?: ForegroundResult}

export default class Start extends RuntimeCommand<typeof Start> {
  static override description = `Start the opencode sandbox container and wait until it is ready.

While nobody can log in yet (no login user, allow_unauthenticated_network false) it ends with the first-login block: the initial one-time password (IOTP), in text and in --json (firstLogin.iotp.value; occ status masks it unless --show-secrets).

Uses the configured image when it is present locally, else pulls it (progress per layer on a terminal, plain lines otherwise, nothing under --json; transient failures are retried). A pull that fails says why — the registry is unreachable (REGISTRY_UNREACHABLE), has no such image (IMAGE_NOT_FOUND) or refused access (REGISTRY_UNAUTHORIZED) — and changes nothing. Creates the volumes and the container when missing; a container that already runs is left as it is. With --no-daemon occ stays in the foreground (this is what the service runs) and the update listener handles the web UI's update requests until the container stops or occ gets SIGINT/SIGTERM.`

  static override examples = ['<%= config.bin %> start', '<%= config.bin %> start --port 3100', '<%= config.bin %> start --recreate', '<%= config.bin %> start --no-daemon']

  static override flags = {
    mount: Flags.string({description: 'Extra bind mount host:container[:ro] for a new container (repeatable).', multiple: true}),
    'no-daemon': Flags.boolean({description: 'Stay in the foreground and run the update listener (used by the service).'}),
    'no-mounts': Flags.boolean({description: "Ignore the config's bind mounts when creating the container."}),
    port: Flags.integer({
      char: 'p',
      description: 'Host port for opencode (default: opencode_web_port from the config). An existing container on another port is recreated (volumes kept).',
      max: 65_535,
      min: 1,
    }),
    recreate: Flags.boolean({description: 'Remove the existing container first and create it again, so changes of port, mounts, image or env apply (volumes are kept).'}),
  }

  async run(): Promise<StartOutput> {
    const host = await this.hostRuntime()
    const pull = await this.pullView()
    const result = await startSandbox(host, {
      mounts: this.flags.mount,
      noMounts: this.flags['no-mounts'],
      onProgress: (message) => {
        pull.end()
        this.note(message)
      },
      onPullEvent: (event) => pull.onEvent(event),
      onWarning: (message) => this.warn(message),
      port: this.flags.port,
      recreate: this.flags.recreate,
      // Service mode: the listener repairs (it must come up whatever opencode's health).
      repair: !this.flags['no-daemon'],
      waitFor: this.flags['no-daemon'] ? 'running' : 'ready',
    })
    this.render(result)
    if (!this.flags['no-daemon']) {
      const resumed = await resumeInstalledService(host)
      if (resumed.note) this.note(resumed.note)
      if (resumed.warning) this.warn(resumed.warning)
      return result
    }

    const foreground = await serveInForeground({
      config: await this.occConfig(),
      fireHooks: (context) => this.config.runHook<typeof FOREGROUND_EVENT, OccHooks>(FOREGROUND_EVENT, context),
      host,
      paths: this.paths,
      version: this.config.version,
    })
    if (foreground.exitCode !== 0) process.exitCode = foreground.exitCode
    return {...result, foreground}
  }

  private render(result: StartResult): void {
    if (this.jsonEnabled()) return
    if (this.flags.quiet) {
      if (result.url) this.log(result.url)
      return
    }

    const ready = result.readiness.opencode.state === 'healthy'
    this.log(result.alreadyRunning ? 'Service is already running' : ready ? 'Service started and ready' : 'Service started')
    if (!ready) this.log(`Health:     ${result.readiness.opencode.label}`)
    this.log(`URL:        ${result.url ?? 'unknown'}`)
    this.log(`Container:  ${result.container} (${result.containerId.slice(0, 12)})`)
    this.log(`Port:       ${result.port} -> 3000`)
    this.log(`Ready in:   ${(result.readiness.elapsedMs / 1000).toFixed(1)} s`)
    // busy/failed were warned about already.
    if (result.repair && result.repair.kind !== 'busy' && result.repair.kind !== 'failed') this.log(`Repaired:   ${result.repair.message}`)
    if (result.firstLogin) this.renderFirstLogin(result.firstLogin)
  }

  /** Nobody can log in yet: the IOTP opens the web UI once, to create the first user. */
  private renderFirstLogin(first: NonNullable<StartResult['firstLogin']>): void {
    this.log('')
    if (first.iotp.state === 'active' && first.iotp.value) {
      this.log('First-time onboarding')
      this.log(`Initial One-Time Password (IOTP): ${first.iotp.value}`)
      this.log('Open the URL above, sign in with it once and create your login user (or run: occ user add <name>).')
      return
    }

    this.log(`Could not retrieve an IOTP: ${first.iotp.label}${first.iotp.detail ? ` (${first.iotp.detail})` : ''}.`)
    for (const hint of first.hints) this.log(hint)
    this.log('Or create a login user now: occ user add <name>')
    this.log(`Or read it from the logs: ${first.fromLogs}`)
  }
}

