import assert from 'node:assert/strict'

import {helpUnderJson, idWords, normalizeArgv, topicProblem, type CommandTable} from '../../src/cli/argv.js'
import {closest, typoDistance} from '../../src/hooks/command-not-found.js'

const TABLE: CommandTable = {
  ids: ['config', 'config:get', 'config:set', 'config:show', 'install', 'logs', 'start', 'status', 'stop', 'update:opencode', 'plugins', 'plugins:link'],
  topics: ['config', 'update', 'plugins'],
}

const norm = (argv: string[]): string[] => normalizeArgv(argv, TABLE).argv

describe('argv before oclif: leading global flags, --no-color, topics', () => {
  describe('leading global flags move after the command id (the Rust occ order)', () => {
    it('moves boolean flags', () => {
      assert.deepEqual(norm(['-q', 'status']), ['status', '-q'])
      assert.deepEqual(norm(['--json', 'status']), ['status', '--json'])
      assert.deepEqual(norm(['-v', '--quiet', 'stop', '-t', '5']), ['stop', '-v', '--quiet', '-t', '5'])
    })

    it('moves flags with values, spaced or with =', () => {
      assert.deepEqual(norm(['--runtime', 'host', 'status']), ['status', '--runtime', 'host'])
      assert.deepEqual(norm(['--sandbox-instance', 'X', 'status', '--json']), ['status', '--sandbox-instance', 'X', '--json'])
      assert.deepEqual(norm(['--runtime=host', 'config', 'show']), ['config', 'show', '--runtime=host'])
    })

    it('keeps multi-word ids together and stops before arguments', () => {
      assert.deepEqual(norm(['--json', 'update', 'opencode', '--branch', 'main']), ['update', 'opencode', '--json', '--branch', 'main'])
      assert.deepEqual(norm(['-q', 'config', 'set', 'port', '3100']), ['config', 'set', '-q', 'port', '3100'])
      assert.deepEqual(norm(['-q', 'config', 'get', 'status']), ['config', 'get', '-q', 'status'])
    })

    it('puts them after the first word of an unknown command (so its error can be JSON)', () => {
      assert.deepEqual(norm(['--json', 'stauts']), ['stauts', '--json'])
    })

    it('leaves everything else alone', () => {
      assert.deepEqual(norm(['status', '-q']), ['status', '-q'])
      assert.deepEqual(norm(['--help']), ['--help'])
      assert.deepEqual(norm(['--version']), ['--version'])
      assert.deepEqual(norm(['--runtime']), ['--runtime'])
      assert.deepEqual(norm([]), [])
    })
  })

  describe('--no-color', () => {
    it('is taken out anywhere before --, and reported', () => {
      assert.deepEqual(normalizeArgv(['--no-color', 'status'], TABLE), {argv: ['status'], noColor: true})
      assert.deepEqual(normalizeArgv(['plugins', '--no-color'], TABLE), {argv: ['plugins'], noColor: true})
      assert.deepEqual(normalizeArgv(['--no-color', '-q', 'status'], TABLE), {argv: ['status', '-q'], noColor: true})
    })

    it('is an argument after --', () => {
      assert.deepEqual(normalizeArgv(['logs', '--', '--no-color'], TABLE), {argv: ['logs', '--', '--no-color'], noColor: false})
    })
  })

  describe('topics fail like commands', () => {
    it('a topic alone needs a command', () => {
      assert.deepEqual(topicProblem(['update'], TABLE), {commands: ['update opencode'], extra: [], topic: 'update'})
    })

    it('a flag before the command is a usage error that says where the command goes', () => {
      assert.deepEqual(topicProblem(['update', '--yes', 'opencode'], TABLE), {
        commands: ['update opencode'],
        extra: ['--yes', 'opencode'],
        misplaced: 'update opencode',
        topic: 'update',
      })
    })

    it('an unknown flag on a topic is a usage error', () => {
      assert.equal(topicProblem(['update', '--bogus'], TABLE)?.topic, 'update')
      assert.equal(topicProblem(['update', '--rollback'], TABLE)?.topic, 'update')
    })

    it('asking for help is fine, and so are commands (a topic that is also a command too)', () => {
      assert.equal(topicProblem(['update', '--help'], TABLE), undefined)
      assert.equal(topicProblem(['update', '-h'], TABLE), undefined)
      assert.equal(topicProblem(['update', 'opencode', '--yes'], TABLE), undefined)
      assert.equal(topicProblem(['config'], TABLE), undefined)
      assert.equal(topicProblem(['plugins', 'link', '.'], TABLE), undefined)
      assert.equal(topicProblem(['stauts'], TABLE), undefined)
      assert.equal(topicProblem([], TABLE), undefined)
    })

    it('counts the words of an id', () => {
      assert.equal(idWords(['update', 'opencode', '--yes'], TABLE), 2)
      assert.equal(idWords(['config', 'set', 'port', '1'], TABLE), 2)
      assert.equal(idWords(['config', 'port'], TABLE), 1)
      assert.equal(idWords(['nope'], TABLE), 0)
    })
  })

  describe('help under --json', () => {
    it('is the command with --help, so an unknown one is a JSON error (oclif\'s help command has no --json)', () => {
      assert.deepEqual(helpUnderJson(norm(['--json', 'help', 'stauts'])), ['stauts', '--json', '--help'])
      assert.deepEqual(helpUnderJson(['help', 'config', 'show', '--json']), ['config', 'show', '--json', '--help'])
      assert.deepEqual(helpUnderJson(['help', '--json']), ['--json', '--help'])
    })

    it('leaves help without --json (and --json after --) alone', () => {
      assert.deepEqual(helpUnderJson(['help', 'status']), ['help', 'status'])
      assert.deepEqual(helpUnderJson(['help', '-n']), ['help', '-n'])
      assert.deepEqual(helpUnderJson(['help', 'logs', '--', '--json']), ['help', 'logs', '--', '--json'])
      assert.deepEqual(helpUnderJson(['status', '--json']), ['status', '--json'])
    })
  })

  describe('did you mean', () => {
    it('counts a swap of two letters as one typo', () => {
      assert.equal(typoDistance('stauts', 'status'), 1)
      assert.equal(typoDistance('stauts', 'start'), 2)
      assert.equal(typoDistance('', 'abc'), 3)
      assert.equal(typoDistance('same', 'same'), 0)
    })

    it('suggests the nearest command, and nothing for noise', () => {
      assert.equal(closest('stauts', TABLE.ids as string[]), 'status')
      assert.equal(closest('config:shwo', TABLE.ids as string[]), 'config:show')
      assert.equal(closest('zzzzzzzz', TABLE.ids as string[]), undefined)
    })
  })
})
