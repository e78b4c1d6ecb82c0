/**
 * Shows the update plan as listr2 tasks, on stderr (stdout stays data): the default renderer in
 * a terminal, plain lines when output is not a terminal or under systemd (INVOCATION_ID) or CI,
 * nothing under --json or -q. The plan itself knows nothing about listr2: it reports steps
 * through UpdateProgress and this view follows them.
 */
import {Listr, ListrLogger, ProcessOutput, type ListrTask} from 'listr2'

import {UPDATE_STEPS, type StepTiming, type UpdateOutcome, type UpdateProgress, type UpdateStep} from '../update-types.js'

export type UpdateRenderer = 'default' | 'silent' | 'simple'

export interface RendererEnvironment {
  json: boolean
  quiet: boolean
  stdoutIsTTY: boolean
  stderrIsTTY: boolean
  env: NodeJS.ProcessEnv
}

export function chooseRenderer(environment: RendererEnvironment): UpdateRenderer {
  if (environment.json || environment.quiet) return 'silent'
  const {env} = environment
  const plain = !environment.stdoutIsTTY || !environment.stderrIsTTY || Boolean(env.INVOCATION_ID) || Boolean(env.CI) || env.TERM === 'dumb'
  return plain ? 'simple' : 'default'
}

export const STEP_TITLES: Record<UpdateStep, string> = {
  activate: 'Switch to the new release',
  build: 'Build (opencode keeps serving)',
  compare: 'Compare with the installed commit',
  fetch: 'Fetch the source',
  preflight: 'Check the sandbox',
  prune: 'Prune old releases',
  repair: 'Repair a release an earlier update left unverified',
  resolve: 'Resolve the target',
  restart: 'Restart opencode and wait until healthy',
  rollback: 'Roll back to the previous release',
}

/**
 * Follows the plan's progress callbacks. A step counts as settled once its end is reported and
 * the plan has moved on (or finished), so the view knows, before the next task is shown,
 * whether a rollback happened and which steps never ran.
 */
export class StepTracker {
  private readonly started = new Set<UpdateStep>()
  private readonly timings = new Map<UpdateStep, StepTiming>()
  private readonly order: UpdateStep[] = []
  private readonly outputs = new Map<UpdateStep, (line: string) => void>()
  /** Output that came before the view attached to its step (the view follows asynchronously). */
  private readonly early = new Map<UpdateStep, string[]>()
  private waiters: Array<() => void> = []
  private current?: UpdateStep
  ended = false

  readonly progress: Required<UpdateProgress> = {
    onOutput: (line) => {
      if (!this.current) return
      const listener = this.outputs.get(this.current)
      if (listener) listener(line)
      else this.early.set(this.current, [...(this.early.get(this.current) ?? []).slice(-20), line])
    },
    onStep: (step) => {
      this.started.add(step)
      this.order.push(step)
      this.current = step
      this.notify()
    },
    onStepDone: (timing) => {
      this.timings.set(timing.step, timing)
      this.notify()
    },
  }

  end(): void {
    this.ended = true
    this.notify()
  }

  hasStarted(step: UpdateStep): boolean {
    return this.started.has(step)
  }

  timing(step: UpdateStep): StepTiming | undefined {
    return this.timings.get(step)
  }

  isSettled(step: UpdateStep): boolean {
    if (!this.timings.has(step)) return this.ended
    const index = this.order.indexOf(step)
    return this.ended || (index !== -1 && index < this.order.length - 1)
  }

  onOutput(step: UpdateStep, listener: (line: string) => void): void {
    this.outputs.set(step, listener)
    for (const line of this.early.get(step) ?? []) listener(line)
    this.early.delete(step)
  }

  until(predicate: () => boolean): Promise<void> {
    if (predicate()) return Promise.resolve()
    return new Promise((resolve) => {
      const check = (): void => {
        if (predicate()) resolve()
        else this.waiters.push(check)
      }

      this.waiters.push(check)
    })
  }

  private notify(): void {
    const waiting = this.waiters
    this.waiters = []
    for (const waiter of waiting) waiter()
  }
}

export function updateTasks(tracker: StepTracker): ListrTask[] {
  return UPDATE_STEPS.map(
    (step): ListrTask => ({
      // Steps the plan never reached (after "already at", or the rollback that was not needed) are hidden.
      enabled: () => (step === 'rollback' ? tracker.hasStarted(step) : tracker.hasStarted(step) || !tracker.ended),
      async task(_ctx, task) {
        await tracker.until(() => tracker.hasStarted(step) || tracker.ended)
        if (!tracker.hasStarted(step)) {
          task.skip()
          return
        }

        tracker.onOutput(step, (line) => {
          task.output = line
        })
        await tracker.until(() => tracker.isSettled(step))
        const timing = tracker.timing(step)
        const seconds = timing ? ` [${(timing.durationMs / 1000).toFixed(1)} s]` : ''
        if (timing?.status === 'failed') {
          task.title = `${STEP_TITLES[step]}${seconds}`
          throw new Error(timing.detail ?? 'failed')
        }

        task.title = `${STEP_TITLES[step]}${timing?.detail ? `: ${timing.detail}` : ''}${seconds}`
        if (timing?.status === 'skipped') task.skip(task.title)
      },
      title: STEP_TITLES[step],
    }),
  )
}

/**
 * Runs the plan (given as a function of its progress callbacks) under a listr2 view and returns
 * its outcome. listr2 never installs a SIGINT handler here (it would exit the process); the
 * caller owns cancellation through the plan's signal.
 */
export async function runWithProgress(
  run: (progress: UpdateProgress) => Promise<UpdateOutcome>,
  renderer: UpdateRenderer,
  stream: NodeJS.WriteStream = process.stderr,
): Promise<UpdateOutcome> {
  const tracker = new StepTracker()
  const processOutput = new ProcessOutput(stream, stream, {dump: [], leaveEmptyLine: false})
  const logger = new ListrLogger({processOutput, useIcons: true})
  const list = new Listr(updateTasks(tracker), {
    concurrent: false,
    exitOnError: false,
    fallbackRenderer: 'simple',
    fallbackRendererOptions: {logger},
    registerSignalListeners: false,
    renderer,
    rendererOptions: {logger},
  })
  const view = list.run().catch(() => undefined)
  let outcome: UpdateOutcome
  try {
    outcome = await run(tracker.progress)
  } finally {
    tracker.end()
    await view
  }

  return outcome
}
