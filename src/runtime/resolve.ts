import {existsSync} from 'node:fs'

import type {RuntimeKind} from './runtime.js'

export type RuntimeChoice = 'auto' | RuntimeKind

/** Files that mark "occ is running inside the opencode sandbox" (both kinds must be present). */
export function insideSandbox(exists: (file: string) => boolean = existsSync): boolean {
  const inContainer = exists('/.dockerenv') || exists('/run/.containerenv')
  const isSandbox = exists('/etc/opencode-cloud-version') || exists('/opt/opencode/COMMIT')
  return inContainer && isSandbox
}

/** OPENCODE_RUNTIME is read leniently, like the Rust occ: anything unknown means auto. */
export function parseRuntimeEnv(value: string | undefined): RuntimeChoice {
  const lower = value?.trim().toLowerCase()
  return lower === 'host' || lower === 'container' ? lower : 'auto'
}

/** --runtime wins over OPENCODE_RUNTIME, which wins over detection. */
export function resolveRuntimeKind(
  flag: RuntimeChoice | undefined,
  env: string | undefined,
  detect: () => boolean = insideSandbox,
): {kind: RuntimeKind; detected: boolean} {
  const choice = flag && flag !== 'auto' ? flag : parseRuntimeEnv(env)
  if (choice !== 'auto') return {detected: false, kind: choice}
  return detect() ? {detected: true, kind: 'container'} : {detected: false, kind: 'host'}
}
