import {Args, Flags} from '@oclif/core'

import {RuntimeCommand} from '../../runtime/runtime-command.js'
import {openUserStore} from '../../runtime/users/host-users.js'
import {assertUsername} from '../../runtime/users/names.js'
import {obtainPassword} from '../../runtime/users/password.js'
import type {UserPasswdResult} from '../../runtime/users/schemas.js'

export default class UserPasswd extends RuntimeCommand<typeof UserPasswd> {
  static override args = {name: Args.string({description: 'The login user.', required: true})}

  static override description = 'Change the password of a login user (sent to chpasswd on stdin; the record is updated).'

  static override examples = ['<%= config.bin %> user passwd alice --generate', 'printf "%s\\n" "$PASSWORD" | <%= config.bin %> user passwd alice --password-stdin']

  static override flags = {
    generate: Flags.boolean({char: 'g', description: 'Generate a random password and print it.'}),
    'password-stdin': Flags.boolean({description: 'Read the password from the first line of stdin.'}),
  }

  static override supportedRuntimes = ['host' as const, 'container' as const]

  async run(): Promise<UserPasswdResult> {
    const name = assertUsername(this.args.name)
    const {generated, password} = await obtainPassword({
      generate: this.flags.generate,
      label: `New password for ${name}`,
      passwordStdin: this.flags['password-stdin'],
    })
    const store = await openUserStore(await this.runtime())
    await store.passwd(name, password)
    const result: UserPasswdResult = {changed: true, generated, password: generated ? password : null, username: name}
    if (this.jsonEnabled()) return result
    if (this.flags.quiet) {
      if (generated) this.log(password)
    } else {
      this.log(`Success: Password for '${name}' changed`)
      if (generated) {
        this.log(`Password: ${password}`)
        this.log("Save this password securely - it won't be shown again.")
      }
    }

    return result
  }
}
