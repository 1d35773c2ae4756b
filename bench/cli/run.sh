#!/usr/bin/env bash
# `npm run bench:cli`: how long the taskmesh command takes to answer, as a
# user runs it (`node scripts/taskmesh.mjs …`; `npx taskmesh …` adds npm's
# own start, measured once as well):
#   --help and status with nothing running, then against a running system
#   (`taskmesh up -d` on its own state directory and free ports): status,
#   and task get of a task it submitted.
# Each command runs RUNS times (default 10) after one unmeasured run; the
# table gives the median and the slowest, wall clock, in ms.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:$PATH" NO_COLOR=1
RUNS=${RUNS:-10}
log() { echo "bench:cli: $*" >&2; }

source "$ROOT/bench/up.sh"

# One row: label, then the command; prints "| label | median | max |".
measure() {
  local label=$1; shift
  "$@" >/dev/null 2>&1 || true
  local times=()
  for _ in $(seq 1 "$RUNS"); do
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { log "$label failed: $*"; exit 1; }
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000000 )))
  done
  node -e 'const t = process.argv.slice(2).map(Number).sort((a, b) => a - b);
    console.log(`| ${process.env.LABEL} | ${t[Math.floor(t.length / 2)]} | ${t[t.length - 1]} |`);' "${times[@]}"
}

machine="nproc $(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), Node $(node --version)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
rows+=("$(LABEL='`taskmesh --help`' measure help taskmesh --help)")
rows+=("$(LABEL='`taskmesh status` (nothing running)' measure status-idle taskmesh status)")
rows+=("$(LABEL='`npx taskmesh --help`' RUNS=3 measure npx npx --no-install taskmesh --help)")

bench_up
id=$(taskmesh task submit echo '{"text":"bench"}')
rows+=("$(LABEL='`taskmesh status` (the whole system running)' measure status taskmesh status)")
rows+=("$(LABEL='`taskmesh task get <id>`' measure task-get taskmesh task get "$id")")
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

echo "| command | median ms | slowest ms |"
echo "| --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo ""
echo "Command: \`npm run bench:cli\` ($RUNS runs each after one unmeasured run; npx: 3)."
echo "Machine: $machine; load average at start $load_start, at end $load_end."
