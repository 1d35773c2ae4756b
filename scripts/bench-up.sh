#!/usr/bin/env bash
# Measures `taskmesh up -d` from nothing (empty caches and state: every
# component provisioned, Postgres initialised) and warm (caches and state
# kept), and the memory of the whole running set: the sum of RSS of the
# supervisor and every supervised process group, sampled until a few seconds
# after ready.
#   scripts/bench-up.sh            both; prints a Markdown table
#   scripts/bench-up.sh warm       only the warm start (after one start to fill the caches)
# Uses the default ports: nothing else of taskmesh may be running.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
chmod 755 "$tmp"
trap 'TASKMESH_STATE_DIR=$tmp/state node scripts/taskmesh.mjs down >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
export TASKMESH_STATE_DIR=$tmp/state NO_COLOR=1
cold_env=(XDG_CACHE_HOME="$tmp/cache" GOMODCACHE="$tmp/gomod" GOCACHE="$tmp/gocache"
          MAVEN_OPTS="-Dmaven.repo.local=$tmp/m2" PIP_NO_CACHE_DIR=1)

# Sum of RSS (MiB) of the supervisor and every process in the run's process groups, now.
rss_now() {
  local ids
  ids=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["supervisorPid"], " ".join(str(p["pid"]) for p in s["processes"] if "pid" in p))' "$TASKMESH_STATE_DIR/state.json" 2>/dev/null || true)
  [ -n "$ids" ] || { echo 0; return; }
  ps -eo pid=,pgid=,rss= | awk -v g=" $ids " 'index(g, " " $2 " ") || index(g, " " $1 " ") { s += $3 } END { printf "%d", s / 1024 }'
}

run_up() { # $1: label; rest: env assignments
  local label=$1; shift
  local start end peak=0 now
  start=$(date +%s.%N)
  env "$@" node scripts/taskmesh.mjs up -d >"$tmp/$label.log" 2>&1 &
  local up=$!
  while kill -0 $up 2>/dev/null; do now=$(rss_now); (( now > peak )) && peak=$now; sleep 0.2; done
  wait $up || { cat "$tmp/$label.log"; exit 1; }
  end=$(date +%s.%N)
  for _ in $(seq 1 25); do now=$(rss_now); (( now > peak )) && peak=$now; sleep 0.2; done
  printf '| %s | %s s | %d MiB |\n' "$label" "$(python3 -c "print(round($end - $start, 1))")" "$peak"
  node scripts/taskmesh.mjs down >/dev/null 2>&1
}

echo "| up | time to ready | peak memory (RSS, all processes) |"
echo "| --- | --- | --- |"
if [ "${1:-}" = warm ]; then
  run_up "first (your caches, new state)"
  run_up "warm (cached, state kept)"
else
  run_up "cold (empty caches and state)" "${cold_env[@]}"
  run_up "warm (cached, state kept)" "${cold_env[@]}"
fi
