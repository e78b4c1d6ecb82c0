#!/bin/sh
# The release store: the in-sandbox half of `occ update opencode`, as one POSIX sh script.
#
#   sh -s -- SUBCOMMAND [ARG]...      (the script itself arrives on stdin)
#
# Every call prints one JSON object on stdout ({"ok":true,...} or {"ok":false,"error":...}).
# Data (tokens, commits, release names, paths) arrives only as positional parameters; nothing
# is ever evaluated. The root is $OCC_STORE_ROOT (default /opt/opencode), so tests run it
# against any directory.
#
# Layout under the root:
#   releases/<name>/     one complete build per commit (the image's plain layout becomes
#                        releases/<its COMMIT> on the first update)
#   current              -> releases/<name>: the one atomic switch (rename of a symlink)
#   bin, ui, ...         -> current/<entry>
#   COMMIT               the installed (verified) commit; written only after verification
#   VERSION              the release's `opencode --version` (from the build, or recorded by
#                        built when the build left none; read through current/ when it exists)
#   .version-cache       the version of a layout without VERSION (the image's own, before any
#                        update), keyed by what it was measured on (see cached_version)
#   .journal             exists while a switched-in release is "activated, not verified":
#                        release=, previous=, previous_commit=, version=, since=
#   .update-lock/        owner (token, boot_id, pid, pid_start, description) + heartbeat
#   .staging/<token>/    source checkout, build output and build pid of a running update
#
# Crash anywhere: `inspect` tells what is there; with a journal, the caller re-verifies the
# release (verify) or goes back (rollback), which works on the files alone.
#
# Exit status: 0 ok, 75 the lock is held by someone else, 1 failure (the JSON says why).
set -u

ROOT=${OCC_STORE_ROOT:-/opt/opencode}
LOCK=$ROOT/.update-lock
STAGING=$ROOT/.staging
JOURNAL=$ROOT/.journal
VERSION_CACHE=$ROOT/.version-cache
NL='
'

# --- output ---------------------------------------------------------------------------------

# A JSON string: control characters dropped, quotes and backslashes escaped, at most 300 bytes.
json_str() {
  printf '"%s"' "$(printf '%s' "$1" | head -c 300 | tr -d '\000-\037\177' | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# A JSON string, or null when empty.
json_opt() {
  if [ -n "$1" ]; then json_str "$1"; else printf null; fi
}

fail() {
  printf '{"ok":false,"error":%s}\n' "$(json_str "$*")"
  exit 1
}

# Tests stop the script at a named point to prove every crash is recoverable: OCC_STORE_CRASH_AT
# kills it there; OCC_STORE_PAUSE_AT holds it there (its pid in $ROOT/.paused-<point>) until
# that file is removed, at most 10 minutes, so a test can kill occ (or the script) at that very
# point. Unset, as in production, both are a string comparison and nothing else.
crash_point() {
  if [ "${OCC_STORE_CRASH_AT:-}" = "$1" ]; then kill -9 $$; fi
  if [ "${OCC_STORE_PAUSE_AT:-}" = "$1" ]; then
    echo $$ > "$ROOT/.paused-$1"
    n=0
    while [ -f "$ROOT/.paused-$1" ] && [ "$n" -lt 6000 ]; do sleep 0.1; n=$((n + 1)); done
    rm -f "$ROOT/.paused-$1"
  fi
}

# --- checks ---------------------------------------------------------------------------------

check_token() {
  case "$1" in '' | *[!0-9a-f]*) fail "invalid token" ;; esac
}

# A release name: a commit, or the name the image's plain layout got (letters, digits, . _ -).
check_name() {
  case "$1" in '' | .* | *[!A-Za-z0-9._-]*) fail "invalid release name: $1" ;; esac
}

is_sha() {
  case "$1" in *[!0-9a-f]*) return 1 ;; esac
  [ "${#1}" -eq 40 ]
}

is_root() { [ "$(id -u)" = 0 ]; }

# root:root and go-w when we are root (tests run as anyone against a temp root).
own_root() {
  if is_root; then chown -R root:root "$@"; fi
  chmod -R go-w "$@"
}

# --- small file helpers ---------------------------------------------------------------------

# The value of key $1 in key=value file $2 (first match, first 300 bytes of the file's lines).
field() {
  [ -f "$2" ] && [ ! -L "$2" ] || return 0
  head -c 4000 "$2" | sed -n "s/^$1=//p" | head -n 1
}

recorded_commit() {
  [ -f "$ROOT/COMMIT" ] || return 0
  c=$(head -c 100 "$ROOT/COMMIT" | head -n 1 | tr -d '\r\n\t ' | tr 'A-F' 'a-f')
  if is_sha "$c"; then printf '%s' "$c"; fi
}

current_release() {
  [ -L "$ROOT/current" ] || return 0
  t=$(readlink "$ROOT/current")
  printf '%s' "${t##*/}"
}

# Writes $2 to file $1 by temp file + rename.
write_file() {
  printf '%s\n' "$2" > "$1.tmp" || return 1
  chmod 0644 "$1.tmp" && mv -f "$1.tmp" "$1"
}

set_current() {
  ln -sfn "releases/$1" "$ROOT/.current.tmp" && mv -T "$ROOT/.current.tmp" "$ROOT/current"
}

# --- the installed version --------------------------------------------------------------------
# The real opencode spends 1.6-2.5 s of CPU on `--version`, and inspect runs at every update,
# repair, start and listener start. So the binary runs at most once per installed state: its
# answer is kept in $VERSION_CACHE (root's file in root's directory, written by temp file +
# rename), keyed by everything that decides what runs:
#   commit=  the recorded COMMIT (what was verified),
#   current= the release current points at (empty in the image's plain layout),
#   binary=  inode:size:mtime:ctime:path of the file bin/opencode resolves to (to the ns;
#            npm's opencode binaries all have the same mtime, ctime differs per file).
# COMMIT alone is not enough: a rollback to the image's release may leave no COMMIT, and a
# release of the same commit may be rebuilt; current alone would outlive an in-place change of
# the plain layout. With all three, any change of commit, release or binary is a miss, and a
# miss runs the binary again. Not the device number: overlayfs may give another one per mount.
# Releases that went through an update carry a VERSION file instead (built writes it).

# The value of a version we keep: one line of letters, digits and . _ + ~ -, at most 100 bytes.
clean_version() {
  case "$1" in '' | .* | -* | *[!A-Za-z0-9._+~-]*) return 0 ;; esac
  [ "${#1}" -le 100 ] && printf '%s' "$1"
}

# The file bin/opencode resolves to, and its identity (empty when there is none).
binary_path() { readlink -f "$ROOT/bin/opencode" 2> /dev/null; }

binary_id() {
  [ -n "$1" ] && [ -f "$1" ] || return 0
  printf '%s:%s' "$(stat -c '%i:%s:%.9Y:%.9Z' "$1" 2> /dev/null)" "$1"
}

# The cache key for binary $1 (three lines, no final newline).
version_key() {
  printf 'commit=%s\ncurrent=%s\nbinary=%s' "$(recorded_commit)" "$(current_release)" "$(binary_id "$1")"
}

# The cached version when the cache is exactly the key of what is installed now plus one
# version line: a regular file (not a link, one name) of ours or root's, at most 1 KiB.
# Anything else is ignored, never trusted.
cached_version() {
  f=$VERSION_CACHE
  [ -f "$f" ] && [ ! -L "$f" ] || return 0
  meta=$(stat -c '%u:%h:%s' "$f" 2> /dev/null) || return 0
  case "$meta" in "0:1:"* | "$(id -u):1:"*) ;; *) return 0 ;; esac
  size=${meta##*:}
  case "$size" in '' | *[!0-9]*) return 0 ;; esac
  [ "$size" -le 1024 ] || return 0
  content=$(head -c 1024 "$f")
  key=$(version_key "$(binary_path)")
  case "$content" in "$key${NL}version="*) ;; *) return 0 ;; esac
  # The rest is the version; a second line (a newline is no version character) fails it.
  clean_version "${content#"$key${NL}version="}"
}

# Records version $2 for key $1 (only a clean version; never while a release is unverified:
# then what current runs is not what COMMIT says). A failed write leaves no cache, not a bad one.
remember_version() {
  v=$(clean_version "$2")
  [ -n "$v" ] && [ ! -f "$JOURNAL" ] || return 0
  tmp=$VERSION_CACHE.tmp.$$
  rm -f "$tmp"
  if { printf '%s\nversion=%s\n' "$1" "$v" > "$tmp"; } 2> /dev/null && chmod 0644 "$tmp" && mv -fT "$tmp" "$VERSION_CACHE" 2> /dev/null; then
    return 0
  fi
  rm -f "$tmp"
}

# The active release's version and where it came from ("file", "cache" or "binary"), as two
# lines. VERSION first (through current/ once the release layout exists); else the cache; else
# the binary, once: it is run by its resolved path, and its answer is kept only if neither the
# binary nor the key changed while it ran (an update may switch current meanwhile).
installed_version() {
  user=$1
  if [ -L "$ROOT/current" ]; then vfile=$ROOT/current/VERSION; else vfile=$ROOT/VERSION; fi
  if [ -f "$vfile" ] && [ ! -L "$vfile" ]; then
    printf 'file\n%s' "$(head -c 200 "$vfile" | head -n 1)"
    return 0
  fi
  v=$(cached_version)
  if [ -n "$v" ]; then printf 'cache\n%s' "$v"; return 0; fi
  bin=$(binary_path)
  [ -n "$bin" ] && [ -x "$bin" ] && command -v runuser > /dev/null 2>&1 || return 0
  key=$(version_key "$bin")
  v=$(timeout 10 runuser -u "$user" -- "$bin" --version 2> /dev/null | head -c 200 | head -n 1)
  [ -n "$v" ] || return 0
  if [ "$(binary_path)" = "$bin" ] && [ "$(version_key "$bin")" = "$key" ]; then remember_version "$key" "$v"; fi
  printf 'binary\n%s' "$v"
}

# Drops top-level links into current that the active release does not provide (HEALTH_FAIL, ...).
drop_dangling_links() {
  for entry in "$ROOT"/* ; do
    name=${entry##*/}
    case "$name" in bin | ui | COMMIT | current | releases) continue ;; esac
    if [ -L "$entry" ] && [ "$(readlink "$entry")" = "current/$name" ] && [ ! -e "$entry" ]; then rm -f "$entry"; fi
  done
}

# Ends the process group of a build still running for staging dir $1 (its pid file names the
# group leader; only if that pid's command line still names the staging dir, not a reused pid).
end_build() {
  for f in "$1/build.pid" "$1/work/build.pid"; do
    [ -f "$f" ] || continue
    pid=$(head -c 20 "$f" 2>/dev/null)
    case "$pid" in '' | *[!0-9]*) continue ;; esac
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$1"; then
      kill -TERM "-$pid" 2>/dev/null && echo "$pid"
    elif [ -d "/proc/$pid" ] && tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qxF "OCC_STAGING=$1"; then
      kill -TERM "-$pid" 2>/dev/null && echo "$pid"
    fi
  done
}

# --- subcommands ----------------------------------------------------------------------------

# inspect USER RECIPE: what is installed, the journal, the lock.
cmd_inspect() {
  user=${1:-opencoder}
  recipe_path=${2:-/usr/local/bin/opencode-build}
  present=false
  [ -d "$ROOT" ] && present=true
  releases=
  if [ -d "$ROOT/releases" ]; then
    for r in "$ROOT"/releases/*; do
      [ -d "$r" ] || continue
      n=${r##*/}
      case "$n" in .* | *[!A-Za-z0-9._-]*) continue ;; esac
      releases="$releases${releases:+,}$(json_str "$n")"
    done
  fi
  if [ -x "$recipe_path" ]; then recipe=image
  elif command -v runuser > /dev/null 2>&1 && runuser -u "$user" -- sh -c 'command -v bun' > /dev/null 2>&1; then recipe=builtin
  else recipe=none; fi
  found=$(installed_version "$user")
  version_source=
  version=
  case "$found" in *"$NL"?*)
    version_source=${found%%"$NL"*}
    version=${found#*"$NL"}
  esac
  journal=null
  if [ -f "$JOURNAL" ]; then
    journal=$(printf '{"release":%s,"previous":%s,"previous_commit":%s,"version":%s,"since":%s}' \
      "$(json_opt "$(field release "$JOURNAL")")" "$(json_opt "$(field previous "$JOURNAL")")" \
      "$(json_opt "$(field previous_commit "$JOURNAL")")" "$(json_opt "$(field version "$JOURNAL")")" \
      "$(json_opt "$(field since "$JOURNAL")")")
  fi
  lock=null
  if [ -d "$LOCK" ]; then lock=$(lock_json); fi
  printf '{"ok":true,"uid":%s,"present":%s,"commit":%s,"current":%s,"releases":[%s],"recipe":"%s","version":%s,"version_source":%s,"journal":%s,"lock":%s}\n' \
    "$(id -u)" "$present" "$(json_opt "$(recorded_commit)")" "$(json_opt "$(current_release)")" "$releases" "$recipe" \
    "$(json_opt "$version")" "$(json_opt "$version_source")" "$journal" "$lock"
}

lock_age() {
  hb=$(stat -c %Y "$LOCK/heartbeat" 2> /dev/null || stat -c %Y "$LOCK" 2> /dev/null || echo 0)
  echo $(($(date +%s) - hb))
}

lock_json() {
  o=$LOCK/owner
  printf '{"token":%s,"boot_id":%s,"pid":%s,"pid_start":%s,"description":%s,"age_seconds":%s}' \
    "$(json_opt "$(field token "$o")")" "$(json_opt "$(field boot_id "$o")")" "$(json_opt "$(field pid "$o")")" \
    "$(json_opt "$(field pid_start "$o")")" "$(json_opt "$(field description "$o")")" "$(lock_age)"
}

# lock TOKEN BOOT_ID PID PID_START DESCRIPTION STALE_SECONDS [TAKEOVER_TOKEN]
# Takes the update lock. A held lock is taken over when its token is TAKEOVER_TOKEN (the caller
# proved its owner dead, or that it is the caller itself), or when its heartbeat is older than
# STALE_SECONDS (an owner on another host). Holding it, ends what a crashed update left running
# and clears the staging area.
cmd_lock() {
  [ $# -ge 6 ] || fail "usage: lock TOKEN BOOT_ID PID PID_START DESCRIPTION STALE_SECONDS [TAKEOVER_TOKEN]"
  token=$1
  check_token "$token"
  stale=$6
  takeover=${7:-}
  case "$stale" in '' | *[!0-9]*) fail "invalid stale seconds" ;; esac
  took_over=null
  [ -d "$ROOT" ] || fail "$ROOT does not exist"
  if ! mkdir "$LOCK" 2> /dev/null; then
    [ -d "$LOCK" ] || fail "cannot create $LOCK"
    held=$(field token "$LOCK/owner")
    age=$(lock_age)
    if [ -n "$takeover" ] && [ "$held" = "$takeover" ]; then
      took_over='"owner-gone"'
    elif [ "$age" -gt "$stale" ]; then
      took_over='"stale"'
    else
      printf '{"ok":false,"busy":true,"owner":%s}\n' "$(lock_json)"
      exit 75
    fi
    aside=$ROOT/.update-lock.old.$$
    rm -rf "$aside"
    mv -T "$LOCK" "$aside" 2> /dev/null && rm -rf "$aside"
    if ! mkdir "$LOCK" 2> /dev/null; then
      printf '{"ok":false,"busy":true,"owner":%s}\n' "$(lock_json)"
      exit 75
    fi
  fi
  chmod 700 "$LOCK"
  printf 'token=%s\nboot_id=%s\npid=%s\npid_start=%s\ndescription=%s\n' "$token" "$2" "$3" "$4" \
    "$(printf '%s' "$5" | tr -d '\000-\037' | head -c 200)" > "$LOCK/owner.tmp"
  mv -f "$LOCK/owner.tmp" "$LOCK/owner"
  : > "$LOCK/heartbeat"
  crash_point lock-taken
  ended=
  if [ -d "$STAGING" ]; then
    for d in "$STAGING"/*; do
      [ -d "$d" ] || continue
      for pid in $(end_build "$d"); do ended="$ended${ended:+,}$pid"; done
    done
  fi
  rm -rf "$STAGING" "$ROOT/.current.tmp" "$ROOT/.link.tmp" "$ROOT/COMMIT.tmp" "$JOURNAL.tmp" "$ROOT"/.update-lock.old.* "$VERSION_CACHE".tmp.*
  rm -rf "$ROOT"/releases/.migrate-* 2> /dev/null
  mkdir -p "$STAGING" && chmod 0711 "$STAGING"
  printf '{"ok":true,"took_over":%s,"ended_builds":[%s]}\n' "$took_over" "$ended"
}

# heartbeat TOKEN: refreshes the lock while TOKEN holds it.
cmd_heartbeat() {
  check_token "${1:-}"
  if [ "$(field token "$LOCK/owner")" = "$1" ]; then
    : > "$LOCK/heartbeat"
    echo '{"ok":true}'
  else
    printf '{"ok":false,"lost":true,"error":"the update lock is no longer held by this update"}\n'
    exit 1
  fi
}

# unlock TOKEN: removes the staging dir of TOKEN and the lock if TOKEN still holds it.
cmd_unlock() {
  check_token "${1:-}"
  rm -rf "${STAGING:?}/$1"
  released=false
  if [ "$(field token "$LOCK/owner")" = "$1" ]; then
    rm -rf "$LOCK"
    released=true
  fi
  printf '{"ok":true,"released":%s}\n' "$released"
}

# stage TOKEN REPO_PATH AS_USER USER: makes .staging/TOKEN (home with a private git config that
# trusts a local repository path, and a work dir the build user can write when AS_USER is 1).
cmd_stage() {
  check_token "${1:-}"
  dir=$STAGING/$1
  rm -rf "$dir"
  mkdir -p "$dir/home" || fail "cannot create $dir"
  chmod 0711 "$dir"
  chmod 0700 "$dir/home"
  git config --file "$dir/home/gitconfig" advice.detachedHead false || fail "git config failed"
  if [ -n "${2:-}" ]; then
    git config --file "$dir/home/gitconfig" --add safe.directory "$2"
    git config --file "$dir/home/gitconfig" --add safe.directory "$2/.git"
  fi
  if [ "${3:-0}" = 1 ]; then
    mkdir -p "$dir/work"
    chmod 0700 "$dir/work"
    if is_root; then chown "${4:-opencoder}:${4:-opencoder}" "$dir/work" || fail "cannot give $dir/work to ${4:-opencoder}"; fi
  fi
  printf '{"ok":true,"dir":%s}\n' "$(json_str "$dir")"
}

# build TOKEN RECIPE: runs the image's recipe on .staging/TOKEN/src into .staging/TOKEN/release.
# Run under `setsid -w`, so this shell leads a process group that end_build can end whole.
cmd_build() {
  check_token "${1:-}"
  dir=$STAGING/$1
  [ -d "$dir/src" ] || fail "no source checkout in $dir"
  echo $$ > "$dir/build.pid"
  OCC_STAGING=$dir
  export OCC_STAGING
  exec "$2" "$dir/src" "$dir/release"
}

# kill-build TOKEN: ends the build of TOKEN (its process group).
cmd_kill_build() {
  check_token "${1:-}"
  ended=
  for pid in $(end_build "$STAGING/$1"); do ended="$ended${ended:+,}$pid"; done
  printf '{"ok":true,"ended_builds":[%s]}\n' "$ended"
}

# adopt TOKEN: copies the build user's output (work/out) into a root-owned candidate (release).
cmd_adopt() {
  check_token "${1:-}"
  dir=$STAGING/$1
  [ -d "$dir/work/out" ] || fail "the build left no output in $dir/work/out"
  rm -rf "$dir/release"
  mkdir "$dir/release" || fail "cannot create $dir/release"
  cp -R "$dir/work/out/." "$dir/release/" || fail "copying the build output failed"
  own_root "$dir/release"
  echo '{"ok":true}'
}

# built TOKEN USER: the candidate's version (its VERSION file, else bin/opencode --version, which
# is then recorded as the release's VERSION, so no later inspect has to run the binary).
cmd_built() {
  check_token "${1:-}"
  rel=$STAGING/$1/release
  [ -d "$rel" ] || fail "the build left no release in $rel"
  [ -e "$rel/bin/opencode" ] || fail "the build left no bin/opencode"
  own_root "$rel"
  if [ -f "$rel/VERSION" ] && [ ! -L "$rel/VERSION" ]; then v=$(head -c 200 "$rel/VERSION" | head -n 1)
  else
    # A VERSION that is a link or a directory is not a version record: it goes.
    rm -rf "$rel/VERSION"
    v=
    if command -v runuser > /dev/null 2>&1; then
      v=$(timeout 10 runuser -u "${2:-opencoder}" -- "$rel/bin/opencode" --version 2> /dev/null | head -c 200 | head -n 1)
    fi
    clean=$(clean_version "$v")
    if [ -n "$clean" ]; then write_file "$rel/VERSION" "$clean" || fail "cannot write $rel/VERSION"; fi
  fi
  printf '{"ok":true,"version":%s}\n' "$(json_opt "$v")"
}

# activate TOKEN COMMIT IMAGE_NAME VERSION: the switch.
#  1. First update only: the image's plain layout is copied into releases/IMAGE_NAME and
#     current points at it (nothing the running opencode uses changes).
#  2. The candidate moves to releases/COMMIT (a rename).
#  3. The journal records "COMMIT activated, not verified" with the previous release.
#  4. Every top-level entry of a release becomes a link into current.
#  5. current is swapped to releases/COMMIT: one rename of a symlink.
# COMMIT is not written here: only verify does, after a health check from the new version.
cmd_activate() {
  check_token "${1:-}"
  new=${2:-}
  is_sha "$new" || fail "invalid commit: $new"
  image_name=${3:-image}
  check_name "$image_name"
  candidate=$STAGING/$1/release
  cd "$ROOT" || fail "cannot enter $ROOT"
  [ -f "$JOURNAL" ] && fail "an unverified release is pending (release $(field release "$JOURNAL")); repair it first"
  [ -d "$candidate" ] || fail "no built release in $candidate"
  mkdir -p releases && chmod 0755 releases
  if [ ! -L current ]; then
    if [ ! -d "releases/$image_name" ]; then
      tmp=releases/.migrate-$$
      rm -rf "$tmp"
      mkdir "$tmp" || fail "cannot create $tmp"
      for entry in *; do
        case "$entry" in COMMIT | current | releases) continue ;; esac
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        cp -a "$entry" "$tmp/" || fail "copying $entry into the first release failed"
      done
      # The plain layout without VERSION: its release records the version measured on it.
      if [ ! -e "$tmp/VERSION" ] && [ ! -L "$tmp/VERSION" ]; then
        v=$(cached_version)
        if [ -n "$v" ]; then write_file "$tmp/VERSION" "$v" || fail "cannot write $tmp/VERSION"; fi
      fi
      crash_point migrate-copied
      mv -T "$tmp" "releases/$image_name" || fail "cannot create releases/$image_name"
    fi
    set_current "$image_name" || fail "cannot point current at releases/$image_name"
    crash_point migrated
  fi
  previous=$(current_release)
  [ "$previous" = "$new" ] && fail "releases/$new is already active"
  [ -d "releases/$previous" ] || fail "current points at a missing release ($previous)"
  previous_commit=$(recorded_commit)
  rm -rf "releases/$new"
  mv -T "$candidate" "releases/$new" || fail "cannot move the build to releases/$new"
  crash_point moved
  printf 'release=%s\nprevious=%s\nprevious_commit=%s\nversion=%s\nsince=%s\n' "$new" "$previous" "$previous_commit" \
    "$(printf '%s' "${4:-}" | tr -d '\000-\037' | head -c 200)" "$(date +%s)" > "$JOURNAL.tmp" || fail "cannot write the journal"
  mv -f "$JOURNAL.tmp" "$JOURNAL" || fail "cannot write the journal"
  crash_point journaled
  { ls -A "releases/$new"; ls -A "releases/$previous"; printf 'bin\nui\n'; } | sort -u | while IFS= read -r entry; do
    case "$entry" in COMMIT | current | releases | .*) continue ;; esac
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
  crash_point linked
  set_current "$new" || fail "the switch to releases/$new failed"
  rm -f "$VERSION_CACHE"
  crash_point switched
  printf '{"ok":true,"previous":%s,"previous_commit":%s}\n' "$(json_str "$previous")" "$(json_opt "$previous_commit")"
}

# verify: the journal's release answered healthy from its own version: it is installed now
# (COMMIT written, journal removed).
cmd_verify() {
  [ -f "$JOURNAL" ] || fail "nothing to verify: no release is pending"
  release=$(field release "$JOURNAL")
  [ "$(current_release)" = "$release" ] || fail "current is not the pending release $release"
  if is_sha "$release"; then write_file "$ROOT/COMMIT" "$release" || fail "cannot write COMMIT"; fi
  rm -f "$VERSION_CACHE"
  crash_point committed
  rm -f "$JOURNAL"
  printf '{"ok":true,"commit":%s}\n' "$(json_opt "$release")"
}

# rollback [DELETE_FAILED]: back to the journal's previous release (current, COMMIT, links),
# then the journal goes; DELETE_FAILED=1 also deletes the failed release. Files only: the
# caller restarts opencode (or the container). Without a journal there is nothing to do.
cmd_rollback() {
  if [ ! -f "$JOURNAL" ]; then
    echo '{"ok":true,"rolled_back":false}'
    return 0
  fi
  release=$(field release "$JOURNAL")
  previous=$(field previous "$JOURNAL")
  previous_commit=$(field previous_commit "$JOURNAL")
  check_name "$previous"
  [ -d "$ROOT/releases/$previous" ] || fail "the previous release releases/$previous is missing"
  cd "$ROOT" || fail "cannot enter $ROOT"
  set_current "$previous" || fail "switching back to releases/$previous failed"
  rm -f "$VERSION_CACHE"
  crash_point switched-back
  if is_sha "$previous_commit"; then write_file COMMIT "$previous_commit" || fail "cannot write COMMIT"
  elif is_sha "$previous"; then write_file COMMIT "$previous" || fail "cannot write COMMIT"
  else rm -f COMMIT; fi
  drop_dangling_links
  crash_point restored
  rm -f "$JOURNAL"
  deleted=false
  if [ "${1:-0}" = 1 ] && [ -n "$release" ] && [ "$release" != "$previous" ]; then
    case "$release" in .* | *[!A-Za-z0-9._-]*) ;; *) rm -rf "releases/$release" && deleted=true ;; esac
  fi
  printf '{"ok":true,"rolled_back":true,"release":%s,"failed":%s,"deleted":%s}\n' "$(json_str "$previous")" "$(json_opt "$release")" "$deleted"
}

# prune KEEP...: deletes every release but those named (current and previous), and top-level
# links that no release provides any more. Never current, nor a journal's release or previous.
cmd_prune() {
  [ -d "$ROOT/releases" ] || { echo '{"ok":true,"pruned":[]}'; return 0; }
  pending=$(field release "$JOURNAL")
  pending_previous=$(field previous "$JOURNAL")
  current=$(current_release)
  pruned=
  for r in "$ROOT"/releases/* "$ROOT"/releases/.[!.]*; do
    [ -e "$r" ] || [ -L "$r" ] || continue
    n=${r##*/}
    keep=0
    for k in "$@" "$pending" "$pending_previous" "$current"; do [ "$n" = "$k" ] && keep=1; done
    if [ "$keep" = 0 ]; then
      rm -rf "$r"
      pruned="$pruned${pruned:+,}$(json_str "$n")"
    fi
  done
  drop_dangling_links
  printf '{"ok":true,"pruned":[%s]}\n' "$pruned"
}

sub=${1:-}
[ $# -gt 0 ] && shift
case "$sub" in
  inspect) cmd_inspect "$@" ;;
  lock) cmd_lock "$@" ;;
  heartbeat) cmd_heartbeat "$@" ;;
  unlock) cmd_unlock "$@" ;;
  stage) cmd_stage "$@" ;;
  build) cmd_build "$@" ;;
  kill-build) cmd_kill_build "$@" ;;
  adopt) cmd_adopt "$@" ;;
  built) cmd_built "$@" ;;
  activate) cmd_activate "$@" ;;
  verify) cmd_verify "$@" ;;
  rollback) cmd_rollback "$@" ;;
  prune) cmd_prune "$@" ;;
  *) fail "unknown subcommand: $sub (inspect|lock|heartbeat|unlock|stage|build|kill-build|adopt|built|activate|verify|rollback|prune)" ;;
esac
