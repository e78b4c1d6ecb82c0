import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'

import {Config} from '@oclif/core'
import ts from 'typescript'

import {REPO_ROOT} from '../helpers/sandbox-env.js'

/*
 * Every hint occ prints ("Start it with: occ start", an error's actions, a warning) must name a
 * command occ really has, with flags that command really takes. The hints are found in the
 * string literals of the sources (comments are not hints), the commands and flags from oclif's
 * own view of the CLI (occ's manifest, which `npm run build` writes, and its plugins).
 */

interface Manifest {
  commands: Record<string, {flags: Record<string, {char?: string}>}>
}

function sourceFiles(): string[] {
  const files: string[] = []
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, {withFileTypes: true})) {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push(full)
    }
  }

  walk(path.join(REPO_ROOT, 'src'))
  for (const plugin of fs.readdirSync(path.join(REPO_ROOT, 'plugins'))) {
    const src = path.join(REPO_ROOT, 'plugins', plugin, 'src')
    if (fs.existsSync(src)) walk(src)
  }

  return files
}

/** Every string and template literal (template holes become `<x>`). */
function literals(file: string): string[] {
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
  const out: string[] = []
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) out.push(node.text)
    else if (ts.isTemplateExpression(node)) {
      out.push(node.head.text + node.templateSpans.map((span) => `<x>${span.literal.text}`).join(''))
    }

    ts.forEachChild(node, visit)
  }

  visit(source)
  return out
}

/** Words after "occ" that make a sentence about occ, not an instruction ("occ is stopping"). */
const PROSE_WORDS = new Set([
  'acts', 'again', 'and', 'as', 'can', 'cannot', 'checks', 'command', 'commands', 'did', 'does', 'finishes', 'first', 'gets', 'has', 'installs',
  'is', 'make', 'manages', 'needs', 'opened', 'pid', 'prints', 'process', 'replaces', 'rolled', 'rolls', 'runs', 'set', 'starts', 'stays', 'stopped',
  'switches', 'waits', 'was', 'will', 'with', 'would',
])

/**
 * Every "occ <words> [--flags]" in a text, wherever it stands (after ': ', '(', ', ', 'Run ', in
 * backticks, …): a hint anywhere in a message or a description is read as one. A hint built
 * from a variable (`occ ${id}`) is not one.
 */
export function hintsIn(text: string): string[] {
  const hints: string[] = []
  const pattern = /(?<![\w./-])occ ([a-z][^\s,;)`'"]*(?: (?:[a-z0-9<-][^\s,;)`'"]*|'[^']*'|…))*)/g
  for (const match of text.matchAll(pattern)) {
    if (!PROSE_WORDS.has(match[1].split(' ')[0].replace(/[.:]+$/, ''))) hints.push(match[1])
  }

  return hints
}

/** Why a hint names no real command (undefined: it does). */
export function checkHint(hint: string, manifest: Manifest): string | undefined {
  const words = hint.split(' ')
  const topicWords: string[] = []
  for (const word of words) {
    if (!/^[a-z][a-z-]*$/.test(word)) break
    topicWords.push(word)
  }

  let id: string | undefined
  for (let n = topicWords.length; n > 0; n--) {
    const candidate = topicWords.slice(0, n).join(':')
    if (manifest.commands[candidate]) {
      id = candidate
      break
    }
  }

  // "occ user …": any command of a topic that has commands.
  const rest = words.slice(topicWords.length)
  if (!id && rest[0] === '…' && Object.keys(manifest.commands).some((command) => command.startsWith(`${topicWords.join(':')}:`))) return undefined
  if (!id) return `"occ ${hint}": no such command`
  const {flags} = manifest.commands[id]
  for (const word of words.slice(id.split(':').length)) {
    const long = /^--([a-z][a-z-]*)(?:=.*)?$/.exec(word)
    if (long && !flags[long[1]] && !(long[1].startsWith('no-') && flags[long[1].slice(3)])) return `"occ ${hint}": ${id} has no flag --${long[1]}`
    const short = /^-([a-zA-Z])$/.exec(word)
    if (short && !Object.values(flags).some((flag) => flag.char === short[1])) return `"occ ${hint}": ${id} has no flag -${short[1]}`
  }

  return undefined
}

describe('hints that lead somewhere', () => {
  const manifestFile = path.join(REPO_ROOT, 'oclif.manifest.json')

  it('every "occ …" an error, action or warning names is a real command with real flags', async () => {
    assert.ok(fs.existsSync(manifestFile), 'oclif.manifest.json is missing: run `npm run build` first')
    // Every command oclif would run: occ's own and its plugins' (help, plugins, …).
    const config = await Config.load(REPO_ROOT)
    const manifest: Manifest = {commands: {}}
    for (const command of config.commands) {
      manifest.commands[command.id] = {flags: Object.fromEntries(Object.entries(command.flags).map(([name, flag]) => [name, {char: flag.char}]))}
    }

    const problems: string[] = []
    const seen = new Set<string>()
    let checked = 0
    for (const file of sourceFiles()) {
      for (const text of literals(file)) {
        for (const hint of hintsIn(text)) {
          checked++
          seen.add(`${path.relative(REPO_ROOT, file)}: ${hint}`)
          const problem = checkHint(hint, manifest)
          if (problem) problems.push(`${path.relative(REPO_ROOT, file)}: ${problem}`)
        }
      }
    }

    assert.ok(checked >= 20, `found only ${checked} hints: the scan is broken`)
    // The scan reaches the codes of update container and the registry (errors.ts's table, the swap's own errors).
    for (const expected of ['src/errors.ts: config get image', 'src/errors.ts: logs --no-follow', 'src/runtime/container-update.ts: update container', 'src/runtime/container-update.ts: start']) {
      assert.ok(seen.has(expected), `the scan did not find "${expected}"`)
    }

    assert.deepEqual(problems, [])
  })

  it('the checker itself: finds hints and rejects commands and flags that do not exist', () => {
    const manifest: Manifest = {commands: {start: {flags: {port: {char: 'p'}, recreate: {}}}, stop: {flags: {remove: {}}}, 'update:opencode': {flags: {}}}}
    assert.deepEqual(hintsIn('Start it with: occ start --port <port>'), ['start --port <port>'])
    assert.deepEqual(hintsIn('occ stop --remove && occ start'), ['stop --remove', 'start'])
    assert.deepEqual(hintsIn('Bind to loopback (occ config set bind_address 127.0.0.1), or run occ start --port 3100'), ['config set bind_address 127.0.0.1', 'start --port 3100'])
    assert.deepEqual(hintsIn('See the host: occ logs, occ status'), ['logs', 'status'])
    assert.deepEqual(hintsIn('Run occ with sudo; the service manager starts occ again; see occ-imgcheck/occ x'), [])
    assert.equal(checkHint('user …', {commands: {'user:add': {flags: {}}}}), undefined)
    assert.match(checkHint('users …', {commands: {'user:add': {flags: {}}}}) ?? '', /no such command/)
    assert.deepEqual(hintsIn('this occ is old'), [])
    assert.deepEqual(hintsIn('Not starting it: occ is stopping.'), [])
    assert.deepEqual(hintsIn('Supported: occ ${x}'.replace('${x}', '<x>')), [])
    assert.equal(checkHint('start --recreate', manifest), undefined)
    assert.equal(checkHint('start -p 3100', manifest), undefined)
    assert.equal(checkHint('update opencode', manifest), undefined)
    assert.match(checkHint('update container', manifest) ?? '', /no such command/)
    assert.match(checkHint('user add <name>', manifest) ?? '', /no such command/)
    assert.match(checkHint('stop --force', manifest) ?? '', /no flag --force/)
    assert.match(checkHint('start -x', manifest) ?? '', /no flag -x/)
  })
})
