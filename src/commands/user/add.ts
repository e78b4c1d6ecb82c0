import {Args, Flags} from '@oclif/core'

import {UsageError} from '../../errors.js'
import {RuntimeCommand} from '../../runtime/runtime-command.js'
import {CONTAINER_CONFIG_NOTE, openUserStore} from '../../runtime/users/host-users.js'
import {assertUsername} from '../../runtime/users/names.js'
import {obtainPassword, promptUsername} from '../../runtime/users/password.js'
import type {UserAddResult} from '../../runtime/users/schemas.js'

export default class UserAdd extends RuntimeCommand<typeof UserAdd> {
  static override args = {
    name: Args.string({description: 'The login name: 3–32 lowercase letters, digits or underscores (asked on a terminal when left out).'}),
  }

  static override description = `Create a login user in the sandbox (a Linux account the web UI signs in with).

The password goes to chpasswd inside the sandbox on stdin; it never appears in a command line, the environment or a log. The user is recorded on the opencode-users volume, so a recreated container gets it back, and added to config.users.`

  static override examples = [
    '<%= config.bin %> user add alice --generate',
    'printf "%s\\n" "$PASSWORD" | <%= config.bin %> user add alice --password-stdin',
    'PW=$(<%= config.bin %> user add alice --generate --print-password-only)',
  ]

  static override flags = {
    generate: Flags.boolean({char: 'g', description: 'Generate a random password (30 alphanumeric characters; OPENCODE_PASSWORD_LENGTH=12–128).'}),
    'password-stdin': Flags.boolean({description: 'Read the password from the first line of stdin.'}),
    'print-password-only': Flags.boolean({description: 'Print only the generated password (needs --generate).'}),
  }

  static override supportedRuntimes = ['host' as const, 'container' as const]

  async run(): Promise<UserAddResult> {
    if (this.flags['print-password-only'] && !this.flags.generate) throw new UsageError('--print-password-only requires --generate')
    const name = assertUsername(this.args.name ?? (await promptUsername()))
    const {generated, password} = await obtainPassword({
      emptyGenerates: true,
      generate: this.flags.generate,
      label: `Password for ${name}`,
      passwordStdin: this.flags['password-stdin'],
    })
    const runtime = await this.runtime()
    const store = await openUserStore(runtime)
    const {users} = await store.add(name, password)
    if (runtime.kind === 'container' && !this.jsonEnabled()) this.note(CONTAINER_CONFIG_NOTE)
    const result: UserAddResult = {created: true, generated, password: generated ? password : null, username: name, users}
    if (this.jsonEnabled()) return result
    if (this.flags['print-password-only']) {
      this.log(password)
    } else if (!this.flags.quiet) {
      this.log(`Success: User '${name}' created successfully`)
      if (generated) {
        this.log(`Password: ${password}`)
        this.log("Save this password securely - it won't be shown again.")
      }
    } else if (generated) {
      this.log(password)
    }

    return result
  }
}
