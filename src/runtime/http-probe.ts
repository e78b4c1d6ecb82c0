import {createRequire} from 'node:module'

// require(), not import: an ESM import of node:http evaluates all its lazy exports, which loads
// undici (WebSocket and friends) — ~20 ms of every `occ status` for nothing.
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http')

import type {HealthProbe} from './runtime.js'

const MAX_BODY = 64 * 1024

/** GET /global/health with a hard timeout; the body is capped and parsed as JSON when it can be. */
export function probeHttpHealth(host: string, port: number, timeoutMs: number): Promise<HealthProbe> {
  return new Promise((resolve) => {
    let settled = false
    const done = (result: HealthProbe): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      request.destroy()
      resolve(result)
    }

    const request = http.get(
      {agent: false, headers: {accept: 'application/json', connection: 'close'}, host, path: '/global/health', port},
      (response) => {
        const chunks: Buffer[] = []
        let size = 0
        response.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size <= MAX_BODY) chunks.push(chunk)
        })
        response.on('end', () => {
          let body: unknown
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
          } catch {
            body = undefined
          }

          done({body, kind: 'http', status: response.statusCode ?? 0})
        })
        response.on('error', (error) => done({error: error.message, kind: 'failed'}))
      },
    )
    const timer = setTimeout(() => done({kind: 'timeout'}), timeoutMs)
    request.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED' || error.code === 'ECONNRESET' || error.code === 'EPIPE') done({kind: 'refused'})
      else done({error: error.message, kind: 'failed'})
    })
  })
}
