/**
 * The one parser for JSON read from the sandbox-writable commands dir (requests, results,
 * listener.json), on the host and inside the sandbox alike, so every reader applies the same
 * rules: strict UTF-8 (a malformed byte is an error, not U+FFFD), at most one leading BOM
 * (some editors write one), blank means empty, and an error message that is short and on one
 * line. The bytes come from readUntrustedFile, which already capped their size.
 */
import {setTimeout as delay} from 'node:timers/promises'

import {readUntrustedFile} from './safe-fs.js'
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

/** How often readUntrustedJson reads again when the file was replaced between its lstat and open. */
const CHANGED_READ_ATTEMPTS = 3

/**
 * A JSON file read with readUntrustedFile's care (no link followed, no FIFO waited on, at most
 * `maxBytes`) and parsed by parseUntrustedJson. A file replaced by a rename while it was read
 * ('changed') is read again, a few times: a reader meets the new file whole, as it would have
 * by opening it after the rename. Never throws; a failure says what was wrong, on one line.
 */
export async function readUntrustedJson(file: string, maxBytes: number): Promise<UntrustedJson> {
  for (let attempt = 1; ; attempt++) {
    let read
    try {
      read = await readUntrustedFile(file, maxBytes)
    } catch (error) {
      return {error: clip((error as Error).message, 160), ok: false}
    }

    switch (read.kind) {
      case 'changed': {
        if (attempt >= CHANGED_READ_ATTEMPTS) return {error: 'the file kept changing while it was read', ok: false}
        await delay(5 * attempt)
        continue
      }

      case 'missing': {
        return {error: 'the file is missing', ok: false}
      }

      case 'not-regular': {
        return {error: `the file is not a regular file (${read.fileKind})`, ok: false}
      }

      case 'ok': {
        return parseUntrustedJson(read.data)
      }

      case 'too-large': {
        return {error: `the file is over ${maxBytes} bytes`, ok: false}
      }

      case 'unreadable': {
        return {error: clip(read.error, 160), ok: false}
      }
    }
  }
}
