import {createHash} from 'node:crypto'
import fs from 'node:fs/promises'
import http from 'node:http'
import type {AddressInfo} from 'node:net'

import {execa} from 'execa'

export interface ScopeRegistry {
  /** For npm: `--@scope:registry=<url>`. */
  url: string
  /** Package names whose packument npm asked for. */
  asked: Set<string>
  close(): Promise<void>
}

/**
 * A minimal npm registry on 127.0.0.1 serving the given tarballs (one version each): the
 * packument at /<name> and the tarball. Used for one scope (`--@opencode-cloud:registry=`), so a
 * package's dependency on a workspace is fetched the way it will be from npmjs.com, and npm lays
 * it out as it will (nested under the global package), while every other package comes from the
 * configured registry as usual.
 */
export async function serveScope(tarballs: string[]): Promise<ScopeRegistry> {
  const packages = new Map<string, {data: Buffer; manifest: Record<string, unknown>}>()
  for (const file of tarballs) {
    const extracted = await execa('tar', ['-xzOf', file, 'package/package.json'])
    const manifest = JSON.parse(String(extracted.stdout)) as Record<string, unknown>
    packages.set(String(manifest.name), {data: await fs.readFile(file), manifest})
  }

  const asked = new Set<string>()
  const server = http.createServer((request, response) => {
    const {port} = server.address() as AddressInfo
    const url = new URL(request.url ?? '/', `http://127.0.0.1:${port}`)
    const tarball = url.pathname.startsWith('/-/') ? packages.get(decodeURIComponent(url.pathname.slice(3).replace(/\.tgz$/, ''))) : undefined
    if (tarball) {
      response.end(tarball.data)
      return
    }

    const name = decodeURIComponent(url.pathname.slice(1))
    const entry = packages.get(name)
    if (!entry) {
      response.writeHead(404, {'content-type': 'application/json'}).end('{"error":"not found"}')
      return
    }

    asked.add(name)
    const version = String(entry.manifest.version)
    const dist = {
      integrity: `sha512-${createHash('sha512').update(entry.data).digest('base64')}`,
      shasum: createHash('sha1').update(entry.data).digest('hex'),
      tarball: `${url.origin}/-/${encodeURIComponent(name)}.tgz`,
    }
    response.writeHead(200, {'content-type': 'application/json'})
    response.end(JSON.stringify({'dist-tags': {latest: version}, name, versions: {[version]: {...entry.manifest, dist}}}))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  return {
    asked,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
    url: `http://127.0.0.1:${port}/`,
  }
}
