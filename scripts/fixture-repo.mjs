#!/usr/bin/env node
// Creates the fixture opencode git repo (bare) for integration tests.
//
//   node scripts/fixture-repo.mjs <dir>
//       Creates a bare repo at <dir> (must not exist, or be empty) with branches main and dev at
//       one deterministic commit of test/fixtures/opencode-src; prints that commit's SHA.
//   node scripts/fixture-repo.mjs --check-image [image]
//       Checks that the commit equals /opt/opencode/COMMIT in the fixture image
//       (default opencode-cloud-sandbox-fixture:latest). Exit 0 when equal, 1 otherwise.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_IMAGE, createFixtureRepo } from '../test/fixtures/sandbox/repo-helpers.mjs';

function fail(msg) {
  console.error(`fixture-repo: ${msg}`);
  process.exit(1);
}

const args = process.argv.slice(2);
if (args[0] === '--check-image') {
  const image = args[1] || FIXTURE_IMAGE;
  const tmp = mkdtempSync(join(tmpdir(), 'occ-fixture-repo-'));
  try {
    const { commit } = await createFixtureRepo(join(tmp, 'opencode.git'));
    let inImage;
    try {
      inImage = execFileSync(
        'docker',
        ['run', '--rm', '--network', 'none', '--entrypoint', 'cat', image, '/opt/opencode/COMMIT'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      ).trim();
    } catch (err) {
      fail(`cannot read /opt/opencode/COMMIT from ${image}: ${String(err.stderr || err.message).trim()}`);
    }
    if (inImage !== commit) fail(`MISMATCH: fixture repo ${commit}, image ${image} has ${inImage}`);
    console.log(`fixture repo commit ${commit} matches ${image}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
} else if (args.length === 1 && !args[0].startsWith('-')) {
  try {
    const { commit } = await createFixtureRepo(args[0]);
    console.log(commit);
  } catch (err) {
    fail(String(err.stderr || err.message).trim());
  }
} else {
  console.error('usage: node scripts/fixture-repo.mjs <dir>\n       node scripts/fixture-repo.mjs --check-image [image]');
  process.exit(2);
}
