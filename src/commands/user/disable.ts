import {Args} from '@oclif/core'

import {RuntimeCommand} from '../../runtime/runtime-command.js'
import {openUserStore} from '../../runtime/users/host-users.js'
import {assertUsername} from '../../runtime/users/names.js'
import type {UserEnabledResult} from '../../runtime/users/schemas.js'

export default class UserDisable extends RuntimeCommand<typeof UserDisable> {
  static override args = {name: Args.string({description: 'The login user.', required: true})}

  static override description = "Lock a login user's password (passwd -l): it can no longer sign in. The account and its files stay."

  static override examples = ['<%= config.bin %> user disable alice']

  static override supportedRuntimes = ['host' as const, 'container' as const]

  async run(): Promise<UserEnabledResult> {
    const name = assertUsername(this.args.name)
    const store = await openUserStore(await this.runtime())
    const result = await store.setEnabled(name, false)
    if (!this.flags.quiet && !this.jsonEnabled()) this.log(`Success: User '${name}' disabled`)
    return result
  }
}
