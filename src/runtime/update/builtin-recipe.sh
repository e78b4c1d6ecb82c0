#!/bin/bash
# The built-in build recipe for the published image (bun, as the opencode user, as the Rust
# occ's in-place update did). Run as `setsid -w bash -l -s -- PIDFILE SRC OUT` with this file
# on stdin. It builds opencode and its web UI only; the broker (a setuid-root binary shared by
# every session) changes with the image, not here. Not exercised by the tests (the fixture
# image has its own recipe).
set -euo pipefail
echo $$ > "$1"
src=$2
out=$3
cd "$src"
echo "occ: bun install --frozen-lockfile"
bun install --frozen-lockfile
cd packages/opencode
echo "occ: bun run build-single-ui"
bun run build-single-ui
dist=
for candidate in dist/opencode-*/; do
  if [ -x "${candidate}bin/opencode" ]; then dist=$candidate; break; fi
done
[ -n "$dist" ] || { echo "the build left no dist/opencode-*/bin/opencode" >&2; exit 1; }
mkdir -p "$out/bin" "$out/ui"
cp "${dist}bin/opencode" "$out/bin/opencode"
if [ -d "${dist}ui" ]; then cp -R "${dist}ui/." "$out/ui/"; fi
"$out/bin/opencode" --version | head -n 1 > "$out/VERSION"
