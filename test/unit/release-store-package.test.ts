import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

describe('release-store.sh ships with occ', function () {
  this.timeout(60_000)

  it('is in the npm package (files), with the builtin recipe', () => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {cwd: root, encoding: 'utf8'})) as Array<{files: Array<{path: string}>}>
    const files = packed[0].files.map((file) => file.path)
    assert.ok(files.includes('src/runtime/update/release-store.sh'))
    assert.ok(files.includes('src/runtime/update/builtin-recipe.sh'))
  })

  it('is found from the compiled lib/ at run time (npm run build first)', () => {
    const module = pathToFileURL(path.join(root, 'lib/runtime/update/release-store.js')).href
    const text = execFileSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(module)}); process.stdout.write(m.releaseStoreScript())`], {
      encoding: 'utf8',
    })
    assert.equal(text, readFileSync(path.join(root, 'src/runtime/update/release-store.sh'), 'utf8'))
  })
})
