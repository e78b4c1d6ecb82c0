export interface CommandResult {
  /** 127 when the program could not be started (not installed). */
  exitCode: number
  stdout: string
  stderr: string
}

/**
 * Runs one program with an argv array (never a shell string). Every systemctl, launchctl and
 * loginctl call goes through one of these, so tests can record and script them.
 */
export type CommandRunner = (file: string, args: string[]) => Promise<CommandResult>

export const execaRunner: CommandRunner = async (file, args) => {
  // Loaded on first use: `occ status` imports this module but rarely runs anything (~30 ms saved).
  const {execa} = await import('execa')
  const result = await execa(file, args, {reject: false, stdin: 'ignore', timeout: 200_000})
  if (result.exitCode === undefined) {
    // Spawn failures (ENOENT) resolve with no exit code under reject:false.
    return {exitCode: 127, stderr: result.shortMessage ?? `${file}: could not be started`, stdout: ''}
  }

  return {exitCode: result.exitCode, stderr: String(result.stderr ?? ''), stdout: String(result.stdout ?? '')}
}

/** First line of a failed command's output, for messages. */
export function describeFailure(file: string, args: string[], result: CommandResult): string {
  const detail = (result.stderr || result.stdout).trim().split('\n')[0] ?? ''
  return `\`${[file, ...args].join(' ')}\` exited with ${result.exitCode}${detail ? `: ${detail}` : ''}`
}
