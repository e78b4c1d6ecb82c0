import type {Hook} from '@oclif/core'
import type {OccHooks} from 'opencode-cloud'

import {runUpdateListener} from '../index.js'

/** `occ start --no-daemon` fires occ:foreground; the listener runs until its signal aborts. */
const foreground: Hook<'occ:foreground', OccHooks> = async function (options) {
  await runUpdateListener(options)
}

export default foreground
