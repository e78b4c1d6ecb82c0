import assert from 'node:assert/strict'

import {DIE_GRACE_MS, RESTART_GRACE_MS, StopTracker, type StopDecision} from '../../src/runtime/stop-events.js'

/** Feeds Docker actions in order and plays the timers: what would the foreground loop conclude? */
function conclude(actions: Array<[string, Record<string, string>?]>): StopDecision | 'still running' {
  const tracker = new StopTracker()
  let pending: StopDecision | undefined
  for (const [action, attributes] of actions) {
    const decision = tracker.onEvent(action, attributes)
    if (decision.kind === 'end') return decision
    if (decision.kind === 'cancel') pending = undefined
    if (decision.kind === 'wait') pending = decision
  }

  return pending ?? 'still running'
}

describe('container stop events', () => {
  it('docker stop (kill, die, stop) is an expected stop, after the restart grace', () => {
    const decision = conclude([['kill', {signal: '15'}], ['die', {exitCode: '0'}], ['stop']])
    assert.deepEqual(decision, {kind: 'wait', ms: RESTART_GRACE_MS, verdict: {exitCode: 0, expected: true}})
  })

  it('a crash or docker kill (die without stop) is unexpected, with its exit code', () => {
    assert.deepEqual(conclude([['kill', {signal: '9'}], ['die', {exitCode: '137'}]]), {
      kind: 'wait',
      ms: DIE_GRACE_MS,
      verdict: {exitCode: 137, expected: false},
    })
  })

  it('docker restart (kill, die, stop, start, restart) is not an end', () => {
    assert.equal(conclude([['kill'], ['die', {exitCode: '143'}], ['stop'], ['start'], ['restart']]), 'still running')
  })

  it('a container that crashes after a restart is still caught', () => {
    const decision = conclude([['die', {exitCode: '0'}], ['stop'], ['start'], ['die', {exitCode: '1'}]])
    assert.deepEqual(decision, {kind: 'wait', ms: DIE_GRACE_MS, verdict: {exitCode: 1, expected: false}})
  })

  it('removal ends it at once as expected; unrelated actions are ignored', () => {
    assert.deepEqual(conclude([['exec_start: sh'], ['destroy']]), {kind: 'end', verdict: {departure: 'removed', exitCode: undefined, expected: true}})
    assert.equal(conclude([['exec_create'], ['health_status: healthy'], ['attach']]), 'still running')
  })

  it('a rename (update container setting the old one aside) ends the watch at once, even while a stop waits its grace', () => {
    assert.deepEqual(conclude([['kill'], ['die', {exitCode: '0'}], ['stop'], ['rename', {name: 'x_previous', oldName: '/x'}]]), {
      kind: 'end',
      verdict: {departure: 'renamed', exitCode: 0, expected: true},
    })
  })
})
