/**
 * The smallest tar occ needs: one archive holding one symlink, for the Engine API's archive
 * endpoint (PUT /containers/{id}/archive), which is how a STOPPED container's files are changed
 * (no exec runs there). Written here rather than taken from a library: it is one ustar header.
 * The reader is as small, for tests and the fake runtime; it trusts nothing it is given.
 */

const BLOCK = 512

export interface TarEntry {
  name: string
  /** '0' a file, '2' a symlink, '5' a directory, … (ustar typeflag). */
  type: string
  linkName: string
  mode: number
  uid: number
  gid: number
  size: number
  data: Buffer
}

/** A name or link target that fits a plain ustar field: relative, no `..`, printable ASCII, ≤ 100 bytes. */
export function plainTarPath(value: string): boolean {
  return /^[A-Za-z0-9._/-]{1,100}$/.test(value) && !value.startsWith('/') && !value.split('/').includes('..')
}

/**
 * A tar archive with one symlink `name` → `target` (owned by root, mode 0777 as symlinks are),
 * then the two zero blocks that end an archive. Both must be plain relative paths: the target
 * is written as given, so it resolves inside the directory the archive is extracted into.
 */
export function symlinkTar(name: string, target: string, mtimeSeconds = Math.floor(Date.now() / 1000)): Buffer {
  if (!plainTarPath(name)) throw new TypeError(`not a plain tar entry name: ${JSON.stringify(name)}`)
  if (!plainTarPath(target)) throw new TypeError(`not a plain symlink target: ${JSON.stringify(target)}`)
  const header = Buffer.alloc(BLOCK, 0)
  header.write(name, 0, 100, 'ascii')
  octal(header, 100, 8, 0o777)
  octal(header, 108, 8, 0)
  octal(header, 116, 8, 0)
  octal(header, 124, 12, 0)
  octal(header, 136, 12, Math.max(0, Math.floor(mtimeSeconds)))
  header.write('2', 156, 1, 'ascii')
  header.write(target, 157, 100, 'ascii')
  header.write('ustar\u000000', 257, 8, 'ascii')
  header.write('root', 265, 32, 'ascii')
  header.write('root', 297, 32, 'ascii')
  // The checksum is summed with its own field as eight spaces.
  header.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of header) sum += byte
  header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii')
  return Buffer.concat([header, Buffer.alloc(2 * BLOCK, 0)])
}

/**
 * The entries of a ustar archive (no GNU or pax extensions needed here): stops at the end
 * marker, throws on a bad checksum, a bad number or an entry running past the buffer.
 */
export function readTar(tar: Buffer, maxEntries = 1000): TarEntry[] {
  const entries: TarEntry[] = []
  let offset = 0
  while (offset + BLOCK <= tar.length) {
    const header = tar.subarray(offset, offset + BLOCK)
    if (header.every((byte) => byte === 0)) return entries
    if (entries.length >= maxEntries) throw new Error(`more than ${maxEntries} tar entries`)
    const stored = readOctal(header, 148, 8)
    let sum = 0
    for (let index = 0; index < BLOCK; index++) sum += index >= 148 && index < 156 ? 0x20 : header[index]
    if (stored !== sum) throw new Error(`tar header checksum mismatch at ${offset}`)
    const size = readOctal(header, 124, 12)
    const dataStart = offset + BLOCK
    if (dataStart + size > tar.length) throw new Error(`tar entry at ${offset} runs past the archive`)
    entries.push({
      data: tar.subarray(dataStart, dataStart + size),
      gid: readOctal(header, 116, 8),
      linkName: text(header, 157, 100),
      mode: readOctal(header, 100, 8),
      name: text(header, 0, 100),
      size,
      type: String.fromCodePoint(header[156] || 0x30),
      uid: readOctal(header, 108, 8),
    })
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK
  }

  throw new Error('tar archive without its end marker')
}

function octal(header: Buffer, offset: number, length: number, value: number): void {
  header.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, length, 'ascii')
}

function readOctal(header: Buffer, offset: number, length: number): number {
  const raw = text(header, offset, length).trim()
  if (!/^[0-7]{1,12}$/.test(raw)) throw new Error(`bad tar number ${JSON.stringify(raw)}`)
  return Number.parseInt(raw, 8)
}

function text(header: Buffer, offset: number, length: number): string {
  const field = header.subarray(offset, offset + length)
  const end = field.indexOf(0)
  return field.subarray(0, end === -1 ? length : end).toString('latin1')
}
