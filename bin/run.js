#!/usr/bin/env node
// No static imports: on a Node older than package.json "engines" the guard below must be able to
// run and say so, instead of crashing on an import that Node lacks (node:module's compile cache).
const {readFileSync} = process.getBuiltinModule?.('node:fs') ?? (await import('node:fs'))
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))

if (!satisfiesEngines(process.versions.node, pkg.engines.node)) {
  process.stderr.write(
    `occ needs Node ${pkg.engines.node.replaceAll(' || ', ', ')} but this is Node ${process.version} (${process.execPath}); ` +
      'install Node 24 LTS (https://nodejs.org/en/download, or `nvm install 24`) and run occ with it.\n',
  )
  process.exit(1)
}

// A closed pipe (`occ logs | head`) is a normal end, not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

const argv = process.argv.slice(2)
// `occ --version` is what scripts and monitors call most; answer it without loading oclif
// (same text oclif prints). Measured in bench/startup.bench.ts.
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === 'version')) {
  process.stdout.write(`${pkg.name}/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else {
  // Node's compile cache makes every later start cheaper.
  const {enableCompileCache} = await import('node:module')
  enableCompileCache?.()
  const {deferHeavyDockerDeps} = await import('../lib/docker/lazy-deps.js')
  deferHeavyDockerDeps()
  const {main} = await import('../lib/cli/main.js')
  await main(argv, new URL('..', import.meta.url).pathname)
}

/** `range` is package.json's engines.node: `^a.b.c || >=d` terms, as occ writes them. */
function satisfiesEngines(version, range) {
  const parse = (text) => text.split('.').map((part) => Number.parseInt(part, 10) || 0)
  const atLeast = (have, want) => {
    for (let index = 0; index < 3; index++) if ((have[index] ?? 0) !== (want[index] ?? 0)) return (have[index] ?? 0) > (want[index] ?? 0)
    return true
  }

  const have = parse(version)
  return range.split('||').some((term) => {
    const text = term.trim()
    if (text.startsWith('^')) {
      const want = parse(text.slice(1))
      return have[0] === want[0] && atLeast(have, want)
    }

    if (text.startsWith('>=')) return atLeast(have, parse(text.slice(2)))
    return false
  })
}
