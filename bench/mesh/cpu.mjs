// CPU time of every process of a running `taskmesh up`, for bench:mesh's
// "where a call's CPU goes" table.
//
//   node bench/mesh/cpu.mjs snapshot <status.json>        prints a snapshot (JSON)
//   node bench/mesh/cpu.mjs per-call <before> <after> <calls>   prints ms of CPU per call by process
//
// A process counts with everything it started, however deep (Postgres's
// backends count as postgres, whatever session or group they are in), read
// from /proc/<pid>/stat (utime + stime, in clock ticks of 10 ms). The
// machine's busy time (/proc/stat) minus those is "the rest": ghz, the
// benchmark script, the kernel's own threads.
import { readdirSync, readFileSync } from "node:fs";

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** utime + stime and the parent of one process, or undefined when it is gone. */
function stat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}

function snapshot(statusFile) {
  const status = JSON.parse(readFileSync(statusFile, "utf8"));
  const named = new Map(status.processes.filter((p) => p.pid).map((p) => [p.pid, p.name]));
  const all = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const s = stat(Number(entry));
    if (s) all.set(Number(entry), s);
  }
  /** The named process a pid is or descends from. */
  const owner = (pid) => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = all.get(p)?.ppid ?? 0, hops++) if (named.has(p)) return named.get(p);
    return undefined;
  };
  const byName = {};
  for (const [pid, s] of all) {
    const name = owner(pid);
    if (name) byName[name] = (byName[name] ?? 0) + s.ticks;
  }
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const busy = cpu.reduce((a, b) => a + b, 0) - cpu[3] - cpu[4]; // all but idle and iowait
  return { byName, busy };
}

function perCall(before, after, calls) {
  const rows = Object.keys(after.byName).map((name) => [name, (after.byName[name] - (before.byName[name] ?? 0)) * TICK_MS / calls]);
  const known = rows.reduce((sum, [, ms]) => sum + ms, 0);
  const total = (after.busy - before.busy) * TICK_MS / calls;
  return { total, rest: total - known, rows: rows.filter(([, ms]) => ms >= 0.005).sort((a, b) => b[1] - a[1]) };
}

const [command, ...args] = process.argv.slice(2);
if (command === "snapshot") console.log(JSON.stringify(snapshot(args[0])));
else if (command === "per-call") {
  const [before, after] = args.slice(0, 2).map((f) => JSON.parse(readFileSync(f, "utf8")));
  console.log(JSON.stringify(perCall(before, after, Number(args[2]))));
} else {
  console.error("usage: cpu.mjs snapshot <status.json> | per-call <before.json> <after.json> <calls>");
  process.exit(2);
}
