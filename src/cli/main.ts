import {Config, Errors, flush, handle, run, settings} from '@oclif/core'

import {UsageError} from '../errors.js'
import {helpUnderJson, normalizeArgv, rustSpellings, topicProblem, type CommandTable, type TopicProblem} from './argv.js'
import {listsPlugins, resolveOwnName} from './own-name.js'
import {printJsonError, wantsJson} from './output.js'

/** bin/run.js after the Node guard: occ's argv rules (src/cli/argv.ts), then oclif. */
export async function main(argv: string[], root: string): Promise<void> {
  // The installed occ runs plugins' JavaScript as it is (a linked TypeScript plugin is built
  // first); oclif would otherwise try to transpile linked plugins and warn on every run that an
  // ESM one cannot be. bin/dev.js (development) keeps oclif's default.
  settings.enableAutoTranspile = false
  try {
    const config = new OccConfig({root})
    await config.load()
    const table: CommandTable = {ids: commandIds(config), topics: config.topics.map((topic) => topic.name)}
    const normalized = normalizeArgv(argv, table)
    normalized.argv = helpUnderJson(rustSpellings(normalized.argv))
    if (normalized.noColor) process.env.NO_COLOR = '1'
    const problem = topicProblem(normalized.argv, table)
    if (problem) {
      fail(topicError(problem), normalized.argv)
      return
    }

    await run(normalized.argv, config)
    await flush()
  } catch (error) {
    await handle(error as Error)
  }
}

/** oclif's Config; before it loads plugins from its data dir, their 'opencode-cloud' is made this occ. */
class OccConfig extends Config {
  override async loadPluginsAndCommands(options?: {force: boolean}): Promise<void> {
    if (await listsPlugins(this.dataDir)) resolveOwnName(this.root, this.pjson.name, this.pjson.exports as Parameters<typeof resolveOwnName>[2])
    return super.loadPluginsAndCommands(options)
  }
}

function commandIds(config: Config): string[] {
  return [...config.commandIDs, ...config.commands.flatMap((command) => command.aliases)]
}

function topicError(problem: TopicProblem): UsageError {
  const occ = (command: string): string => `occ ${command}`
  const flags = problem.extra.filter((arg) => arg !== problem.misplaced?.split(' ').at(-1))
  if (problem.misplaced) {
    return new UsageError(`'occ ${problem.topic}' is a topic, not a command: the command comes right after it.`, {
      actions: [`Put the command first: ${[occ(problem.misplaced), ...flags].join(' ')}`, `See its usage: occ ${problem.misplaced} --help`],
    })
  }

  const what = problem.extra.length > 0 ? ` (got: ${problem.extra.join(' ')})` : ''
  return new UsageError(`'occ ${problem.topic}' needs a command${what}.`, {
    actions: [`Commands: ${problem.commands.map(occ).join(', ')}`, `See the topic: occ ${problem.topic} --help`],
  })
}

function fail(error: UsageError, argv: string[]): void {
  if (wantsJson(argv)) {
    printJsonError(error)
    process.exitCode = error.exitCode
    return
  }

  // oclif's own format ("Error: …", "Try this: …"), as for every other error.
  throw new Errors.CLIError(error.message, {code: error.code, exit: error.exitCode, suggestions: error.actions})
}
