/**
 * What occ does to its argv before oclif parses it. Pure functions, unit-tested.
 *
 * - The Rust occ takes global flags before the command (`occ -q status`, `occ --runtime host
 *   status`); oclif only after it. A leading global flag is moved after the command id.
 * - `--no-color` is accepted everywhere (any command, plugins' too): it is taken out and sets
 *   NO_COLOR.
 * - A topic is not a command: `occ update --yes opencode` or `occ update` must not print the
 *   topic's help and exit 0 (a script would think the update ran); it is a usage error.
 */

/** Global flags occ's commands take, and whether each takes a value. */
const GLOBAL_FLAGS: Record<string, {value: boolean}> = {
  '--json': {value: false},
  '--quiet': {value: false},
  '--runtime': {value: true},
  '--sandbox-instance': {value: true},
  '--verbose': {value: false},
  '-q': {value: false},
  '-v': {value: false},
}

export const HELP_FLAGS = ['--help', '-h']

export interface CommandTable {
  /** oclif command ids (`config:show`), aliases included. */
  ids: Iterable<string>
  /** oclif topic names (`config`, `update`). */
  topics: Iterable<string>
}

export interface NormalizedArgv {
  argv: string[]
  noColor: boolean
}

export function normalizeArgv(input: string[], table: CommandTable): NormalizedArgv {
  const end = input.indexOf('--')
  const head = end === -1 ? input : input.slice(0, end)
  const tail = end === -1 ? [] : input.slice(end)
  const withoutColor = head.filter((arg) => arg !== '--no-color')
  const noColor = withoutColor.length !== head.length
  const args = [...withoutColor, ...tail]

  const leading: string[] = []
  let index = 0
  while (index < args.length) {
    const arg = args[index]
    const [name, inline] = splitFlag(arg)
    const spec = GLOBAL_FLAGS[name]
    if (!spec) break
    if (spec.value && inline === undefined) {
      if (index + 1 >= args.length) break
      leading.push(arg, args[index + 1])
      index += 2
    } else {
      leading.push(arg)
      index += 1
    }
  }

  if (leading.length === 0) return {argv: args, noColor}
  const rest = args.slice(index)
  const words = idWords(rest, table)
  // An unknown command still gets the flags after its first word, so `occ --json stauts` is a
  // JSON error.
  const cut = words > 0 ? words : rest.length > 0 && !rest[0].startsWith('-') ? 1 : 0
  return {argv: [...rest.slice(0, cut), ...leading, ...rest.slice(cut)], noColor}
}

/** How many leading words of argv name a command or a topic (the longest match). */
export function idWords(argv: string[], table: CommandTable): number {
  const ids = new Set(table.ids)
  const topics = new Set(table.topics)
  let best = 0
  for (let count = 1; count <= argv.length; count++) {
    if (argv[count - 1].startsWith('-')) break
    const id = argv.slice(0, count).join(':')
    if (ids.has(id) || topics.has(id)) best = count
    else if (!hasPrefix(id, ids, topics)) break
  }

  return best
}

export interface TopicProblem {
  /** The topic as users type it (`update`). */
  topic: string
  /** What was typed after the topic, when it was not a command of it. */
  extra: string[]
  /** The topic's commands as users type them (`update opencode`). */
  commands: string[]
  /** The command of this topic that appears later in argv (`occ update --yes opencode`). */
  misplaced?: string
}

/**
 * A topic used as a command: `occ update`, `occ update --yes opencode`, `occ update --bogus`.
 * Asking for help (`occ update --help`) is not a problem.
 */
export function topicProblem(argv: string[], table: CommandTable): TopicProblem | undefined {
  const ids = new Set(table.ids)
  const words = idWords(argv, table)
  if (words === 0) return undefined
  const id = argv.slice(0, words).join(':')
  if (ids.has(id)) return undefined
  const rest = argv.slice(words)
  const end = rest.indexOf('--')
  if ((end === -1 ? rest : rest.slice(0, end)).some((arg) => HELP_FLAGS.includes(arg))) return undefined
  const commands = [...ids].filter((other) => other.startsWith(`${id}:`)).sort()
  const misplacedId = commands.find((command) => rest.includes(command.slice(id.length + 1).split(':')[0]))
  return {
    commands: commands.map((command) => command.replaceAll(':', ' ')),
    extra: rest,
    ...(misplacedId ? {misplaced: misplacedId.replaceAll(':', ' ')} : {}),
    topic: id.replaceAll(':', ' '),
  }
}

function splitFlag(arg: string): [string, string | undefined] {
  const eq = arg.indexOf('=')
  return arg.startsWith('--') && eq !== -1 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined]
}

function hasPrefix(id: string, ids: Set<string>, topics: Set<string>): boolean {
  for (const other of [...ids, ...topics]) if (other.startsWith(`${id}:`)) return true
  return false
}

/**
 * The Rust occ's spellings that oclif cannot route: `occ update --rollback [flags]` is
 * `occ update container --rollback [flags]`.
 */
export function rustSpellings(argv: string[]): string[] {
  if (argv[0] !== 'update' || argv.length < 2) return argv
  const end = argv.indexOf('--')
  const rest = end === -1 ? argv.slice(1) : argv.slice(1, end)
  if (!rest.includes('--rollback') || rest.some((arg) => !arg.startsWith('-'))) return argv
  return ['update', 'container', ...argv.slice(1)]
}

/**
 * `occ help X --json` (also `occ --json help X`): oclif's help command has no --json and would
 * fail on the flag in text. As `occ X --help --json` the same help is shown, and an X that is no
 * command is a JSON error like `occ X --json`. Without --json, `occ help` is left as it is.
 */
export function helpUnderJson(argv: string[]): string[] {
  if (argv[0] !== 'help') return argv
  const end = argv.indexOf('--')
  const head = end === -1 ? argv : argv.slice(0, end)
  if (!head.includes('--json')) return argv
  return [...head.slice(1).filter((arg) => arg !== '--json'), '--json', HELP_FLAGS[0], ...(end === -1 ? [] : argv.slice(end))]
}
