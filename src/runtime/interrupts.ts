const EXIT_CODES: Partial<Record<NodeJS.Signals, number>> = {SIGINT: 130, SIGTERM: 143}

/**
 * The one rule for Ctrl+C and SIGTERM in long-running commands: the first signal asks the work
 * to stop cleanly (`first`), a second one leaves at once with the conventional exit code.
 * Returns the function that removes the handlers.
 */
export function handleInterrupts(
  first: (signal: NodeJS.Signals) => void,
  processLike: Pick<NodeJS.Process, 'exit' | 'off' | 'on'> = process,
): () => void {
  let received = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    received++
    if (received === 1) first(signal)
    else processLike.exit(EXIT_CODES[signal] ?? 1)
  }

  processLike.on('SIGINT', onSignal)
  processLike.on('SIGTERM', onSignal)
  return () => {
    processLike.off('SIGINT', onSignal)
    processLike.off('SIGTERM', onSignal)
  }
}
