import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import fc from 'fast-check'

import {normalizeInstance, resourceNames} from '../../src/config/instance.js'
import {stripJsonc} from '../../src/config/jsonc.js'
import {defaultMounts} from '../../src/config/mounts.js'
import {resolvePaths, type OccPaths} from '../../src/config/paths.js'
import {CONFIG_KEYS, DEFAULT_IMAGE, DEFAULT_OPENCODE_REPO, type OccConfig} from '../../src/config/schema.js'
import {applyConfigValue, defaultConfigFile, loadConfig, parseConfigText, resolveConfigKey, saveConfig} from '../../src/config/store.js'
import {ConfigError, ExitCode, OccError, UsageError} from '../../src/errors.js'
import {createSandboxEnv, OCC_BIN, type SandboxEnv} from '../helpers/sandbox-env.js'

/** The six default mounts exactly as the Rust occ builds them from HOME (reference §9). */
function rustDefaultMounts(home: string): string[] {
  return [
    `${home}/.local/share/opencode:/home/opencoder/.local/share/opencode`,
    `${home}/.local/state/opencode:/home/opencoder/.local/state/opencode`,
    `${home}/.cache/opencode:/home/opencoder/.cache/opencode`,
    `${home}/opencode:/home/opencoder/workspace`,
    `${home}/.config/opencode-cloud/opencode:/home/opencoder/.config/opencode`,
    `${home}/.local/share/opencode-cloud/ssh:/home/opencoder/.ssh`,
  ]
}

/** The Rust occ's default config, field by field, in its order. */
function rustDefaults(home: string): Record<string, unknown> {
  return {
    version: 1,
    opencode_web_port: 3000,
    bind: 'localhost',
    auto_restart: true,
    boot_mode: 'user',
    restart_retries: 3,
    restart_delay: 5,
    auth_username: null,
    auth_password: null,
    container_env: [],
    bind_address: '127.0.0.1',
    trust_proxy: false,
    rate_limit_attempts: 5,
    rate_limit_window_seconds: 60,
    allow_unauthenticated_network: false,
    users: [],
    cockpit_port: 9090,
    cockpit_enabled: false,
    image_source: 'prebuilt',
    update_check: 'always',
    mounts: rustDefaultMounts(home),
  }
}

/** serde_json::to_string_pretty output (2-space indent, no trailing newline), as the Rust occ saves it. */
function rustConfigText(home: string): string {
  return JSON.stringify(rustDefaults(home), null, 2)
}

async function tempHome(): Promise<{home: string; paths: OccPaths; cleanup: () => Promise<void>}> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'occ-config-'))
  return {cleanup: () => fs.rm(home, {force: true, recursive: true}), home, paths: resolvePaths({HOME: home})}
}

async function writeConfig(paths: OccPaths, text: string): Promise<void> {
  await fs.mkdir(paths.configDir, {recursive: true})
  await fs.writeFile(paths.configFile, text)
}

function baseConfig(paths: OccPaths): OccConfig {
  return parseConfigText('{"version": 1}', paths.configFile, paths)
}

function expectConfigError(fn: () => unknown, ...fragments: Array<RegExp | string>): ConfigError {
  let caught: unknown
  try {
    fn()
  } catch (error) {
    caught = error
  }

  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`)
  assert.equal(caught.exitCode, ExitCode.config)
  for (const fragment of fragments) {
    if (typeof fragment === 'string') assert.ok(caught.message.includes(fragment), `message lacks '${fragment}':\n${caught.message}`)
    else assert.match(caught.message, fragment)
  }

  return caught
}

describe('config', () => {
  describe('a config.json written by the Rust occ', () => {
    let world: Awaited<ReturnType<typeof tempHome>>
    beforeEach(async () => {
      world = await tempHome()
    })
    afterEach(() => world.cleanup())

    it('loads with every value as written, filling only our own fields with defaults', async () => {
      await writeConfig(world.paths, rustConfigText(world.home))
      const {config, created} = await loadConfig(world.paths)
      assert.equal(created, false)
      assert.deepEqual(config, {...rustDefaults(world.home), image: DEFAULT_IMAGE, opencode_repo: DEFAULT_OPENCODE_REPO})
    })

    it('is not rewritten by loading it (bytes and mtime unchanged, no .bak)', async () => {
      const text = rustConfigText(world.home)
      await writeConfig(world.paths, text)
      const past = new Date('2020-01-01T00:00:00Z')
      await fs.utimes(world.paths.configFile, past, past)
      const before = await fs.readFile(world.paths.configFile)
      await loadConfig(world.paths)
      await loadConfig(world.paths)
      const after = await fs.readFile(world.paths.configFile)
      assert.ok(before.equals(after), 'loadConfig changed config.json')
      assert.equal(after.toString('utf8'), text)
      assert.equal((await fs.stat(world.paths.configFile)).mtimeMs, past.getTime())
      assert.equal(existsSync(`${world.paths.configFile}.bak`), false)
      const leftovers = (await fs.readdir(world.paths.configDir)).filter((name) => name.startsWith('.') || name.startsWith('config.json.'))
      assert.deepEqual(leftovers, [], 'loading left files next to config.json')
    })

    it('creates the host dirs of the default mounts, as the Rust occ does', async () => {
      await writeConfig(world.paths, rustConfigText(world.home))
      await loadConfig(world.paths)
      for (const spec of rustDefaultMounts(world.home)) {
        const host = spec.split(':')[0]
        assert.ok((await fs.stat(host)).isDirectory(), `${host} was not created`)
      }
    })

    it('matches our own default file and default mounts field for field', () => {
      assert.deepEqual(defaultConfigFile(world.paths), rustDefaults(world.home))
      assert.deepEqual(Object.keys(defaultConfigFile(world.paths)), Object.keys(rustDefaults(world.home)))
      assert.deepEqual(defaultMounts(world.paths), rustDefaultMounts(world.home))
    })

    it('loads with the legacy key opencode_commit, which is dropped', async () => {
      const legacy = {...rustDefaults(world.home), opencode_commit: 'df9b40b1a2c3'}
      await writeConfig(world.paths, JSON.stringify(legacy, null, 2))
      const {config} = await loadConfig(world.paths)
      assert.equal('opencode_commit' in config, false)
      assert.equal(config.opencode_web_port, 3000)
    })

    it('loads a minimal {"version": 1} with all the defaults', () => {
      const {auth_password: _password, auth_username: _username, ...expected} = rustDefaults(world.home)
      const {auth_password: password, auth_username: username, ...config} = baseConfig(world.paths)
      assert.equal(password ?? null, null)
      assert.equal(username ?? null, null)
      assert.deepEqual(config, {...expected, image: DEFAULT_IMAGE, opencode_repo: DEFAULT_OPENCODE_REPO})
    })
  })

  describe('a missing config', () => {
    it('is created with the defaults (mode 0600) and reported as created once', async () => {
      const world = await tempHome()
      try {
        const first = await loadConfig(world.paths)
        assert.equal(first.created, true)
        const onDisk = JSON.parse(await fs.readFile(world.paths.configFile, 'utf8'))
        assert.deepEqual(onDisk, rustDefaults(world.home))
        assert.equal((await fs.stat(world.paths.configFile)).mode & 0o777, 0o600)
        const second = await loadConfig(world.paths)
        assert.equal(second.created, false)
        assert.deepEqual(second.config, first.config)
      } finally {
        await world.cleanup()
      }
    })
  })

  describe('strict parsing', () => {
    const paths = resolvePaths({HOME: '/home/someone'})
    const parse = (text: string): OccConfig => parseConfigText(text, '/cfg/config.json', paths)

    it('rejects an unknown key, naming it and saying how to fix it', () => {
      const error = expectConfigError(() => parse('{"version": 1, "colour_theme": "dark"}'), 'colour_theme', 'Field: colour_theme', 'unknown key')
      assert.ok(error.actions.some((action) => action.includes("Remove 'colour_theme'")), error.actions.join('\n'))
    })

    it('names every unknown key when there are several', () => {
      expectConfigError(() => parse('{"version": 1, "foo": 1, "port": 3000}'), 'Field: foo', 'Field: port')
    })

    it('accepts JSONC: line and block comments, trailing commas, comment markers inside strings', () => {
      const text = `// occ config
{
  /* the web port */
  "version": 1,
  "opencode_web_port": 3100, // inline
  "container_env": ["URL=http://example.com/a//b", "X=/*not a comment*/",],
  "users": ["alice", "bob",],
  "bind_address": "127.0.0.1"
}
`
      const config = parse(text)
      assert.equal(config.opencode_web_port, 3100)
      assert.deepEqual(config.container_env, ['URL=http://example.com/a//b', 'X=/*not a comment*/'])
      assert.deepEqual(config.users, ['alice', 'bob'])
    })

    // A common edit: comment out the last entry and leave the comma that preceded it.
    it('accepts a trailing comma that is followed by a comment before the closing brace', () => {
      const text = `{
  "version": 1,
  "opencode_web_port": 3100, // the last real entry
  // "image": "registry.example/sandbox:dev",
}`
      assert.equal(parse(text).opencode_web_port, 3100)
      assert.deepEqual(parse('{"version": 1, "users": ["a", /* "b" */]}').users, ['a'])
    })

    it('keeps string contents intact for any JSON value (property)', () => {
      fc.assert(
        fc.property(fc.jsonValue(), (value) => {
          assert.deepEqual(JSON.parse(stripJsonc(JSON.stringify(value, null, 2))), JSON.parse(JSON.stringify(value)))
        }),
        {numRuns: 300},
      )
    })

    it('reports invalid JSON as a ConfigError naming the file', () => {
      expectConfigError(() => parse('{"version": 1'), '/cfg/config.json', 'not valid JSON')
    })

    const invalid: Array<[string, string, string, RegExp]> = [
      ['a privileged port', '{"version": 1, "opencode_web_port": 80}', 'opencode_web_port', />= 1024/],
      ['a port out of range', '{"version": 1, "opencode_web_port": 70000}', 'opencode_web_port', /./],
      ['a bind_address that is no IP', '{"version": 1, "bind_address": "my-host"}', 'bind_address', /IP address/],
      ['an unknown boot_mode', '{"version": 1, "boot_mode": "cron"}', 'boot_mode', /user|system/],
      ['zero rate_limit_attempts', '{"version": 1, "rate_limit_attempts": 0}', 'rate_limit_attempts', /./],
      ['a string where a number belongs', '{"version": 1, "restart_delay": "5"}', 'restart_delay', /number/],
      ['a container_env entry without =', '{"version": 1, "container_env": ["FOO"]}', 'container_env.0', /KEY=value/],
      ['a missing version', '{"opencode_web_port": 3000}', 'version', /./],
    ]
    for (const [what, text, field, problem] of invalid) {
      it(`rejects ${what} with Field/Problem and a fix`, () => {
        const error = expectConfigError(() => parse(text), `Field: ${field}\nProblem: `)
        const problemLine = error.message.split('\n').find((line, index, lines) => lines[index - 1] === `Field: ${field}`)
        assert.ok(problemLine, error.message)
        assert.match(problemLine, problem)
        assert.ok(error.actions.length > 0, 'no next step given')
      })
    }

    it('lists every invalid field, not just the first', () => {
      expectConfigError(() => parse('{"version": 1, "opencode_web_port": 80, "bind_address": "nope"}'), 'Field: opencode_web_port', 'Field: bind_address')
    })

    it('accepts the bind addresses the Rust occ accepts', () => {
      for (const address of ['127.0.0.1', '0.0.0.0', '::1', '::', '[::1]', 'localhost', 'LocalHost', '192.168.1.20']) {
        assert.equal(parse(JSON.stringify({bind_address: address, version: 1})).bind_address, address)
      }
    })
  })

  describe('saveConfig', () => {
    let world: Awaited<ReturnType<typeof tempHome>>
    beforeEach(async () => {
      world = await tempHome()
    })
    afterEach(() => world.cleanup())

    it('keeps the previous file as config.json.bak, byte for byte', async () => {
      const original = `// mine\n${rustConfigText(world.home)}`
      await writeConfig(world.paths, original)
      const {config} = await loadConfig(world.paths)
      await saveConfig(world.paths, {...config, opencode_web_port: 3100})
      assert.equal(await fs.readFile(`${world.paths.configFile}.bak`, 'utf8'), original)
      const {config: reloaded} = await loadConfig(world.paths)
      assert.equal(reloaded.opencode_web_port, 3100)
      assert.equal((await fs.stat(world.paths.configFile)).mode & 0o777, 0o600)
      const names = (await fs.readdir(world.paths.configDir)).filter((name) => name.startsWith('.') || name.startsWith('config.json'))
      assert.deepEqual(names.sort(), ['config.json', 'config.json.bak'], 'a temp file was left behind')
    })

    it('omits image and opencode_repo while they are the defaults, so the Rust occ can still read the file', async () => {
      const {config} = await loadConfig(world.paths)
      await saveConfig(world.paths, config)
      const written = JSON.parse(await fs.readFile(world.paths.configFile, 'utf8'))
      assert.equal('image' in written, false)
      assert.equal('opencode_repo' in written, false)
      assert.deepEqual(Object.keys(written).sort(), Object.keys(rustDefaults(world.home)).sort())
    })

    it('writes image and opencode_repo when they differ, and they load back', async () => {
      const {config} = await loadConfig(world.paths)
      await saveConfig(world.paths, {...config, image: 'opencode-cloud-sandbox-fixture:latest', opencode_repo: 'https://git.example/opencode.git'})
      const written = JSON.parse(await fs.readFile(world.paths.configFile, 'utf8'))
      assert.equal(written.image, 'opencode-cloud-sandbox-fixture:latest')
      assert.equal(written.opencode_repo, 'https://git.example/opencode.git')
      const {config: reloaded} = await loadConfig(world.paths)
      assert.equal(reloaded.image, 'opencode-cloud-sandbox-fixture:latest')
    })

    it('writes memory_limit, cpu_limit and pids_limit only when set, and they load back', async () => {
      const {config} = await loadConfig(world.paths)
      await saveConfig(world.paths, config)
      const plain = JSON.parse(await fs.readFile(world.paths.configFile, 'utf8'))
      for (const key of ['memory_limit', 'cpu_limit', 'pids_limit']) assert.equal(key in plain, false, `${key} written while unset`)
      await saveConfig(world.paths, {...config, cpu_limit: 2, memory_limit: '4g', pids_limit: 1000})
      const written = JSON.parse(await fs.readFile(world.paths.configFile, 'utf8'))
      assert.deepEqual([written.memory_limit, written.cpu_limit, written.pids_limit], ['4g', 2, 1000])
      const {config: reloaded} = await loadConfig(world.paths)
      assert.deepEqual([reloaded.memory_limit, reloaded.cpu_limit, reloaded.pids_limit], ['4g', 2, 1000])
    })

    it('refuses to write an invalid config and leaves the file alone', async () => {
      const {config} = await loadConfig(world.paths)
      const before = await fs.readFile(world.paths.configFile, 'utf8')
      await assert.rejects(saveConfig(world.paths, {...config, opencode_web_port: 22}), (error: unknown) => error instanceof ConfigError)
      assert.equal(await fs.readFile(world.paths.configFile, 'utf8'), before)
    })
  })

  describe('occ config set: value conversion', () => {
    const paths = resolvePaths({HOME: '/home/someone'})
    const config = baseConfig(paths)
    const set = (key: string, value: string): OccConfig => applyConfigValue(config, resolveConfigKey(key), value)

    it('reads booleans as true/false, yes/no, 1/0, on/off in any case', () => {
      for (const word of ['true', 'yes', '1', 'on', 'YES', ' True ']) assert.equal(set('trust_proxy', word).trust_proxy, true, word)
      for (const word of ['false', 'no', '0', 'off', 'No']) assert.equal(set('auto_restart', word).auto_restart, false, word)
      expectConfigError(() => set('trust_proxy', 'maybe'), 'trust_proxy', 'true or false')
    })

    it('reads whole numbers and checks them against the schema', () => {
      assert.equal(set('port', '3100').opencode_web_port, 3100)
      assert.equal(set('restart_retries', '0').restart_retries, 0)
      expectConfigError(() => set('port', 'abc'), 'whole number')
      expectConfigError(() => set('port', '3.5'), 'whole number')
      expectConfigError(() => set('port', '80'), 'Field: opencode_web_port', '>= 1024')
      expectConfigError(() => set('rate_limit_attempts', '0'), 'Field: rate_limit_attempts')
    })

    it('reads the resource limits, checks them, and unsets them with an empty value', () => {
      assert.equal(set('memory_limit', '1.5g').memory_limit, '1.5g')
      assert.equal(set('memory', '512m').memory_limit, '512m')
      assert.equal(set('cpu_limit', '1.5').cpu_limit, 1.5)
      assert.equal(set('pids_limit', '2048').pids_limit, 2048)
      expectConfigError(() => set('memory_limit', 'lots'), 'Field: memory_limit', 'at least 6m')
      expectConfigError(() => set('memory_limit', '1m'), 'Field: memory_limit')
      expectConfigError(() => set('cpu_limit', '-1'), 'cpu_limit must be a number')
      expectConfigError(() => set('cpu_limit', '0'), 'Field: cpu_limit')
      expectConfigError(() => set('pids_limit', '10'), 'Field: pids_limit', '>= 64')
      const limited = {...config, cpu_limit: 2, memory_limit: '4g', pids_limit: 100}
      const cleared = applyConfigValue(applyConfigValue(applyConfigValue(limited, 'cpu_limit', ''), 'memory_limit', ' '), 'pids_limit', '')
      assert.deepEqual([('cpu_limit' in cleared), ('memory_limit' in cleared), ('pids_limit' in cleared)], [false, false, false])
    })

    it('reads lists as JSON arrays or comma-separated text', () => {
      assert.deepEqual(set('container_env', '["FOO=bar","URL=a,b"]').container_env, ['FOO=bar', 'URL=a,b'])
      assert.deepEqual(set('users', 'alice, bob').users, ['alice', 'bob'])
      assert.deepEqual(set('env', 'A=1,B=2').container_env, ['A=1', 'B=2'])
      assert.deepEqual(set('users', '').users, [])
      expectConfigError(() => set('container_env', '["NOEQUALS"]'), 'Field: container_env')
    })

    it('checks strings and enums', () => {
      assert.equal(set('image', 'opencode-cloud-sandbox-fixture:latest').image, 'opencode-cloud-sandbox-fixture:latest')
      assert.equal(set('host', '0.0.0.0').bind_address, '0.0.0.0')
      assert.equal(set('boot_mode', 'system').boot_mode, 'system')
      expectConfigError(() => set('boot_mode', 'cron'), 'Field: boot_mode')
      expectConfigError(() => set('host', 'not-an-ip'), 'Field: bind_address')
      expectConfigError(() => set('image', ''), 'Field: image')
    })

    it('clears auth_username with an empty value', () => {
      assert.equal(set('username', 'admin').auth_username, 'admin')
      assert.equal(set('username', '').auth_username, null)
    })

    it('never sets a password or the version from the command line', () => {
      expectConfigError(() => set('password', 'hunter2'), 'auth_password')
      expectConfigError(() => set('version', '2'), 'version')
    })

    it('does not change the config it was given', () => {
      set('port', '3100')
      assert.equal(config.opencode_web_port, 3000)
    })

    it('accepts valid mounts', () => {
      assert.deepEqual(set('mounts', '["/srv/code:/home/opencoder/code:ro"]').mounts, ['/srv/code:/home/opencoder/code:ro'])
    })

    // A typo in a mount is the user's to fix: a ConfigError (exit 3), not an "unexpected error" (exit 1).
    it('rejects a malformed mount with a ConfigError', () => {
      for (const bad of ['["relative/path:/x"]', '["/a:/b:rx"]', '["/only-one-part"]']) {
        expectConfigError(() => set('mounts', bad), 'ount')
      }
    })
  })

  describe('config keys and aliases', () => {
    const aliases: Record<string, keyof OccConfig> = {
      allow_unauth: 'allow_unauthenticated_network',
      cockpit: 'cockpit_enabled',
      env: 'container_env',
      host: 'bind_address',
      hostname: 'bind',
      password: 'auth_password',
      port: 'opencode_web_port',
      proxy: 'trust_proxy',
      rate_attempts: 'rate_limit_attempts',
      rate_limit_window: 'rate_limit_window_seconds',
      rate_window: 'rate_limit_window_seconds',
      repo: 'opencode_repo',
      unauth_network: 'allow_unauthenticated_network',
      username: 'auth_username',
    }

    it("resolves the Rust occ's aliases", () => {
      for (const [alias, key] of Object.entries(aliases)) assert.equal(resolveConfigKey(alias), key, alias)
    })

    it('resolves every real key to itself, case- and dash-insensitively', () => {
      for (const key of CONFIG_KEYS) {
        assert.equal(resolveConfigKey(key), key)
        assert.equal(resolveConfigKey(key.toUpperCase().replaceAll('_', '-')), key)
      }
    })

    it('rejects an unknown key, naming it', () => {
      let caught: unknown
      try {
        resolveConfigKey('colour')
      } catch (error) {
        caught = error
      }

      assert.ok(caught instanceof ConfigError)
      assert.match(caught.message, /'colour'/)
    })
  })

  describe('paths and XDG', () => {
    it("uses the Rust occ's paths under HOME when no XDG variable is set", () => {
      const paths = resolvePaths({HOME: '/home/u'})
      assert.deepEqual(paths, {
        configDir: '/home/u/.config/opencode-cloud',
        configFile: '/home/u/.config/opencode-cloud/config.json',
        dataDir: '/home/u/.local/share/opencode-cloud',
        home: '/home/u',
        xdgCache: '/home/u/.cache',
        xdgData: '/home/u/.local/share',
        xdgState: '/home/u/.local/state',
      })
    })

    it('honours absolute XDG_CONFIG_HOME / XDG_DATA_HOME / XDG_STATE_HOME / XDG_CACHE_HOME', () => {
      const paths = resolvePaths({HOME: '/home/u', XDG_CACHE_HOME: '/x/cache', XDG_CONFIG_HOME: '/x/config', XDG_DATA_HOME: '/x/data', XDG_STATE_HOME: '/x/state'})
      assert.equal(paths.configFile, '/x/config/opencode-cloud/config.json')
      assert.equal(paths.dataDir, '/x/data/opencode-cloud')
      assert.equal(paths.xdgState, '/x/state')
      assert.equal(paths.xdgCache, '/x/cache')
      assert.deepEqual(defaultMounts(paths), [
        '/x/data/opencode:/home/opencoder/.local/share/opencode',
        '/x/state/opencode:/home/opencoder/.local/state/opencode',
        '/x/cache/opencode:/home/opencoder/.cache/opencode',
        '/home/u/opencode:/home/opencoder/workspace',
        '/x/config/opencode-cloud/opencode:/home/opencoder/.config/opencode',
        '/x/data/opencode-cloud/ssh:/home/opencoder/.ssh',
      ])
    })

    it('ignores relative and empty XDG values, as the XDG spec says', () => {
      const paths = resolvePaths({HOME: '/home/u', XDG_CACHE_HOME: '', XDG_CONFIG_HOME: 'relative/config', XDG_DATA_HOME: './data', XDG_STATE_HOME: 'state'})
      assert.deepEqual(paths, resolvePaths({HOME: '/home/u'}))
    })
  })

  describe('sandbox instances', () => {
    /** Reference FNV-1a 64 and the Rust occ's `format!("wt-{hash:012x}")`. */
    function rustAutoId(text: string): string {
      let hash = 0xcbf29ce484222325n
      for (const byte of Buffer.from(text, 'utf8')) {
        hash ^= BigInt(byte)
        hash = BigInt.asUintN(64, hash * 0x100000001b3n)
      }

      return `wt-${hash.toString(16).padStart(12, '0')}`
    }

    it('leaves no instance when none is given', () => {
      assert.equal(normalizeInstance(undefined), undefined)
    })

    it('trims and lowercases a name', () => {
      assert.equal(normalizeInstance('  Dev-1 '), 'dev-1')
      assert.equal(normalizeInstance('a'.repeat(32)), 'a'.repeat(32))
      assert.equal(normalizeInstance('0abc'), '0abc')
    })

    it("rejects an empty name with the Rust occ's message", () => {
      for (const empty of ['', '   ']) {
        assert.throws(
          () => normalizeInstance(empty),
          (error: unknown) =>
            error instanceof UsageError && error.exitCode === ExitCode.usage && error.message === "--sandbox-instance cannot be empty; use a-z, 0-9, and '-' only",
        )
      }
    })

    it('rejects names outside [a-z0-9][a-z0-9-]{0,31}', () => {
      for (const bad of ['bad_name', '-abc', 'a'.repeat(33), 'a.b', 'a/b', 'émile', 'a b']) {
        assert.throws(
          () => normalizeInstance(bad),
          (error: unknown) => error instanceof UsageError && error.message.includes('Expected [a-z0-9][a-z0-9-]{0,31}'),
          bad,
        )
      }
    })

    it('accepts every valid name unchanged (property)', () => {
      fc.assert(
        fc.property(fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,31}$/), (name) => {
          assert.equal(normalizeInstance(name), name)
        }),
      )
    })

    it('derives `auto` from a directory: stable, different per directory, a valid name', () => {
      const a = normalizeInstance('auto', () => '/tmp/worktree-a')
      assert.equal(normalizeInstance('AUTO', () => '/tmp/worktree-a'), a)
      assert.notEqual(normalizeInstance('auto', () => '/tmp/worktree-b'), a)
      assert.match(a ?? '', /^wt-[0-9a-f]{12,16}$/)
      assert.equal(normalizeInstance(a), a)
    })

    // The Rust occ formats the hash with {:012x}: at least 12 digits, not always 16. Both CLIs
    // must give the same id for the same worktree or they manage different containers.
    it('derives the same `auto` id as the Rust occ, also for hashes with leading zero digits', () => {
      const samples = ['/tmp/worktree-a', '/home/u/src/opencode-cloud']
      for (let index = 0; samples.length < 6 && index < 10_000; index++) {
        const dir = `/home/u/work/wt-${index}`
        if (rustAutoId(dir).length < 19) samples.push(dir)
      }

      assert.ok(samples.length === 6, 'test setup: found no directory whose hash has a leading zero')
      for (const dir of samples) assert.equal(normalizeInstance('auto', () => dir), rustAutoId(dir), dir)
    })

    it('names every resource after the instance as the reference does', () => {
      const names = resourceNames('dev-1')
      assert.equal(names.instance, 'dev-1')
      assert.equal(names.container, 'opencode-cloud-sandbox-dev-1')
      assert.equal(names.hostname, 'opencode-cloud-sandbox-dev-1')
      assert.deepEqual(names.volumes, {
        cache: 'opencode-cache-dev-1',
        config: 'opencode-config-dev-1',
        data: 'opencode-data-dev-1',
        ssh: 'opencode-ssh-dev-1',
        state: 'opencode-state-dev-1',
        users: 'opencode-users-dev-1',
        workspace: 'opencode-workspace-dev-1',
      })
      assert.equal(names.imageStateFile, 'image-state-dev-1.json')
      assert.deepEqual(names.labels, {'managed-by': 'opencode-cloud', 'opencode-cloud.instance': 'dev-1'})
    })

    it('uses the shared names without an instance', () => {
      const names = resourceNames(undefined)
      assert.equal(names.container, 'opencode-cloud-sandbox')
      assert.equal(names.hostname, 'opencode-cloud-sandbox')
      assert.equal(names.volumes.data, 'opencode-data')
      assert.equal(names.volumes.users, 'opencode-users')
      assert.equal(names.imageStateFile, 'image-state.json')
      assert.deepEqual(names.labels, {'managed-by': 'opencode-cloud'})
    })
  })

  // The built CLI against a temp HOME: no Docker needed for `occ config *`.
  describe('occ config (the built CLI)', function () {
    this.timeout(30_000)
    let sandbox: SandboxEnv

    before(function () {
      if (!existsSync(path.join(path.dirname(OCC_BIN), '../lib/commands/config/show.js'))) {
        throw new Error('The CLI is not built: run `npm run build` (or `npx tsc -b tsconfig.json && node scripts/manifest.mjs`) first.')
      }
    })

    beforeEach(async () => {
      sandbox = await createSandboxEnv('cfg')
    })

    // No containers are made here, so only the temp dirs need removing.
    afterEach(() => fs.rm(sandbox.root, {force: true, recursive: true}))

    it('config show --json shows a Rust-written config as it is, and leaves the file untouched', async () => {
      const text = rustConfigText(sandbox.home)
      await fs.mkdir(path.dirname(sandbox.configFile), {recursive: true})
      await fs.writeFile(sandbox.configFile, text)
      const result = await sandbox.occ(['config', 'show', '--json'])
      assert.equal(result.exitCode, 0, String(result.stderr))
      const shown = JSON.parse(String(result.stdout))
      assert.equal(shown.path, sandbox.configFile)
      assert.deepEqual(shown.config, {...rustDefaults(sandbox.home), image: DEFAULT_IMAGE, opencode_repo: DEFAULT_OPENCODE_REPO})
      assert.equal(await fs.readFile(sandbox.configFile, 'utf8'), text)
    })

    it('config show with an unknown key fails with exit 3, naming the key (and as JSON)', async () => {
      await fs.mkdir(path.dirname(sandbox.configFile), {recursive: true})
      await fs.writeFile(sandbox.configFile, JSON.stringify({...rustDefaults(sandbox.home), colour_theme: 'dark'}))
      const human = await sandbox.occ(['config', 'show'])
      assert.equal(human.exitCode, ExitCode.config)
      assert.match(String(human.stderr), /colour_theme/)
      const json = await sandbox.occ(['config', 'show', '--json'])
      assert.equal(json.exitCode, ExitCode.config)
      const {error} = JSON.parse(String(json.stdout))
      assert.equal(error.code, 'CONFIG_INVALID')
      assert.match(error.message, /colour_theme/)
    })

    it('creates a missing config without asking anything, even with stdin open', async () => {
      const result = await sandbox.occ(['config', 'get', 'port'], {stdin: 'pipe', timeout: 20_000})
      assert.equal(result.timedOut, false, 'occ waited for input')
      assert.equal(result.exitCode, 0, String(result.stderr))
      assert.equal(String(result.stdout).trim(), '3000')
      assert.match(String(result.stderr), /Created a default config/)
      assert.ok(existsSync(sandbox.configFile))
    })

    it('config set / get round-trip through aliases, keep a .bak, and print JSON', async () => {
      const set = await sandbox.occ(['config', 'set', 'port', '3100', '--json'])
      assert.equal(set.exitCode, 0, String(set.stderr))
      assert.deepEqual(JSON.parse(String(set.stdout)), {key: 'opencode_web_port', restartRequired: true, value: 3100})
      const setEnv = await sandbox.occ(['config', 'set', 'env', '["FOO=bar"]'])
      assert.equal(setEnv.exitCode, 0, String(setEnv.stderr))
      assert.ok(existsSync(`${sandbox.configFile}.bak`))
      const get = await sandbox.occ(['config', 'get', 'env', '--json'])
      assert.deepEqual(JSON.parse(String(get.stdout)), {key: 'container_env', value: ['FOO=bar']})
      const onDisk = JSON.parse(await fs.readFile(sandbox.configFile, 'utf8'))
      assert.equal(onDisk.opencode_web_port, 3100)
      assert.equal('image' in onDisk, false)
    })

    it('config set with a bad value exits 3 with Field/Problem and leaves the file as it was', async () => {
      await sandbox.occ(['config', 'show'])
      const before = await fs.readFile(sandbox.configFile, 'utf8')
      const result = await sandbox.occ(['config', 'set', 'port', '80'])
      assert.equal(result.exitCode, ExitCode.config)
      assert.match(String(result.stderr), /Field: opencode_web_port/)
      assert.match(String(result.stderr), /Problem: /)
      assert.equal(await fs.readFile(sandbox.configFile, 'utf8'), before)
    })

    it('config set of a malformed mount exits 3 (a config error), not 1 (an unexpected error)', async () => {
      const result = await sandbox.occ(['config', 'set', 'mounts', '["relative/path:/home/opencoder/x"]', '--json'])
      const {error} = JSON.parse(String(result.stdout))
      assert.equal(error.code, 'CONFIG_INVALID', error.message)
      assert.equal(result.exitCode, ExitCode.config)
    })

    it('config get of an unknown key exits 3 naming it', async () => {
      const result = await sandbox.occ(['config', 'get', 'colour'])
      assert.equal(result.exitCode, ExitCode.config)
      assert.match(String(result.stderr), /colour/)
    })
  })

  it('OccError subclasses carry stable codes and exit codes', () => {
    const error = new ConfigError('x')
    assert.ok(error instanceof OccError)
    assert.deepEqual(error.toJSON(), {
      actions: ['Show the config: occ config show', 'Change a value: occ config set KEY VALUE'],
      bug: false,
      code: 'CONFIG_INVALID',
      exitCode: 3,
      message: 'x',
      name: 'ConfigError',
    })
  })
})
