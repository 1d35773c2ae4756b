# Sourced by the benchmark scripts that run the whole system (bench/mesh,
# bench/cli, bench/start): a state directory of its own, a teardown on any
# exit, free ports for every fixed port of `up` (and `free_ports N` for more), `bench_up`, which starts the
# system in the background, and `machine_base`, the machine's line. Needs
# `log` and ROOT (the checkout, as the cwd) first.

tmp=$(mktemp -d)
chmod 755 "$tmp" # Postgres (as user postgres when root) must reach its data directory below
export TASKMESH_STATE_DIR=$tmp/state
unset DATABASE_URL
taskmesh() { node scripts/taskmesh.mjs "$@"; }
cleanup() {
  trap - EXIT INT TERM
  log "taskmesh down"
  taskmesh down >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# $1 free ports on 127.0.0.1, on one line (held open together, so all differ).
free_ports() {
  node -e '
    const net = require("node:net");
    const servers = Array.from({ length: Number(process.argv[1]) }, () => net.createServer().listen(0, "127.0.0.1"));
    Promise.all(servers.map((s) => new Promise((r) => s.on("listening", r)))).then(() => {
      console.log(servers.map((s) => s.address().port).join(" "));
      servers.forEach((s) => s.close());
    });' "$1"
}

# Free ports for every fixed port of `up`.
read -r -a ports < <(free_ports 9)
i=0
for variable in POSTGRES REDIS KAFKA JAEGER OTLP_GRPC OTLP_HTTP JAEGER_GRPC EDGE EDGE_ADMIN; do
  export "TASKMESH_${variable}_PORT=${ports[$i]}"
  i=$((i + 1))
done

# `taskmesh up -d` on that state and those ports; its output goes to $tmp/up.log (printed if it fails).
bench_up() {
  log "taskmesh up -d (state in $TASKMESH_STATE_DIR)"
  taskmesh up -d >"$tmp/up.log" 2>&1 || { cat "$tmp/up.log" >&2; exit 1; }
}

# The machine, for a benchmark's figures: cores, processor and memory.
machine_base() {
  echo "nproc $(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(grep -o 'MemTotal:.*' /proc/meminfo | awk '{printf "%.0f GiB", $2/1048576}')"
}
