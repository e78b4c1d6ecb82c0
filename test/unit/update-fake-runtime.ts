/**
 * A fake sandbox for unit tests of the update plan: it models /opt/opencode (COMMIT, current,
 * releases, the journal, the lock), the remote repository, the build and the running opencode.
 * The release store is faked at its typed interface (ReleaseStore), never by its script text;
 * git runs through exec, recognised by argv.
 */
import {resourceNames} from '../../src/config/instance.js'
import type {ExecOptions, ExecResult, HealthProbe, LogLine, RestartMethod, Runtime} from '../../src/runtime/runtime.js'
import {readTar} from '../../src/docker/tar.js'
import type {BuildOptions, Journal, LockAttempt, LockOwner, LockRecord, ReleaseStore, StoreState} from '../../src/runtime/update/release-store.js'

export interface FakeBuild {
  version: string
  buildFail?: boolean
  healthFail?: boolean
  /** opencode exits at once: without a supervisor, the container stops. */
  crashes?: boolean
  /** The build takes this long (ms), unless killed. */
  buildMs?: number
  /** Extra output chunks the build writes (as a hostile build could). */
  output?: string[]
}

export const SHA = {
  a: 'a'.repeat(40),
  b: 'b'.repeat(40),
  c: 'c'.repeat(40),
  d: 'd'.repeat(40),
  old: '1111111111111111111111111111111111111111',
  dev: '2222222222222222222222222222222222222222',
  main: '3333333333333333333333333333333333333333',
  bad: '4444444444444444444444444444444444444444',
  fail: '5555555555555555555555555555555555555555',
  crash: '6666666666666666666666666666666666666666',
  twinA: 'abcdef1000000000000000000000000000000000',
  twinB: 'abcdef1999999999999999999999999999999999',
}

const ok = (stdout = '', stderr = ''): ExecResult => ({exitCode: 0, stderr, stdout})
const fail = (exitCode: number, stderr = '', stdout = ''): ExecResult => ({exitCode, stderr, stdout})

export class FakeSandbox implements Runtime {
  readonly kind = 'host' as const
  readonly names = resourceNames('fake')

  container = {exists: true, running: true}
  restartMethodValue: RestartMethod = 'supervisor'
  recipe: 'builtin' | 'image' | 'none' = 'image'
  root = true
  rejectFetchBySha = false
  /** The build's process group survives the kill (only the exec's own signal ends the wait). */
  buildIgnoresKill = false
  /** Health answers of the running build are replaced by this when set (e.g. everything down). */
  healthOverride?: HealthProbe

  /** The remote repository. */
  branches: Record<string, string> = {dev: SHA.dev, main: SHA.main}
  /** Extra ls-remote lines (refs that tail-match, for the exact-match test). */
  extraRefs: string[] = []
  builds: Record<string, FakeBuild> = {
    [SHA.old]: {version: '1.0.0'},
    [SHA.dev]: {version: '1.1.0'},
    [SHA.main]: {version: '1.2.0'},
    [SHA.bad]: {healthFail: true, version: '1.3.0'},
    [SHA.fail]: {buildFail: true, version: '1.4.0'},
    [SHA.crash]: {crashes: true, version: '0.0.0-crash'},
    [SHA.twinA]: {version: '2.0.0'},
    [SHA.twinB]: {version: '2.0.1'},
  }

  /** /opt/opencode */
  commitFile: string | undefined = SHA.old
  current: string | undefined
  releases = new Map<string, FakeBuild>()
  /** The image's plain layout (what runs before the first update). */
  plain: FakeBuild | undefined = {version: '1.0.0'}
  running: FakeBuild | undefined = {version: '1.0.0'}

  lock: (LockRecord & {token: string}) | undefined
  journal: Journal | undefined
  events: string[] = []
  execs: string[][] = []
  restarts = 0

  private checkedOut?: string
  candidate?: FakeBuild
  private killBuild?: () => void
  readonly store: ReleaseStore = new FakeStore(this)

  async containerState() {
    return {
      exists: this.container.exists,
      labels: {},
      mounts: [],
      name: this.names.container,
      running: this.container.running,
      status: this.container.running ? 'running' : this.container.exists ? 'exited' : 'missing',
    }
  }

  async opencodeUrl() {
    return 'http://localhost:3000'
  }

  async restartMethod() {
    return this.restartMethodValue
  }

  async restartOpencode(): Promise<RestartMethod> {
    this.restarts++
    if (this.restartMethodValue === 'container') this.container.running = true
    this.running = this.current ? this.releases.get(this.current) : this.plain
    this.events.push(`restart:${this.running?.version}`)
    this.crashIfItDoes()
    return this.restartMethodValue
  }

  /** Without a supervisor, opencode's exit is the container's. */
  private crashIfItDoes(): void {
    if (!this.running?.crashes) return
    this.running = undefined
    if (this.restartMethodValue === 'container') {
      this.container.running = false
      this.events.push('container-stopped')
    }
  }

  /** The tar entries extracted into the stopped or running container (only `current` is modelled). */
  async putArchive(directory: string, tar: Buffer): Promise<void> {
    if (!this.container.exists) throw new Error('no such container')
    for (const entry of readTar(tar)) {
      const path = `${directory}/${entry.name}`
      this.events.push(`archive:${path}${entry.type === '2' ? `->${entry.linkName}` : ''}`)
      if (path === '/opt/opencode/current' && entry.type === '2' && entry.linkName.startsWith('releases/')) this.current = entry.linkName.slice('releases/'.length)
    }
  }

  async startContainer(): Promise<void> {
    if (this.container.running) return
    this.container.running = true
    this.running = this.current ? this.releases.get(this.current) : this.plain
    this.events.push(`start:${this.running?.version}`)
    this.crashIfItDoes()
  }

  /** Holds of the life cycle now in effect; every hold and release lands in events. */
  holds = 0
  holdLifecycle(why: string): () => void {
    this.holds++
    this.events.push(`hold:${why}`)
    let released = false
    return () => {
      if (released) return
      released = true
      this.holds--
      this.events.push('hold-released')
    }
  }

  async probeHealth(): Promise<HealthProbe> {
    if (this.healthOverride) return this.healthOverride
    if (!this.container.running || !this.running) return {kind: 'refused'}
    if (this.running.healthFail) return {body: {healthy: false, version: this.running.version}, kind: 'http', status: 503}
    return {body: {healthy: true, version: this.running.version}, kind: 'http', status: 200}
  }

  async *logs(): AsyncIterable<LogLine> {
    for (const text of this.logLines) yield {stream: 'stderr', text}
  }

  /** What the container's log holds (the stopped container's last lines end up in messages). */
  logLines: string[] = []

  /** What `current` resolves to, as the plan's callers would see it. */
  activeVersion(): string | undefined {
    return (this.current ? this.releases.get(this.current) : this.plain)?.version
  }

  async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.execs.push(argv)
    if (!this.container.running) throw new Error('container not running')
    if (argv[0] === 'git') return this.git(argv.slice(1), options)
    if (argv[0] === 'chown') return ok()
    return fail(127, `fake: unknown command ${argv[0]}`)
  }

  inspectState(): StoreState {
    const state: StoreState = {
      activeCommit: this.current && /^[0-9a-f]{40}$/.test(this.current) ? this.current : this.commitFile,
      present: true,
      recipe: this.recipe,
      releases: [...this.releases.keys()],
      root: this.root,
    }
    if (this.commitFile !== undefined) state.recordedCommit = this.commitFile
    if (this.current) state.currentRelease = this.current
    const version = this.activeVersion()
    if (version) state.version = version
    if (this.journal) {
      state.journal = {...this.journal}
      // As ScriptReleaseStore.inspect: under a journal the installed commit is the one it recorded.
      if (this.journal.previousCommit) state.recordedCommit = this.journal.previousCommit
      else delete state.recordedCommit
    }

    if (this.lock) state.lock = {...this.lock}
    return state
  }

  /** The build, as the store runs it. */
  async runBuild(options: BuildOptions): Promise<ExecResult> {
    this.execs.push(['build', options.recipe])
    return this.build(options)
  }

  killRunningBuild(): void {
    this.events.push('kill-build')
    if (!this.buildIgnoresKill) this.killBuild?.()
  }

  private fetchedAll = false
  private fetched = new Set<string>()

  private git(args: string[], options: ExecOptions): ExecResult {
    options.onOutput?.('git: working\n', 'stderr')
    const [sub] = args
    const rest = args.slice(args.indexOf('--') + 1)
    switch (sub) {
      case 'ls-remote': {
        const lines = [...this.extraRefs, ...Object.entries(this.branches).map(([name, sha]) => `${sha}\trefs/heads/${name}`)]
        this.events.push('ls-remote')
        return ok(lines.join('\n') + '\n')
      }

      case 'init': {
        return ok()
      }

      case 'fetch': {
        const what = rest.slice(1)
        if (what[0]?.startsWith('+refs/heads/')) {
          this.fetchedAll = true
          this.events.push('fetch-all')
          return ok()
        }

        if (what[0]?.startsWith('refs/heads/')) {
          const sha = this.branches[what[0].slice('refs/heads/'.length)]
          if (!sha) return fail(128, "fatal: couldn't find remote ref")
          this.fetched.add(sha)
          this.events.push(`fetch-ref:${what[0]}`)
          return ok()
        }

        if (this.rejectFetchBySha) return fail(128, 'fatal: Server does not allow request for unadvertised object')
        if (!this.builds[what[0]]) return fail(128, 'fatal: remote error: not our ref')
        this.fetched.add(what[0])
        this.events.push(`fetch:${what[0]}`)
        return ok()
      }

      case 'rev-parse': {
        const spec = args.at(-1)!.replace(/\^\{commit\}$/, '')
        const known = this.fetchedAll ? Object.keys(this.builds) : [...this.fetched]
        const matches = known.filter((sha) => sha.startsWith(spec))
        if (matches.length > 1) return fail(128, `error: short object ID ${spec} is ambiguous`)
        if (matches.length === 0) return fail(1)
        return ok(`${matches[0]}\n`)
      }

      case 'checkout': {
        this.checkedOut = args.at(-1)
        return ok()
      }

      default: {
        return fail(1, `fake git: ${sub}`)
      }
    }
  }

  private async build(options: BuildOptions): Promise<ExecResult> {
    const build = this.builds[this.checkedOut!]
    this.events.push(`build:${this.checkedOut}`)
    options.onOutput?.(`building ${build.version}\n`, 'stdout')
    for (const chunk of build.output ?? []) options.onOutput?.(chunk, 'stdout')
    if (build.buildMs) {
      const killed = await new Promise<boolean>((resolve, reject) => {
        const timer = setTimeout(() => resolve(false), build.buildMs)
        this.killBuild = () => {
          clearTimeout(timer)
          resolve(true)
        }
        options.signal?.addEventListener('abort', () => {
          clearTimeout(timer)
          this.events.push('build-exec-released')
          reject(options.signal?.reason)
        })
      })
      if (killed) return fail(143, 'terminated')
    }

    if (build.buildFail) return fail(1, 'opencode-build: error: build failed: BUILD_FAIL is present in the source tree')
    this.candidate = {...build}
    return ok(`built ${build.version}\n`)
  }
}

/** The release store at its interface, over the FakeSandbox's model. */
class FakeStore implements ReleaseStore {
  private readonly sandbox: FakeSandbox

  constructor(sandbox: FakeSandbox) {
    this.sandbox = sandbox
  }

  async inspect(): Promise<StoreState> {
    return this.sandbox.inspectState()
  }

  async lock(owner: LockOwner, _staleSeconds: number, takeoverToken?: string): Promise<LockAttempt> {
    const held = this.sandbox.lock
    if (held && !(takeoverToken && held.token === takeoverToken)) return {kind: 'busy', owner: {...held}}
    this.sandbox.lock = {ageSeconds: 0, bootId: owner.bootId, description: owner.description, pid: owner.pid, pidStart: owner.pidStart, token: owner.token}
    this.sandbox.events.push(held ? 'lock-takeover' : 'lock')
    return {endedBuilds: [], kind: 'taken', ...(held ? {tookOver: 'owner-gone' as const} : {})}
  }

  async heartbeat(token: string): Promise<boolean> {
    return this.sandbox.lock?.token === token
  }

  async unlock(token: string): Promise<void> {
    if (this.sandbox.lock?.token === token) {
      this.sandbox.lock = undefined
      this.sandbox.events.push('unlock')
    }
  }

  async stage(token: string): Promise<string> {
    return `/opt/opencode/.staging/${token}`
  }

  build(_token: string, options: BuildOptions): Promise<ExecResult> {
    return this.sandbox.runBuild(options)
  }

  async killBuild(): Promise<number[]> {
    this.sandbox.killRunningBuild()
    return []
  }

  async built(): Promise<{version?: string}> {
    if (!this.sandbox.candidate) throw new Error('no build')
    return {version: this.sandbox.candidate.version}
  }

  async activate(_token: string, commit: string, imageName: string, version: string | undefined): Promise<{previous: string; previousCommit?: string}> {
    const sandbox = this.sandbox
    if (!sandbox.candidate) throw new Error('no build')
    if (sandbox.journal) throw new Error('an unverified release is pending')
    if (!sandbox.current) {
      if (!sandbox.releases.has(imageName)) sandbox.releases.set(imageName, sandbox.plain!)
      sandbox.current = imageName
      sandbox.plain = undefined
      sandbox.events.push(`migrate:${imageName}`)
    }

    const previous = sandbox.current
    sandbox.releases.set(commit, sandbox.candidate)
    sandbox.journal = {previous, release: commit, ...(sandbox.commitFile ? {previousCommit: sandbox.commitFile} : {}), ...(version ? {version} : {})}
    sandbox.events.push(`journal:${commit}`)
    sandbox.current = commit
    sandbox.events.push(`switch:${commit}`)
    return {previous, ...(sandbox.commitFile ? {previousCommit: sandbox.commitFile} : {})}
  }

  async verify(): Promise<{commit?: string}> {
    const sandbox = this.sandbox
    if (!sandbox.journal || sandbox.current !== sandbox.journal.release) throw new Error('nothing to verify')
    sandbox.commitFile = sandbox.journal.release
    sandbox.events.push(`commit:${sandbox.journal.release}`)
    sandbox.journal = undefined
    return {commit: sandbox.commitFile}
  }

  async rollback(deleteFailed: boolean): Promise<{rolledBack: boolean; release?: string; failed?: string}> {
    const sandbox = this.sandbox
    const journal = sandbox.journal
    if (!journal) return {rolledBack: false}
    if (!sandbox.releases.has(journal.previous)) throw new Error(`the previous release releases/${journal.previous} is missing`)
    sandbox.current = journal.previous
    sandbox.commitFile = journal.previousCommit ?? (/^[0-9a-f]{40}$/.test(journal.previous) ? journal.previous : undefined)
    if (deleteFailed && journal.release !== journal.previous) sandbox.releases.delete(journal.release)
    sandbox.journal = undefined
    sandbox.events.push(`rollback:${journal.previous}`)
    return {failed: journal.release, release: journal.previous, rolledBack: true}
  }

  async prune(keep: string[]): Promise<string[]> {
    const sandbox = this.sandbox
    const pruned: string[] = []
    for (const name of [...sandbox.releases.keys()]) {
      if (!keep.includes(name) && name !== sandbox.current && name !== sandbox.journal?.release && name !== sandbox.journal?.previous) {
        sandbox.releases.delete(name)
        pruned.push(name)
      }
    }

    sandbox.events.push(`prune:${pruned.length}`)
    return pruned
  }
}
