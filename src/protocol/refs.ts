/**
 * Branch and commit checks shared by the command-file request and the update plan. They run
 * before anything reaches git, and git still gets refs as argv, never inside a shell string.
 */

export type RefCheck = {ok: false; reason: string} | {ok: true}

export const MAX_BRANCH_LENGTH = 200
/** Deliberately narrower than git allows: nothing a shell, a URL or a terminal could misread. */
export const BRANCH_CHARSET = /^[A-Za-z0-9._/-]+$/
export const COMMIT_PATTERN = /^[0-9a-fA-F]{7,40}$/
/**
 * validateBranch's rules (beyond the charset and length) as one regular expression, so that the
 * JSON Schema carries them too and a client validating against it refuses what the host refuses.
 */
export const BRANCH_RULES = /^(?!-)(?!\/)(?!.*\/$)(?!.*\.$)(?!HEAD$)(?!.*\.\.)(?!.*\/\/)(?!(?:.*\/)?\.)(?!.*\.lock(?:\/|$))/

/**
 * `git check-ref-format --branch` rules, plus the conservative charset above:
 * no leading '-', no '..', no '//', no leading or trailing '/', no component starting with '.'
 * or ending with '.lock', no trailing '.', not 'HEAD', at most 200 characters.
 */
export function validateBranch(name: string): RefCheck {
  if (typeof name !== 'string' || name.length === 0) return fail('a branch name cannot be empty')
  if (name.length > MAX_BRANCH_LENGTH) return fail(`a branch name is at most ${MAX_BRANCH_LENGTH} characters`)
  if (!BRANCH_CHARSET.test(name)) return fail('a branch name may only contain A-Z a-z 0-9 . _ / -')
  if (name.startsWith('-')) return fail("a branch name cannot start with '-'")
  if (name.includes('..')) return fail("a branch name cannot contain '..'")
  if (name.includes('//')) return fail("a branch name cannot contain '//'")
  if (name.startsWith('/') || name.endsWith('/')) return fail("a branch name cannot start or end with '/'")
  if (name.endsWith('.')) return fail("a branch name cannot end with '.'")
  if (name === 'HEAD') return fail("'HEAD' is not a branch name")
  for (const component of name.split('/')) {
    if (component.startsWith('.')) return fail("no part of a branch name can start with '.'")
    if (component.endsWith('.lock')) return fail("no part of a branch name can end with '.lock'")
  }

  return {ok: true}
}

/** A commit is 7 to 40 hex digits (an abbreviated or full SHA-1). */
export function validateCommit(sha: string): RefCheck {
  if (typeof sha !== 'string' || !COMMIT_PATTERN.test(sha)) return fail('a commit is 7 to 40 hexadecimal digits')
  return {ok: true}
}

export function isValidBranch(name: string): boolean {
  return validateBranch(name).ok
}

export function isValidCommit(sha: string): boolean {
  return validateCommit(sha).ok
}

function fail(reason: string): RefCheck {
  return {ok: false, reason}
}
