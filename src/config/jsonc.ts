/**
 * Strips // and /* *\/ comments and trailing commas from JSONC, leaving strings untouched,
 * so the result can go to JSON.parse (which then reports positions in the original layout).
 */
export function stripJsonc(text: string): string {
  return stripTrailingCommas(stripComments(text))
}

function stripComments(text: string): string {
  let out = ''
  let index = 0
  while (index < text.length) {
    const char = text[index]
    const next = text[index + 1]
    if (char === '"') {
      const end = endOfString(text, index)
      out += text.slice(index, end)
      index = end
    } else if (char === '/' && next === '/') {
      while (index < text.length && text[index] !== '\n') index++
    } else if (char === '/' && next === '*') {
      const end = text.indexOf('*/', index + 2)
      const stop = end === -1 ? text.length : end + 2
      // Keep newlines so JSON.parse positions still match lines.
      out += text.slice(index, stop).replaceAll(/[^\n]/g, ' ')
      index = stop
    } else {
      out += char
      index++
    }
  }

  return out
}

/** Runs on comment-free text, so a comma before a commented-out last entry is found too. */
function stripTrailingCommas(text: string): string {
  let out = ''
  let index = 0
  while (index < text.length) {
    const char = text[index]
    if (char === '"') {
      const end = endOfString(text, index)
      out += text.slice(index, end)
      index = end
    } else if (char === ',') {
      let look = index + 1
      while (look < text.length && /\s/.test(text[look])) look++
      out += text[look] === '}' || text[look] === ']' ? ' ' : ','
      index++
    } else {
      out += char
      index++
    }
  }

  return out
}

function endOfString(text: string, start: number): number {
  let index = start + 1
  while (index < text.length) {
    if (text[index] === '\\') index += 2
    else if (text[index] === '"') return index + 1
    else index++
  }

  return text.length
}
