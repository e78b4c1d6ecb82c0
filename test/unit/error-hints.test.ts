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

/** Is the literal (part of) an error's actions: `actions: [...]`, `actions.push(...)`, `extraActions`? */
function inActions(node: ts.Node): boolean {
  for (let at: ts.Node | undefined = node.parent; at && !ts.isSourceFile(at) && !ts.isBlock(at); at = at.parent) {
    if (ts.isPropertyAssignment(at) && /actions$/i.test(at.name.getText())) return true
    if (ts.isCallExpression(at) && /actions\.(push|unshift)$/i.test(at.expression.getText())) return true
    if ((ts.isVariableDeclaration(at) || ts.isParameter(at)) && /actions$/i.test(at.name.getText())) return true
  }

  return false
}

/** Every string and template literal (template holes become `<x>`), and whether it is an action. */
function literals(file: string): Array<{action: boolean; text: string}> {
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
  const out: Array<{action: boolean; text: string}> = []
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) out.push({action: inActions(node), text: node.text})
    else if (ts.isTemplateExpression(node)) {
      out.push({action: inActions(node), text: node.head.text + node.templateSpans.map((span) => `<x>${span.literal.text}`).join('')})
    }

    ts.forEachChild(node, visit)
  }

  visit(source)
  return out
}

const PROSE_VERBS = new Set(['can', 'cannot', 'did', 'does', 'has', 'is', 'runs', 'stopped', 'was', 'will'])

/**
 * "occ <words> [--flags]" instructions in a text: after ': ', '&& ', 'then ' or a backtick
 * anywhere, and at the start of an action. A hint built from a variable (`occ ${id}`) is not one.
 */
export function hintsIn(text: string, action = false): string[] {
  const hints: string[] = []
  const pattern = action ? /(?:^|: |&& |\bthen |`)occ ([a-z][^\s,;)`'"]*(?: (?:[a-z<-][^\s,;)`'"]*|'[^']*'))*)/g : /(?:: |&& |\bthen |`)occ ([a-z][^\s,;)`'"]*(?: (?:[a-z<-][^\s,;)`'"]*|'[^']*'))*)/g
  for (const match of text.matchAll(pattern)) {
    // "…: occ is stopping" is a sentence about occ, not an instruction.
    if (!PROSE_VERBS.has(match[1].split(' ')[0])) hints.push(match[1])
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
    let checked = 0
    for (const file of sourceFiles()) {
      for (const {action, text} of literals(file)) {
        for (const hint of hintsIn(text, action)) {
          checked++
          const problem = checkHint(hint, manifest)
          if (problem) problems.push(`${path.relative(REPO_ROOT, file)}: ${problem}`)
        }
      }
    }

    assert.ok(checked >= 20, `found only ${checked} hints: the scan is broken`)
    assert.deepEqual(problems, [])
  })

  it('the checker itself: finds hints and rejects commands and flags that do not exist', () => {
    const manifest: Manifest = {commands: {start: {flags: {port: {char: 'p'}, recreate: {}}}, stop: {flags: {remove: {}}}, 'update:opencode': {flags: {}}}}
    assert.deepEqual(hintsIn('Start it with: occ start --port <port>'), ['start --port <port>'])
    assert.deepEqual(hintsIn('occ stop --remove && occ start', true), ['stop --remove', 'start'])
    assert.deepEqual(hintsIn('occ stop --remove && occ start'), ['start'])
    assert.deepEqual(hintsIn('this occ is old', true), [])
    assert.deepEqual(hintsIn('Not starting it: occ is stopping.'), [])
    assert.deepEqual(hintsIn('Supported: occ ${x}'.replace('${x}', '<x>'), true), [])
    assert.equal(checkHint('start --recreate', manifest), undefined)
    assert.equal(checkHint('start -p 3100', manifest), undefined)
    assert.equal(checkHint('update opencode', manifest), undefined)
    assert.match(checkHint('update container', manifest) ?? '', /no such command/)
    assert.match(checkHint('user add <name>', manifest) ?? '', /no such command/)
    assert.match(checkHint('stop --force', manifest) ?? '', /no flag --force/)
    assert.match(checkHint('start -x', manifest) ?? '', /no flag -x/)
  })
})
