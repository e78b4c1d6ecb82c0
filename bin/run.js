#!/usr/bin/env node
import {readFileSync} from 'node:fs'
import {enableCompileCache} from 'node:module'

// `occ --version` is what scripts and monitors call most; answer it without loading oclif
// (same text oclif prints). Measured in bench/startup.bench.ts.
// A closed pipe (`occ logs | head`) is a normal end, not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

const argv = process.argv.slice(2)
if (argv.length === 1 && argv[0] === '--version') {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`${pkg.name}/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else {
  // Node's compile cache makes every later start cheaper.
  enableCompileCache?.()
  const {deferHeavyDockerDeps} = await import('../lib/docker/lazy-deps.js')
  deferHeavyDockerDeps()
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
