/**
 * Text that came from the sandbox (build output, git errors, opencode's answers, files in the
 * commands dir) on its way to a result file, a log line or a terminal: escape sequences and
 * other control characters removed, and sizes bounded, with what was cut said in words.
 */

/** Messages in result files stay well under the 64 KiB cap every reader applies. */
export const MAX_RESULT_MESSAGE_BYTES = 4096
/** One line of build output on a terminal or in a log. */
export const MAX_LINE_BYTES = 4096

// CSI (ESC [ … final), OSC (ESC ] … BEL or ST), DCS/SOS/PM/APC (ESC P|X|^|_ … ST), other
// two-byte escapes, and their 8-bit C1 forms (U+009B CSI, U+009D OSC, …).
// eslint-disable-next-line no-control-regex
const ESCAPES = /(?:\u001B\[|\u009B)[0-?]*[ -/]*[@-~]?|(?:\u001B[\]PX^_]|[\u0090\u0098\u009D-\u009F])[^\u0007\u001B\u009C]*(?:\u0007|\u001B\\|\u009C)?|\u001B[ -/]*[0-~]?/g
// eslint-disable-next-line no-control-regex
const CONTROLS_KEEP_LINES = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u001F\u007F-\u009F]/g

/**
 * Removes terminal escape sequences and control characters. Newlines and tabs are kept unless
 * `oneLine` (then they become spaces). Bidi overrides and other format characters that can make
 * a terminal show something else than what is there are removed too.
 */
export function sanitizeText(text: string, options: {oneLine?: boolean} = {}): string {
  const noEscapes = text.replaceAll(ESCAPES, '').replaceAll('\r\n', '\n')
  const noBidi = noEscapes.replaceAll(/[\u200E\u200F\u202A-\u202E\u2066-\u2069]/g, '')
  if (options.oneLine) return noBidi.replaceAll(/[\t\n]/g, ' ').replaceAll(CONTROLS, '')
  return noBidi.replaceAll(CONTROLS_KEEP_LINES, '')
}

/**
 * Cuts text to at most maxBytes of UTF-8 (never inside a character), saying how much was cut:
 * "… (N bytes cut)". The marker is counted in the budget.
 */
export function capText(text: string, maxBytes: number): string {
  const bytes = Buffer.byteLength(text, 'utf8')
  if (bytes <= maxBytes) return text
  const marker = (cut: number): string => `… (${cut} bytes cut)`
  // The marker's own length depends on the number it shows; reserve for the widest.
  const budget = Math.max(0, maxBytes - Buffer.byteLength(marker(bytes), 'utf8'))
  const buffer = Buffer.from(text, 'utf8')
  let end = Math.min(budget, buffer.length)
  // Back up to a character boundary (a UTF-8 continuation byte is 10xxxxxx).
  while (end > 0 && (buffer[end]! & 0xc0) === 0x80) end--
  const kept = buffer.subarray(0, end).toString('utf8')
  return `${kept}${marker(bytes - end)}`
}

/** A message for a result file: clean, and capped under MAX_RESULT_MESSAGE_BYTES. */
export function resultMessage(text: string): string {
  return capText(sanitizeText(text), MAX_RESULT_MESSAGE_BYTES)
}

/** One line of sandbox output for a terminal or a log: clean, one line, capped. */
export function cleanLine(text: string, maxBytes = MAX_LINE_BYTES): string {
  return capText(sanitizeText(text, {oneLine: true}), maxBytes)
}
