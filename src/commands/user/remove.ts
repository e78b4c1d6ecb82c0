import {Args, Flags} from '@oclif/core'

import {RuntimeCommand} from '../../runtime/runtime-command.js'
import {CONTAINER_CONFIG_NOTE, openUserStore} from '../../runtime/users/host-users.js'
import {assertUsername} from '../../runtime/users/names.js'
import type {UserRemoveResult} from '../../runtime/users/schemas.js'

export default class UserRemove extends RuntimeCommand<typeof UserRemove> {
  static override args = {name: Args.string({description: 'The login user to remove.', required: true})}

  static override description = `Remove a login user: its account and home in the sandbox, its record and its config.users entry.

The last login user is kept unless --force (without one, nobody can sign in to the web UI).`

  static override examples = ['<%= config.bin %> user remove alice', '<%= config.bin %> user remove alice --force']

  static override flags = {force: Flags.boolean({char: 'f', description: 'Remove it even when it is the last login user.'})}

  static override supportedRuntimes = ['host' as const, 'container' as const]

  async run(): Promise<UserRemoveResult> {
    const name = assertUsername(this.args.name)
    const runtime = await this.runtime()
    const store = await openUserStore(runtime)
    const {users} = await store.remove(name, {force: this.flags.force})
    if (runtime.kind === 'container' && !this.jsonEnabled()) this.note(CONTAINER_CONFIG_NOTE)
    if (!this.flags.quiet && !this.jsonEnabled()) this.log(`Success: User '${name}' removed`)
    return {removed: true, username: name, users}
  }
}
