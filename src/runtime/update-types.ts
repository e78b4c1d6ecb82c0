/** The update target as asked for: a branch, a commit, or neither (the default branch). */
export interface UpdateRequest {
  branch?: string
  commit?: string
}

export const UPDATE_STEPS = ['preflight', 'repair', 'resolve', 'compare', 'fetch', 'build', 'activate', 'restart', 'rollback', 'prune'] as const
export type UpdateStep = (typeof UPDATE_STEPS)[number]

export interface StepTiming {
  step: UpdateStep
  durationMs: number
  status: 'done' | 'failed' | 'skipped'
  /** For people: what the step found or did ("dev → 1a2b3c4", "HTTP 503", …). */
  detail?: string
}

/** What `update opencode` did: --json prints it; the listener's result carries it. */
export interface UpdateOutcome {
  status: 'error' | 'success'
  changed: boolean
  message: string
  /** The target as resolved (a full SHA) and where it came from. */
  ref: {branch?: string; commit?: string}
  /** The commit installed before, and the one installed after (the target, or the old one when nothing changed or it rolled back). */
  fromCommit?: string
  toCommit?: string
  rolledBack: boolean
  steps: StepTiming[]
  startedAt: string
  finishedAt: string
  /** `opencode --version` before and after (after = what is installed now), when known. */
  fromVersion?: string
  toVersion?: string
  /** How opencode was restarted, when it was. */
  restartMethod?: 'container' | 'supervisor' | 'systemd'
  durationMs?: number
  /** On errors: the stable code, exit code and next steps (the same as the CLI's JSON error). */
  error?: {code: string; exitCode: number; actions: string[]}
}

export interface UpdateProgress {
  /** Called when a step starts. */
  onStep?: (step: UpdateStep) => void
  /** A line of build or fetch output. */
  onOutput?: (line: string) => void
  /** Called when a step ends (done, failed, or skipped because an earlier one decided). */
  onStepDone?: (timing: StepTiming) => void
}
