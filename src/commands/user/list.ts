import {RuntimeCommand} from '../../runtime/runtime-command.js'
import {openUserStore} from '../../runtime/users/host-users.js'
import type {UserListResult} from '../../runtime/users/schemas.js'

export default class UserList extends RuntimeCommand<typeof UserList> {
  static override description = 'List the login users (managed users whose account exists; built-in accounts are not shown). -q prints only the names.'

  static override examples = ['<%= config.bin %> user list', '<%= config.bin %> user list --json']

  static override supportedRuntimes = ['host' as const, 'container' as const]

  async run(): Promise<UserListResult> {
    const store = await openUserStore(await this.runtime())
    const users = await store.list()
    if (this.jsonEnabled()) return {users}
    if (this.flags.quiet) {
      for (const user of users) this.log(user.username)
    } else if (users.length === 0) {
      this.log('No users configured.')
      this.log('Add one with: occ user add <name>')
    } else {
      const rows = [['Username', 'Status', 'UID', 'Home', 'Shell'], ...users.map((user) => [user.username, user.enabled ? 'enabled' : 'disabled', String(user.uid), user.home, user.shell])]
      const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)))
      for (const row of rows) this.log(row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd())
    }

    return {users}
  }
}
