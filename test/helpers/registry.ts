/**
 * A real image registry for the integration tests: Debian's `docker-registry` (the distribution
 * registry, installed by .ci/provision.sh) run on a free 127.0.0.1 port with a temp storage dir.
 * The Engine treats 127.0.0.0/8 as an insecure registry by default, so no TLS is needed.
 *
 * sharedRegistry() starts one registry per test process and pushes the sandbox versions into it
 * once: `v1`, `v2` (thin layers on the fixture image, differing in /etc/opencode-cloud-version and
 * the org.opencode-cloud.version label) and `broken` (opencode's health answers 503 for ever).
 * The local copies of those tags are removed after the push, so a test's first start really pulls
 * (the fixture's base layers are found locally; each version's own layer is downloaded).
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {rmSync} from 'node:fs'
import fs from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import {Readable} from 'node:stream'

import Docker from 'dockerode'

import {FIXTURE_IMAGE, freePort} from './sandbox-env.js'

export const REGISTRY_BINARY = process.env.OCC_REGISTRY_BIN || 'docker-registry'
export const SANDBOX_VERSIONS = ['v1', 'v2', 'broken'] as const
export type SandboxVersion = (typeof SANDBOX_VERSIONS)[number]

export interface TestRegistry {
  /** host:port, e.g. 127.0.0.1:41234 */
  address: string
  /** The repository the versions are pushed to: <address>/occ-sandbox-<run>. */
  repository: string
  /** <repository>:<version> */
  ref(version: SandboxVersion | string): string
  /** The digest (sha256:…) the registry serves for a version's manifest. */
  digests: Record<SandboxVersion, string>
  /**
   * Points `tag` (default latest) of the repository at a version, as a publisher moving a tag
   * does (the registry's API: the version's manifest PUT under the tag). Returns its digest.
   */
  publish(version: SandboxVersion, tag?: string): Promise<string>
  /** Stops the registry process (its storage is kept): for "registry unreachable" tests. */
  stop(): Promise<void>
  /** Starts it again on the same port and storage. */
  start(): Promise<void>
  running(): boolean
}

/** GET http://address/v2/ → its status code, or undefined when nothing answers. */
function probe(address: string, timeoutMs = 1000): Promise<number | undefined> {
  return new Promise((resolve) => {
    const request = http.get(`http://${address}/v2/`, {timeout: timeoutMs}, (response) => {
      response.resume()
      resolve(response.statusCode)
    })
    request.on('timeout', () => request.destroy())
    request.on('error', () => resolve(undefined))
  })
}

class RegistryProcess {
  private child?: ChildProcess
  private exited?: Promise<void>
  private log = ''

  readonly address: string
  private readonly configFile: string

  constructor(address: string, configFile: string) {
    this.address = address
    this.configFile = configFile
  }

  running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  async start(timeoutMs = 30_000): Promise<void> {
    if (this.running()) return
    const child = spawn(REGISTRY_BINARY, ['serve', this.configFile], {stdio: ['ignore', 'pipe', 'pipe']})
    // The test process must be able to exit with the registry still running (it is killed then).
    child.unref()
    ;(child.stdout as unknown as {unref?: () => void})?.unref?.()
    ;(child.stderr as unknown as {unref?: () => void})?.unref?.()
    this.child = child
    const keep = (chunk: Buffer): void => {
      this.log = (this.log + chunk.toString('utf8')).slice(-8000)
    }

    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()))
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve))
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const failed = await Promise.race([spawnError, new Promise<undefined>((resolve) => setTimeout(resolve, 100, undefined))])
      if (failed) throw new Error(`cannot run ${REGISTRY_BINARY} (install Debian's docker-registry: bash .ci/provision.sh): ${failed.message}`)
      if (!this.running()) throw new Error(`${REGISTRY_BINARY} exited at start:\n${this.log}`)
      const status = await probe(this.address)
      // /v2/ answers 401 when the registry wants credentials: it is up.
      if (status === 200 || status === 401) return
    }

    await this.stop()
    throw new Error(`${REGISTRY_BINARY} did not answer on http://${this.address}/v2/ within ${timeoutMs} ms:\n${this.log}`)
  }

  async stop(): Promise<void> {
    if (!this.child || !this.running()) return
    this.child.kill('SIGTERM')
    const killed = setTimeout(() => this.child?.kill('SIGKILL'), 5000)
    await this.exited
    clearTimeout(killed)
    // Closed means closed: wait until the port refuses.
    while ((await probe(this.address, 200)) !== undefined) await new Promise((resolve) => setTimeout(resolve, 50))
  }

  /** For process exit: no awaiting there. */
  killNow(): void {
    if (this.running()) this.child?.kill('SIGKILL')
  }
}

/** A bcrypt hash (of a password no test uses): the registry then refuses every anonymous request. */
const HTPASSWD = 'occ-test:$2b$05$abcdefghijklmnopqrstuutaz/SHXsrvqy/ChnunBIcMuq4PCR.gG\n'

/** A registry on a free loopback port with its own storage dir; no auth unless `auth` (htpasswd). */
export async function startRegistry(options: {auth?: boolean} = {}): Promise<{process: RegistryProcess; root: string}> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-registry-'))
  const port = await freePort()
  const address = `127.0.0.1:${port}`
  const configFile = path.join(root, 'config.yml')
  await fs.writeFile(
    configFile,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(root, 'storage')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: ${address}`,
      ...(options.auth ? ['auth:', '  htpasswd:', '    realm: occ-test', `    path: ${path.join(root, 'htpasswd')}`] : []),
      '',
    ].join('\n'),
  )
  if (options.auth) await fs.writeFile(path.join(root, 'htpasswd'), HTPASSWD)
  const registry = new RegistryProcess(address, configFile)
  await registry.start()
  return {process: registry, root}
}

// --- a build context in memory (ustar) --------------------------------------------------------

function tarHeader(name: string, size: number): Buffer {
  const header = Buffer.alloc(512)
  const put = (text: string, offset: number, length: number): void => {
    header.write(text, offset, Math.min(length, Buffer.byteLength(text)), 'utf8')
  }

  const octal = (value: number, length: number): string => value.toString(8).padStart(length - 1, '0')
  put(name, 0, 100)
  put(octal(0o644, 8), 100, 8)
  put(octal(0, 8), 108, 8)
  put(octal(0, 8), 116, 8)
  put(octal(size, 12), 124, 12)
  put(octal(0, 12), 136, 12)
  header.fill(' ', 148, 156)
  put('0', 156, 1)
  put('ustar', 257, 6)
  put('00', 263, 2)
  let sum = 0
  for (const byte of header) sum += byte
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8)
  return header
}

export function tarOf(files: Record<string, Buffer | string>): Buffer {
  const parts: Buffer[] = []
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content, 'utf8')
    parts.push(tarHeader(name, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512))
  }

  parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

/** Builds `tag` from a Dockerfile and files, through the Engine API (no docker CLI). */
export async function buildFromContext(docker: Docker, tag: string, files: Record<string, Buffer | string>): Promise<void> {
  const stream = await docker.buildImage(Readable.from([tarOf(files)]), {forcerm: true, rm: true, t: tag})
  await followStream(docker, stream)
}

/** Follows a build or push stream to its end; an error event in it fails. */
export function followStream(docker: Docker, stream: NodeJS.ReadableStream): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (error: Error | null, output: Array<{error?: string}>) => {
      const failed = output?.find((event) => event.error)
      if (error || failed) reject(error ?? new Error(failed?.error))
      else resolve(output)
    })
  })
}

function versionFiles(version: SandboxVersion): Record<string, Buffer | string> {
  // A layer of its own per version (random bytes: nothing to share), big enough that a pull
  // reports download progress in bytes.
  const files: Record<string, Buffer | string> = {
    Dockerfile: [
      `FROM ${FIXTURE_IMAGE}`,
      'COPY version /etc/opencode-cloud-version',
      'COPY payload /usr/local/share/opencode-cloud-test-payload',
      ...(version === 'broken' ? ['COPY HEALTH_FAIL /opt/opencode/HEALTH_FAIL'] : []),
      `LABEL org.opencode-cloud.version=${version}`,
      '',
    ].join('\n'),
    payload: randomBytes(3 * 1024 * 1024),
    version: `${version}\n`,
  }
  if (version === 'broken') files.HEALTH_FAIL = 'opencode answers 503 in this image\n'
  return files
}

/** Pushes `ref` (already tagged locally) and answers the manifest digest the registry took. */
export async function pushImage(docker: Docker, ref: string): Promise<string> {
  const stream = await docker.getImage(ref).push({authconfig: {}})
  const output = (await followStream(docker, stream as NodeJS.ReadableStream)) as Array<{aux?: {Digest?: string}}>
  const digest = output.find((event) => event.aux?.Digest)?.aux?.Digest
  if (!digest) throw new Error(`push of ${ref} reported no digest`)
  return digest
}

const MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json'

function registryRequest(address: string, method: 'GET' | 'PUT', urlPath: string, body?: Buffer): Promise<{status: number; body: Buffer}> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = method === 'GET' ? {accept: MANIFEST_V2} : {'content-type': MANIFEST_V2}
    const request = http.request(`http://${address}${urlPath}`, {headers, method, timeout: 10_000}, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => resolve({body: Buffer.concat(chunks), status: response.statusCode ?? 0}))
    })
    request.on('timeout', () => request.destroy(new Error(`${method} ${urlPath}: timed out`)))
    request.on('error', reject)
    request.end(body)
  })
}

let shared: Promise<TestRegistry> | undefined

/**
 * The suite's one registry, started and filled on first use (about half a minute: the fixture's
 * layers are pushed once), stopped when the test process exits.
 */
export function sharedRegistry(): Promise<TestRegistry> {
  shared ??= createSharedRegistry()
  return shared
}

async function createSharedRegistry(): Promise<TestRegistry> {
  const docker = new Docker()
  const {process: registry, root} = await startRegistry()
  process.once('exit', () => {
    registry.killNow()
    rmSync(root, {force: true, recursive: true})
  })
  const repository = `${registry.address}/occ-sandbox-${randomBytes(3).toString('hex')}`
  const digests = {} as Record<SandboxVersion, string>
  for (const version of SANDBOX_VERSIONS) {
    const ref = `${repository}:${version}`
    await buildFromContext(docker, ref, versionFiles(version))
    digests[version] = await pushImage(docker, ref)
  }

  // Pulls must be real: no local copy of any version (their own layers go with them).
  for (const version of SANDBOX_VERSIONS) await docker.getImage(`${repository}:${version}`).remove({force: true})
  const name = repository.slice(registry.address.length + 1)
  return {
    address: registry.address,
    digests,
    async publish(version, tag = 'latest') {
      const manifest = await registryRequest(registry.address, 'GET', `/v2/${name}/manifests/${digests[version]}`)
      if (manifest.status !== 200) throw new Error(`GET manifest ${version}: HTTP ${manifest.status}`)
      const put = await registryRequest(registry.address, 'PUT', `/v2/${name}/manifests/${tag}`, manifest.body)
      if (put.status !== 201) throw new Error(`PUT manifest ${tag}: HTTP ${put.status} ${put.body.toString('utf8')}`)
      return digests[version]
    },
    ref: (version) => `${repository}:${version}`,
    repository,
    running: () => registry.running(),
    start: () => registry.start(),
    stop: () => registry.stop(),
  }
}


/** A second registry that refuses anonymous access, for the "unauthorized" case; stop() removes it. */
export async function startAuthRegistry(): Promise<{address: string; stop(): Promise<void>}> {
  const {process: registry, root} = await startRegistry({auth: true})
  return {
    address: registry.address,
    async stop() {
      await registry.stop()
      await fs.rm(root, {force: true, recursive: true})
    },
  }
}

/**
 * Removes every local name (tags and digest references) of the image `repository@digest`, not
 * forced: a test that must pull it starts from an engine without it, whatever earlier files in
 * the same process left. Fails when the image is still there (a container uses it).
 */
export async function untagLocalCopies(docker: Docker, repository: string, digest: string): Promise<void> {
  const reference = `${repository}@${digest}`
  const holders = (await docker.listImages()).filter((entry) => (entry.RepoDigests ?? []).includes(reference))
  for (const holder of holders) {
    for (const name of [...(holder.RepoTags ?? []), ...(holder.RepoDigests ?? [])]) {
      if (name !== '<none>:<none>' && name !== '<none>@<none>') await docker.getImage(name).remove().catch(() => {})
    }
  }

  const left = (await docker.listImages()).filter((entry) => (entry.RepoDigests ?? []).includes(reference))
  if (left.length > 0) throw new Error(`${reference} is still present locally (${left.map((entry) => entry.Id).join(', ')}): a container still uses it`)
}
