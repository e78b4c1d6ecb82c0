/** A push-to-pull bridge: producers push items, one consumer iterates them. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private items: T[] = []
  private waiting?: () => void
  private done = false
  private failure?: unknown

  push(item: T): void {
    this.items.push(item)
    this.wake()
  }

  end(error?: unknown): void {
    this.done = true
    this.failure = error
    this.wake()
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    while (true) {
      if (this.items.length > 0) {
        yield this.items.shift() as T
        continue
      }

      if (this.done) {
        if (this.failure) throw this.failure
        return
      }

      await new Promise<void>((resolve) => {
        this.waiting = resolve
      })
    }
  }

  private wake(): void {
    const waiting = this.waiting
    this.waiting = undefined
    waiting?.()
  }
}
