#!/usr/bin/env node
// Builds the "real" test sandbox image (the real opencode binary from npm), unless it is up to date.
//
//   node scripts/fixture-build-real.mjs [--force] [--tag <image>]
//
// 1. The pinned npm packages opencode-linux-x64@<v> (PINNED below) are fetched once with
//    `npm pack` into .cache/opencode-npm/ (git-ignored); npm's integrity field and the file's own
//    sha512 must both equal the pin, else the build fails.
// 2. Each binary (package/bin/opencode) is unpacked into .cache/opencode-dist/<v>/opencode; a
//    binary that exits at once is written to .cache/opencode-dist/0.0.0-crash/opencode. Tests
//    mount .cache/opencode-dist read-only at /opt/opencode-dist, where the image's opencode-build
//    recipe finds them.
// 3. The image (default tag opencode-cloud-sandbox-real:latest, OCC_REAL_IMAGE overrides it) is
//    built FROM debian:bookworm-slim with the default version's binary at /opt/opencode/bin/opencode.
//    Its inputs (test/fixtures/real/**, the broker and repo script from test/fixtures/sandbox/files,
//    the default binary's pinned integrity) are hashed into the label org.opencode-cloud.fixture-hash;
//    a tag that already carries the hash is not rebuilt.
// Docker's output goes to stderr; stdout gets one summary line.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync,
  renameSync, rmSync, writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** npm versions of opencode-linux-x64 the tests use, with the integrity npm reports for each. */
export const PINNED = {
  '1.18.34': 'sha512-RTAMjCve4euxP2QKLuvRmdoW5J5DQK1DiZqt+7slfixyjAEi79QC2Df2oYKogibaAI4IEU8uzenoJeEl3k+UEw==',
  '1.18.33': 'sha512-q/t/3p2CTxOT9y2kvjesb/LZab2+1eqlhhWA02Be6mjTtmYtNBcBsrI5yDo4Fw7ZSPBW2oyMIGMNRqiKQjiAWw==',
};
const IMAGE_VERSION = '1.18.34';
const CRASH_VERSION = '0.0.0-crash';
const DEFAULT_TAG = process.env.OCC_REAL_IMAGE || 'opencode-cloud-sandbox-real:latest';
const CLOUD_VERSION = 'real-1';
const HASH_LABEL = 'org.opencode-cloud.fixture-hash';
const HASH_SCHEMA = 'occ-real-image-v1';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = join(root, 'test', 'fixtures');
const npmCache = join(root, '.cache', 'opencode-npm');
const distDir = join(root, '.cache', 'opencode-dist');
const INPUTS = ['real/Dockerfile', 'real/files', 'real/opencode-src', 'sandbox/files/opencode-broker', 'sandbox/files/make-opencode-repo.sh'];

function fail(msg) {
  console.error(`fixture-build-real: ${msg}`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { force: false, tag: DEFAULT_TAG };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--force') opts.force = true;
    else if (argv[i] === '--tag' && argv[i + 1]) opts.tag = argv[++i];
    else {
      console.error('usage: node scripts/fixture-build-real.mjs [--force] [--tag <image>]');
      process.exit(2);
    }
  }
  return opts;
}

function sriOf(file) {
  return `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;
}

/** The tarball of one pinned version, fetched with npm pack when missing or not matching its pin. */
function tarball(version) {
  const pin = PINNED[version];
  const file = join(npmCache, `opencode-linux-x64-${version}.tgz`);
  if (existsSync(file) && sriOf(file) === pin) return file;
  mkdirSync(npmCache, { recursive: true });
  rmSync(file, { force: true });
  console.error(`fixture-build-real: npm pack opencode-linux-x64@${version} ...`);
  let packed;
  try {
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', npmCache, `opencode-linux-x64@${version}`], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    [packed] = JSON.parse(out);
  } catch (err) {
    fail(`npm pack opencode-linux-x64@${version} failed: ${String(err.stderr || err.message).trim()}`);
  }
  if (packed?.integrity !== pin) fail(`npm reports integrity ${packed?.integrity} for ${version}, pinned ${pin}`);
  if (!existsSync(file) || sriOf(file) !== pin) fail(`the packed file ${file} does not match the pinned integrity`);
  return file;
}

/** .cache/opencode-dist/<v>/opencode, unpacked from the tarball (a stamp names the integrity it came from). */
function unpack(version) {
  const dir = join(distDir, version);
  const stamp = join(dir, '.integrity');
  const binary = join(dir, 'opencode');
  if (existsSync(binary) && existsSync(stamp) && readFileSync(stamp, 'utf8') === PINNED[version]) return binary;
  const file = tarball(version);
  mkdirSync(distDir, { recursive: true });
  const tmp = mkdtempSync(join(distDir, `.unpack-${version}-`));
  try {
    execFileSync('tar', ['-xzf', file, '-C', tmp, 'package/bin/opencode'], { stdio: ['ignore', 'ignore', 'pipe'] });
    mkdirSync(join(tmp, 'out'));
    renameSync(join(tmp, 'package/bin/opencode'), join(tmp, 'out/opencode'));
    chmodSync(join(tmp, 'out/opencode'), 0o755);
    writeFileSync(join(tmp, 'out/.integrity'), PINNED[version]);
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(tmp, 'out'), dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return binary;
}

/** A "release" whose opencode exits at once (the rollback tests install it). */
function writeCrashRelease() {
  const dir = join(distDir, CRASH_VERSION);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'opencode');
  writeFileSync(file, '#!/bin/sh\necho "opencode (crash build): exiting at once" >&2\nexit 3\n');
  chmodSync(file, 0o755);
}

function inputFiles() {
  const out = [];
  const walk = (abs) => {
    const st = lstatSync(abs);
    const rel = relative(fixtures, abs).split(sep).join('/');
    if (st.isDirectory()) for (const name of readdirSync(abs)) walk(join(abs, name));
    else if (st.isFile()) out.push(rel);
    else fail(`unsupported file type (symlink or special file) in image inputs: ${rel}`);
  };
  for (const input of INPUTS) walk(join(fixtures, input));
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function inputHash(files) {
  const h = createHash('sha256');
  h.update(`${HASH_SCHEMA}\0cloud-version=${CLOUD_VERSION}\0opencode=${IMAGE_VERSION}:${PINNED[IMAGE_VERSION]}\0`);
  for (const rel of files) {
    const content = readFileSync(join(fixtures, rel));
    h.update(`${rel}\0${content.length}\0`);
    h.update(content);
  }
  return h.digest('hex');
}

function docker(args) {
  return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const opts = parseArgs(process.argv.slice(2));
const binaries = Object.fromEntries(Object.keys(PINNED).map((version) => [version, unpack(version)]));
writeCrashRelease();
const files = inputFiles();
const hash = inputHash(files);
const short = hash.slice(0, 12);

try {
  docker(['version', '--format', '{{.Server.Version}}']);
} catch (err) {
  fail(`the Docker engine is unreachable (${String(err.stderr || err.message).trim()}). Start dockerd (see .ci/provision.sh).`);
}

let current = '';
let previousId = '';
try {
  [previousId = '', current = ''] = docker(['image', 'inspect', '--format', `{{.Id}} {{ index .Config.Labels "${HASH_LABEL}" }}`, opts.tag])
    .trim()
    .split(' ');
} catch {
  /* no such image */
}
if (!opts.force && current === hash) {
  console.log(`real image up to date (${short})`);
  process.exit(0);
}

try {
  docker(['image', 'inspect', '--format', '{{.Id}}', 'debian:bookworm-slim']);
} catch {
  fail('base image debian:bookworm-slim is missing (no registry is reachable here); run .ci/provision.sh');
}

// The context lives beside the cache so the 186 MB binary is hard-linked, not copied.
const ctx = mkdtempSync(join(root, '.cache', 'real-image-ctx-'));
const started = Date.now();
try {
  for (const rel of files) {
    mkdirSync(dirname(join(ctx, rel)), { recursive: true });
    copyFileSync(join(fixtures, rel), join(ctx, rel));
    chmodSync(join(ctx, rel), lstatSync(join(fixtures, rel)).mode & 0o777);
  }
  mkdirSync(join(ctx, 'dist'));
  try {
    linkSync(binaries[IMAGE_VERSION], join(ctx, 'dist/opencode'));
  } catch {
    copyFileSync(binaries[IMAGE_VERSION], join(ctx, 'dist/opencode'));
    chmodSync(join(ctx, 'dist/opencode'), 0o755);
  }
  console.error(`fixture-build-real: building ${opts.tag} (${short}) ...`);
  try {
    execFileSync(
      'docker',
      ['build', '--network', 'host', '--file', join(ctx, 'real', 'Dockerfile'), '--build-arg', `OPENCODE_CLOUD_VERSION=${CLOUD_VERSION}`,
        '--label', `${HASH_LABEL}=${hash}`, '--tag', opts.tag, ctx],
      { stdio: ['ignore', 2, 2], env: { ...process.env, DOCKER_BUILDKIT: '0' } },
    );
  } catch (err) {
    fail(`docker build failed (${err.status != null ? `exit ${err.status}` : String(err.message)})`);
  }
} finally {
  rmSync(ctx, { recursive: true, force: true });
}
if (previousId && current) {
  try {
    if (docker(['image', 'inspect', '--format', '{{.Id}}', opts.tag]).trim() !== previousId) docker(['image', 'rm', previousId]);
  } catch {
    /* still in use, or already gone */
  }
}
console.log(`real image built: ${opts.tag} (${short}) in ${((Date.now() - started) / 1000).toFixed(1)}s`);
