import * as z from 'zod'

import {OccError} from '../../errors.js'
import {cleanLine} from '../../protocol/text.js'
import type {Runtime} from '../runtime.js'

/** The image's first-login helper (reference §8): `init | reset | status [--include-secret]`, root only. */
export const BOOTSTRAP_HELPER = '/usr/local/bin/opencode-cloud-bootstrap'
const MAX_HELPER_OUTPUT = 4096
/** A timestamp as the helper writes it (e.g. 2026-01-01T00:00:00Z): shown on a terminal, so no other characters. */
const timestamp = z.string().regex(/^[0-9A-Za-z:.+ -]{1,64}$/)

/** Its answers, parsed strictly: anything else (an extra field, a malformed OTP) is an error. */
const activeSchema = z.strictObject({
  ok: z.literal(true),
  active: z.literal(true),
  created_at: timestamp,
  otp: z.string().regex(/^[0-9a-f]{96}$/).optional(),
})
const inactiveSchema = z.strictObject({
  ok: z.literal(true),
  active: z.literal(false),
  reason: z.enum(['user_exists', 'completed', 'not_initialized', 'invalid_state', 'invalid_secret']),
  completed_at: timestamp.optional(),
})
const helperErrorSchema = z.strictObject({
  ok: z.literal(false),
  code: z.string().regex(/^[a-z_]{1,40}$/),
  message: z.string().max(500),
  status: z.number().int().optional(),
})
export const bootstrapAnswerSchema = z.union([activeSchema, inactiveSchema, helperErrorSchema])
export type BootstrapAnswer = z.infer<typeof bootstrapAnswerSchema>

export type IotpState = 'active' | 'completed' | 'error' | 'invalid_state' | 'not_initialized' | 'unavailable' | 'user_exists'

/** What status, start and reset say about the IOTP. `otp` only when the caller asked for it. */
export interface IotpInfo {
  state: IotpState
  label: string
  createdAt: string | null
  otp: string | null
  detail: string | null
}

const LABELS: Record<IotpState, string> = {
  active: 'unused (active)',
  completed: 'used (completed)',
  error: 'error',
  invalid_state: 'error (invalid bootstrap state)',
  not_initialized: 'inactive (not initialized)',
  unavailable: 'unavailable (container not running)',
  user_exists: 'inactive (users configured)',
}

/** The helper's stdout (one JSON object) → a parsed answer, or why it is not one. */
export function parseBootstrapAnswer(stdout: string): {answer: BootstrapAnswer} | {problem: string} {
  const text = stdout.trim()
  if (text === '') return {problem: 'the helper printed nothing'}
  if (text.length > MAX_HELPER_OUTPUT) return {problem: 'the helper printed too much'}
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return {problem: 'failed to parse the helper output (not JSON)'}
  }

  const parsed = bootstrapAnswerSchema.safeParse(value)
  return parsed.success ? {answer: parsed.data} : {problem: 'failed to parse the helper output (unexpected shape)'}
}

export function iotpInfo(parsed: {answer: BootstrapAnswer} | {problem: string}): IotpInfo {
  if ('problem' in parsed) return info('error', {detail: parsed.problem})
  const {answer} = parsed
  if (!answer.ok) return info('error', {detail: `${answer.code}: ${cleanLine(answer.message, 500)}`})
  if (answer.active) return info('active', {createdAt: answer.created_at, otp: answer.otp ?? null})
  switch (answer.reason) {
    case 'user_exists': {
      return info('user_exists', {detail: 'A login user exists; the IOTP is only for the first login.'})
    }

    case 'completed': {
      return info('completed', {createdAt: null, detail: answer.completed_at ? `completed at ${answer.completed_at}` : null})
    }

    case 'not_initialized': {
      return info('not_initialized', {detail: 'No IOTP has been issued yet.'})
    }

    default: {
      return info('invalid_state', {detail: `the bootstrap state is invalid (${answer.reason})`})
    }
  }
}

export function unavailableIotp(detail = 'container not running'): IotpInfo {
  return info('unavailable', {detail})
}

function info(state: IotpState, extra: Partial<IotpInfo> = {}): IotpInfo {
  return {createdAt: null, detail: null, label: LABELS[state], otp: null, state, ...extra}
}

/** Where the first-login value can also be read: the line the image logs at start. */
export const IOTP_LOG_MARKER = 'INITIAL ONE-TIME PASSWORD (IOTP): '
export const IOTP_FROM_LOGS = `occ logs --no-follow | grep -F "${IOTP_LOG_MARKER}" | tail -n1 | sed 's/.*${IOTP_LOG_MARKER}//'`

/** "Loopback" the way the Rust occ judges it: 127.0.0.0/8, ::1 or localhost. */
export function isLocalhostBind(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '').toLowerCase()
  return bare === 'localhost' || bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare)
}

/**
 * Why a new IOTP would be reachable from the network: the address (the one the container really
 * publishes on, or the config's bind_address) that is not loopback; undefined when both are.
 */
export function exposedBind(configBind: string, publishedIp?: string): string | undefined {
  for (const address of [publishedIp, configBind]) if (address && !isLocalhostBind(address)) return address
  return undefined
}

/** What to run to get a fresh IOTP (with --force when the sandbox is reachable from the network). */
export function iotpResetHints(bindAddress: string): string[] {
  const hints = ['Reset IOTP: occ reset iotp']
  if (!isLocalhostBind(bindAddress)) hints.push(`The sandbox binds ${bindAddress} (not localhost): occ reset iotp --force`)
  return hints
}

/** Asks the helper (as root): `status --include-secret`, or `reset`. */
export async function runBootstrap(runtime: Runtime, command: 'reset' | 'status', includeSecret: boolean): Promise<IotpInfo> {
  const argv = [BOOTSTRAP_HELPER, command, ...(command === 'status' && includeSecret ? ['--include-secret'] : [])]
  let stdout: string
  try {
    stdout = (await runtime.exec(argv, {timeoutMs: 15_000, user: 'root'})).stdout
  } catch (error) {
    if (error instanceof OccError && (error.code === 'CONTAINER_NOT_RUNNING' || error.code === 'CONTAINER_MISSING')) return unavailableIotp()
    return info('error', {detail: `the helper could not run: ${(error as Error).message}`})
  }

  const result = iotpInfo(parseBootstrapAnswer(stdout))
  return includeSecret || command === 'reset' ? result : {...result, otp: null}
}
