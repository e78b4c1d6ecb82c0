import {UsageError} from '../errors.js'
import type {LogLine, LogsSpec} from './runtime.js'

/** Markers of the broker's lines in the container log (when there is no journald to ask). */
const BROKER_MARKERS = ['opencode_broker::', 'opencode-broker']
const MAX_LINE = 64 * 1024

export function parseLinesOption(value: string): number | 'all' {
  const trimmed = value.trim().toLowerCase()
  if (trimmed === 'all') return 'all'
  if (!/^\d+$/.test(trimmed)) throw new UsageError(`Invalid value for --lines: '${value}'. Use a number or 'all'.`)
  return Number(trimmed)
}

/** Docker's logs options for a spec. */
export function dockerLogsOptions(spec: LogsSpec): {follow: boolean; stderr: true; stdout: true; tail: number | string; timestamps: boolean} {
  return {
    follow: spec.follow,
    stderr: true,
    stdout: true,
    tail: spec.lines === 'all' ? 'all' : spec.lines,
    timestamps: spec.timestamps,
  }
}

/** journalctl argv for a unit, used where the sandbox runs systemd. */
export function journalctlArgv(unit: string, spec: LogsSpec): string[] {
  const argv = ['journalctl', '--no-pager', '-u', unit, '-o', spec.timestamps ? 'short-iso' : 'cat']
  if (spec.timestamps) argv.push('--no-hostname')
  if (spec.lines !== 'all') argv.push('-n', String(spec.lines))
  if (spec.follow) argv.push('-f')
  return argv
}

/** Whether a line passes --grep and (for --broker without journald) the broker filter. */
export function keepLine(line: LogLine, spec: LogsSpec, brokerFilter: boolean): boolean {
  if (spec.grep !== undefined) return line.text.includes(spec.grep)
  if (brokerFilter) return BROKER_MARKERS.some((marker) => line.text.includes(marker))
  return true
}

/**
 * Turns stream chunks into whole lines: a chunk may hold many lines or part of one. A line
 * longer than 64 KiB is cut so a runaway writer cannot grow the buffer without bound.
 */
export class LineSplitter {
  private buffer = ''
  private readonly stream: 'stderr' | 'stdout'
  private readonly timestamps: boolean

  constructor(stream: 'stderr' | 'stdout', timestamps: boolean) {
    this.stream = stream
    this.timestamps = timestamps
  }

  push(chunk: string): LogLine[] {
    this.buffer += chunk
    const lines: LogLine[] = []
    while (true) {
      const newline = this.buffer.indexOf('\n')
      if (newline !== -1 && newline <= MAX_LINE) {
        lines.push(this.toLine(this.buffer.slice(0, newline)))
        this.buffer = this.buffer.slice(newline + 1)
      } else if (this.buffer.length > MAX_LINE) {
        // A runaway line is cut into 64 KiB pieces instead of growing without bound.
        lines.push(this.toLine(this.buffer.slice(0, MAX_LINE)))
        this.buffer = this.buffer.slice(MAX_LINE)
      } else {
        return lines
      }
    }
  }

  flush(): LogLine[] {
    if (this.buffer === '') return []
    const line = this.toLine(this.buffer)
    this.buffer = ''
    return [line]
  }

  private toLine(raw: string): LogLine {
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw
    if (this.timestamps) {
      const space = text.indexOf(' ')
      if (space > 0 && /^\d{4}-\d\d-\d\dT/.test(text)) {
        return {stream: this.stream, text: text.slice(space + 1), timestamp: text.slice(0, space)}
      }
    }

    return {stream: this.stream, text}
  }
}
