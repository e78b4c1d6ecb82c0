import {Flags} from '@oclif/core'

import {parseLinesOption} from '../runtime/logs-spec.js'
import {RuntimeCommand} from '../runtime/runtime-command.js'
import type {LogLine} from '../runtime/runtime.js'

export default class Logs extends RuntimeCommand<typeof Logs> {
  static override description = `Show the sandbox's logs, one real line at a time. Follows by default.

With --json the lines are collected and printed as one array (use it with --no-follow).`

  static override examples = ['<%= config.bin %> logs', '<%= config.bin %> logs --lines 200 --no-follow', '<%= config.bin %> logs --broker --grep error']

  static override flags = {
    broker: Flags.boolean({description: "Show the broker's logs (journald when the sandbox runs systemd, else its lines from the container log)."}),
    grep: Flags.string({description: 'Only lines containing this text (case-sensitive).'}),
    lines: Flags.string({char: 'n', default: '50', description: "Lines from the end to show first: a number or 'all'."}),
    'no-follow': Flags.boolean({description: 'Print what is there and exit instead of following.'}),
    timestamps: Flags.boolean({description: "Prefix each line with Docker's timestamp."}),
  }

  static override supportedRuntimes = ['host' as const, 'container' as const]

  async run(): Promise<{lines: LogLine[]}> {
    const spec = {
      broker: this.flags.broker,
      follow: !this.flags['no-follow'] && !this.jsonEnabled(),
      grep: this.flags.grep,
      lines: parseLinesOption(this.flags.lines),
      timestamps: this.flags.timestamps,
    }
    const runtime = await this.runtime()
    const controller = new AbortController()
    const stop = (): void => controller.abort()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    if (spec.follow) this.note('Following logs (Ctrl+C to exit)...')
    const collected: LogLine[] = []
    try {
      for await (const line of runtime.logs(spec, controller.signal)) {
        if (this.jsonEnabled()) collected.push(line)
        else process.stdout.write(`${line.timestamp ? `${line.timestamp} ` : ''}${line.text}\n`)
      }
    } catch (error) {
      if (!controller.signal.aborted) throw error
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
    }

    return {lines: collected}
  }
}
