/**
 * 'opencode-cloud/internal': the public API plus the low-level primitives occ's own update
 * listener is built from (no-follow reads and writes, claim-by-rename, the commands dir, untrusted
 * JSON). They are not part of the public API and may change in any release; plugins use
 * 'opencode-cloud'.
 */
export * from './index.js'
export * from './protocol/index.js'
