#!/usr/bin/env bash
# `npm run bench:mesh`: what the Envoy mesh costs a unary call.
#
# Starts the whole system with `taskmesh up -d` on its own state directory
# and free ports, then loads one cheap method with ghz (pinned to CPU 1) on
# three paths:
#   (a) direct:            ghz -> coordinator-0 app port (h2c, loopback)
#   (m) one bare Envoy:    ghz -> an Envoy the script starts (h2c both sides,
#                              the router only: no TLS, tracing, log or filter) -> app:
#                              what one Envoy hop costs on this machine
#   (b) one sidecar pair:  ghz -> worker-0's sidecar outbound (h2c, loopback)
#                              -> coordinator-0's sidecar inbound (mTLS) -> app
#   (c) edge + sidecars:   ghz -> edge (h2c; JWT check, rate limits) -> coordinator-0's sidecar inbound (mTLS) -> app
#       with a per-subject limit scoped to the edge that the load stays
#       under (the edge counts it itself, no call), the edge tracing 10% of
#       calls (runtime key tracing.random_sampling at the edge's admin;
#       every hop behind it follows the edge's decision)
#   (c-jwt) as (c) through a second edge the script starts from the run's
#       own edge config without its jwt_authn filter: the token check off
#       (the coordinator then answers UNAUTHENTICATED: no token reached it;
#       and with no subject, the edge counts no per-subject limit either)
#   (c100) as (c), every call traced (the development default, set live at
#       the edge's admin): what tracing costs, side by side in one run
#   (g) as (c) with the limit global instead: the edge asks the ratelimit
#       service about every call (through its sidecar, and Redis)
#   (f) the task path as a user meets it: TaskService/SubmitTask through the
#       edge as (c) (JWT check, an edge limit, 10% traced), each call
#       creating a real `echo` task in the ledger that the workers run; the
#       queue is drained before its rate run, so each run starts from an
#       empty queue
# each at a fixed concurrency (closed loop) and at a fixed rate, and prints a
# Markdown table. The method is TaskService/GetTask with an id that is not a
# UUID: the coordinator answers INVALID_ARGUMENT itself, with no ledger or
# database call, so the status code proves the call reached the app, and the
# latency is the path's. ghz counts such answers as errors; `--count-errors`
# keeps them in the latency figures.
#
# Environment: BENCH_SECONDS (10), BENCH_CONCURRENCY (50), BENCH_RATE (1000),
# BENCH_TRACE_SAMPLING (10: `up`'s TASKMESH_TRACE_SAMPLING for the run).
# Runs are sized by call count (-n), not cut by ghz's -z (which cancels the
# calls in flight at the end and reports them UNAVAILABLE): the rate run
# makes RATE x SECONDS calls; the closed-loop run as many as the warm-up's
# throughput makes in about SECONDS.
# ghz is built once with `go install` into ~/.cache/taskmesh/ghz-<version>/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:$PATH" NO_COLOR=1

GHZ_VERSION=v0.120.0
GHZ_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/taskmesh/ghz-$GHZ_VERSION
GHZ=$GHZ_DIR/ghz
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-50}
RATE=${BENCH_RATE:-1000}
CALL=taskmesh.coordinator.v1.TaskService.GetTask
DATA='{"id":"not-a-task-id"}'
SUBMIT_CALL=taskmesh.coordinator.v1.TaskService.SubmitTask
SUBMIT_DATA='{"capability":"echo","input":{"bench":true}}'

log() { echo "bench:mesh: $*" >&2; }

# --- ghz, built once -------------------------------------------------------
if [ ! -x "$GHZ" ]; then
  command -v go >/dev/null || { log "go is needed to build ghz $GHZ_VERSION"; exit 1; }
  log "building ghz $GHZ_VERSION into $GHZ_DIR (go install, once)"
  build=$(mktemp -d)
  (cd "$build" && GOBIN="$build/bin" GOFLAGS=-buildvcs=false go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION") || { rm -rf "$build"; exit 1; }
  mkdir -p "$GHZ_DIR" && mv "$build/bin/ghz" "$GHZ" && rm -rf "$build"
fi

# ghz on its own core; everything else runs where the kernel puts it.
PIN=()
if ! command -v taskset >/dev/null; then
  log "taskset not found: ghz runs unpinned"
elif [ "$(nproc)" -lt 2 ]; then
  log "one CPU only: ghz runs unpinned"
else
  PIN=(taskset -c 1)
fi

# --- the system under test -------------------------------------------------
source "$ROOT/bench/up.sh"
# The system as configured for production tracing: the edge starts a trace
# for 10% of calls, and the services keep 10% of the roots they start
# themselves (path (a)'s direct calls); (c100) turns the edge to 100% live.
export TASKMESH_TRACE_SAMPLING=${BENCH_TRACE_SAMPLING:-10}
bench_up
taskmesh status --json >"$tmp/status.json"
port_of() { # $1 process, $2 port name
  node -e 'const s = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
    const p = s.processes.find((p) => p.name === process.argv[2]);
    if (!p || p.ports[process.argv[3]] === undefined) { console.error(`status shows no ${process.argv[3]} port of ${process.argv[2]}`); process.exit(1); }
    console.log(p.ports[process.argv[3]]);' "$tmp/status.json" "$1" "$2"
}
direct=127.0.0.1:$(port_of coordinator-0 app)
sidecar=127.0.0.1:$(port_of worker-0-sidecar outbound)
edge=127.0.0.1:$TASKMESH_EDGE_PORT
database_url=$(node -e 'const s = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  const p = s.processes.find((p) => p.name === "postgres");
  const password = require("node:fs").readFileSync(process.argv[2], "utf8").trim();
  console.log(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${p.ports.app}/taskmesh`);' "$tmp/status.json" "$TASKMESH_STATE_DIR/postgres.password")
# The edge wants an access token (jwt_authn); apps take a loopback call without one.
token=$(taskmesh token) || { log "taskmesh token failed"; exit 1; }

# --- the extra Envoys: (m) a bare one, (c-jwt) the edge without jwt_authn ---
extra_pids=()
stop_extra() { for pid in "${extra_pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap 'stop_extra; cleanup' EXIT
trap 'stop_extra; cleanup; exit 130' INT
trap 'stop_extra; cleanup; exit 143' TERM
envoy_bin=$(ls "${XDG_CACHE_HOME:-$HOME/.cache}"/taskmesh/envoy-*/envoy | head -1)
read -r bare_port bare_admin nojwt_port nojwt_admin < <(free_ports 4)
node bench/mesh/envoys.mjs bare "${direct#127.0.0.1:}" "$bare_port" "$bare_admin" "$tmp/bare.yaml"
node bench/mesh/envoys.mjs no-jwt "$TASKMESH_STATE_DIR/envoy/edge.yaml" "$nojwt_port" "$nojwt_admin" "$tmp/no-jwt.yaml"
for config in bare no-jwt; do
  setsid "$envoy_bin" -c "$tmp/$config.yaml" --disable-hot-restart --concurrency 1 --log-level warning >"$tmp/$config-envoy.log" 2>&1 &
  extra_pids+=($!)
done
for port in "$bare_admin" "$nojwt_admin"; do
  for _ in $(seq 1 100); do [ "$(curl -fsS "http://127.0.0.1:$port/ready" 2>/dev/null)" = LIVE ] && break; sleep 0.1; done
  [ "$(curl -fsS "http://127.0.0.1:$port/ready" 2>/dev/null)" = LIVE ] || { log "an extra Envoy (admin $port) did not start:"; cat "$tmp"/*-envoy.log >&2; exit 1; }
done
curl -fsS -X POST "http://127.0.0.1:$nojwt_admin/runtime_modify?tracing.random_sampling=10" >/dev/null
bare=127.0.0.1:$bare_port
nojwt=127.0.0.1:$nojwt_port
# The CPU table counts them as processes of their own (setsid: each leads its process group).
node -e 'const fs = require("node:fs"); const s = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  s.processes.push({ name: "bare-envoy", pid: Number(process.argv[2]) }, { name: "edge-no-jwt", pid: Number(process.argv[3]) });
  fs.writeFileSync(process.argv[1], JSON.stringify(s));' "$tmp/status.json" "${extra_pids[0]}" "${extra_pids[1]}"

# --- load ------------------------------------------------------------------
ghz_run() { # $1 output file, $2 target, rest: ghz load options; CALL_NOW and DATA_NOW pick the method (default GetTask)
  local out=$1 target=$2; shift 2
  "${PIN[@]}" "$GHZ" --insecure --protoset packages/contracts/gen/descriptor.binpb --call "${CALL_NOW:-$CALL}" -d "${DATA_NOW:-$DATA}" \
    --metadata "{\"authorization\":\"Bearer $token\"}" --cpus 1 --count-errors --connections 1 "$@" -O json -o "$out" "$target"
}
# Tasks not finished yet (PENDING or RUNNING), from the run's ledger.
unfinished() {
  node -e 'const pg = require("pg"); const c = new pg.Client({ connectionString: process.argv[1] });
    c.connect().then(() => c.query("SELECT count(*)::int AS n FROM ledger.tasks WHERE state IN ($1, $2)", ["PENDING", "RUNNING"]))
      .then((r) => { console.log(r.rows[0].n); return c.end(); }, (e) => { console.error(e.message); process.exit(1); });' "$database_url"
}
wait_drained() { # waits (at most 10 minutes) until every task submitted so far has finished; prints how long it took
  local start=$SECONDS
  while [ "$(unfinished)" != 0 ]; do
    [ $((SECONDS - start)) -gt 600 ] && { log "the queue did not drain within 10 minutes"; exit 1; }
    sleep 0.5
  done
  echo $((SECONDS - start))
}

machine="$(machine_base), Node $(node --version), $(envoy_bin=$(ls "${XDG_CACHE_HOME:-$HOME/.cache}"/taskmesh/envoy-*/envoy 2>/dev/null | head -1); [ -n "$envoy_bin" ] && "$envoy_bin" --version 2>/dev/null | grep -o 'envoy  *version: [^/]*/[0-9.]*' | sed 's/.*\///; s/^/Envoy /' || echo 'Envoy ?'), ghz $GHZ_VERSION"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# The edge's rate-limit filter state (its runtime key, from the ratelimit service's RTDS layer), and its calls so far.
filter_enabled() { curl -fsS "$admin/runtime" | node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).entries["ratelimit.http_filter_enabled"]?.final_value ?? ""))'; }
wait_filter() { # $1: the value to wait for
  for _ in $(seq 1 100); do [ "$(filter_enabled)" = "$1" ] && return 0; sleep 0.1; done
  log "the edge's ratelimit.http_filter_enabled did not become $1"; exit 1
}
# Calls the edge started a trace for (its connection manager's tracing.random_sampling counter).
sampled() { curl -fsS "$admin/stats?filter=%5Ehttp%5C.edge%5C.tracing%5C.random_sampling%24" | awk -F': ' '{print $2 + 0}'; }
rls_calls() { curl -fsS "$admin/stats?filter=ratelimit%5C.(ok|over_limit|error|failure_mode_allowed)%24" | awk -F': ' '/^cluster\.coordinator/ {n += $2} END {print n + 0}'; }
admin=http://127.0.0.1:$TASKMESH_EDGE_ADMIN_PORT
# Calls the edge counted against its own limits (Envoy's local rate limit), and the times it took a new config of them.
edge_counted() { curl -fsS "$admin/stats?filter=%5Eedge_limits%5C.http_local_rate_limit%5C.(ok|rate_limited)%24" | awk -F': ' '{n += $2} END {print n + 0}'; }
edge_reloads() { curl -fsS "$admin/stats?filter=%5Eextension_config_discovery%5C.http_filter%5C.taskmesh%5C.edge%5C.local_ratelimit%5C.config_reload%24" | awk -F': ' '{n += $2} END {print n + 0}'; }
# A per-subject limit the load stays under, scoped $1 (edge or global); returns once the edge has it.
limit_on() {
  local reloads
  reloads=$(edge_reloads)
  taskmesh config put /ratelimit/limits "{\"bench-subject\":{\"descriptor\":[{\"key\":\"subject\"}],\"requests\":1000000000,\"per\":\"minute\",\"scope\":\"$1\"}}" >/dev/null
  if [ "$1" = global ]; then wait_filter 100; return; fi
  wait_filter 0
  for _ in $(seq 1 100); do [ "$(edge_reloads)" -gt "$reloads" ] && return 0; sleep 0.1; done
  log "the edge did not take its new local limits"; exit 1
}
paths=("direct" "bare" "sidecar" "edge-traced" "edge" "edge-nojwt" "edge-global" "submit")
declare -A target=([direct]=$direct [bare]=$bare [sidecar]=$sidecar [edge-traced]=$edge [edge]=$edge [edge-nojwt]=$nojwt [edge-global]=$edge [submit]=$edge)
for p in "${paths[@]}"; do
  CALL_NOW=$CALL DATA_NOW=$DATA
  if [ "$p" = edge-traced ]; then
    # (c100): an edge limit, every call traced (the development default, set at the edge's admin; every hop behind it follows).
    limit_on edge
    curl -fsS -X POST "$admin/runtime_modify?tracing.random_sampling=100" >/dev/null || { log "could not set the edge's sampling"; exit 1; }
    counted_start=$(edge_counted) calls_start=$(rls_calls)
  elif [ "$p" = edge ]; then
    # (c): the same, 10% traced.
    curl -fsS -X POST "$admin/runtime_modify?tracing.random_sampling=10" >/dev/null || { log "could not set the edge's sampling"; exit 1; }
    sampled_before=$(sampled)
  elif [ "$p" = edge-global ]; then
    log "(c100) and (c): the edge counted $(( $(edge_counted) - counted_start )) calls against its own limit and asked the ratelimit service about $(( $(rls_calls) - calls_start )); (c) started a trace for $(( $(sampled) - sampled_before )) calls"
    # (g): the limit global: a rate-limit call per request.
    limit_on global
    calls_before=$(rls_calls)
  elif [ "$p" = submit ]; then
    log "(g): the edge asked the ratelimit service about $(( $(rls_calls) - calls_before )) calls"
    # (f): SubmitTask as (c): an edge limit, 10% traced.
    limit_on edge
    CALL_NOW=$SUBMIT_CALL DATA_NOW=$SUBMIT_DATA
    submit_counted_start=$(edge_counted) submit_calls_start=$(rls_calls)
  fi
  log "$p (${target[$p]}): warm-up"
  ghz_run "$tmp/$p-warmup.json" "${target[$p]}" -c "$CONCURRENCY" -n 5000
  n=$(node -e 'const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")); console.log(Math.max(5000, Math.round(r.rps * Number(process.argv[2]))))' "$tmp/$p-warmup.json" "$SECONDS_PER_RUN")
  if [ "$p" = submit ]; then drained=$(wait_drained); log "submit: the warm-up's tasks drained in $drained s"; fi
  log "$p: -c $CONCURRENCY, $n calls (about ${SECONDS_PER_RUN} s)"
  node bench/mesh/cpu.mjs snapshot "$tmp/status.json" >"$tmp/$p-cpu-before.json"
  ghz_run "$tmp/$p-closed.json" "${target[$p]}" -c "$CONCURRENCY" -n "$n"
  node bench/mesh/cpu.mjs snapshot "$tmp/status.json" >"$tmp/$p-cpu-after.json"
  node bench/mesh/cpu.mjs per-call "$tmp/$p-cpu-before.json" "$tmp/$p-cpu-after.json" "$n" >"$tmp/$p-cpu.json"
  if [ "$p" = submit ]; then drained=$(wait_drained); log "submit: the closed run's $n tasks drained $drained s after its last submit"; fi
  log "$p: --rps $RATE, $((RATE * SECONDS_PER_RUN)) calls"
  ghz_run "$tmp/$p-rate.json" "${target[$p]}" -c "$CONCURRENCY" --rps "$RATE" -n "$((RATE * SECONDS_PER_RUN))"
done
drained=$(wait_drained)
log "(f): the rate run's tasks drained $drained s after its last submit; the edge counted $(( $(edge_counted) - submit_counted_start )) calls against its own limit and asked the ratelimit service about $(( $(rls_calls) - submit_calls_start ))"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table ---------------------------------------------------------------
node - "$tmp" "$CONCURRENCY" "$RATE" <<'EOF'
const { readFileSync } = require("node:fs");
const [dir, concurrency, rate] = process.argv.slice(2);
const read = (name) => JSON.parse(readFileSync(`${dir}/${name}.json`, "utf8"));
const ms = (ns) => (ns / 1e6).toFixed(2);
const pct = (r, p) => r.latencyDistribution?.find((d) => d.percentage === p)?.latency;
const codes = (r) => Object.entries(r.statusCodeDistribution ?? {}).map(([c, n]) => `${c} ${n.toLocaleString("en")}`).join(", ");
const rows = [
  ["direct", "(a) direct to the coordinator app"],
  ["bare", "(m) one bare Envoy (h2c, router only) → app"],
  ["sidecar", "(b) worker-0 sidecar outbound → mTLS → coordinator-0 sidecar inbound → app"],
  ["edge", "(c) edge → mTLS → coordinator-0 sidecar inbound → app, JWT, a limit counted by the edge, 10% traced"],
  ["edge-nojwt", "(c-jwt) as (c), the token check off (a second edge without jwt_authn; the app answers UNAUTHENTICATED)"],
  ["edge-traced", "(c100) as (c), every call traced (the development default)"],
  ["edge-global", "(g) as (c), the limit global (a call to the ratelimit service per request)"],
  ["submit", "(f) SubmitTask through the edge as (c); each call creates an `echo` task the workers run"],
];
const results = {};
console.log(`| path | c=${concurrency}: calls/s | c=${concurrency}: p50 / p99 ms | ${rate}/s: achieved calls/s | ${rate}/s: p50 / p99 ms | status codes (c=${concurrency}; ${rate}/s) |`);
console.log("| --- | --- | --- | --- | --- | --- |");
for (const [key, label] of rows) {
  const closed = read(`${key}-closed`), open = read(`${key}-rate`);
  results[key] = { closed, open };
  console.log(`| ${label} | ${Math.round(closed.rps).toLocaleString("en")} (${closed.count.toLocaleString("en")} in ${(closed.total / 1e9).toFixed(1)} s) | ${ms(pct(closed, 50))} / ${ms(pct(closed, 99))} | ${Math.round(open.rps).toLocaleString("en")} | ${ms(pct(open, 50))} / ${ms(pct(open, 99))} | ${codes(closed)}; ${codes(open)} |`);
}
const d = (k, p, which) => (pct(results[k][which], p) - pct(results.direct[which], p)) / 1e6;
console.log("");
console.log(`Added over (a) at ${rate}/s: one bare Envoy p50 +${d("bare", 50, "open").toFixed(2)} ms, p99 +${d("bare", 99, "open").toFixed(2)} ms; one sidecar pair p50 +${d("sidecar", 50, "open").toFixed(2)} ms, p99 +${d("sidecar", 99, "open").toFixed(2)} ms; edge + sidecars p50 +${d("edge", 50, "open").toFixed(2)} ms, p99 +${d("edge", 99, "open").toFixed(2)} ms.`);
console.log(`Tracing every call against 10% ((c100) against (c)): ${Math.round(results["edge-traced"].closed.rps).toLocaleString("en")} against ${Math.round(results.edge.closed.rps).toLocaleString("en")} calls/s at ${concurrency} connections (${(100 * (1 - results["edge-traced"].closed.rps / results.edge.closed.rps)).toFixed(0)}% fewer).`);
console.log(`A global limit against an edge one ((g) against (c)): ${Math.round(results["edge-global"].closed.rps).toLocaleString("en")} against ${Math.round(results.edge.closed.rps).toLocaleString("en")} calls/s at ${concurrency} connections.`);
console.log("");
console.log(`Where a call's CPU goes in the closed runs (ms of CPU per call, by process with all it started, from /proc; "rest" is the machine's other busy time: ghz, the kernel):`);
console.log("");
const cpu = Object.fromEntries(rows.map(([k]) => [k, JSON.parse(readFileSync(`${dir}/${k}-cpu.json`, "utf8"))]));
const names = [...new Set(rows.flatMap(([k]) => cpu[k].rows.filter(([, ms]) => ms >= 0.01).map(([n]) => n)))];
console.log(`| path | total | ${names.join(" | ")} | rest |`);
console.log(`| --- | --- | ${names.map(() => "---").join(" | ")} | --- |`);
for (const [k, label] of rows) {
  const by = Object.fromEntries(cpu[k].rows);
  console.log(`| ${label.slice(0, label.indexOf(")") + 1)} | ${cpu[k].total.toFixed(3)} | ${names.map((n) => (by[n] ?? 0).toFixed(3)).join(" | ")} | ${cpu[k].rest.toFixed(3)} |`);
}
console.log("");
console.log(`The token check ((c) against (c-jwt)): ${Math.round(results.edge.closed.rps).toLocaleString("en")} against ${Math.round(results["edge-nojwt"].closed.rps).toLocaleString("en")} calls/s at ${concurrency} connections; the edge's CPU per call ${(Object.fromEntries(cpu.edge.rows).edge ?? 0).toFixed(3)} ms against ${(Object.fromEntries(cpu["edge-nojwt"].rows)["edge-no-jwt"] ?? 0).toFixed(3)} ms without it.`);
const errors = new Set(rows.filter(([k]) => k !== "submit").flatMap(([k]) => [results[k].closed, results[k].open]).flatMap((r) => Object.keys(r.errorDistribution ?? {})));
console.log(`Answers: ${[...errors].map((e) => `\`${e.length > 140 ? e.slice(0, 140) + "…" : e}\``).join("; ")}`);
EOF
echo ""
echo "Command: \`npm run bench:mesh\` (each run: ${PIN[*]:+${PIN[*]} }ghz --insecure --protoset packages/contracts/gen/descriptor.binpb --call $CALL -d '$DATA' --cpus 1 --count-errors --connections 1 -c $CONCURRENCY -n N, and with --rps $RATE -n $((RATE * SECONDS_PER_RUN)); (f) --call $SUBMIT_CALL -d '$SUBMIT_DATA'), started $started."
echo "Machine: $machine; load average at start $load_start, at end $load_end; \`up\` with TASKMESH_TRACE_SAMPLING=$TASKMESH_TRACE_SAMPLING."
