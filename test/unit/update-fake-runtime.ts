/**
 * A fake sandbox for unit tests of the update plan: it models /opt/opencode (COMMIT, current,
 * releases), the remote repository, the build and the running opencode, and answers the plan's
 * execs (the constant scripts are recognised by identity, git and the build by argv).
 */
import {resourceNames} from '../../src/config/instance.js'
import type {ExecOptions, ExecResult, HealthProbe, RestartMethod, Runtime} from '../../src/runtime/runtime.js'
import {
  ACTIVATE_SCRIPT,
  ADOPT_BUILD_SCRIPT,
  INSPECT_SCRIPT,
  KILL_GROUP_SCRIPT,
  LOCK_SCRIPT,
  PRUNE_SCRIPT,
  RELEASE_VERSION_SCRIPT,
  ROLLBACK_SCRIPT,
  STAGE_SCRIPT,
  UNLOCK_SCRIPT,
} from '../../src/runtime/update/scripts.js'

export interface FakeBuild {
  version: string
  buildFail?: boolean
  healthFail?: boolean
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

  lock: {token: string; owner: string} | undefined
  events: string[] = []
  execs: string[][] = []
  restarts = 0

  private checkedOut?: string
  private candidate?: FakeBuild
  private killBuild?: () => void

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
    this.running = this.current ? this.releases.get(this.current) : this.plain
    this.events.push(`restart:${this.running?.version}`)
    return this.restartMethodValue
  }

  async probeHealth(): Promise<HealthProbe> {
    if (this.healthOverride) return this.healthOverride
    if (!this.running) return {kind: 'refused'}
    if (this.running.healthFail) return {body: {healthy: false, version: this.running.version}, kind: 'http', status: 503}
    return {body: {healthy: true, version: this.running.version}, kind: 'http', status: 200}
  }

  // eslint-disable-next-line require-yield
  async *logs() {
    return
  }

  /** What `current` resolves to, as the plan's callers would see it. */
  activeVersion(): string | undefined {
    return (this.current ? this.releases.get(this.current) : this.plain)?.version
  }

  async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.execs.push(argv)
    if (!this.container.running) throw new Error('container not running')
    if (argv[0] === 'sh' && argv[1] === '-c') return this.script(argv[2], argv.slice(4))
    if (argv[0] === 'git') return this.git(argv.slice(1), options)
    if (argv[0] === 'setsid') return this.build(options)
    if (argv[0] === 'chown' || argv[0] === 'touch') return ok()
    return fail(127, `fake: unknown command ${argv[0]}`)
  }

  private script(script: string, args: string[]): ExecResult {
    switch (script) {
      case INSPECT_SCRIPT: {
        const lines = [`uid=${this.root ? 0 : 1000}`, 'present=1']
        if (this.commitFile !== undefined) lines.push(`commit=${this.commitFile}`)
        if (this.current) lines.push(`current=releases/${this.current}`)
        for (const name of this.releases.keys()) lines.push(`release=${name}`)
        lines.push(`recipe=${this.recipe}`)
        const version = this.activeVersion()
        if (version) lines.push(`version=${version}`)
        return ok(lines.join('\n') + '\n')
      }

      case LOCK_SCRIPT: {
        if (this.lock) return fail(75, '', `owner=${this.lock.owner}\nage=3\n`)
        this.lock = {owner: args[1], token: args[0]}
        this.events.push('lock')
        return ok()
      }

      case UNLOCK_SCRIPT: {
        if (this.lock?.token === args[0]) {
          this.lock = undefined
          this.events.push('unlock')
        }

        return ok()
      }

      case STAGE_SCRIPT:
      case ADOPT_BUILD_SCRIPT: {
        return ok()
      }

      case RELEASE_VERSION_SCRIPT: {
        return ok(`${this.candidate?.version ?? ''}\n`)
      }

      case ACTIVATE_SCRIPT: {
        const [sha, , imageName] = args
        if (!this.candidate) return fail(1, 'no build')
        if (!this.current) {
          if (!this.releases.has(imageName)) this.releases.set(imageName, this.plain!)
          this.current = imageName
          this.plain = undefined
          this.events.push(`migrate:${imageName}`)
        }

        const previous = this.current
        this.releases.set(sha, this.candidate)
        this.current = sha
        this.events.push(`switch:${sha}`)
        this.commitFile = sha
        this.events.push(`commit:${sha}`)
        return ok(`previous=${previous}\nswitched=1\n`)
      }

      case ROLLBACK_SCRIPT: {
        const [previous, commit, failed] = args
        if (!this.releases.has(previous)) return fail(1, `the previous release releases/${previous} is missing`)
        this.current = previous
        this.commitFile = commit || undefined
        if (failed && failed !== previous) this.releases.delete(failed)
        this.events.push(`rollback:${previous}`)
        return ok()
      }

      case PRUNE_SCRIPT: {
        const pruned: string[] = []
        for (const name of [...this.releases.keys()]) {
          if (!args.includes(name)) {
            this.releases.delete(name)
            pruned.push(`pruned=${name}`)
          }
        }

        this.events.push(`prune:${pruned.length}`)
        return ok(pruned.join('\n'))
      }

      case KILL_GROUP_SCRIPT: {
        this.events.push('kill-build')
        if (!this.buildIgnoresKill) this.killBuild?.()
        return ok()
      }

      default: {
        return fail(2, 'fake: unknown script')
      }
    }
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

  private async build(options: ExecOptions): Promise<ExecResult> {
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
