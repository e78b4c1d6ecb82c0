import assert from 'node:assert/strict'

import fc from 'fast-check'

import {UsageError} from '../../src/errors.js'
import {demuxBuffer} from '../../src/runtime/host-runtime.js'
import {dockerLogsOptions, journalctlArgv, keepLine, LineSplitter, parseLinesOption} from '../../src/runtime/logs-spec.js'
import type {LogLine, LogsSpec} from '../../src/runtime/runtime.js'

const MAX_LINE = 64 * 1024

function spec(overrides: Partial<LogsSpec> = {}): LogsSpec {
  return {broker: false, follow: true, lines: 50, timestamps: false, ...overrides}
}

function texts(lines: LogLine[]): string[] {
  return lines.map((line) => line.text)
}

/** Docker's multiplexed frame: [stream, 0, 0, 0, size (BE u32)] + payload. */
function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text, 'utf8')
  const header = Buffer.alloc(8)
  header[0] = stream
  header.writeUInt32BE(payload.length, 4)
  return Buffer.concat([header, payload])
}

describe('logs spec', () => {
  describe('LineSplitter', () => {
    it('joins chunks into real lines', () => {
      const splitter = new LineSplitter('stdout', false)
      assert.deepEqual(splitter.push('opencode: GET /glo'), [])
      assert.deepEqual(splitter.push('bal/health'), [])
      assert.deepEqual(texts(splitter.push(' -> 200\nnext')), ['opencode: GET /global/health -> 200'])
      assert.deepEqual(texts(splitter.flush()), ['next'])
      assert.deepEqual(splitter.flush(), [])
    })

    it('splits a chunk that holds many lines, keeping empty lines', () => {
      const splitter = new LineSplitter('stderr', false)
      const lines = splitter.push('one\ntwo\n\nfour\n')
      assert.deepEqual(texts(lines), ['one', 'two', '', 'four'])
      assert.ok(lines.every((line) => line.stream === 'stderr'))
      assert.deepEqual(splitter.flush(), [])
    })

    it('drops the CR of CRLF line ends, also when CR and LF arrive in different chunks', () => {
      const splitter = new LineSplitter('stdout', false)
      assert.deepEqual(texts(splitter.push('a\r\nb\r')), ['a'])
      assert.deepEqual(texts(splitter.push('\nc')), ['b'])
      assert.deepEqual(texts(splitter.flush()), ['c'])
    })

    it("splits off Docker's timestamp when asked", () => {
      const splitter = new LineSplitter('stdout', true)
      const [line] = splitter.push('2026-11-24T12:49:35.039376010Z opencode 1.0.0 listening on 0.0.0.0:3000\n')
      assert.deepEqual(line, {stream: 'stdout', text: 'opencode 1.0.0 listening on 0.0.0.0:3000', timestamp: '2026-11-24T12:49:35.039376010Z'})
    })

    it('leaves a line without a timestamp whole, and never parses timestamps when not asked', () => {
      assert.deepEqual(new LineSplitter('stdout', true).push('no timestamp here\n'), [{stream: 'stdout', text: 'no timestamp here'}])
      assert.deepEqual(new LineSplitter('stdout', false).push('2026-11-24T12:49:35Z text\n'), [{stream: 'stdout', text: '2026-11-24T12:49:35Z text'}])
    })

    it('cuts a line without newline once the buffer passes 64 KiB, so the buffer stays bounded', () => {
      const splitter = new LineSplitter('stdout', false)
      const out: LogLine[] = []
      for (let index = 0; index < 100; index++) out.push(...splitter.push('x'.repeat(1024)))
      out.push(...splitter.flush())
      assert.equal(texts(out).join(''), 'x'.repeat(100 * 1024), 'text was lost or duplicated')
      assert.ok(out.length >= 2, 'a 100 KiB line was not cut')
    })

    it('never emits a line longer than 64 KiB, whatever the chunk sizes', () => {
      const splitter = new LineSplitter('stdout', false)
      const out = [...splitter.push('y'.repeat(200 * 1024)), ...splitter.push(`${'z'.repeat(70 * 1024)}\n`), ...splitter.flush()]
      assert.equal(texts(out).join(''), 'y'.repeat(200 * 1024) + 'z'.repeat(70 * 1024))
      for (const line of out) assert.ok(line.text.length <= MAX_LINE, `a line of ${line.text.length} chars was emitted`)
    })

    it('loses no text and invents none, however the input is chunked (property)', () => {
      fc.assert(
        fc.property(fc.array(fc.string({maxLength: 40, unit: fc.constantFrom('a', 'b', ' ', '\n', 'é')}), {maxLength: 30}), (chunks) => {
          const splitter = new LineSplitter('stdout', false)
          const out: LogLine[] = []
          for (const chunk of chunks) out.push(...splitter.push(chunk))
          out.push(...splitter.flush())
          const input = chunks.join('')
          const expected = input.endsWith('\n') ? input.slice(0, -1).split('\n') : input.split('\n')
          assert.deepEqual(texts(out), input === '' ? [] : expected)
          for (const line of out) assert.ok(!line.text.includes('\n'))
        }),
        {numRuns: 300},
      )
    })
  })

  describe('parseLinesOption', () => {
    it('takes a number or all', () => {
      assert.equal(parseLinesOption('50'), 50)
      assert.equal(parseLinesOption(' 7 '), 7)
      assert.equal(parseLinesOption('0'), 0)
      assert.equal(parseLinesOption('all'), 'all')
      assert.equal(parseLinesOption('ALL'), 'all')
    })

    it('rejects anything else with a usage error (Docker never sees it)', () => {
      for (const bad of ['', '-1', '1.5', 'ten', '5 lines', '1e3', '0x10']) {
        assert.throws(
          () => parseLinesOption(bad),
          (error: unknown) => error instanceof UsageError && error.exitCode === 2 && error.message.includes("Use a number or 'all'"),
          bad,
        )
      }
    })
  })

  describe('dockerLogsOptions', () => {
    it('asks Docker for both streams, with tail, follow and timestamps from the spec', () => {
      assert.deepEqual(dockerLogsOptions(spec()), {follow: true, stderr: true, stdout: true, tail: 50, timestamps: false})
      assert.deepEqual(dockerLogsOptions(spec({follow: false, lines: 'all', timestamps: true})), {
        follow: false,
        stderr: true,
        stdout: true,
        tail: 'all',
        timestamps: true,
      })
    })
  })

  describe('journalctlArgv (reference §5)', () => {
    it('default: -o cat, -n 50, -f', () => {
      assert.deepEqual(journalctlArgv('opencode', spec()), ['journalctl', '--no-pager', '-u', 'opencode', '-o', 'cat', '-n', '50', '-f'])
    })

    it('all lines: no -n', () => {
      assert.deepEqual(journalctlArgv('opencode-broker', spec({lines: 'all'})), ['journalctl', '--no-pager', '-u', 'opencode-broker', '-o', 'cat', '-f'])
    })

    it('no follow: no -f', () => {
      assert.deepEqual(journalctlArgv('opencode', spec({follow: false, lines: 10})), ['journalctl', '--no-pager', '-u', 'opencode', '-o', 'cat', '-n', '10'])
    })

    it('timestamps: -o short-iso --no-hostname', () => {
      assert.deepEqual(journalctlArgv('opencode', spec({follow: false, timestamps: true})), [
        'journalctl',
        '--no-pager',
        '-u',
        'opencode',
        '-o',
        'short-iso',
        '--no-hostname',
        '-n',
        '50',
      ])
    })
  })

  describe('keepLine: --grep and the broker filter', () => {
    const line = (text: string): LogLine => ({stream: 'stdout', text})

    it('keeps everything without filters', () => {
      assert.equal(keepLine(line('anything'), spec(), false), true)
    })

    it('--grep is a case-sensitive substring match', () => {
      assert.equal(keepLine(line('ERROR: disk full'), spec({grep: 'ERROR'}), false), true)
      assert.equal(keepLine(line('error: disk full'), spec({grep: 'ERROR'}), false), false)
      assert.equal(keepLine(line('a.b'), spec({grep: '.'}), false), true)
      assert.equal(keepLine(line('ab'), spec({grep: '.'}), false), false, '--grep is not a regex')
    })

    it("the broker filter keeps the broker's lines only", () => {
      assert.equal(keepLine(line('opencode-broker: listening on /run/opencode/auth.sock'), spec({broker: true}), true), true)
      assert.equal(keepLine(line('2026 INFO opencode_broker::server: ready'), spec({broker: true}), true), true)
      assert.equal(keepLine(line('opencode: GET /global/health -> 200'), spec({broker: true}), true), false)
    })

    it('with --grep, only the grep filter applies (as in the Rust occ)', () => {
      assert.equal(keepLine(line('opencode: GET / -> 200'), spec({broker: true, grep: 'GET'}), true), true)
      assert.equal(keepLine(line('opencode-broker: ready'), spec({broker: true, grep: 'GET'}), true), false)
    })
  })

  describe("demuxBuffer (Docker's multiplexed log body)", () => {
    it('splits frames by stream', () => {
      const body = Buffer.concat([frame(1, 'out one\n'), frame(2, 'err one\n'), frame(1, 'out two\n')])
      assert.deepEqual(demuxBuffer(body), [
        {stream: 'stdout', text: 'out one\n'},
        {stream: 'stderr', text: 'err one\n'},
        {stream: 'stdout', text: 'out two\n'},
      ])
    })

    it('treats a body that is not multiplexed (a TTY container) as plain stdout', () => {
      assert.deepEqual(demuxBuffer(Buffer.from('plain tty output line\nand another\n')), [{stream: 'stdout', text: 'plain tty output line\nand another\n'}])
    })

    it('gives nothing for an empty body', () => {
      assert.deepEqual(demuxBuffer(Buffer.alloc(0)), [])
    })

    it('frames split mid-line become whole lines through the splitter', () => {
      const body = Buffer.concat([frame(1, 'hel'), frame(1, 'lo\nwor'), frame(1, 'ld\n')])
      const splitter = new LineSplitter('stdout', false)
      const lines = demuxBuffer(body).flatMap((part) => splitter.push(part.text))
      assert.deepEqual(texts([...lines, ...splitter.flush()]), ['hello', 'world'])
    })
  })
})
