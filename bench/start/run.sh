#!/usr/bin/env bash
# `npm run bench:start`: how long `npm start` takes until the system is
# usable (every process healthy, the edge answering), on a fresh clone of
# this checkout (HEAD):
#   cold: nothing installed or provisioned: empty npm, Go, pip, Maven and
#         taskmesh caches (all in a temporary folder), as on a new machine
#         that reaches the package registries; Jaeger is built behind the
#         start, and the run also reports when it ran (before the warm start,
#         so that one finds everything provisioned);
#   warm: the same clone again, everything provisioned (every later start).
# Each run is `npm start -- -d` (up in the background, returning once ready),
# timed wall clock, then `taskmesh down`. Every line a start prints is kept
# with the seconds since it began, so the cold run's phases show (npm ci,
# the Go tools, then up: Kafka's jars, Envoy, Jaeger's build, the processes;
# Go's per-module download lines are left out).
# Environment: BENCH_SKIP_COLD=1 measures the warm start only (on this
# machine's own caches, after one unmeasured start that installs the clone's
# packages).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export NO_COLOR=1
log() { echo "bench:start: $*" >&2; }

source "$ROOT/bench/up.sh"
clone=$tmp/clone
git clone --quiet "$ROOT" "$clone"
cd "$clone"
# bench/up.sh's teardown runs `taskmesh down` from here: the clone's own run.

if [ -z "${BENCH_SKIP_COLD:-}" ]; then
  caches=$tmp/caches
  mkdir -p "$caches"
  export XDG_CACHE_HOME=$caches/xdg npm_config_cache=$caches/npm GOPATH=$caches/go GOMODCACHE=$caches/go/pkg/mod \
    MAVEN_OPTS="-Dmaven.repo.local=$caches/m2 ${MAVEN_OPTS:-}"
fi

# The Node that bootstraps npm start (npm run puts node_modules/.bin, with the pinned Node 24, first on PATH).
system_node=$(PATH=$(tr ':' '\n' <<<"$PATH" | grep -v node_modules | paste -sd:) node --version)
machine="$(machine_base), system Node $system_node"

# Seconds since $1 (date +%s%N), to one decimal.
since() { awk -v now="$(date +%s%N)" -v began="$1" 'BEGIN { printf "%.1f", (now - began) / 1e9 }'; }

# One start: prints its seconds to ready on stdout, its timestamped lines to $tmp/<name>.log.
# With $2 = wait-jaeger: once ready, also waits until Jaeger (built behind the start on a
# first run) runs, and writes its seconds since the start to $tmp/<name>.jaeger.
start() { # $1 name, $2 optional wait-jaeger
  local name=$1 began
  began=$(date +%s%N)
  npm start --silent -- -d 2>&1 | while IFS= read -r line; do
    printf '%7.1f s  %s\n' "$(awk -v now="$(date +%s%N)" -v began="$began" 'BEGIN { print (now - began) / 1e9 }')" "$line"
  done >"$tmp/$name.log"
  local status=${PIPESTATUS[0]}
  local seconds
  seconds=$(awk -v now="$(date +%s%N)" -v began="$began" 'BEGIN { printf "%.1f", (now - began) / 1e9 }')
  [ "$status" = 0 ] || { log "$name start failed ($status):"; cat "$tmp/$name.log" >&2; exit 1; }
  curl -fsS -o /dev/null "http://127.0.0.1:$TASKMESH_EDGE_PORT/.well-known/jwks.json" || { log "$name: the edge does not answer"; exit 1; }
  if [ "${2:-}" = wait-jaeger ]; then
    local deadline=$(( $(date +%s) + 900 ))
    until node scripts/taskmesh.mjs status --json | node -e 'const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
        process.exit(s.processes.some((p) => p.name === "jaeger" && p.state === "running") ? 0 : 1)'; do
      [ "$(date +%s)" -lt "$deadline" ] || { log "$name: Jaeger not running within 15 minutes"; exit 1; }
      sleep 1
    done
    since "$began" >"$tmp/$name.jaeger"
  fi
  node scripts/taskmesh.mjs down >/dev/null 2>&1
  echo "$seconds"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
if [ -z "${BENCH_SKIP_COLD:-}" ]; then
  log "cold start (empty caches in $caches; this builds Jaeger from the Go module proxy)"
  rows+=("| cold: nothing installed or provisioned | $(start cold wait-jaeger) s |")
  rows+=("| cold: Jaeger built (behind the start) and running | $(cat "$tmp/cold.jaeger") s |")
else
  # The clone's own packages (npm ci) come with its first start: not measured.
  log "a first start, not measured (the clone's packages)"
  start prepare >/dev/null
fi
log "warm start"
rows+=("| warm: everything provisioned | $(start warm) s |")
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

echo "| start (\`npm start -- -d\`, until ready) | wall clock |"
echo "| --- | --- |"
printf '%s\n' "${rows[@]}"
echo ""
for name in cold warm; do
  [ -f "$tmp/$name.log" ] || continue
  echo "$name start, what it printed (seconds since it began):"
  echo '```'
  grep -v '^ *[0-9.]* s  *$' "$tmp/$name.log" | grep -v 'go: downloading' | grep -v '│\|─\|┌\|└\|├' || true
  echo '```'
done
echo ""
echo "Command: \`npm run bench:start\` on a fresh clone of $(git -C "$ROOT" rev-parse --short HEAD)."
echo "Machine: $machine; load average at start $load_start, at end $load_end."
