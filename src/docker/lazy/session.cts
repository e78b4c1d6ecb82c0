// Stands in for dockerode/lib/session.js until an image build needs a BuildKit session (see ../lazy-deps.ts).
type WithSession = (...args: unknown[]) => unknown
let real: WithSession | undefined

function lazySession(this: unknown, ...args: unknown[]): unknown {
  real ??= require(require.resolve('dockerode/lib/session.js')) as WithSession
  return real.apply(this, args)
}

module.exports = lazySession
