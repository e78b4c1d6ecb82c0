import {UsageError} from '../../errors.js'

/**
 * One rule for login user names, for every command and for every name read back from the
 * sandbox: 3–32 chars of lowercase ASCII letters, digits and `_`, not starting with a digit.
 * It is what both the Rust occ's CLI (letters, digits, `_`, 3–32) and the image's bootstrap
 * helper (`^[a-z_][a-z0-9_-]{0,31}$`) accept, so a name is valid everywhere it travels; it never
 * holds a path separator, a shell character, a leading `-` or a Unicode look-alike.
 */
export const USERNAME_PATTERN = /^[a-z_][a-z0-9_]{2,31}$/

/** Accounts that came with the image: never persisted, listed, removed or changed by occ. */
export const BUILTIN_USERS = ['opencoder', 'ubuntu'] as const

/** The account the sandbox itself runs as (opencode, the workspace). */
export const PROTECTED_USER = 'opencoder'

/** Why a name is refused, or undefined when it is valid. Messages follow the Rust occ's. */
export function usernameProblem(name: string): string | undefined {
  if (name === '') return 'Username cannot be empty'
  const length = [...name].length
  if (length < 3) return 'Username must be at least 3 characters'
  if (length > 32) return 'Username must be at most 32 characters'
  if (!/^[a-z0-9_]+$/.test(name)) return 'Username must contain only lowercase letters (a-z), numbers, and underscores'
  if (/^[0-9]/.test(name)) return 'Username must not start with a number'
  return USERNAME_PATTERN.test(name) ? undefined : 'Username is not valid'
}

/** Validates a name given on the command line (before anything else runs). */
export function assertUsername(name: string): string {
  const problem = usernameProblem(name)
  if (problem) {
    throw new UsageError(`${problem} (got ${JSON.stringify(name)}).`, {
      actions: ['Use 3–32 lowercase letters, digits or underscores, starting with a letter or underscore, e.g. occ user add alice'],
    })
  }

  return name
}

export function isValidUsername(name: string): boolean {
  return USERNAME_PATTERN.test(name)
}
