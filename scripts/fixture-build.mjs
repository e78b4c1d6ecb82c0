#!/usr/bin/env node
// Builds the fixture sandbox image used by integration tests, unless it is already up to date.
//
//   node scripts/fixture-build.mjs [--force] [--tag <image>] [--cloud-version <v>]
//
// Inputs: test/fixtures/sandbox/Dockerfile, test/fixtures/sandbox/files/**, test/fixtures/opencode-src/**,
// the built update client (packages/update-client/package.json, dist/**) and its example/update-button/**
// (plus the cloud version). Their sha256 (sorted by path; path + content) is stored in the image label
// org.opencode-cloud.fixture-hash; when the tag already carries the same hash the build is skipped.
// The build context is a temp dir holding exactly sandbox/Dockerfile, sandbox/files/, opencode-src/ and
// update-client/ (laid out as it is installed: node_modules/@opencode-cloud/update-client, update-button).
// Uses the docker CLI with the legacy builder (DOCKER_BUILDKIT=0) and --network host: works with the
// 20.10 engine and newer clients without buildx. Docker's build output goes to stderr; stdout gets one
// summary line. Exits non-zero when the engine is unreachable or the build fails.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const DEFAULT_TAG = process.env.OCC_FIXTURE_IMAGE || 'opencode-cloud-sandbox-fixture:latest';
const DEFAULT_CLOUD_VERSION = 'fixture-1';
const HASH_LABEL = 'org.opencode-cloud.fixture-hash';
const HASH_SCHEMA = 'occ-fixture-image-v1';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = join(root, 'test', 'fixtures');
const INPUTS = ['sandbox/Dockerfile', 'sandbox/files', 'opencode-src'];
// The update client (built by `npm run build`) and its reference button, which the stand-in
// opencode serves at /occ/update: build-context path → repository path.
const CLIENT_INPUTS = [
  ['update-client/node_modules/@opencode-cloud/update-client/package.json', 'packages/update-client/package.json'],
  ['update-client/node_modules/@opencode-cloud/update-client/dist', 'packages/update-client/dist'],
  ['update-client/update-button', 'packages/update-client/example/update-button'],
];

function fail(msg) {
  console.error(`fixture-build: ${msg}`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { force: false, tag: DEFAULT_TAG, cloudVersion: DEFAULT_CLOUD_VERSION };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--force') opts.force = true;
    else if (a === '--tag' && argv[i + 1]) opts.tag = argv[++i];
    else if (a === '--cloud-version' && argv[i + 1]) opts.cloudVersion = argv[++i];
    else {
      console.error('usage: node scripts/fixture-build.mjs [--force] [--tag <image>] [--cloud-version <v>]');
      process.exit(2);
    }
  }
  return opts;
}

/** Regular files under the inputs as {rel: posix path in the build context, abs}, sorted by rel. */
function inputFiles() {
  const out = [];
  const walk = (abs, rel) => {
    const st = lstatSync(abs);
    if (st.isDirectory()) {
      for (const name of readdirSync(abs)) walk(join(abs, name), `${rel}/${name}`);
    } else if (st.isFile()) {
      out.push({ rel, abs });
    } else {
      fail(`unsupported file type (symlink or special file) in fixture inputs: ${rel}`);
    }
  };
  for (const input of INPUTS) walk(join(fixtures, input), input);
  for (const [rel, source] of CLIENT_INPUTS) {
    try {
      lstatSync(join(root, source));
    } catch {
      fail(`${source} is missing: run \`npm run build\` first (the image carries the built update client)`);
    }
    walk(join(root, source), rel);
  }
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

function inputHash(files, cloudVersion) {
  const h = createHash('sha256');
  h.update(`${HASH_SCHEMA}\0cloud-version=${cloudVersion}\0`);
  for (const { rel, abs } of files) {
    const content = readFileSync(abs);
    h.update(`${rel}\0${content.length}\0`);
    h.update(content);
  }
  return h.digest('hex');
}

function docker(args, opts = {}) {
  return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

function errText(err) {
  if (err.code === 'ENOENT') return 'the docker CLI is not on PATH';
  return String(err.stderr || err.message).trim();
}

const opts = parseArgs(process.argv.slice(2));
const files = inputFiles();
const hash = inputHash(files, opts.cloudVersion);
const short = hash.slice(0, 12);

try {
  docker(['version', '--format', '{{.Server.Version}}']);
} catch (err) {
  fail(`the Docker engine is unreachable (${errText(err)}). Start dockerd (see .ci/provision.sh).`);
}

let current;
let previousId = '';
try {
  const out = docker(['image', 'inspect', '--format', `{{.Id}} {{ index .Config.Labels "${HASH_LABEL}" }}`, opts.tag]);
  [previousId = '', current = ''] = out.trim().split(' ');
} catch {
  current = ''; // no such image
}
if (!opts.force && current === hash) {
  console.log(`fixture image up to date (${short})`);
  process.exit(0);
}

try {
  docker(['image', 'inspect', '--format', '{{.Id}}', 'debian:bookworm-slim']);
} catch {
  fail('base image debian:bookworm-slim is missing (no registry is reachable here); run .ci/provision.sh');
}

const ctx = mkdtempSync(join(tmpdir(), 'occ-fixture-ctx-'));
const started = Date.now();
try {
  for (const { rel, abs } of files) {
    mkdirSync(dirname(join(ctx, rel)), { recursive: true });
    cpSync(abs, join(ctx, rel));
  }
  console.error(`fixture-build: building ${opts.tag} (${short}) ...`);
  try {
    execFileSync(
      'docker',
      [
        'build',
        '--network', 'host',
        '--file', join(ctx, 'sandbox', 'Dockerfile'),
        '--build-arg', `OPENCODE_CLOUD_VERSION=${opts.cloudVersion}`,
        '--label', `${HASH_LABEL}=${hash}`,
        '--tag', opts.tag,
        ctx,
      ],
      // Docker's progress goes to our stderr so stdout carries only the summary line.
      { stdio: ['ignore', 2, 2], env: { ...process.env, DOCKER_BUILDKIT: '0' } },
    );
  } catch (err) {
    fail(`docker build failed (${err.status != null ? `exit ${err.status}` : errText(err)})`);
  }
} finally {
  rmSync(ctx, { recursive: true, force: true });
}
// Drop the image this build superseded (best effort: kept while a container still uses it).
if (previousId && current) {
  try {
    const nowId = docker(['image', 'inspect', '--format', '{{.Id}}', opts.tag]).trim();
    if (nowId !== previousId) docker(['image', 'rm', previousId]);
  } catch {
    /* still in use, or already gone */
  }
}
console.log(`fixture image built: ${opts.tag} (${short}) in ${((Date.now() - started) / 1000).toFixed(1)}s`);
