/** The command-file channel between the web UI (inside the sandbox) and the host's listener. */
export * from './command-files.js'
export * from './commands-dir.js'
export * from './listener-status.js'
export * from './refs.js'
export * from './safe-dir.js'
export * from './safe-fs.js'
export * from './schemas.js'
export * from './untrusted-json.js'
