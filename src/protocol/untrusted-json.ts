/**
 * The one parser for JSON read from the sandbox-writable commands dir (requests, results,
 * listener.json), on the host and inside the sandbox alike, so every reader applies the same
 * rules: strict UTF-8 (a malformed byte is an error, not U+FFFD), at most one leading BOM
 * (some editors write one), blank means empty, and an error message that is short and on one
 * line. The bytes come from readUntrustedFile, which already capped their size.
 */
import {clip} from './schemas.js'

export type UntrustedJson = {ok: false; error: string} | {ok: true; value: unknown}

// ignoreBOM: false (the default) drops exactly one leading U+FEFF.
const utf8 = new TextDecoder('utf-8', {fatal: true, ignoreBOM: false})

export function parseUntrustedJson(data: Uint8Array): UntrustedJson {
  let text: string
  try {
    text = utf8.decode(data)
  } catch {
    return {error: 'the file is not UTF-8 text', ok: false}
  }

  if (text.trim() === '') return {error: 'the file is empty', ok: false}
  try {
    return {ok: true, value: JSON.parse(text)}
  } catch (error) {
    return {error: clip((error as Error).message, 160), ok: false}
  }
}
