#!/usr/bin/env node
// Node's compile cache makes repeated starts cheaper (measured in bench/).
import {enableCompileCache} from 'node:module'
enableCompileCache?.()
const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
