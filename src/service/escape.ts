import {ServiceValueError} from './errors.js'

/**
 * Control characters (C0, DEL, C1). systemd could carry some of them as C escapes and XML some
 * as character references, but a PATH or XDG dir containing one is a mistake, and refusing them
 * keeps what the unit and the plist carry identical.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Throws unless `value` can be written into a unit file or a plist and read back unchanged. */
export function assertExpressible(what: string, value: string): void {
  if (!value.isWellFormed()) {
    throw new ServiceValueError(`${what} is not valid Unicode text, so it cannot be written into a service file.`)
  }

  const control = CONTROL.exec(value)
  if (control) {
    const code = control[0].codePointAt(0)!.toString(16).padStart(4, '0')
    throw new ServiceValueError(`${what} contains a control character (U+${code.toUpperCase()}), which a service file cannot carry safely.`, {
      actions: ['Remove the character from the value (or unset the variable) and run occ install again.'],
    })
  }
}

export function assertEnvName(name: string): void {
  if (!ENV_NAME.test(name)) throw new ServiceValueError(`'${name}' is not a valid environment variable name.`)
}

/** Characters a word may contain without quotes in ExecStart= (after %/$ doubling). */
const SYSTEMD_BARE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/

function systemdQuoteIfNeeded(escaped: string): string {
  if (SYSTEMD_BARE_WORD.test(escaped)) return escaped
  return `"${escaped.replaceAll('\\', '\\\\').replaceAll('"', String.raw`\"`)}"`
}

/**
 * One argument of ExecStart=/ExecStartPre= (not the program): `%` (specifiers) and `$`
 * (variable expansion) are doubled; anything beyond a conservative charset is double-quoted
 * with `\` and `"` escaped.
 */
export function systemdExecWord(word: string): string {
  assertExpressible(`The argument '${word}'`, word)
  return systemdQuoteIfNeeded(word.replaceAll('%', '%%').replaceAll('$', '$$$$'))
}

/**
 * The program of an Exec line. systemd expands specifiers in it but not variables, so `$` stays
 * as it is, and it refuses a program path containing a quote or a backslash at all.
 */
export function systemdExecutable(file: string): string {
  if (!file.startsWith('/')) throw new ServiceValueError(`The service command must start with an absolute path (got '${file}').`)
  assertExpressible(`The program path ${file}`, file)
  if (/["'\\]/.test(file)) {
    throw new ServiceValueError(`The program path ${file} contains a quote or a backslash, which systemd refuses in a program path.`, {
      actions: ['Install node (or occ) under a path without quotes and backslashes, then run occ install again.'],
    })
  }

  return systemdQuoteIfNeeded(file.replaceAll('%', '%%'))
}

export function systemdExecLine(argv: string[]): string {
  if (argv.length === 0) throw new ServiceValueError('The service command is empty.')
  return [systemdExecutable(argv[0]), ...argv.slice(1).map((word) => systemdExecWord(word))].join(' ')
}

/**
 * `Environment="NAME=value"`. In Environment= `$` is literal, `%` is a specifier and the quoted
 * string takes C escapes, so only `%`, `\` and `"` need escaping.
 */
export function systemdEnvironmentLine(name: string, value: string): string {
  assertEnvName(name)
  assertExpressible(`The environment variable ${name}`, value)
  const escaped = `${name}=${value}`.replaceAll('%', '%%').replaceAll('\\', '\\\\').replaceAll('"', String.raw`\"`)
  return `Environment="${escaped}"`
}

/** Free text in a unit (Description=): no line breaks, specifiers doubled. */
export function systemdText(text: string): string {
  assertExpressible('The description', text)
  return text.replaceAll('%', '%%')
}

/**
 * Text content of a plist <string>/<key>. `\r` is written as a character reference because XML
 * parsers turn a literal CR into LF; characters XML 1.0 cannot hold at all are refused.
 */
export function xmlText(text: string): string {
  if (!text.isWellFormed()) throw new ServiceValueError('A value is not valid Unicode text, so it cannot be written into a plist.')
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/.test(text)) {
    throw new ServiceValueError('A value contains a character that XML cannot hold, so it cannot be written into a plist.')
  }

  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('\r', '&#13;')
}
