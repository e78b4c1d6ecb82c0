import type {OccConfig} from '../config/schema.js'
import {NotSupportedError} from '../errors.js'
import type {Runtime} from './runtime.js'
import type {UpdateOutcome, UpdateProgress, UpdateRequest} from './update-types.js'

/** The one way into the update plan (used by `update opencode` and handed to the listener). */
export async function updateOpencodeWith(
  runtime: Runtime,
  config: OccConfig,
  request: UpdateRequest,
  progress: UpdateProgress & {signal?: AbortSignal},
): Promise<UpdateOutcome> {
  // Wired to the plan module once it lands (src/runtime/update/).
  const modulePath = './update/plan.js'
  const plan = (await import(modulePath).catch(() => undefined)) as
    | {runUpdatePlan?: (r: Runtime, c: OccConfig, q: UpdateRequest, p: UpdateProgress & {signal?: AbortSignal}) => Promise<UpdateOutcome>}
    | undefined
  if (!plan?.runUpdatePlan) throw new NotSupportedError('The update plan is not available in this build.')
  return plan.runUpdatePlan(runtime, config, request, progress)
}
