import {clip} from '../../protocol/schemas.js'
import {validateBranch, validateCommit} from '../../protocol/refs.js'
import {UsageError} from '../../errors.js'
import type {UpdateRequest} from '../update-types.js'
import {DEFAULT_BRANCH} from './layout.js'

/** What to update to, validated: a branch name or a (lower-case) commit prefix of 7–40 hex digits. */
export type UpdateTarget = {kind: 'branch'; branch: string; defaulted: boolean} | {kind: 'commit'; commit: string}

/**
 * Checks a request before anything reaches the sandbox: neither → the default branch; both → an
 * error; a branch must pass git's ref-name rules plus a conservative charset; a commit is hex.
 * Throws UsageError (exit 2) with the reason.
 */
export function parseUpdateTarget(request: UpdateRequest): UpdateTarget {
  const branch = present(request.branch)
  const commit = present(request.commit)
  if (branch !== undefined && commit !== undefined) {
    throw new UsageError('Specify only one of branch or commit.', {actions: ['occ update opencode --branch <name>', 'occ update opencode --commit <sha>']})
  }

  if (commit !== undefined) {
    const check = validateCommit(commit)
    if (!check.ok) throw new UsageError(`Invalid commit '${clip(commit)}': ${check.reason}.`)
    return {commit: commit.toLowerCase(), kind: 'commit'}
  }

  if (branch !== undefined) {
    const check = validateBranch(branch)
    if (!check.ok) throw new UsageError(`Invalid branch '${clip(branch)}': ${check.reason}.`)
    return {branch, defaulted: false, kind: 'branch'}
  }

  return {branch: DEFAULT_BRANCH, defaulted: true, kind: 'branch'}
}

/** An empty string counts as given (and then fails validation), unlike undefined or null. */
function present(value: string | null | undefined): string | undefined {
  return value === undefined || value === null ? undefined : value
}

export function describeTarget(target: UpdateTarget): string {
  return target.kind === 'branch' ? `branch ${target.branch}` : `commit ${target.commit}`
}
