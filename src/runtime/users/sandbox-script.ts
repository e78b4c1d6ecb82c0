import * as z from 'zod'

import {cleanLine} from '../../protocol/text.js'
import {isValidUsername} from './names.js'

/** The records directory on the opencode-users volume (reference §8). */
export const RECORDS_DIR = '/var/lib/opencode-users'
export const BUILTIN_LIST_FILE = '/etc/opencode-cloud/builtin-home-users.txt'

/**
 * The account primitives inside the sandbox: one constant POSIX script, its subcommand and a
 * validated user name as argv (`sh -c SCRIPT occ-users <op> <name>`), never a string built from
 * input. Passwords and hashes never appear here: they reach chpasswd on stdin (a plain
 * `chpasswd` / `chpasswd -e` exec). Records are written by temp file + rename, 0600 in a 0700 dir;
 * a symlink in the records dir is never followed.
 */
export const USERS_SCRIPT = `set -u
dir=${RECORDS_DIR}
op=$1
shift
case "$op" in
inventory)
  printf 'builtin %s\\n' opencoder ubuntu
  f=${BUILTIN_LIST_FILE}
  if [ -f "$f" ] && [ ! -L "$f" ]; then head -c 65536 "$f" | while IFS= read -r n; do printf 'builtin %s\\n' "$n"; done; fi
  getent passwd | head -c 1048576 | while IFS= read -r line; do printf 'passwd %s\\n' "$line"; done
  passwd -Sa 2>/dev/null | while IFS=' ' read -r n s _; do printf 'pwstatus %s %s\\n' "$n" "$s"; done
  if [ -d "$dir" ] && [ ! -L "$dir" ]; then
    for r in "$dir"/*.json; do
      case "\${r##*/}" in *[!A-Za-z0-9_.-]*) continue ;; esac
      [ -f "$r" ] && [ ! -L "$r" ] || continue
      printf 'record %s ' "\${r##*/}"; head -c 65536 "$r" | base64 | tr -d '\\n'; echo
    done
  fi
  ;;
shadow)
  e=$(getent shadow "$1") || exit 3
  s=$(passwd -S "$1") || exit 3
  printf 'hash=%s\\nstatus=%s\\n' "$(printf '%s' "$e" | cut -d: -f2)" "$(printf '%s' "$s" | cut -d' ' -f2)"
  ;;
create) useradd -m -s /bin/bash "$1" ;;
delete)
  if id -u "$1" >/dev/null 2>&1; then userdel -r "$1" 2>/dev/null || { c=$?; [ "$c" = 12 ] || exit "$c"; }; fi
  [ -L "$dir" ] || rm -f "$dir/$1.json"
  ;;
write)
  [ -L "$dir" ] && { echo "$dir is a symlink" >&2; exit 4; }
  install -d -m 700 "$dir" && umask 077 && tmp=$(mktemp "$dir/.$1.XXXXXX") || exit 4
  head -c 65536 > "$tmp" && chmod 600 "$tmp" && mv -f "$tmp" "$dir/$1.json" || { rm -f "$tmp"; exit 4; }
  ;;
lock) passwd -l "$1" >/dev/null ;;
unlock) passwd -u "$1" >/dev/null ;;
*) echo "unknown op $op" >&2; exit 2 ;;
esac
`

export type UsersOp = 'create' | 'delete' | 'inventory' | 'lock' | 'shadow' | 'unlock' | 'write'

export function usersArgv(op: UsersOp, name?: string): string[] {
  return ['sh', '-c', USERS_SCRIPT, 'occ-users', op, ...(name === undefined ? [] : [name])]
}

/** A record as both tools write it: /var/lib/opencode-users/<username>.json. */
export const userRecordSchema = z.object({
  username: z.string(),
  password_hash: z.string(),
  locked: z.boolean(),
})
export type UserRecord = z.infer<typeof userRecordSchema>

/** A crypt(3) hash as shadow holds it, optionally locked (`!`): no `:` or line end can pass. */
const HASH_PATTERN = /^[!*]{0,2}[A-Za-z0-9./$=,_-]{0,512}$/

export function isSafeHash(hash: string): boolean {
  return HASH_PATTERN.test(hash)
}

export interface Account {
  name: string
  uid: number
  home: string
  shell: string
}

/** What the sandbox says about its accounts and records. All of it is untrusted input. */
export interface Inventory {
  builtins: Set<string>
  accounts: Map<string, Account>
  /** passwd -S: L (locked), P (usable password), NP (none). */
  passwordStatus: Map<string, string>
  records: Map<string, UserRecord>
  /** Records that were skipped, and why (a bad name, bad JSON, a name that is not its file's). */
  rejected: string[]
}

const MAX_LINES = 20_000

export function parseInventory(stdout: string): Inventory {
  const inventory: Inventory = {accounts: new Map(), builtins: new Set(), passwordStatus: new Map(), records: new Map(), rejected: []}
  for (const line of stdout.split('\n').slice(0, MAX_LINES)) {
    const space = line.indexOf(' ')
    if (space <= 0) continue
    const kind = line.slice(0, space)
    const rest = line.slice(space + 1)
    switch (kind) {
      case 'builtin': {
        const name = rest.trim()
        if (name && name.length <= 64) inventory.builtins.add(name)
        break
      }

      case 'passwd': {
        const fields = rest.split(':')
        if (fields.length !== 7) break
        const uid = /^\d{1,10}$/.test(fields[2]) ? Number(fields[2]) : Number.NaN
        if (!Number.isSafeInteger(uid)) break
        // Home and shell are shown in `occ user list`: no escape sequence reaches the terminal.
        inventory.accounts.set(fields[0], {home: cleanLine(fields[5], 256), name: fields[0], shell: cleanLine(fields[6], 256), uid})
        break
      }

      case 'pwstatus': {
        const [name, status] = rest.split(' ')
        if (name && status) inventory.passwordStatus.set(name, status)
        break
      }

      case 'record': {
        const [file, encoded = ''] = rest.split(' ')
        const record = decodeRecord(file, encoded)
        if (typeof record === 'string') inventory.rejected.push(record)
        else inventory.records.set(record.username, record)
        break
      }
    }
  }

  return inventory
}

function decodeRecord(file: string, encoded: string): string | UserRecord {
  if (!/^[A-Za-z0-9+/=]*$/.test(encoded)) return `${file}: not readable`
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8'))
  } catch {
    return `${file}: not JSON`
  }

  const parsed = userRecordSchema.safeParse(value)
  if (!parsed.success) return `${file}: not a user record`
  const record = parsed.data
  if (!isValidUsername(record.username)) return `${file}: invalid user name`
  if (file !== `${record.username}.json`) return `${file}: names another user (${record.username})`
  if (!isSafeHash(record.password_hash)) return `${file}: the password hash has unexpected characters`
  return {locked: record.locked, password_hash: record.password_hash, username: record.username}
}

/** `shadow NAME`: the hash (shadow field 2) and passwd -S's status. */
export function parseShadow(stdout: string): {hash: string; status: string} | undefined {
  const hash = /^hash=(.*)$/m.exec(stdout)?.[1]
  const status = /^status=(L|P|NP)$/m.exec(stdout)?.[1]
  if (hash === undefined || status === undefined || !isSafeHash(hash)) return undefined
  return {hash, status}
}

/** Pretty JSON, the Rust occ's record format. */
export function renderRecord(record: UserRecord): string {
  return `${JSON.stringify({username: record.username, password_hash: record.password_hash, locked: record.locked}, null, 2)}\n`
}
