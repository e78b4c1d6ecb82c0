/**
 * The product as users get it: `npm pack` every package of this repository, install the
 * tarballs into a temporary global prefix (`npm install -g --prefix`; the listener occ depends
 * on comes from a local registry for its scope, so npm lays it out as from npmjs.com), and
 * drive that installed occ — from a directory outside the repository, with nothing of the
 * repository on PATH — through its main job against the fixture image: start, the service mode
 * answering a request the web UI writes inside the container, status showing the listener, stop.
 * Also: the Node guard on an old Node, and a third-party plugin installed from its package and
 * linked from a checkout, neither with an opencode-cloud of its own, using the installed occ's
 * public API.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {execa, type Options, type ResultPromise} from 'execa'

import {CONTAINER_COMMANDS_DIR, RESULT_FILE} from '../../src/index.js'
import {createFixtureRepo} from '../fixtures/sandbox/repo-helpers.mjs'
import {createSandboxEnv, describeRun, FIXTURE_IMAGE, REPO_ROOT, type SandboxEnv} from '../helpers/sandbox-env.js'
import {serveScope} from '../helpers/scope-registry.js'
import {linkThirdPartyPlugin, THIRD_PARTY_PLUGIN} from './listener-helpers/third-party-plugin.js'
import {waitUntil} from './listener-helpers/world.js'

const CONTAINER_REPO = '/srv/opencode.git'
/** The system's own Node (20 on these machines), older than occ's engines. */
const OLD_NODE = '/usr/bin/node'

/** The package.json inside a tarball, as npm would install it. */
async function packedManifest(tarball: string): Promise<Record<string, unknown>> {
  const extracted = await execa('tar', ['-xzOf', tarball, 'package/package.json'])
  return JSON.parse(String(extracted.stdout))
}

describe('the packed product: npm pack, npm install -g from the tarballs, the installed occ', function () {
  this.timeout(240_000)
  let work: string
  let prefix: string
  let sandbox: SandboxEnv
  let repoDir: string
  let baseCommit: string
  /** PATH with this Node and the system's tools only: nothing of the repository. */
  const cleanPath = [path.dirname(process.execPath), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':')
  let installed: (args: string[], options?: Options) => ResultPromise

  before(async function () {
    this.timeout(300_000)
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-packed-'))
    prefix = path.join(work, 'prefix')
    const tarballs = path.join(work, 'tarballs')
    await fs.mkdir(tarballs)
    // Every package of the repository: the root and each workspace (no names hard-coded here).
    const pack = await execa('npm', ['pack', '--workspaces', '--include-workspace-root', '--json', '--pack-destination', tarballs], {
      cwd: REPO_ROOT,
      reject: false,
    })
    assert.equal(pack.exitCode, 0, describeRun(pack))
    // The prepack scripts' output comes first on stdout; npm's JSON report is the rest.
    const report = String(pack.stdout).slice(String(pack.stdout).search(/^\[$/m))
    const packed = JSON.parse(report) as Array<{filename: string; name: string; files: Array<{path: string}>}>
    const files = await fs.readdir(tarballs)
    assert.deepEqual(files.sort(), packed.map((entry) => entry.filename).sort())
    assert.ok(packed.length >= 2, `packed: ${packed.map((entry) => entry.name).join(', ')}`)
    for (const entry of packed) {
      const paths = entry.files.map((file) => file.path)
      assert.ok(!paths.includes('bin/dev.js'), `${entry.name} ships bin/dev.js`)
      assert.ok(!paths.some((file) => file.endsWith('.tsbuildinfo')), `${entry.name} ships a tsbuildinfo`)
      assert.ok(paths.includes('LICENSE'), `${entry.name} ships no LICENSE`)
      const manifest = await packedManifest(path.join(tarballs, entry.filename))
      for (const field of ['license', 'repository', 'homepage', 'bugs']) assert.ok(manifest[field], `${entry.name}: no ${field}`)
      assert.doesNotMatch(JSON.stringify(manifest.exports ?? {}), /occ-source/, `${entry.name}: a development export condition is published`)
      for (const kind of ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies']) {
        for (const [name, spec] of Object.entries((manifest[kind] ?? {}) as Record<string, string>)) {
          assert.doesNotMatch(spec, /^(file|link|workspace):/, `${entry.name}: ${kind}.${name} is ${spec}`)
          assert.notEqual(name, entry.name, `${entry.name} depends on itself`)
        }
      }

      for (const map of paths.filter((file) => file.endsWith('.js.map'))) {
        const source = map.replace(/^(lib|dist)\//, 'src/').replace(/\.js\.map$/, '.ts')
        assert.ok(paths.includes(source), `${entry.name}: ${map} points at ${source}, which is not shipped`)
      }
    }

    // As from npmjs.com: the packages nothing here depends on are installed (from their
    // tarballs); the ones occ depends on (the listener) npm fetches from a registry for their
    // scope, and lays out as it will for users (nested under occ, not beside it).
    const manifests = new Map<string, Record<string, unknown>>()
    for (const entry of packed) manifests.set(entry.name, await packedManifest(path.join(tarballs, entry.filename)))
    const dependedOn = new Set([...manifests.values()].flatMap((manifest) => Object.keys((manifest.dependencies ?? {}) as object)).filter((name) => manifests.has(name)))
    assert.ok(dependedOn.size > 0, 'occ depends on a package of this repository (the listener)')
    const scopes = new Set([...dependedOn].map((name) => name.split('/')[0]))
    assert.ok([...scopes].every((scope) => scope.startsWith('@')), `served by scope: ${[...scopes].join(', ')}`)
    const registry = await serveScope(packed.filter((entry) => dependedOn.has(entry.name)).map((entry) => path.join(tarballs, entry.filename)))
    const topLevel = packed.filter((entry) => !dependedOn.has(entry.name))
    let install
    try {
      install = await execa(
        'npm',
        [
          'install',
          '--global',
          '--prefix',
          prefix,
          '--no-audit',
          '--no-fund',
          ...[...scopes].map((scope) => `--${scope}:registry=${registry.url}`),
          ...topLevel.map((entry) => path.join(tarballs, entry.filename)),
        ],
        {cwd: work, env: {PATH: cleanPath}, extendEnv: true, reject: false},
      )
    } finally {
      await registry.close()
    }

    assert.equal(install.exitCode, 0, describeRun(install))
    assert.deepEqual([...registry.asked].sort(), [...dependedOn].sort(), 'npm fetched the dependencies from the registry')
    const occ = packed.find((entry) => entry.files.some((file) => file.path === 'bin/run.js'))
    assert.ok(occ && topLevel.includes(occ), 'occ itself is installed from its tarball')
    const occRoot = path.join(prefix, 'lib/node_modules', occ.name)
    for (const name of dependedOn) {
      const stat = await fs.lstat(path.join(occRoot, 'node_modules', name))
      assert.ok(stat.isDirectory(), `${name} is installed under occ, as npm lays it out from the registry`)
    }

    sandbox = await createSandboxEnv('packed')
    repoDir = path.join(sandbox.root, 'opencode.git')
    ;({commit: baseCommit} = await createFixtureRepo(repoDir))
    await execa('chmod', ['-R', 'a+rX', sandbox.root])
    installed = (args, options = {}) =>
      execa(path.join(prefix, 'bin', 'occ'), args, {
        cwd: work,
        reject: false,
        stdin: 'ignore',
        timeout: 120_000,
        ...options,
        env: {...sandbox.env, PATH: cleanPath, ...(options.env as Record<string, string> | undefined)},
        extendEnv: false,
      })
  })

  after(async () => {
    await sandbox?.cleanup()
    if (work) await fs.rm(work, {force: true, recursive: true})
  })

  it('installs cleanly: npm ls in the prefix finds nothing missing, invalid or extraneous', async () => {
    const ls = await execa('npm', ['ls', '--global', '--prefix', prefix, '--all'], {cwd: work, env: {PATH: cleanPath}, reject: false})
    assert.equal(ls.exitCode, 0, describeRun(ls))
    assert.doesNotMatch(String(ls.stdout), /UNMET|invalid|extraneous|missing/i, String(ls.stdout))
    const real = await fs.realpath(path.join(prefix, 'lib/node_modules/opencode-cloud'))
    assert.ok(!real.startsWith(REPO_ROOT), `the installed occ is a link into the repository: ${real}`)
  })

  it('--version and --help, quickly and without warnings', async () => {
    const version = await installed(['--version'])
    assert.equal(version.exitCode, 0, describeRun(version))
    assert.match(String(version.stdout), /^opencode-cloud\/\d+\.\d+\.\d+ linux-\w+ node-v\d+/)
    const help = await installed(['--help'])
    assert.equal(help.exitCode, 0, describeRun(help))
    for (const word of ['start', 'status', 'update', 'plugins', 'autocomplete']) assert.match(String(help.stdout), new RegExp(`\\b${word}\\b`))
    assert.equal(String(help.stderr), '', 'nothing on stderr (no "could not find package.json" warnings)')
  })

  it("on a Node older than engines, prints one line saying what it needs and exits 1", async () => {
    const old = await execa(OLD_NODE, ['--version'], {reject: false})
    assert.equal(old.exitCode, 0, `this machine's ${OLD_NODE} is the old Node the guard is tested with`)
    const major = Number(String(old.stdout).replace(/^v/, '').split('.')[0])
    assert.ok(major < 22, `${OLD_NODE} is ${old.stdout}; the guard test needs a Node older than occ's engines there`)
    const run = await installed(['status'], {env: {PATH: `/usr/bin:${cleanPath}`}})
    assert.equal(run.exitCode, 1, describeRun(run))
    assert.equal(String(run.stdout), '')
    const lines = String(run.stderr).trimEnd().split('\n')
    assert.equal(lines.length, 1, String(run.stderr))
    assert.match(lines[0], new RegExp(`^occ needs Node .*22\\.22\\.2.* but this is Node ${String(old.stdout).trim().replaceAll('.', '\\.')} .*install Node 24`))
  })

  it('is an oclif CLI users know: -h, plugins, autocomplete, version, did-you-mean, leading global flags, topics that fail', async () => {
    const expectExit = async (args: string[], code: number, options: Options = {}): Promise<{stdout: string; stderr: string}> => {
      const run = await installed(args, options)
      assert.equal(run.exitCode, code, describeRun(run))
      return {stderr: String(run.stderr), stdout: String(run.stdout)}
    }

    const jsonError = async (args: string[], code: string): Promise<void> => {
      const {stdout} = await expectExit(args, 2)
      const {error} = JSON.parse(stdout)
      assert.equal(error.code, code, stdout)
      assert.equal(error.exitCode, 2, stdout)
      assert.equal(error.bug, false, stdout)
    }

    assert.match((await expectExit(['-h'], 0)).stdout, /USAGE\s+\$ occ \[COMMAND\]/)
    assert.match((await expectExit(['status', '-h'], 0)).stdout, /--no-color/)
    assert.match((await expectExit(['plugins'], 0)).stdout, /No plugins installed/)
    assert.match((await expectExit(['autocomplete', '--help'], 0)).stdout, /zsh\|bash\|powershell/)
    assert.match((await expectExit(['version'], 0)).stdout, /^opencode-cloud\/\d+\.\d+\.\d+ /)

    // A typo: the nearest command, never a prompt without a terminal; JSON under --json.
    const typo = await expectExit(['stauts'], 2)
    assert.match(typo.stderr, /'stauts' is not an occ command/)
    assert.match(typo.stderr, /Did you mean: occ status/)
    await jsonError(['--json', 'stauts'], 'COMMAND_NOT_FOUND')
    // Help for it fails the same way.
    for (const args of [['help', 'stauts'], ['stauts', '--help']]) assert.match((await expectExit(args, 2)).stderr, /Did you mean: occ status/)
    await jsonError(['stauts', '-h', '--json'], 'COMMAND_NOT_FOUND')
    await jsonError(['--json', 'help', 'stauts'], 'COMMAND_NOT_FOUND')
    assert.match((await expectExit(['help', 'status', '--json'], 0)).stdout, /USAGE\s+\$ occ status/)
    // In a terminal, plugin-not-found asks, and runs the command on yes.
    const tty = await execa('script', ['-qec', `${path.join(prefix, 'bin', 'occ')} stauts`, '/dev/null'], {
      cwd: work,
      env: {...sandbox.env, PATH: cleanPath},
      extendEnv: false,
      input: 'y\r',
      reject: false,
      timeout: 60_000,
    })
    assert.match(String(tty.stdout), /Did you mean .*status.*\?/, describeRun(tty))
    assert.match(String(tty.stdout), /No service found/, describeRun(tty))

    // Topics fail like commands (exit 2), in text and JSON.
    assert.match((await expectExit(['update', '--yes', 'opencode'], 2)).stderr, /Put the command first: occ update opencode --yes/)
    assert.match((await expectExit(['update', '--bogus'], 2)).stderr, /'occ update' needs a command \(got: --bogus\)/)
    assert.match((await expectExit(['update'], 2)).stderr, /Commands: (occ update [a-z]+, )*occ update opencode\b/)
    await jsonError(['update', '--bogus', '--json'], 'USAGE')
    await jsonError(['--json', 'update', '--yes', 'opencode'], 'USAGE')
    await jsonError(['status', '--bogus', '--json'], 'USAGE')
    assert.match((await expectExit(['update', '--help'], 0)).stdout, /update opencode/)

    // Global flags before the command, as scripts for the Rust occ write them.
    assert.equal((await expectExit(['-q', 'status'], 1)).stdout, '')
    const other = await expectExit(['--sandbox-instance', 'packed-other', '--json', 'status'], 0)
    assert.equal(JSON.parse(other.stdout).instance, 'packed-other')
    assert.match((await expectExit(['--runtime', 'host', '--no-color', 'status'], 0)).stdout, /No service found/)
    const inside = await expectExit(['--runtime', 'container', 'config', 'show'], 6)
    assert.match(inside.stderr, /'occ config show' is not supported in the container runtime/)
    assert.doesNotMatch(inside.stderr, /config:show/)

    // A third-party plugin from a package, the ordinary way: `occ plugins install` puts it in occ's
    // data dir, where no opencode-cloud is installed; its import of 'opencode-cloud' is this occ.
    const pack = await execa('npm', ['pack', '--json', '--pack-destination', work, THIRD_PARTY_PLUGIN], {cwd: work, env: {PATH: cleanPath}, reject: false})
    assert.equal(pack.exitCode, 0, describeRun(pack))
    const tarball = path.join(work, JSON.parse(String(pack.stdout))[0].filename)
    await expectExit(['plugins', 'install', `file:${tarball}`], 0)
    const health = await expectExit(['health', '--json'], 0)
    assert.equal(health.stderr, '', 'the installed plugin loads without warnings')
    assert.equal(JSON.parse(health.stdout).health, 'stopped')
    const dataDir = path.join(sandbox.env.XDG_DATA_HOME, 'opencode-cloud')
    await assert.rejects(fs.lstat(path.join(dataDir, 'node_modules/opencode-cloud')), 'npm installed no second occ for the plugin')
    assert.match((await expectExit(['plugins'], 0)).stdout, /occ-fixture-third-party-plugin 1\.0\.0/)
    await expectExit(['plugins', 'uninstall', 'occ-fixture-third-party-plugin'], 0)
    await expectExit(['health'], 2)
  })

  it('does its main job: start, start --no-daemon answers the web UI, status --json shows the listener, stop', async () => {
    for (const [key, value] of Object.entries({image: FIXTURE_IMAGE, opencode_repo: CONTAINER_REPO, opencode_web_port: String(sandbox.port)})) {
      const set = await installed(['config', 'set', key, value])
      assert.equal(set.exitCode, 0, describeRun(set))
    }

    // A third-party plugin, linked the ordinary way (nothing in its checkout provides
    // opencode-cloud), built on the installed occ's public API.
    const plugin = await linkThirdPartyPlugin({occ: (args) => installed(args), root: sandbox.root})
    const mount = ['--mount', `${repoDir}:${CONTAINER_REPO}:ro`]
    const start = await installed(['start', ...mount])
    assert.equal(start.exitCode, 0, describeRun(start))
    assert.match(String(start.stdout), /Service started and ready/)

    const health = await installed(['health', '--json'])
    assert.equal(health.exitCode, 0, describeRun(health))
    assert.equal(String(health.stderr), '', 'a linked plugin loads without warnings')
    assert.equal(JSON.parse(String(health.stdout)).health, 'healthy')

    const marker = path.join(sandbox.root, 'marker.json')
    const foreground = installed(['start', '--no-daemon', ...mount], {
      env: {OCC_TEST_FOREGROUND_MARKER: marker},
      forceKillAfterDelay: false,
      timeout: 180_000,
    })
    try {
      await waitUntil(
        async () => {
          const status = await installed(['status', '--json'])
          return status.exitCode === 0 && JSON.parse(String(status.stdout)).listener?.state === 'active'
        },
        60_000,
        () => 'the listener never showed as active in occ status --json',
      )
      assert.equal(JSON.parse(await fs.readFile(marker, 'utf8')).state, 'started', `the plugin's hook (${plugin}) runs beside the listener`)

      // As the web UI: a temp file, then a rename into place, as the sandbox user.
      const request = JSON.stringify({command: 'update_opencode', commit: baseCommit, request_id: 'packed-1'})
      const write = await execa(
        'docker',
        ['exec', '-u', 'opencoder', sandbox.containerName, 'sh', '-c', 'tmp="$2/.req.$$" && printf "%s" "$1" > "$tmp" && mv "$tmp" "$2/update-command.json"', 'sh', request, CONTAINER_COMMANDS_DIR],
        {reject: false},
      )
      assert.equal(write.exitCode, 0, describeRun(write))
      let answer: Record<string, unknown> | undefined
      await waitUntil(
        async () => {
          const read = await execa('docker', ['exec', '-u', 'opencoder', sandbox.containerName, 'cat', `${CONTAINER_COMMANDS_DIR}/${RESULT_FILE}`], {reject: false})
          answer = read.exitCode === 0 ? JSON.parse(String(read.stdout)) : undefined
          return answer?.request_id === 'packed-1'
        },
        90_000,
        () => `no answer to packed-1; last: ${JSON.stringify(answer)}`,
      )
      assert.equal(answer?.status, 'success', JSON.stringify(answer))
      assert.equal(answer?.changed, false, JSON.stringify(answer))

      const status = await installed(['status', '--json'])
      const view = JSON.parse(String(status.stdout))
      assert.equal(view.listener?.state, 'active', JSON.stringify(view.listener))
      assert.equal(view.container.running, true)

      const stop = await installed(['stop', '-t', '5'])
      assert.equal(stop.exitCode, 0, describeRun(stop))
      const ended = await foreground
      assert.equal(ended.exitCode, 0, describeRun(ended))
      assert.equal(JSON.parse(await fs.readFile(marker, 'utf8')).state, 'stopped')
    } finally {
      foreground.kill('SIGKILL')
      await foreground.catch(() => undefined)
    }
  })
})
