/**
 * Issue 8's rule for the update path: no shell string is built in JS. Scripts in the sandbox are
 * shipped files sent on stdin (`sh -s -- <subcommand> <data>...`), everything else runs as argv.
 * This reads the update code's syntax trees (not its text, so comments do not count) and fails on
 * an argv with `-c` (a shell given a command string), on a template or concatenation handed to a
 * shell, and on child_process's string-taking exec/execSync.
 */
import assert from 'node:assert/strict'
import {readdirSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import ts from 'typescript'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const UPDATE_DIRS = ['src/runtime/update', 'plugins/update-listener/src']
const SHELLS = new Set(['sh', 'bash', 'dash', '/bin/sh', '/bin/bash'])

function sources(dir: string): string[] {
  return readdirSync(path.join(root, dir), {recursive: true, withFileTypes: true})
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)))
}

const literal = (node: ts.Node): string | undefined => (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) ? node.text : undefined)

/** What in one file's syntax tree breaks the rule, as "file:line: why". */
export function shellStrings(file: string, text: string): string[] {
  const tree = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
  const found: string[] = []
  const report = (node: ts.Node, why: string) => found.push(`${file}:${tree.getLineAndCharacterOfPosition(node.getStart()).line + 1}: ${why}`)
  const visit = (node: ts.Node) => {
    if (ts.isArrayLiteralExpression(node)) {
      const items = node.elements.map((element) => literal(element))
      items.forEach((item, index) => {
        if (item !== undefined && /^-[a-z]*c$/.test(item) && items.slice(0, index).some((before) => before !== undefined && SHELLS.has(before))) {
          report(node, `a shell given a command string (${items.slice(0, index + 1).join(' ')})`)
        }
      })
      if (items[0] !== undefined && SHELLS.has(items[0])) {
        for (const element of node.elements) {
          if (ts.isTemplateExpression(element) && /\b(sh|bash)\b/.test(element.getText())) report(element, 'a shell command built from a template')
        }
      }
    }

    if (ts.isCallExpression(node)) {
      const callee = node.expression.getText(tree)
      if (/(^|\.)(exec|execSync)$/.test(callee) && node.arguments[0] && !ts.isArrayLiteralExpression(node.arguments[0]) && !ts.isIdentifier(node.arguments[0])) {
        report(node, `${callee} given a command string`)
      }
    }

    ts.forEachChild(node, visit)
  }

  visit(tree)
  return found
}

describe('the update path builds no shell string in JS', () => {
  it('holds for src/runtime/update and the listener', () => {
    const files = UPDATE_DIRS.flatMap((dir) => sources(dir))
    assert.ok(files.some((file) => file.endsWith('release-store.ts')) && files.some((file) => file.endsWith('listener.ts')), files.join(', '))
    const found = files.flatMap((file) => shellStrings(file, readFileSync(path.join(root, file), 'utf8')))
    assert.deepEqual(found, [])
  })

  it('the check itself sees sh -c, a templated shell command and a string exec (it can fail)', () => {
    const bad = [
      "runtime.exec(['sh', '-c', `rm -rf ${dir}`])",
      "runtime.exec(['/bin/bash', '-lc', 'echo hi'])",
      "child.execSync('git fetch ' + ref)",
      'runtime.exec([\'bash\', `sh ${script}`])',
    ]
    for (const line of bad) assert.equal(shellStrings('bad.ts', line).length > 0, true, line)
    const good = ["runtime.exec(['sh', '-s', '--', 'inspect', root], {stdin: script})", "runtime.exec(['git', '-C', dir, 'fetch', ref])", 'runtime.exec(argv, options)']
    for (const line of good) assert.deepEqual(shellStrings('good.ts', line), [], line)
  })
})
