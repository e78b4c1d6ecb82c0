/** The update target as asked for: a branch, a commit, or neither (the default branch). */
export interface UpdateRequest {
  branch?: string
  commit?: string
}

export const UPDATE_STEPS = ['preflight', 'resolve', 'compare', 'fetch', 'build', 'activate', 'restart', 'rollback', 'prune'] as const
export type UpdateStep = (typeof UPDATE_STEPS)[number]

export interface StepTiming {
  step: UpdateStep
  durationMs: number
  status: 'done' | 'failed' | 'skipped'
}

/** What `update opencode` did: --json prints it; the listener's result carries it. */
export interface UpdateOutcome {
  status: 'error' | 'success'
  changed: boolean
  message: string
  /** The target as resolved (a full SHA) and where it came from. */
  ref: {branch?: string; commit?: string}
  fromCommit?: string
  toCommit?: string
  rolledBack: boolean
  steps: StepTiming[]
  startedAt: string
  finishedAt: string
}

export interface UpdateProgress {
  /** Called when a step starts. */
  onStep?: (step: UpdateStep) => void
  /** A line of build or fetch output. */
  onOutput?: (line: string) => void
}
