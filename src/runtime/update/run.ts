import type {OccConfig} from '../../config/schema.js'
import {handleInterrupts} from '../interrupts.js'
import type {Runtime} from '../runtime.js'
import type {UpdateOutcome, UpdateRequest} from '../update-types.js'
import {withHostLockForOpencode} from '../update-lock.js'
import {runUpdatePlan, type UpdatePlanOptions} from './plan.js'
import {chooseRenderer, runWithProgress} from './render.js'

export interface InteractiveUpdateOptions {
  json: boolean
  quiet: boolean
  plan?: UpdatePlanOptions
  /** One line to stderr for people (the command's note()). */
  note: (message: string) => void
}

/**
 * The plan under the terminal view, for `occ update opencode` on the host. Ctrl+C (or SIGTERM)
 * once cancels cleanly while the new version is fetched or built — nothing changes; after the
 * switch the plan finishes checking (and rolls back if it must) before it returns. A second
 * Ctrl+C leaves at once.
 */
export async function runUpdateInteractive(
  runtime: Runtime,
  config: Pick<OccConfig, 'opencode_repo'>,
  request: UpdateRequest,
  options: InteractiveUpdateOptions,
): Promise<UpdateOutcome> {
  const renderer = chooseRenderer({
    env: process.env,
    json: options.json,
    quiet: options.quiet,
    stderrIsTTY: process.stderr.isTTY === true,
    stdoutIsTTY: process.stdout.isTTY === true,
  })
  const controller = new AbortController()
  const dispose = handleInterrupts((signal) => {
    options.note('Stopping: a fetch or build is cancelled and nothing changes; past the switch, occ finishes checking first. Press Ctrl+C again to quit at once.')
    controller.abort(new Error(`${signal} received`))
  })
  try {
    return await runWithProgress(
      (progress) => withHostLockForOpencode(runtime, request, () => runUpdatePlan(runtime, config, request, {...progress, signal: controller.signal}, options.plan)),
      renderer,
    )
  } finally {
    dispose()
  }
}
