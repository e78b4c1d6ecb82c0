import {Args} from '@oclif/core'

import {RuntimeCommand} from '../../runtime/runtime-command.js'
import {openUserStore} from '../../runtime/users/host-users.js'
import {assertUsername} from '../../runtime/users/names.js'
import type {UserEnabledResult} from '../../runtime/users/schemas.js'

export default class UserEnable extends RuntimeCommand<typeof UserEnable> {
  static override args = {name: Args.string({description: 'The login user.', required: true})}

  static override description = "Unlock a login user's password (passwd -u), so it can sign in again."

  static override examples = ['<%= config.bin %> user enable alice']

  static override supportedRuntimes = ['host' as const, 'container' as const]

  async run(): Promise<UserEnabledResult> {
    const name = assertUsername(this.args.name)
    const store = await openUserStore(await this.runtime())
    const result = await store.setEnabled(name, true)
    if (!this.flags.quiet && !this.jsonEnabled()) this.log(`Success: User '${name}' enabled`)
    return result
  }
}
