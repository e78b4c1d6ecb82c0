import type {Interfaces} from '@oclif/core'

import type {OccConfig} from '../config/schema.js'
import type {OccPaths} from '../config/paths.js'
import type {HostRuntimeApi} from './runtime.js'
import type {UpdateOutcome, UpdateProgress, UpdateRequest} from './update-types.js'

/**
 * What a `foreground` hook gets while `occ start --no-daemon` runs. The hook should keep
 * working until `signal` aborts (SIGINT, SIGTERM, or the container stopped) and then resolve.
 */
export interface ForegroundContext {
  runtime: HostRuntimeApi
  config: OccConfig
  paths: OccPaths
  signal: AbortSignal
  /** occ's own version (for status files). */
  version: string
  /** Writes a line to stderr (the service's journal); never to stdout. */
  log: (message: string) => void
  /**
   * Ends service mode with a non-zero exit at once (other hooks get the abort), so the service
   * manager restarts occ. Call it when this hook cannot go on; throwing alone is only seen once
   * every hook has returned.
   */
  fail: (error: Error) => void
  /** The shared update plan (the same one `occ update opencode` runs). */
  updateOpencode: (request: UpdateRequest, progress: UpdateProgress & {signal?: AbortSignal}) => Promise<UpdateOutcome>
  /**
   * Repairs a release an interrupted update left "activated, not verified" (re-verify, else roll
   * back). The listener runs it at its start, before any request. Never throws.
   */
  repairRelease?: (options: {signal?: AbortSignal; onProgress?: (line: string) => void}) => Promise<ReleaseRepair>
}

export interface ReleaseRepair {
  kind: 'busy' | 'failed' | 'none' | 'rolled-back' | 'verified'
  message: string
}

/** occ's custom hook events. Plugins type their hooks with `Hook<'occ:foreground', OccHooks>`. */
export type OccHooks = Interfaces.Hooks & {
  'occ:foreground': {options: ForegroundContext; return: void}
}

export const FOREGROUND_EVENT = 'occ:foreground' as const
