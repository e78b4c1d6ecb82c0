import type {OccConfig} from '../config/schema.js'
import type {Runtime} from './runtime.js'
import type {UpdateOutcome, UpdateProgress, UpdateRequest} from './update-types.js'

/**
 * The one way into the update plan (used by `update opencode` and handed to the listener).
 * Loaded on first use: most occ runs never update.
 */
export async function updateOpencodeWith(
  runtime: Runtime,
  config: OccConfig,
  request: UpdateRequest,
  progress: UpdateProgress & {signal?: AbortSignal},
): Promise<UpdateOutcome> {
  const [{runUpdatePlan}, {withHostLockForOpencode}] = await Promise.all([import('./update/plan.js'), import('./update-lock.js')])
  return withHostLockForOpencode(runtime, request, () => runUpdatePlan(runtime, config, request, progress))
}
