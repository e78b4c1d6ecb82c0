/**
 * The reference update button (packages/update-client/example/update-button) the way a user meets
 * it: Debian's chromium, driven by playwright-core, on the page the fixture sandbox's stand-in
 * opencode serves at /occ/update, whose backend calls the update client's requestUpdate; the
 * host side is the built CLI's `occ start --no-daemon` against a real container. One sandbox for
 * all scenarios, in order. Each test saves a screenshot of its final state under
 * test-output/update-button/ (OCC_TEST_OUTPUT overrides test-output/).
 * Needs: npm run build, npm run fixture:build, a Docker engine, chromium (.ci/provision.sh).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import path from 'node:path'

import {execa} from 'execa'
import {type Browser, type BrowserContext, chromium, type Page} from 'playwright-core'

import {pushCommit} from '../fixtures/sandbox/repo-helpers.mjs'
import {REPO_ROOT} from '../helpers/sandbox-env.js'
import {createListenerWorld, type Foreground, type ListenerWorld, waitUntil} from './listener-helpers/world.js'

const CHROMIUM = '/usr/bin/chromium'
// Headless, and nothing that would reach out to the (closed) network.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
const OUTPUT_DIR = path.join(process.env.OCC_TEST_OUTPUT ?? path.join(REPO_ROOT, 'test-output'), 'update-button')

describe('the reference update button in a real browser (chromium, fixture sandbox, occ start --no-daemon)', function () {
  this.timeout(120_000)
  let world: ListenerWorld
  let foreground: Foreground
  let browser: Browser
  let context: BrowserContext
  let page: Page
  let base: string
  let shots = 0

  before(async () => {
    await fs.mkdir(OUTPUT_DIR, {recursive: true})
    const [created, launched] = await Promise.all([
      createListenerWorld('btn'),
      chromium.launch({args: CHROMIUM_ARGS, executablePath: CHROMIUM, headless: true}),
    ])
    world = created
    browser = launched
    foreground = await world.startForeground()
    await foreground.waitForLine(/Listening for update requests/)
    base = `http://127.0.0.1:${world.sandbox.port}`
    // start --no-daemon listens as soon as the container runs, not when opencode is healthy
    // (an unhealthy opencode is what the listener exists to fix): the page needs opencode up.
    await waitUntil(
      async () => {
        try {
          return ((await (await fetch(`${base}/global/health`)).json()) as {healthy?: boolean}).healthy === true
        } catch {
          return false
        }
      },
      60_000,
      () => 'opencode never answered healthy at /global/health',
    )
  })
  after(async () => {
    await browser?.close()
    await world?.cleanup()
  })

  beforeEach(async () => {
    context = await browser.newContext()
    page = await context.newPage()
  })

  /** Saves the page as it is now under OUTPUT_DIR (numbered in order, named after `label`). */
  async function screenshot(label: string): Promise<void> {
    const name = `${String(++shots).padStart(2, '0')}-${label.replaceAll(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`
    const file = path.join(OUTPUT_DIR, name)
    await page.screenshot({fullPage: true, path: file})
    const stat = await fs.stat(file)
    assert.ok(stat.size > 1000, `screenshot ${file} is ${stat.size} bytes`)
  }

  afterEach(async function () {
    // The final state of every test, passed or failed, for people to look at.
    await screenshot(this.currentTest?.title ?? 'test')
    await context.close()
  })

  async function openButton(branch: string): Promise<void> {
    await page.goto(`${base}/occ/update`)
    await page.locator('#branch').fill(branch)
    assert.equal(await page.locator('#update').textContent(), 'Update opencode')
  }

  async function waitForState(state: 'error' | 'pending' | 'success', timeoutMs = 60_000): Promise<void> {
    await page.waitForSelector(`#panel[data-state="${state}"]`, {timeout: timeoutMs})
  }

  async function health(): Promise<{healthy?: boolean; version?: string}> {
    const response = await fetch(`${base}/global/health`)
    return (await response.json()) as {healthy?: boolean; version?: string}
  }

  async function opencodePid(): Promise<string> {
    const result = await world.containerSh('cat /run/opencode/opencode.pid', [], 'root')
    return result.stdout.trim()
  }

  it('click → Pending with a step → Success with the new version (the page rides out the restart)', async () => {
    await world.pushBranch('button-ok', {BUILD_SLEEP_SECONDS: '3\n', VERSION: '1.1.0-button\n'})
    const pidBefore = await opencodePid()
    await openButton('button-ok')
    await page.locator('#update').click()
    await waitForState('pending', 5000)
    assert.equal(await page.locator('#update').isDisabled(), true)
    assert.equal(await page.locator('#status').textContent(), 'Updating…')
    await page.waitForFunction(`/^Step: building/.test(document.querySelector('#detail').textContent)`, undefined, {timeout: 30_000})
    await screenshot('pending-building')
    await waitForState('success')
    assert.equal(await page.locator('#status').textContent(), 'Updated')
    assert.match(String(await page.locator('#detail').textContent()), /^Updated at .+ — opencode 1\.1\.0-button\.$/)
    assert.deepEqual(await health(), {healthy: true, version: '1.1.0-button'})
    assert.notEqual(await opencodePid(), pidBefore, 'the process serving the page was restarted during the update')
  })

  it('a failing build → Error with the message; retry after fixing the branch → Success', async () => {
    const repo = world.repoDir
    await pushCommit(repo, {base: 'main', branch: 'button-fix', files: {BUILD_FAIL: '1\n', VERSION: '1.2.0-button\n'}})
    await execa('chmod', ['-R', 'a+rX', repo])
    await openButton('button-fix')
    await page.locator('#update').click()
    await waitForState('error')
    assert.equal(await page.locator('#status').textContent(), 'Update failed')
    assert.match(String(await page.locator('#detail').textContent()), /BUILD_FAIL/)
    assert.equal(await page.locator('#retry').isVisible(), true)
    assert.equal(await page.locator('#update').isVisible(), false, 'Error offers Retry instead')
    await screenshot('error-build-failed')
    assert.equal((await health()).version, '1.1.0-button', 'the failed build changed nothing')

    await pushCommit(repo, {branch: 'button-fix', files: {BUILD_FAIL: null}})
    await execa('chmod', ['-R', 'a+rX', repo])
    await page.locator('#retry').click()
    await waitForState('success')
    assert.match(String(await page.locator('#detail').textContent()), /opencode 1\.2\.0-button\.$/)
    assert.equal((await health()).version, '1.2.0-button')
  })

  it('two clicks in a row → one update, not two', async () => {
    await world.pushBranch('button-twice', {BUILD_SLEEP_SECONDS: '2\n', VERSION: '1.3.0-button\n'})
    const logFrom = foreground.stderr().length
    await openButton('button-twice')
    await page.locator('#update').dblclick()
    await waitForState('pending', 5000)
    // And two more requests straight to the backend while the first runs: it hands back the same one.
    // (A string, not a function: tsx would add helpers to a function that the page does not have.)
    const again = (await page.evaluate(`Promise.all([1, 2].map(() =>
      fetch('/occ/update/requests', {body: '{"branch":"button-twice"}', headers: {'content-type': 'application/json'}, method: 'POST'}).then((r) => r.json())))`)) as Array<{existing: boolean; request_id: string}>
    assert.equal(again[0].existing, true)
    assert.equal(again[0].request_id, again[1].request_id)
    await waitForState('success')
    assert.equal((await health()).version, '1.3.0-button')
    const updates = foreground
      .stderr()
      .slice(logFrom)
      .split('\n')
      .filter((line) => line.startsWith('Updating opencode to branch button-twice'))
    assert.equal(updates.length, 1, foreground.stderr().slice(logFrom))
    assert.ok(updates[0]!.includes(JSON.stringify(again[0].request_id)), updates[0])
    // A second request would not have started yet (the rate limit): it would be waiting, claimed or
    // queued. Nothing is: the answer is to the one request, and the listener has nothing left.
    // The page sees the answer once the result is renamed in; the listener removes the claim and
    // rewrites listener.json (idle) just after: give that up to 2 s, then check what is left.
    const deadline = Date.now() + 2000
    let left: string[]
    let listener: Record<string, unknown> | undefined
    for (;;) {
      left = (await fs.readdir(world.commandsDir)).filter((name) => !name.startsWith('.')).sort()
      listener = await world.readListenerJson()
      if ((left.length <= 2 && listener?.state === 'idle') || Date.now() > deadline) break
      await new Promise((resolve) => setTimeout(resolve, 25))
    }

    assert.equal((await world.readResult())?.request_id, again[0].request_id)
    assert.equal(await world.requestPresent(), false, 'no second request waiting')
    assert.deepEqual(left, ['listener.json', 'update-command.result.json'], 'no second request claimed')
    assert.equal(listener?.state, 'idle', JSON.stringify(listener))
    assert.equal((listener?.queue as unknown[] | undefined)?.length ?? 0, 0, JSON.stringify(listener))
  })

  it('no listener running → an Error that says the host service is not running, within 15 s', async () => {
    foreground.child.kill('SIGTERM')
    assert.equal(await foreground.exited, 0)
    assert.equal(await world.readListenerJson(), undefined, 'listener.json goes away with the listener')
    await openButton('dev')
    const clicked = Date.now()
    await page.locator('#update').click()
    await waitForState('error', 15_000)
    const took = Date.now() - clicked
    assert.ok(took <= 15_000, `${took} ms`)
    const detail = String(await page.locator('#detail').textContent())
    assert.match(detail, /^The host service is not running/)
    assert.match(detail, /occ install/)
    assert.equal(await world.requestPresent(), false, 'nothing was left for a listener that is not there')
  })
})
