import assert from 'node:assert/strict'
import {PassThrough} from 'node:stream'

import {runUpdatePlan} from '../../src/runtime/update/plan.js'
import {chooseRenderer, runWithProgress, StepTracker} from '../../src/runtime/update/render.js'
import {updateOutcomeSchema} from '../../src/runtime/update/outcome-schema.js'
import {FakeSandbox, SHA} from './update-fake-runtime.js'

const config = {opencode_repo: 'https://example.invalid/opencode.git'}
const FAST = {healthIntervalMs: 1, healthTimeoutMs: 100}

function capture(): {stream: NodeJS.WriteStream; text: () => string} {
  const stream = new PassThrough()
  let text = ''
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString()
  })
  return {stream: stream as unknown as NodeJS.WriteStream, text: () => text}
}

describe('update: rendering', () => {
  it('chooses the renderer: silent for --json/-q, plain lines off a terminal or under systemd/CI', () => {
    const tty = {env: {}, json: false, quiet: false, stderrIsTTY: true, stdoutIsTTY: true}
    assert.equal(chooseRenderer(tty), 'default')
    assert.equal(chooseRenderer({...tty, json: true}), 'silent')
    assert.equal(chooseRenderer({...tty, quiet: true}), 'silent')
    assert.equal(chooseRenderer({...tty, stdoutIsTTY: false}), 'simple')
    assert.equal(chooseRenderer({...tty, stderrIsTTY: false}), 'simple')
    assert.equal(chooseRenderer({...tty, env: {INVOCATION_ID: 'abc'}}), 'simple')
    assert.equal(chooseRenderer({...tty, env: {CI: 'true'}}), 'simple')
    assert.equal(chooseRenderer({...tty, env: {TERM: 'dumb'}}), 'simple')
    assert.equal(chooseRenderer({...tty, env: {INVOCATION_ID: 'abc'}, json: true}), 'silent')
  })

  it('settles a step only once the plan has moved on or ended', async () => {
    const tracker = new StepTracker()
    tracker.progress.onStep('restart')
    tracker.progress.onStepDone({durationMs: 5, status: 'failed', step: 'restart'})
    assert.equal(tracker.isSettled('restart'), false, 'not yet known whether a rollback follows')
    const settled = tracker.until(() => tracker.isSettled('restart'))
    tracker.progress.onStep('rollback')
    await settled
    assert.equal(tracker.hasStarted('rollback'), true)
    assert.equal(tracker.isSettled('prune'), false)
    tracker.end()
    assert.equal(tracker.isSettled('prune'), true)
  })

  it('prints plain step lines (on the given stream), hides steps never reached, installs no SIGINT handler', async () => {
    const sandbox = new FakeSandbox()
    sandbox.branches.dev = SHA.bad
    const out = capture()
    const sigint = process.listenerCount('SIGINT')
    let during = -1
    const outcome = await runWithProgress(
      (progress) => {
        during = process.listenerCount('SIGINT')
        return runUpdatePlan(sandbox, config, {}, progress, {...FAST, store: sandbox.store})
      },
      'simple',
      out.stream,
    )
    assert.equal(during, sigint)
    assert.equal(process.listenerCount('SIGINT'), sigint)
    assert.equal(outcome.error?.code, 'UPDATE_ROLLED_BACK')
    const text = out.text()
    assert.match(text, /✔ Build \(opencode keeps serving\): version 1\.3\.0/)
    assert.match(text, /✖ Restart opencode and wait until healthy/)
    assert.match(text, /HTTP 503 from version 1\.3\.0/)
    assert.match(text, /✔ Roll back to the previous release: back on 1111111/)
    assert.doesNotMatch(text, /Prune/)
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(text, /\u001B\[[0-9;]*[ABCDJK]/, 'no cursor movement off a terminal')
  })

  it('shows only the steps that ran when already up to date', async () => {
    const sandbox = new FakeSandbox()
    sandbox.branches.dev = SHA.old
    const out = capture()
    await runWithProgress((progress) => runUpdatePlan(sandbox, config, {}, progress, {...FAST, store: sandbox.store}), 'simple', out.stream)
    const text = out.text()
    assert.match(text, /Compare with the installed commit: already at 1111111/)
    for (const hidden of ['Fetch', 'Build', 'Switch', 'Restart', 'Roll back', 'Prune']) assert.doesNotMatch(text, new RegExp(hidden))
  })

  it('writes nothing when silent, and the outcome matches its schema', async () => {
    const out = capture()
    const fake = new FakeSandbox()
    const outcome = await runWithProgress((progress) => runUpdatePlan(fake, config, {}, progress, {...FAST, store: fake.store}), 'silent', out.stream)
    assert.equal(out.text(), '')
    assert.equal(outcome.status, 'success')
    const parsed = updateOutcomeSchema.safeParse(outcome)
    assert.ok(parsed.success, parsed.error?.message)
  })
})
