// The reference update button's backend: plain node:http, no framework, no build step. It serves
// the page and turns its clicks into requestUpdate() calls. Mount it in the web UI's server:
//
//   import {createUpdateButton} from './update-button/server.mjs'
//   const updateButton = createUpdateButton()            // {dir?, basePath = '/occ/update'}
//   http.createServer((req, res) => { if (updateButton.handles(req)) return void updateButton(req, res); ... })
//
// Routes (under basePath):
//   GET  /               the page
//   POST /requests       {branch?, commit?} → 202 {request_id} (or the one already running: 200)
//   GET  /requests/<id>  {state: 'pending', progress} | {state: 'answered', result} | {state: 'failed', error}
//   GET  /listener       listener.json, checked (or null)
//
// This process is the one the update restarts. What it knows about a request lives in memory
// only; after the restart, asking for a request_id it does not know attaches to it again
// (waitForResult), so the page only has to keep the request_id and ask again.
import {readFileSync} from 'node:fs'

import {buildUpdateCommand, readListenerStatus, requestUpdate, UpdateClientError, waitForResult} from '@opencode-cloud/update-client'

const MAX_BODY_BYTES = 4096

export function createUpdateButton(options = {}) {
  const basePath = options.basePath ?? '/occ/update'
  const dir = options.dir
  const page = readFileSync(new URL('./page.html', import.meta.url))
  /** request_id → {state, progress?, result?, error?} */
  const requests = new Map()
  let running

  function track(requestId, promise) {
    const entry = {state: 'pending'}
    requests.set(requestId, entry)
    promise.then(
      (result) => Object.assign(entry, {result, state: 'answered'}),
      (error) => Object.assign(entry, {error: describeError(error), state: 'failed'}),
    )
    return entry
  }

  function start(body) {
    if (running && requests.get(running)?.state === 'pending') return {existing: true, requestId: running}
    const command = buildUpdateCommand({branch: body.branch || undefined, commit: body.commit || undefined}) // throws invalid_request
    const requestId = command.request_id
    const entry = track(requestId, requestUpdate({branch: command.branch ?? undefined, commit: command.commit ?? undefined, dir, onProgress: (p) => (entry.progress = p), requestId}))
    running = requestId
    return {existing: false, requestId}
  }

  function status(requestId) {
    let entry = requests.get(requestId)
    if (!entry) {
      // Not ours (yet): started before a restart, or in another process. Wait for it again.
      entry = track(requestId, waitForResult(requestId, {dir, onProgress: (p) => (entry.progress = p)}))
    }

    return entry
  }

  async function handle(req, res) {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const route = url.pathname.slice(basePath.length) || '/'
    try {
      if (req.method === 'GET' && route === '/') return send(res, 200, page, 'text/html; charset=utf-8')
      if (req.method === 'GET' && route === '/listener') return sendJson(res, 200, {listener: await readListenerStatus({dir})})
      if (req.method === 'POST' && route === '/requests') {
        const body = await readJsonBody(req)
        const {existing, requestId} = start(body)
        return sendJson(res, existing ? 200 : 202, {existing, request_id: requestId})
      }

      const match = /^\/requests\/([^/]{1,200})$/.exec(route)
      if (req.method === 'GET' && match) {
        const entry = status(decodeURIComponent(match[1]))
        return sendJson(res, 200, {error: entry.error, progress: entry.progress, result: entry.result, state: entry.state})
      }

      return sendJson(res, 404, {error: {code: 'not_found', message: 'No such route.'}})
    } catch (error) {
      return sendJson(res, error instanceof UpdateClientError && error.code === 'invalid_request' ? 400 : 500, {error: describeError(error)})
    }
  }

  handle.handles = (req) => {
    const path = (req.url ?? '/').split('?')[0]
    return path === basePath || path.startsWith(`${basePath}/`)
  }

  return handle
}

function describeError(error) {
  if (error instanceof UpdateClientError) return {code: error.code, message: error.message, withdrawn: error.withdrawn}
  return {code: 'internal', message: error instanceof Error ? error.message : String(error)}
}

function readJsonBody(req) {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks = []
    req.on('data', (chunk) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        reject(new UpdateClientError('invalid_request', 'The request body is too large.'))
        req.destroy()
      } else chunks.push(chunk)
    })
    req.on('end', () => {
      try {
        const text = Buffer.concat(chunks).toString('utf8')
        const body = text.trim() === '' ? {} : JSON.parse(text)
        if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object')
        for (const key of ['branch', 'commit']) {
          if (body[key] !== undefined && body[key] !== null && typeof body[key] !== 'string') throw new Error(`${key} must be a string`)
        }

        resolve(body)
      } catch (error) {
        reject(new UpdateClientError('invalid_request', `The request body must be a JSON object {branch?, commit?}: ${error.message}.`))
      }
    })
    req.on('error', reject)
  })
}

function send(res, status, body, type) {
  res.writeHead(status, {'cache-control': 'no-store', 'content-type': type})
  res.end(body)
}

function sendJson(res, status, value) {
  send(res, status, JSON.stringify(value), 'application/json')
}
