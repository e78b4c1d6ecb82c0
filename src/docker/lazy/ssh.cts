// Stands in for docker-modem/lib/ssh.js until an ssh:// engine is used (see ../lazy-deps.ts).
type SshAgentFactory = (options: unknown) => unknown
let real: SshAgentFactory | undefined

function lazySsh(this: unknown, options: unknown): unknown {
  // Resolved from dockerode's own location: the very docker-modem it uses.
  real ??= require(require.resolve('docker-modem/lib/ssh.js', {paths: [require.resolve('dockerode')]})) as SshAgentFactory
  return real.call(this, options)
}

module.exports = lazySsh
