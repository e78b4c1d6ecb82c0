/**
 * A STOPPED sandbox whose `current` names a release an update switched in and never verified
 * (the update was killed while the new release had stopped the container, or the host went
 * down then). Without a supervisor such a release may be what stops the container, so starting
 * it as it is could crash-loop. Nothing runs in a stopped container: the store's files are read
 * and `current` is written back through the Engine API's archive endpoint, before the start.
 * The journal stays: the repair after the start (repairUnderLock) sees current no longer
 * pointing at the journal's release and finishes the rollback on the files as usual.
 */
import {readTar, symlinkTar, type TarEntry} from '../../docker/tar.js'
import {OPENCODE_ROOT, shortSha} from './layout.js'

/** How a stopped container's files are read and written (HostRuntime; a fake in unit tests). */
export interface StoppedFiles {
  /** The tar the archive endpoint answers for `path` (at most `maxBytes`), or undefined when it does not exist. */
  getArchive(path: string, maxBytes: number): Promise<Buffer | undefined>
  /** Whether `path` exists (a stat through the archive endpoint; nothing is copied). */
  exists(path: string): Promise<boolean>
  putArchive(directory: string, tar: Buffer): Promise<void>
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/

/** The journal's release and previous release, when both are plain names (key=value lines, as release-store.sh writes them). */
export function parseJournal(text: string): {release: string; previous: string} | undefined {
  const fields = new Map<string, string>()
  for (const line of text.split('\n').slice(0, 50)) {
    const at = line.indexOf('=')
    if (at > 0 && !fields.has(line.slice(0, at))) fields.set(line.slice(0, at), line.slice(at + 1, at + 301))
  }

  const release = fields.get('release') ?? ''
  const previous = fields.get('previous') ?? ''
  return NAME.test(release) && NAME.test(previous) && release !== previous ? {previous, release} : undefined
}

/**
 * Points `current` back at the previous release when the stopped container's current release
 * is one an update left unverified. Returns what it did (for progress), or undefined when there
 * was nothing to undo. Never starts anything.
 */
export async function undoUnverifiedOnStopped(files: StoppedFiles): Promise<string | undefined> {
  const journalTar = await files.getArchive(`${OPENCODE_ROOT}/.journal`, 64 * 1024)
  if (!journalTar) return undefined
  const journalEntry = firstEntry(journalTar)
  if (!journalEntry || (journalEntry.type !== '0' && journalEntry.type !== '\0')) return undefined
  const journal = parseJournal(journalEntry.data.toString('utf8'))
  if (!journal) return undefined
  const currentTar = await files.getArchive(`${OPENCODE_ROOT}/current`, 64 * 1024)
  const link = currentTar ? firstEntry(currentTar) : undefined
  if (link?.type !== '2' || link.linkName.split('/').pop() !== journal.release) return undefined
  if (!(await files.exists(`${OPENCODE_ROOT}/releases/${journal.previous}`))) return undefined
  await files.putArchive(OPENCODE_ROOT, symlinkTar('current', `releases/${journal.previous}`))
  return `The stopped sandbox was on release ${shortSha(journal.release)}, which an update switched in and never verified: starting it on the previous release ${shortSha(journal.previous)} instead`
}

/** The archive's first real entry (Docker may put pax extended headers before it). */
function firstEntry(tar: Buffer): TarEntry | undefined {
  return readTar(tar, 8).find((entry) => entry.type !== 'x' && entry.type !== 'g')
}
