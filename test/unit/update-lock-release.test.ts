import assert from 'node:assert/strict'

import {heldLockTokens} from '../../src/runtime/update/lock-owner.js'
import type {ReleaseStore} from '../../src/runtime/update/release-store.js'
import {releaseUpdateLockWhenBack} from '../../src/runtime/update/repair.js'

/** A store whose unlock fails while the container is "down" (as an exec into a restarting container does). */
function storeWith(container: {running: boolean}): {store: ReleaseStore; unlocks: string[]} {
  const unlocks: string[] = []
  const store = {
    async unlock(token: string) {
      unlocks.push(`${token}:${container.running ? 'up' : 'down'}`)
      if (!container.running) throw new Error('release store unlock failed: exit 126')
    },
  } as unknown as ReleaseStore
  return {store, unlocks}
}

describe('releasing the update lock after a container restart', () => {
  it('an unlock cut by a restart is retried once the container runs again, before the release returns', async () => {
    const container = {running: false}
    const {store, unlocks} = storeWith(container)
    heldLockTokens.add('t1')
    let polls = 0
    const released = await releaseUpdateLockWhenBack(store, 't1', {
      async isRunning() {
        polls++
        if (polls === 3) container.running = true
        return container.running
      },
      pollMs: 5,
    })
    assert.equal(released, true)
    assert.deepEqual(unlocks, ['t1:down', 't1:up'])
    assert.equal(heldLockTokens.has('t1'), false, 'not held by this process any more')
  })

  it('gives up at the deadline when the container stays down, and at once when occ is stopping', async () => {
    const {store, unlocks} = storeWith({running: false})
    const started = performance.now()
    assert.equal(await releaseUpdateLockWhenBack(store, 't2', {isRunning: async () => false, pollMs: 5, timeoutMs: 60}), false)
    assert.ok(performance.now() - started < 1000)
    const controller = new AbortController()
    controller.abort()
    assert.equal(await releaseUpdateLockWhenBack(store, 't3', {isRunning: async () => false, signal: controller.signal}), false)
    assert.deepEqual(unlocks, ['t2:down', 't3:down'])
  })

  it('a container that runs while the unlock fails is tried once more, not waited on', async () => {
    const store = {
      async unlock() {
        throw new Error('broken store')
      },
    } as unknown as ReleaseStore
    let polls = 0
    const released = await releaseUpdateLockWhenBack(store, 't4', {
      async isRunning() {
        polls++
        return true
      },
    })
    assert.equal(released, false)
    assert.equal(polls, 1)
  })
})
