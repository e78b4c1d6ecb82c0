/**
 * The few file-system steps of an update that are easier to read as a short POSIX sh script
 * than as a dozen execs. Every script here is a constant: it is run as
 * `sh -c <script> occ-update <arg>...`, and data (commit SHAs, directory names, tokens) reaches
 * it only as positional parameters, never spliced into the script text.
 */
import {COMMIT_FILE, CURRENT_LINK, IMAGE_RECIPE, LOCK_DIR, OPENCODE_ROOT, OPENCODE_USER, RELEASES_DIR, STAGING_DIR} from './layout.js'

/** Drops top-level links into current that the active release does not provide (HEALTH_FAIL, …). */
const DROP_DANGLING_LINKS = `
for entry in *; do
  case "$entry" in bin|ui|COMMIT|current|releases) continue ;; esac
  if [ -L "$entry" ] && [ "$(readlink "$entry")" = "current/$entry" ] && [ ! -e "current/$entry" ]; then rm -f "$entry"; fi
done
`

/** What is installed, as `key=value` lines (parsed by parseInstalledState). No arguments. */
export const INSPECT_SCRIPT = `
set -u
echo "uid=$(id -u)"
[ -d ${OPENCODE_ROOT} ] || exit 0
echo present=1
[ -f ${COMMIT_FILE} ] && printf 'commit=%s\\n' "$(head -n 1 ${COMMIT_FILE} | head -c 100)"
[ -L ${CURRENT_LINK} ] && printf 'current=%s\\n' "$(readlink ${CURRENT_LINK})"
if [ -d ${RELEASES_DIR} ]; then
  for r in ${RELEASES_DIR}/*; do [ -d "$r" ] && printf 'release=%s\\n' "\${r##*/}"; done
fi
if [ -x ${IMAGE_RECIPE} ]; then echo recipe=image
elif runuser -u ${OPENCODE_USER} -- bash -lc 'command -v bun' >/dev/null 2>&1; then echo recipe=builtin
else echo recipe=none; fi
v=$(timeout 10 runuser -u ${OPENCODE_USER} -- ${OPENCODE_ROOT}/bin/opencode --version 2>/dev/null | head -n 1) && [ -n "$v" ] && printf 'version=%s\\n' "$v"
exit 0
`

/**
 * Takes the update lock: $1 token, $2 owner description, $3 seconds after which a lock whose
 * heartbeat stopped counts as abandoned (a crashed update). Exit 75 + owner on stdout: held.
 * Holding it, it clears what crashed updates left behind (ending a build still running) and
 * makes the staging dir.
 */
export const LOCK_SCRIPT = `
set -u
lock=${LOCK_DIR}
if ! mkdir "$lock" 2>/dev/null; then
  [ -d "$lock" ] || { echo "cannot create $lock" >&2; exit 1; }
  hb=$(stat -c %Y "$lock/heartbeat" 2>/dev/null || stat -c %Y "$lock" 2>/dev/null || echo 0)
  age=$(( $(date +%s) - hb ))
  if [ "$age" -le "$3" ]; then
    printf 'owner=%s\\nage=%s\\n' "$(sed -n 2p "$lock/owner" 2>/dev/null)" "$age"
    exit 75
  fi
  rm -rf "$lock"
  mkdir "$lock" 2>/dev/null || { echo "owner=another update"; exit 75; }
  echo "took-over-stale-lock age=$age"
fi
chmod 700 "$lock"
printf '%s\\n%s\\n' "$1" "$2" > "$lock/owner"
: > "$lock/heartbeat"
# A crashed update's build may still run: end its process group before clearing its files,
# only if that pid still is the build (its command line names its staging dir), not a reused pid.
for f in ${STAGING_DIR}/*/build.pid ${STAGING_DIR}/*/work/build.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2>/dev/null)
  case "$pid" in ''|*[!0-9]*) continue ;; esac
  dir=\${f%/build.pid}
  dir=\${dir%/work}
  if tr '\\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/"; then kill -TERM "-$pid" 2>/dev/null; fi
done
rm -rf ${STAGING_DIR} ${OPENCODE_ROOT}/.current.tmp ${OPENCODE_ROOT}/.link.tmp ${OPENCODE_ROOT}/.COMMIT.tmp
rm -rf ${RELEASES_DIR}/.migrate-* 2>/dev/null || true
install -d -m 0711 -o root -g root ${STAGING_DIR}
`

/** Releases the lock if $1 is still its token, and removes the staging dir $2. */
export const UNLOCK_SCRIPT = `
set -u
rm -rf "$2"
if [ "$(head -n 1 ${LOCK_DIR}/owner 2>/dev/null)" = "$1" ]; then rm -rf ${LOCK_DIR}; fi
exit 0
`

/**
 * Makes the staging dir $1 (source checkout, build output, a private git config) and trusts the
 * local repository path $2 (if any) for git's safe.directory check: a bind-mounted repo is
 * owned by a host uid, and git refuses to read it otherwise. $3 = 1 when the build runs as the
 * opencode user (then it gets a work dir it can write).
 */
export const STAGE_SCRIPT = `
set -eu
rm -rf "$1"
install -d -m 0711 -o root -g root "$1"
install -d -m 0700 -o root -g root "$1/home"
git config --file "$1/home/gitconfig" advice.detachedHead false
if [ -n "$2" ]; then
  git config --file "$1/home/gitconfig" --add safe.directory "$2"
  git config --file "$1/home/gitconfig" --add safe.directory "$2/.git"
fi
if [ "$3" = 1 ]; then install -d -m 0700 -o ${OPENCODE_USER} -g ${OPENCODE_USER} "$1/work"; fi
`

/** Runs "$@" (after $1, a pid file) in its own process group, so a cancel can end all of it. */
export const GROUP_WRAPPER = 'echo $$ > "$1"; shift; exec "$@"'

/** Ends the process group whose leader's pid is in $1 (dash's kill takes no '--'). */
export const KILL_GROUP_SCRIPT = 'pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -TERM "-$pid"'

/**
 * The built-in recipe for the published image (bun, as the opencode user, as the Rust occ's
 * in-place update did): $1 pid file, $2 source checkout, $3 output dir. It builds opencode and
 * its web UI only. The broker (cargo) is a setuid-root binary shared by every session; it is
 * not replaced in place — it changes with the image (occ update container).
 * Not exercised by the tests here (the fixture image has its own recipe).
 */
export const BUILTIN_RECIPE_SCRIPT = `
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
  if [ -x "\${candidate}bin/opencode" ]; then dist=$candidate; break; fi
done
[ -n "$dist" ] || { echo "the build left no dist/opencode-*/bin/opencode" >&2; exit 1; }
mkdir -p "$out/bin" "$out/ui"
cp "\${dist}bin/opencode" "$out/bin/opencode"
if [ -d "\${dist}ui" ]; then cp -R "\${dist}ui/." "$out/ui/"; fi
"$out/bin/opencode" --version | head -n 1 > "$out/VERSION"
`

/** Copies the opencode user's build output $1 into a root-owned release candidate $2. */
export const ADOPT_BUILD_SCRIPT = `
set -eu
rm -rf "$2"
mkdir "$2"
cp -R "$1/." "$2/"
chown -R root:root "$2"
chmod -R go-w "$2"
`

/** The new build's version: $1 release candidate dir. VERSION when the recipe wrote one. */
export const RELEASE_VERSION_SCRIPT = `
set -u
if [ -f "$1/VERSION" ]; then head -n 1 "$1/VERSION"; exit 0; fi
timeout 10 runuser -u ${OPENCODE_USER} -- "$1/bin/opencode" --version 2>/dev/null | head -n 1
exit 0
`

/**
 * The switch. $1 new commit (full SHA), $2 built release candidate dir, $3 name for the image's
 * plain layout if it still has to become a release.
 *  1. First update only: copy the plain layout into releases/$3 and point current at it (the
 *     running opencode keeps its files; nothing it uses changes).
 *  2. Move the build to releases/$1 (same file system: a rename).
 *  3. Make every top-level entry of a release (bin, ui, …) a link into current.
 *  4. Swap current to releases/$1 — one rename of a symlink, the atomic step.
 *  5. Write COMMIT (tmp + rename), only now.
 * Prints previous=<release current pointed at before> and, after step 4, switched=1.
 */
export const ACTIVATE_SCRIPT = `
set -eu
cd ${OPENCODE_ROOT}
new=$1
mkdir -p releases
chmod 0755 releases
if [ ! -L current ]; then
  if [ ! -d "releases/$3" ]; then
    tmp="releases/.migrate-$$"
    rm -rf "$tmp"
    mkdir "$tmp"
    for entry in *; do
      case "$entry" in COMMIT|current|releases) continue ;; esac
      [ -e "$entry" ] || [ -L "$entry" ] || continue
      cp -a "$entry" "$tmp/"
    done
    mv -T "$tmp" "releases/$3"
  fi
  ln -sfn "releases/$3" .current.tmp
  mv -T .current.tmp current
fi
previous=$(readlink current)
previous=\${previous##*/}
if [ "$previous" = "$new" ]; then echo "releases/$new is already active" >&2; exit 1; fi
echo "previous=$previous"
rm -rf "releases/$new"
mv -T "$2" "releases/$new"
{ ls -A "releases/$new"; ls -A "releases/$previous"; printf 'bin\\nui\\n'; } | sort -u | while IFS= read -r entry; do
  case "$entry" in COMMIT|current|releases|.*) continue ;; esac
  if [ -L "$entry" ] && [ "$(readlink "$entry")" = "current/$entry" ]; then continue; fi
  ln -sfn "current/$entry" .link.tmp
  if [ -d "$entry" ] && [ ! -L "$entry" ]; then
    # A symlink cannot be renamed over a directory: two renames, microseconds apart. The
    # directory's content is already in the previous release.
    rm -rf ".old.$entry"
    mv -T "$entry" ".old.$entry"
    mv -T .link.tmp "$entry"
    rm -rf ".old.$entry"
  else
    mv -T .link.tmp "$entry"
  fi
done
ln -sfn "releases/$new" .current.tmp
mv -T .current.tmp current
echo switched=1
printf '%s\\n' "$new" > .COMMIT.tmp
chmod 0644 .COMMIT.tmp
mv -f .COMMIT.tmp COMMIT
`

/**
 * Switches back: $1 the previous release, $2 its commit ('' if unknown: COMMIT is removed),
 * $3 the failed release to delete ('' to keep it).
 */
export const ROLLBACK_SCRIPT = `
set -eu
cd ${OPENCODE_ROOT}
[ -d "releases/$1" ] || { echo "the previous release releases/$1 is missing" >&2; exit 1; }
ln -sfn "releases/$1" .current.tmp
mv -T .current.tmp current
if [ -n "$2" ]; then
  printf '%s\\n' "$2" > .COMMIT.tmp
  chmod 0644 .COMMIT.tmp
  mv -f .COMMIT.tmp COMMIT
else
  rm -f COMMIT
fi
if [ -n "$3" ] && [ "$3" != "$1" ]; then rm -rf "releases/$3"; fi
${DROP_DANGLING_LINKS}`

/**
 * Keeps the releases named in "$@" (current and previous) and deletes the rest; also drops
 * top-level links into current that no release provides any more. Prints pruned=<name> lines.
 */
export const PRUNE_SCRIPT = `
set -eu
cd ${RELEASES_DIR}
for r in * .[!.]*; do
  [ -e "$r" ] || [ -L "$r" ] || continue
  keep=0
  for k in "$@"; do [ "$r" = "$k" ] && keep=1; done
  if [ "$keep" = 0 ]; then rm -rf -- "$r"; echo "pruned=$r"; fi
done
cd ${OPENCODE_ROOT}
${DROP_DANGLING_LINKS}`
