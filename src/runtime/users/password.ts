import {randomInt} from 'node:crypto'

import {UsageError} from '../../errors.js'

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
export const DEFAULT_PASSWORD_LENGTH = 30
const MAX_PASSWORD_BYTES = 1024

/** OPENCODE_PASSWORD_LENGTH (12–128) or the default 30. Anything else is an error, not a guess. */
export function passwordLength(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.OPENCODE_PASSWORD_LENGTH?.trim()
  if (raw === undefined || raw === '') return DEFAULT_PASSWORD_LENGTH
  const length = /^\d+$/.test(raw) ? Number(raw) : Number.NaN
  if (!Number.isInteger(length) || length < 12 || length > 128) {
    throw new UsageError(`OPENCODE_PASSWORD_LENGTH must be a whole number from 12 to 128 (got '${raw}').`, {
      actions: ['Unset it for the default of 30 characters, or set e.g. OPENCODE_PASSWORD_LENGTH=40'],
    })
  }

  return length
}

/** A password from the CSPRNG: uniform over A–Z, a–z, 0–9 (randomInt rejects biased draws). */
export function generatePassword(length: number = passwordLength()): string {
  let password = ''
  for (let i = 0; i < length; i++) password += ALPHANUMERIC[randomInt(ALPHANUMERIC.length)]
  return password
}

/** What chpasswd can take: non-empty, one line, no NUL, bounded. */
export function assertPassword(password: string): string {
  if (password === '') throw new UsageError('Password cannot be empty.', {actions: ['Pass a password, or let occ make one: --generate']})
  if (/[\r\n\0]/.test(password)) throw new UsageError('A password must be one line without NUL characters.')
  if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) throw new UsageError(`A password may have at most ${MAX_PASSWORD_BYTES} bytes.`)
  return password
}

/** `--password-stdin`: the first line of stdin (the Docker CLI convention), without its line end. */
export async function readPasswordLine(stream: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    chunks.push(buffer)
    size += buffer.length
    const newline = buffer.indexOf(0x0a)
    if (newline !== -1 || size > MAX_PASSWORD_BYTES + 2) break
  }

  const text = Buffer.concat(chunks).toString('utf8')
  const end = text.indexOf('\n')
  const line = end === -1 ? text : text.slice(0, end)
  return assertPassword(line.endsWith('\r') ? line.slice(0, -1) : line)
}

/** `occ user add` without a name on a terminal: ask, with the Rust occ's default "admin". */
export async function promptUsername(): Promise<string> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new UsageError('A user name is needed.', {actions: ['occ user add <name> --generate']})
  }

  const {createInterface} = await import('node:readline/promises')
  const rl = createInterface({input: process.stdin, output: process.stderr})
  try {
    const answer = (await rl.question('Username [admin]: ')).trim()
    return answer === '' ? 'admin' : answer
  } finally {
    rl.close()
  }
}

/**
 * Asks for a password twice on the terminal without echoing it. Only ever called on a TTY. With
 * `emptyGenerates` (user add, as the Rust occ) an empty answer means: generate one.
 */
export async function promptPassword(label: string, emptyGenerates = false): Promise<{password: string; generated: boolean}> {
  const first = await promptHidden(emptyGenerates ? `${label} (empty: generate one): ` : `${label}: `)
  if (first === '' && emptyGenerates) return {generated: true, password: generatePassword()}
  const second = await promptHidden('Confirm password: ')
  if (first !== second) throw new UsageError('Passwords do not match.', {actions: ['Run the command again.']})
  return {generated: false, password: assertPassword(first)}
}

function promptHidden(question: string): Promise<string> {
  const input = process.stdin
  const output = process.stderr
  return new Promise((resolve, reject) => {
    let answer = ''
    output.write(question)
    input.setRawMode?.(true)
    input.resume()
    input.setEncoding('utf8')
    const done = (error?: Error): void => {
      input.setRawMode?.(false)
      input.pause()
      input.removeListener('data', onData)
      output.write('\n')
      if (error) reject(error)
      else resolve(answer)
    }

    const onData = (chunk: string): void => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n') return done()
        if (char === '\u0003') return done(new UsageError('Cancelled.'))
        if (char === '\u007F' || char === '\b') answer = answer.slice(0, -1)
        else answer += char
      }
    }

    input.on('data', onData)
  })
}

/**
 * The password for add/passwd: generated, one line of stdin, or asked on the terminal. Without a
 * terminal and without --generate/--password-stdin it is an error: never a prompt.
 */
export async function obtainPassword(options: {generate: boolean; passwordStdin: boolean; label: string; emptyGenerates?: boolean}): Promise<{password: string; generated: boolean}> {
  if (options.generate && options.passwordStdin) throw new UsageError('--generate and --password-stdin cannot be used together.')
  if (options.generate) return {generated: true, password: generatePassword()}
  if (options.passwordStdin) return {generated: false, password: await readPasswordLine()}
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new UsageError('A password is needed and there is no terminal to ask for it.', {
      actions: ['Let occ make one: --generate (add --print-password-only to print just the password)', 'Or pipe it in: echo "$PASSWORD" | occ user … --password-stdin'],
    })
  }

  return promptPassword(options.label, options.emptyGenerates ?? false)
}
