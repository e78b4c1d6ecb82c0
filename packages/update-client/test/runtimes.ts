/** The runtimes besides the Node running mocha that the package is tested on. */
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))

/** Bun, the web UI's runtime (the `bun` dev dependency). */
export const BUN = path.resolve(here, '../../../node_modules/.bin/bun')
/** Node 20, the oldest the package's engines allow: OCC_NODE20, else the system node (Debian 12's is 20). */
export const NODE20 = process.env.OCC_NODE20 ?? '/usr/bin/node'
