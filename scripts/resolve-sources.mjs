// Loaded by mocha (.mocharc.json) and bin/dev.js: there, 'opencode-cloud' and its subpaths
// resolve to the TypeScript sources (run through tsx), so the plugins' tests and occ's own tests
// share one copy of every module. Elsewhere the names resolve through package.json "exports" to
// lib/ (no export condition for this is published).
import {registerHooks} from 'node:module'

const SOURCES = {
  'opencode-cloud': '../src/index.ts',
  'opencode-cloud/internal': '../src/internal.ts',
}

registerHooks({
  resolve(specifier, context, nextResolve) {
    const source = SOURCES[specifier]
    return source ? {shortCircuit: true, url: new URL(source, import.meta.url).href} : nextResolve(specifier, context)
  },
})
