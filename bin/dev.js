#!/usr/bin/env -S node --import tsx
// Development entry point: runs the TypeScript sources (not published; see package.json "files").
await import('../scripts/resolve-sources.mjs')
const {execute} = await import('@oclif/core')
await execute({development: true, dir: import.meta.url})
