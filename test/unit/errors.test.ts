import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {Config} from '@oclif/core'
import {captureOutput, runCommand} from '@oclif/test'

import {errorJsonSchema} from '../../src/error-schema.js'
import {BUG_REPORT_URL, ERROR_CODES, ExitCode, isOccErrorCode, OCC_ERROR_CODES, OccError} from '../../src/errors.js'
import {RESULT_ERROR_CODES} from '../../src/protocol/schemas.js'
import {resultToOutcome} from '../../src/protocol/result-mapping.js'
import {RuntimeCommand, toOccError} from '../../src/runtime/runtime-command.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/** A plugin-style command that fails the way the test asks it to. */
class Failing extends RuntimeCommand<typeof Failing> {
  static override id = 'fixture:fail'
  static failure: () => unknown = () => undefined

  async run(): Promise<void> {
    throw Failing.failure()
  }
}

function parseJsonError(stdout: string): ReturnType<typeof errorJsonSchema.parse> {
  return errorJsonSchema.parse(JSON.parse(stdout))
}

describe('errors: one table, catch() and the JSON error shape', () => {
  let home: string
  let config: Config
  const saved = {...process.env}
  before(async () => {
    config = await Config.load({root: ROOT})
  })
  beforeEach(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-errors-'))
    process.env.XDG_CONFIG_HOME = path.join(home, 'config')
    process.env.XDG_DATA_HOME = path.join(home, 'data')
    process.env.XDG_STATE_HOME = path.join(home, 'state')
    delete process.env.OPENCODE_RUNTIME
  })
  afterEach(async () => {
    process.env = {...saved}
    process.exitCode = undefined
    await fs.rm(home, {force: true, recursive: true})
  })

  describe('the table', () => {
    it('gives every code an exit code occ documents and a list of next steps', () => {
      const documented = new Set<number>(Object.values(ExitCode))
      for (const code of OCC_ERROR_CODES) {
        const entry = ERROR_CODES[code]
        assert.ok(documented.has(entry.exit), `${code}: exit ${entry.exit}`)
        assert.ok(Array.isArray(entry.actions), code)
        for (const action of entry.actions) assert.doesNotMatch(action, /occ \w+:\w+/, `${code}: internal command id in "${action}"`)
      }
    })

    it('takes the exit code from the table and the default actions unless given', () => {
      const plain = new OccError('CONTAINER_MISSING', 'gone')
      assert.equal(plain.exitCode, ExitCode.containerMissing)
      assert.deepEqual(plain.actions, ERROR_CODES.CONTAINER_MISSING.actions)
      const specific = new OccError('CONTAINER_MISSING', 'gone', {actions: ['Do this: occ start --port 3100']})
      assert.deepEqual(specific.actions, ['Do this: occ start --port 3100'])
      assert.equal(isOccErrorCode('CONTAINER_MISSING'), true)
      assert.equal(isOccErrorCode('toString'), false)
      assert.equal(isOccErrorCode('NO_SUCH_CODE'), false)
    })

    it("has the code and exit code of every host answer the in-sandbox hand-off can report", () => {
      for (const category of RESULT_ERROR_CODES) {
        const now = new Date().toISOString()
        const outcome = resultToOutcome({error_code: category, finished_at: now, message: 'm', started_at: now, status: 'error'}, {})
        const code = outcome.error?.code
        assert.ok(isOccErrorCode(code), `${category} -> ${code} is not in ERROR_CODES`)
        assert.equal(ERROR_CODES[code].exit, outcome.error?.exitCode, `${category} -> ${code}`)
      }
    })

    it('tells known errors from bugs', () => {
      assert.equal(toOccError(new OccError('TIMEOUT', 'slow')).bug, false)
      const bug = toOccError(new TypeError("Cannot read properties of undefined (reading 'x')"))
      assert.equal(bug.code, 'BUG')
      assert.equal(bug.bug, true)
      assert.equal(bug.exitCode, 1)
      assert.match(bug.message, /^This is a bug in occ: Cannot read properties/)
      assert.ok(bug.actions.some((action) => action.includes(BUG_REPORT_URL)), bug.actions.join('\n'))
      assert.equal(toOccError('a string').code, 'BUG')
    })
  })

  describe('catch() of a RuntimeCommand', () => {
    it('prints a known error with its next steps and exits with its code', async () => {
      Failing.failure = () => new OccError('CONTAINER_NOT_RUNNING', "The sandbox container 'x' is not running.")
      const {error} = await captureOutput(() => Failing.run([], config))
      assert.ok(error, 'expected the command to fail')
      assert.equal(error.oclif?.exit, ExitCode.containerMissing)
      assert.equal(error.code, 'CONTAINER_NOT_RUNNING')
      assert.match(error.message, /is not running/)
      assert.deepEqual(error.suggestions, ['Start it with: occ start'])
    })

    it('prints a known error as {error} JSON on stdout under --json, with its exit code', async () => {
      Failing.failure = () => new OccError('UPDATE_BUSY', 'Another update is running.')
      const {error, stdout} = await captureOutput(() => Failing.run(['--json'], config))
      assert.equal(error, undefined)
      const json = parseJsonError(stdout)
      assert.deepEqual(json.error, {
        actions: [...ERROR_CODES.UPDATE_BUSY.actions],
        bug: false,
        code: 'UPDATE_BUSY',
        exitCode: ExitCode.busy,
        message: 'Another update is running.',
        name: 'OccError',
      })
      assert.equal(process.exitCode, ExitCode.busy)
    })

    it('reports anything else as a bug in occ, with how to report it (text and JSON)', async () => {
      Failing.failure = () => new RangeError('index out of range')
      const text = await captureOutput(() => Failing.run([], config))
      assert.equal(text.error?.oclif?.exit, 1)
      assert.equal(text.error?.code, 'BUG')
      assert.match(String(text.error?.message), /^This is a bug in occ: index out of range/)
      assert.ok(text.error?.suggestions?.some((line) => line.includes(BUG_REPORT_URL)))

      const json = await captureOutput(() => Failing.run(['--json'], config))
      const parsed = parseJsonError(json.stdout)
      assert.equal(parsed.error.code, 'BUG')
      assert.equal(parsed.error.bug, true)
      assert.equal(parsed.error.exitCode, 1)
      assert.equal(process.exitCode, 1)
    })

    it('this.exit(n) is an exit, not an error: nothing printed, not even under --json', async () => {
      class Exits extends RuntimeCommand<typeof Exits> {
        static override id = 'fixture:exit'
        async run(): Promise<void> {
          this.exit(3)
        }
      }

      for (const argv of [[], ['--json']]) {
        const {error, stderr, stdout} = await captureOutput(() => Exits.run(argv, config))
        assert.equal(error?.oclif?.exit, 3, argv.join(' '))
        assert.equal(stdout, '', argv.join(' '))
        assert.equal(stderr, '', argv.join(' '))
      }
    })

    it("a command's own this.error() keeps the exit code it chose, in text and in JSON", async () => {
      class Refuses extends RuntimeCommand<typeof Refuses> {
        static exit: number | undefined = 1
        static override id = 'fixture:refuse'
        async run(): Promise<void> {
          this.error('the plugin refuses', Refuses.exit === undefined ? {} : {exit: Refuses.exit})
        }
      }

      for (const exit of [1, 3, undefined]) {
        Refuses.exit = exit
        const expected = exit ?? ExitCode.usage // oclif's default exit for this.error()
        const text = await captureOutput(() => Refuses.run([], config))
        assert.equal(text.error?.oclif?.exit, expected)
        assert.match(String(text.error?.message), /the plugin refuses/)

        process.exitCode = undefined
        const json = await captureOutput(() => Refuses.run(['--json'], config))
        const parsed = parseJsonError(json.stdout)
        assert.equal(parsed.error.code, 'COMMAND_FAILED', `exit ${exit}`)
        assert.equal(parsed.error.exitCode, expected)
        assert.equal(parsed.error.message, 'the plugin refuses')
        assert.equal(parsed.error.bug, false)
        assert.equal(process.exitCode, expected, 'the process exits with the code the JSON names')
      }
    })

    it("oclif's parser errors stay USAGE (missing argument), whatever the command", async () => {
      const {stdout} = await runCommand(['user', 'add', '--json'], {root: ROOT})
      const parsed = parseJsonError(stdout)
      assert.equal(parsed.error.code, 'USAGE')
      assert.equal(parsed.error.exitCode, ExitCode.usage)
      assert.equal(process.exitCode, ExitCode.usage)
    })

    it('shows the cause of a bug with -v', async () => {
      Failing.failure = () => new Error('deep inside')
      const {error} = await captureOutput(() => Failing.run(['-v'], config))
      assert.match(String(error?.message), /Cause: Error: deep inside\n\s+at /)
    })
  })

  describe('real commands', () => {
    it('config get of an unknown key: CONFIG_INVALID, exit 3, text naming the key', async () => {
      const {error} = await runCommand(['config', 'get', 'colour'], {root: ROOT})
      assert.equal(error?.oclif?.exit, ExitCode.config)
      assert.equal(error?.code, 'CONFIG_INVALID')
      assert.match(String(error?.message), /colour/)
    })

    it('config get of an unknown key under --json: the error shape, exit 3', async () => {
      const {stdout} = await runCommand(['config', 'get', 'colour', '--json'], {root: ROOT})
      const json = parseJsonError(stdout)
      assert.equal(json.error.code, 'CONFIG_INVALID')
      assert.equal(json.error.exitCode, ExitCode.config)
      assert.equal(json.error.bug, false)
      assert.equal(process.exitCode, ExitCode.config)
    })

    it('an unknown flag is a usage error: exit 2, and under --json a USAGE error', async () => {
      const text = await runCommand(['status', '--bogus'], {root: ROOT})
      assert.equal(text.error?.oclif?.exit, ExitCode.usage)
      assert.match(String(text.error?.message), /--bogus/)

      const {stdout} = await runCommand(['status', '--bogus', '--json'], {root: ROOT})
      const json = parseJsonError(stdout)
      assert.equal(json.error.code, 'USAGE')
      assert.equal(json.error.exitCode, ExitCode.usage)
      assert.equal(process.exitCode, ExitCode.usage)
    })

    it('global flags and no command: a usage error (JSON under --json), not a command named --json', async () => {
      const text = await runCommand(['-q'], {root: ROOT})
      assert.equal(text.error?.oclif?.exit, ExitCode.usage)
      assert.match(String(text.error?.message), /^'occ -q' names no command\.$/)
      assert.doesNotMatch(String(text.error?.message), /not an occ command/)

      const json = await runCommand(['--json', '--runtime', 'host'], {root: ROOT})
      assert.equal(json.error?.oclif?.exit, ExitCode.usage)
      const parsed = parseJsonError(json.stdout)
      assert.equal(parsed.error.code, 'USAGE')
      assert.equal(parsed.error.message, "'occ --json --runtime host' names no command.")
    })

    it('help for a command that does not exist fails as the command would: the nearest one, exit 2, JSON under --json', async () => {
      for (const argv of [['help', 'stauts'], ['stauts', '--help'], ['stauts', '-h']]) {
        const {error, stdout} = await runCommand(argv, {root: ROOT})
        assert.equal(error?.oclif?.exit, ExitCode.usage, argv.join(' '))
        assert.equal(error?.code, 'COMMAND_NOT_FOUND', argv.join(' '))
        assert.equal(error?.message, "'stauts' is not an occ command.", argv.join(' '))
        assert.ok(error?.suggestions?.includes('Did you mean: occ status'), `${argv.join(' ')}: ${String(error?.suggestions)}`)
        assert.doesNotMatch(stdout, /USAGE/, 'no help printed')
      }

      const nested = await runCommand(['help', 'config', 'shwo'], {root: ROOT})
      assert.equal(nested.error?.message, "'config shwo' is not an occ command.")
      assert.ok(nested.error?.suggestions?.includes('Did you mean: occ config show'), String(nested.error?.suggestions))

      const json = await runCommand(['stauts', '--help', '--json'], {root: ROOT})
      const parsed = parseJsonError(json.stdout)
      assert.equal(parsed.error.code, 'COMMAND_NOT_FOUND')
      assert.equal(parsed.error.exitCode, ExitCode.usage)
      assert.deepEqual(parsed.error.actions, ['Did you mean: occ status', 'List the commands: occ help'])
      assert.equal(json.error?.oclif?.exit, ExitCode.usage)

      // Help for what exists is unchanged.
      const help = await runCommand(['help', 'status'], {root: ROOT})
      assert.equal(help.error, undefined)
      assert.match(help.stdout, /USAGE\n\s+\$ occ status/)
    })

    it('a host-only command inside the sandbox names the commands that work there, as users type them', async () => {
      process.env.OPENCODE_RUNTIME = 'container'
      const {error} = await runCommand(['config', 'show'], {root: ROOT})
      assert.equal(error?.oclif?.exit, ExitCode.notSupported)
      assert.match(String(error?.message), /'occ config show' is not supported in the container runtime/)
      assert.doesNotMatch(String(error?.message), /config:show/)
      const supported = (error?.suggestions ?? []).find((line) => line.startsWith('Supported inside the sandbox:'))
      assert.ok(supported, String(error?.suggestions))
      const listed = supported.replace('Supported inside the sandbox: ', '').split(', ')
      for (const command of ['occ logs', 'occ status', 'occ update opencode']) assert.ok(listed.includes(command), supported)
      for (const command of ['occ start', 'occ config show', 'occ install']) assert.ok(!listed.includes(command), supported)
    })
  })
})
