import {ContainerMissingError, ContainerNotRunningError, NotSupportedError, OccError, UsageError} from '../../errors.js'
import type {ExecResult, Runtime} from '../runtime.js'
import {assertUsername, BUILTIN_USERS, isValidUsername, PROTECTED_USER} from './names.js'
import {assertPassword} from './password.js'
import {parseInventory, parseShadow, RECORDS_DIR, renderRecord, usersArgv, type Inventory, type UserRecord, type UsersOp} from './sandbox-script.js'

export interface UserInfo {
  username: string
  enabled: boolean
  uid: number
  home: string
  shell: string
}

export interface RestoreReport {
  /** Accounts recreated from their records. */
  restored: string[]
  /** Accounts whose lock state was put back as recorded. */
  relocked: string[]
  /** Unmanaged /home users turned into records (only when there were no records). */
  migrated: string[]
  /** Every managed user after the restore: what config.users mirrors. */
  users: string[]
  /** Records skipped as unreadable, with why. */
  skipped: string[]
}

/** The first uid of a login account (Debian's UID_MIN); 65534 is nobody. */
const FIRST_LOGIN_UID = 1000
const NOBODY_UID = 65_534
const EXEC_TIMEOUT_MS = 30_000

/**
 * The login-user flow, written once over `Runtime`: the host runtime reaches the sandbox through
 * the Docker Engine API, the container runtime runs the same argv locally. Users are Linux
 * accounts in the sandbox (PAM is what the broker checks); each managed user has a record on
 * the opencode-users volume so a recreated container gets it back. `onUsersChanged` mirrors the
 * managed names into config.users where the runtime has that config (the host).
 */
export class UserStore {
  private readonly runtime: Runtime
  private readonly options: {onUsersChanged?: (users: string[]) => Promise<void>}

  constructor(runtime: Runtime, options: {onUsersChanged?: (users: string[]) => Promise<void>} = {}) {
    this.runtime = runtime
    this.options = options
  }

  /** Container mode needs root (the Rust occ's message), the host mode a running container. */
  async preflight(): Promise<void> {
    if (this.runtime.kind === 'container' && process.getuid?.() !== 0) {
      throw new NotSupportedError('User management in container runtime requires root.', {
        actions: ['Try: sudo occ user …', `Or from the host: docker exec -u root -it ${(await this.runtime.containerState()).name} occ user …`],
      })
    }

    const state = await this.runtime.containerState()
    if (!state.exists) throw new ContainerMissingError(this.runtime.names.container)
    if (!state.running) {
      throw new ContainerNotRunningError(this.runtime.names.container, {actions: ['Container not running. Start with `occ start` first.']})
    }
  }

  async inventory(): Promise<Inventory> {
    const result = await this.run('inventory')
    return parseInventory(result.stdout)
  }

  /** Managed users whose account exists (built-ins never), sorted; config.users follows them. */
  async list(): Promise<UserInfo[]> {
    const users = listUsers(await this.inventory())
    await this.options.onUsersChanged?.(users.map((user) => user.username))
    return users
  }

  async add(name: string, password: string): Promise<{username: string; users: string[]}> {
    assertUsername(name)
    assertPassword(password)
    const inventory = await this.inventory()
    if (isBuiltin(inventory, name)) throw builtinError(name)
    if (inventory.accounts.has(name)) {
      throw new OccError('USER_EXISTS', `User '${name}' already exists in the container.`, {
        actions: [`Change its password with: occ user passwd ${name}`, 'Or pick another name.'],
      })
    }

    await this.run('create', name)
    try {
      await this.setPassword(name, password)
      await this.persist(name)
    } catch (error) {
      // No half-made user: an account without its password or record would end the IOTP and be
      // migrated into a record at the next start. Best effort; the first error is the one reported.
      await this.run('delete', name, {allowFailure: true}).catch(() => {})
      throw error
    }

    return {username: name, users: await this.changed()}
  }

  async remove(name: string, options: {force: boolean}): Promise<{username: string; users: string[]}> {
    assertUsername(name)
    const inventory = await this.inventory()
    if (name === PROTECTED_USER || isBuiltin(inventory, name)) {
      throw new OccError('USER_PROTECTED', `Cannot remove '${name}' - this is a protected system user required for the container to function.`)
    }

    // A record whose account is gone (e.g. one that could not be restored) can still be dropped.
    if (!(inventory.records.has(name) && !inventory.accounts.has(name))) this.assertManageable(inventory, name)
    const managed = managedNames(inventory).filter((user) => inventory.accounts.has(user))
    if (!options.force && managed.length <= 1 && managed.includes(name)) {
      throw new OccError('LAST_USER', 'Cannot remove last user. Add another user first or use --force.', {
        actions: [`occ user add <name>, then occ user remove ${name}`, `Or: occ user remove ${name} --force`],
      })
    }

    await this.run('delete', name)
    return {username: name, users: await this.changed()}
  }

  async passwd(name: string, password: string): Promise<{username: string}> {
    assertUsername(name)
    assertPassword(password)
    this.assertManageable(await this.inventory(), name)
    await this.setPassword(name, password)
    await this.persist(name)
    return {username: name}
  }

  async setEnabled(name: string, enabled: boolean): Promise<{username: string; enabled: boolean; users: string[]}> {
    assertUsername(name)
    this.assertManageable(await this.inventory(), name)
    // Persist refuses built-ins before anything changes (the Rust occ locks first, then fails).
    await this.run(enabled ? 'unlock' : 'lock', name)
    await this.persist(name)
    return {enabled, username: name, users: await this.changed()}
  }

  /**
   * Puts the records back into the sandbox (every start and restart): a record whose account is
   * missing is recreated with its hash and lock state; a lock state that differs is put back.
   * With no records, unmanaged /home users are migrated into records. Fails naming the user.
   */
  async restore(): Promise<RestoreReport> {
    const inventory = await this.inventory()
    const report: RestoreReport = {migrated: [], relocked: [], restored: [], skipped: inventory.rejected, users: []}
    const records = [...inventory.records.values()].filter((record) => !isBuiltin(inventory, record.username))
    if (records.length === 0) {
      for (const account of inventory.accounts.values()) {
        if (!isLoginAccount(account) || !account.home.startsWith('/home/') || isBuiltin(inventory, account.name)) continue
        if (!isValidUsername(account.name)) continue
        await this.persist(account.name)
        report.migrated.push(account.name)
      }
    } else {
      for (const record of records) {
        try {
          await this.restoreOne(inventory, record, report)
        } catch (error) {
          throw new OccError('USER_RESTORE_FAILED', `Could not restore the login user '${record.username}': ${(error as Error).message}`, {
            actions: [`Check its record ${RECORDS_DIR}/${record.username}.json (occ logs may say more)`, `Or drop it: occ user remove ${record.username} --force`],
            cause: error,
          })
        }
      }
    }

    report.users = await this.changed(records.length === 0 ? report.migrated : records.map((record) => record.username))
    return report
  }

  private async restoreOne(inventory: Inventory, record: UserRecord, report: RestoreReport): Promise<void> {
    const name = record.username
    const recorded = record.locked ? 'L' : 'P'
    if (!inventory.accounts.has(name)) {
      await this.run('create', name)
      if (record.password_hash !== '') await this.exec(['chpasswd', '-e'], `${name}:${record.password_hash}\n`)
      await this.run(record.locked ? 'lock' : 'unlock', name, {allowFailure: !record.locked})
      report.restored.push(name)
      return
    }

    const status = inventory.passwordStatus.get(name)
    if (status !== undefined && (status === 'L') !== (recorded === 'L')) {
      await this.run(record.locked ? 'lock' : 'unlock', name)
      report.relocked.push(name)
    }
  }

  /** The managed names now; config.users follows them where the runtime has a config. */
  private async changed(names?: string[]): Promise<string[]> {
    const users = names ? [...names].sort() : listUsers(await this.inventory()).map((user) => user.username)
    await this.options.onUsersChanged?.(users)
    return users
  }

  private assertManageable(inventory: Inventory, name: string): void {
    if (isBuiltin(inventory, name)) throw builtinError(name)
    const account = inventory.accounts.get(name)
    if (!account) {
      throw new OccError('USER_MISSING', `User '${name}' does not exist in the container.`, {actions: ['See the users with: occ user list']})
    }

    if (!isLoginAccount(account)) {
      throw new OccError('USER_PROTECTED', `User '${name}' is a system account (uid ${account.uid}), not a login user occ manages.`)
    }
  }

  /** The password goes to chpasswd on stdin only: never argv, env or a log. */
  private async setPassword(name: string, password: string): Promise<void> {
    await this.exec(['chpasswd'], `${name}:${password}\n`, 'Setting the password')
  }

  /** Writes the record: the hash from `getent shadow`, the lock state from `passwd -S`. */
  private async persist(name: string): Promise<void> {
    const shadow = parseShadow((await this.run('shadow', name)).stdout)
    if (!shadow) throw new OccError('USER_COMMAND_FAILED', `Could not read the password state of '${name}' in the sandbox.`)
    const record = renderRecord({locked: shadow.status === 'L', password_hash: shadow.hash, username: name})
    await this.run('write', name, {stdin: record})
  }

  private async run(op: UsersOp, name?: string, options: {allowFailure?: boolean; stdin?: string} = {}): Promise<ExecResult> {
    const result = await this.runtime.exec(usersArgv(op, name), {stdin: options.stdin, timeoutMs: EXEC_TIMEOUT_MS, user: 'root'})
    if (result.exitCode !== 0 && !options.allowFailure) {
      throw new OccError('USER_COMMAND_FAILED', `'${op}'${name ? ` for '${name}'` : ''} failed in the sandbox (exit ${result.exitCode}): ${clean(result.stderr)}`)
    }

    return result
  }

  private async exec(argv: string[], stdin: string, what = argv[0]): Promise<void> {
    const result = await this.runtime.exec(argv, {stdin, timeoutMs: EXEC_TIMEOUT_MS, user: 'root'})
    // stderr only: chpasswd never echoes its input, and stdout is not shown.
    if (result.exitCode !== 0) throw new OccError('USER_COMMAND_FAILED', `${what} failed in the sandbox (exit ${result.exitCode}): ${clean(result.stderr)}`)
  }
}

function listUsers(inventory: Inventory): UserInfo[] {
  const users: UserInfo[] = []
  for (const name of managedNames(inventory)) {
    const account = inventory.accounts.get(name)
    if (!account) continue
    users.push({enabled: inventory.passwordStatus.get(name) !== 'L', home: account.home, shell: account.shell, uid: account.uid, username: name})
  }

  return users
}

function isBuiltin(inventory: Inventory, name: string): boolean {
  return (BUILTIN_USERS as readonly string[]).includes(name) || inventory.builtins.has(name)
}

function isLoginAccount(account: {uid: number}): boolean {
  return account.uid >= FIRST_LOGIN_UID && account.uid !== NOBODY_UID
}

/** Names with a valid record, built-ins left out, sorted. */
function managedNames(inventory: Inventory): string[] {
  return [...inventory.records.keys()].filter((name) => !isBuiltin(inventory, name)).sort()
}

function builtinError(name: string): OccError {
  return new UsageError(`User '${name}' is built-in and cannot be persisted.`, {actions: ['Pick another name: occ user add <name>']})
}

/** Sandbox text for a message: control characters out, bounded. */
function clean(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replaceAll(/[\u0000-\u001F\u007F-\u009F]+/g, ' ').trim().slice(0, 300) || 'no message'
}
