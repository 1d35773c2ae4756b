import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import Table from "cli-table3";
import pc from "picocolors";
import { JAEGER_UI_PLACEHOLDER_NOTE, jaegerUiDir } from "@taskmesh/local/provision/jaeger-ui";
import { localSecret } from "@taskmesh/local/secrets";
import { PAGE_TITLES, pageUrls, type Page } from "./open.js";
import { LineSplitter, lineHasTrace, parseTraceId, traceLines } from "./log-trace.js";
import { UsageError } from "@taskmesh/local/usage-error";
import { LOG_DIR, readState, STATE_DIR, type ProcessRecord, type RunState } from "@taskmesh/local/state";
import { alive } from "@taskmesh/local/supervisor";

/** A table, coloured only on a terminal. */
export function table(head: string[]): InstanceType<typeof Table> {
  const tty = process.stdout.isTTY === true;
  return new Table({ head, style: tty ? { head: ["cyan"] } : { head: [], border: [] } });
}

/** How a process's addresses are shown: URLs for what people open (a service's metrics included), host:port for the rest. */
function addressOf(p: ProcessRecord): string {
  const port = p.ports.app;
  if (p.name === "postgres" && port !== undefined) {
    return `postgres://postgres:${localSecret(join(STATE_DIR, "postgres.password"))}@127.0.0.1:${port}/taskmesh`;
  }
  if (p.name === "redis" && port !== undefined) return `redis://127.0.0.1:${port}`;
  return Object.entries(p.ports)
    .filter(([role]) => role !== "controller" && role !== "query-grpc")
    .map(([role, n]) => (role === "app" ? `127.0.0.1:${n}` : role === "ui" ? `http://127.0.0.1:${n}`
      : role === "metrics" ? `metrics http://127.0.0.1:${n}/metrics` : `${role} 127.0.0.1:${n}`))
    .join("  ");
}

/** Prints every process's address, the way `up` ends. */
export function printAddresses(state: RunState): void {
  const rows = table(["process", "address"]);
  for (const p of state.processes) rows.push([p.name, addressOf(p)]);
  console.log(rows.toString());
  const service = state.processes.find((p) => p.kind === "service");
  if (service?.ports.app) console.log(pc.dim(`try: grpcurl -plaintext 127.0.0.1:${service.ports.app} list`));
  if (state.processes.some((p) => p.name === "edge")) {
    const urls = pageUrls();
    const shown = (Object.keys(urls) as Page[]).filter((page) => page !== "jaeger" || state.processes.some((p) => p.name === "jaeger"));
    for (const page of shown) console.log(`${PAGE_TITLES[page].padEnd(10)} ${urls[page]}  ${pc.dim(`(taskmesh open ${page})`)}`);
  }
  if (state.processes.some((p) => p.name === "jaeger" && p.state === "building")) {
    console.log(pc.yellow("taskmesh: Jaeger is still being built (first run); its UI answers once it is done, with the spans sent meanwhile"));
  }
  if (state.processes.some((p) => p.name === "jaeger") && !hasJaegerUi()) console.log(pc.yellow(`taskmesh: ${JAEGER_UI_PLACEHOLDER_NOTE}`));
}

/** Whether this run's Jaeger serves a built UI (TASKMESH_JAEGER_UI_DIR, as the plan read it). */
function hasJaegerUi(): boolean {
  try {
    return jaegerUiDir() !== undefined;
  } catch {
    return false;
  }
}

/** The state with each process's liveness checked now (a killed supervisor leaves `stale` entries). */
function liveState(): RunState | undefined {
  const state = readState();
  if (!state) return undefined;
  const supervisorAlive = alive(state.supervisorPid);
  return {
    ...state,
    processes: state.processes.map((p) => ({
      ...p,
      state: !supervisorAlive ? "stale" as never : p.pid !== undefined && !alive(p.pid) && p.state === "running" ? "exited" as never : p.state,
    })),
  };
}

/**
 * The one address a script wants of a process: a service's or Envoy's own
 * port (`127.0.0.1:<port>`), Postgres's URL, a UI's URL, else its first port.
 */
function mainAddress(p: ProcessRecord): string | undefined {
  if (p.name === "postgres" || p.name === "redis") return addressOf(p);
  if (p.ports.ui !== undefined) return `http://127.0.0.1:${p.ports.ui}`;
  const port = p.ports.app ?? p.ports.inbound ?? Object.values(p.ports)[0];
  return port === undefined ? undefined : `127.0.0.1:${port}`;
}

/** `taskmesh status [--json] [--address <process>]`: every process of the run, with pid, state and ports; or one process's address. */
export function status(json: boolean, address?: string): number {
  const state = liveState();
  if (address !== undefined) {
    const p = state?.processes.find((candidate) => candidate.name === address);
    const found = p ? mainAddress(p) : undefined;
    if (!state) throw new UsageError("taskmesh is not running (start it with npm start, or npx taskmesh up -d)");
    if (!found) throw new UsageError(`no process ${address} in this run (processes: ${state.processes.map((q) => q.name).join(", ")})`);
    console.log(found);
    return 0;
  }
  if (json) {
    const processes = (state?.processes ?? []).map(({ name, kind, service, pid, state: s, ports }) => ({ name, kind, ...(service ? { service } : {}), ...(pid !== undefined ? { pid } : {}), state: s, ports }));
    console.log(JSON.stringify({ ...(state ? { supervisorPid: state.supervisorPid, phase: state.phase } : {}), processes }, null, 2));
    return 0;
  }
  if (!state) {
    console.log("taskmesh: not running (start it with npm start, or npx taskmesh up -d)");
    return 0;
  }
  console.log(`supervisor pid ${state.supervisorPid}, ${state.phase}${alive(state.supervisorPid) ? "" : pc.red(" (supervisor gone: run npx taskmesh down)")}`);
  const rows = table(["process", "kind", "pid", "state", "restarts", "address"]);
  for (const p of state.processes) {
    const colour = p.state === "running" ? pc.green : p.state === "starting" || p.state === "restarting" || p.state === "building" ? pc.yellow : pc.red;
    rows.push([p.name, p.kind, p.pid ?? "", colour(p.state), p.restarts ?? 0, addressOf(p)]);
  }
  console.log(rows.toString());
  return 0;
}

/** A log file read from where the last read stopped, a whole line at a time. */
export class LogReader {
  private offset = 0;
  private readonly lines = new LineSplitter();

  constructor(readonly file: string) {}

  /** Starts reading at the last `count` lines now in the file (at most its last 256 KiB). */
  tail(count: number): string[] {
    if (!existsSync(this.file)) return [];
    const from = Math.max(0, statSync(this.file).size - 256 * 1024);
    this.offset = from;
    const lines = this.read();
    // A read from inside the file may begin mid-line: that first line is dropped.
    return (from > 0 ? lines.slice(1) : lines).slice(-count);
  }

  /** Starts reading at what is appended from now on. */
  skipToEnd(): void {
    this.offset = existsSync(this.file) ? statSync(this.file).size : 0;
  }

  /** The whole lines appended since the last call (with `end`, also a last line without its newline). */
  read(end = false): string[] {
    if (!existsSync(this.file)) return [];
    const size = statSync(this.file).size;
    if (size < this.offset) this.offset = 0; // truncated
    const out: string[] = [];
    if (size > this.offset) {
      const fd = openSync(this.file, "r");
      try {
        const buffer = Buffer.alloc(size - this.offset);
        readSync(fd, buffer, 0, buffer.length, this.offset);
        out.push(...this.lines.push(buffer.toString("utf8")));
        this.offset = size;
      } finally {
        closeSync(fd);
      }
    }
    if (end) out.push(...this.lines.flush());
    return out;
  }
}

/**
 * `taskmesh logs [process] [-f] [--trace <id>]`: prints a process's log;
 * with follow, keeps printing what it appends. Without a process, the last
 * lines of every process's log, then with follow every new line of any of
 * them (a process started later included), each prefixed with its process.
 * With a trace id (or a traceparent), only the lines of that trace; without a
 * process, those of every process's log, in time order.
 */
export async function logs(name: string | undefined, follow: boolean, trace?: string): Promise<number> {
  const traceId = trace === undefined ? undefined : parseTraceId(trace);
  if (trace !== undefined && traceId === undefined) throw new UsageError(`--trace: expected a trace id (32 hex digits) or a traceparent, got ${JSON.stringify(trace)}`);
  if (name === undefined) return traceId === undefined ? allLogs(follow) : traceAcrossLogs(traceId, follow);
  const reader = new LogReader(join(LOG_DIR, `${name}.log`));
  if (!existsSync(reader.file)) {
    const known = readState()?.processes.map((p) => p.name).join(", ");
    console.error(`taskmesh: no log for ${name}${known ? ` (processes: ${known}, taskmesh)` : ""}`);
    return 1;
  }
  const drain = (end: boolean): void => {
    const lines = reader.read(end).filter((line) => traceId === undefined || lineHasTrace(line, traceId));
    if (lines.length > 0) process.stdout.write(`${lines.join("\n")}\n`);
  };
  drain(!follow);
  if (!follow) return 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    drain(false);
  }
}

/** Every log under `.taskmesh/logs/`, by process name. */
function logFiles(): Map<string, string> {
  if (!existsSync(LOG_DIR)) return new Map();
  return new Map(readdirSync(LOG_DIR).filter((f) => f.endsWith(".log")).sort().map((f) => [f.slice(0, -".log".length), join(LOG_DIR, f)]));
}

/** Lines of every process's log shown per process by `taskmesh logs` without a process. */
export const TAIL_LINES = 10;

/** The last {@link TAIL_LINES} lines of every process's log, then (with follow) each new line of any, prefixed with its process. */
async function allLogs(follow: boolean): Promise<number> {
  const files = logFiles();
  if (files.size === 0) {
    console.error(`taskmesh: no logs under ${LOG_DIR} (nothing has run in this state directory)`);
    return 1;
  }
  const width = Math.max(...[...files.keys()].map((n) => n.length));
  const print = (name: string, lines: readonly string[]): void => {
    for (const line of lines) process.stdout.write(`${pc.dim(`${name.padEnd(width)} |`)} ${line}\n`);
  };
  const readers = new Map<string, LogReader>();
  for (const [name, file] of files) {
    const reader = new LogReader(file);
    readers.set(name, reader);
    print(name, reader.tail(TAIL_LINES));
  }
  if (!follow) return 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    for (const [name, file] of logFiles()) if (!readers.has(name)) readers.set(name, new LogReader(file));
    for (const [name, reader] of readers) print(name, reader.read());
  }
}

/** The lines of one trace across every process's log, then (with follow) as they come. */
async function traceAcrossLogs(traceId: string, follow: boolean): Promise<number> {
  const readers = new Map([...logFiles()].map(([process, file]) => [process, new LogReader(file)]));
  const print = (lines: ReturnType<typeof traceLines>): void => {
    for (const { process: name, line } of lines) process.stdout.write(`${pc.dim(`${name} |`)} ${line}\n`);
  };
  print(traceLines(new Map([...readers].map(([name, r]) => [name, r.read(!follow).join("\n")])), traceId));
  if (!follow) return 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    for (const [name, file] of logFiles()) if (!readers.has(name)) readers.set(name, new LogReader(file));
    print(traceLines(new Map([...readers].map(([name, r]) => [name, r.read().join("\n")])), traceId));
  }
}

/** `taskmesh health`: the gRPC health of every service instance, in a table; non-zero when one is not SERVING. */
export async function health(json: boolean): Promise<number> {
  const state = readState();
  const services = (state?.processes ?? []).filter((p) => p.kind === "service" && p.ports.app !== undefined);
  // gRPC is loaded only by this command (status and logs need none).
  const { checkHealth } = await import("@taskmesh/local/health");
  const rows = await Promise.all(services.map(async (p) => ({ name: p.name, address: `127.0.0.1:${p.ports.app}`, status: await checkHealth(`127.0.0.1:${p.ports.app}`) })));
  if (json) {
    console.log(JSON.stringify(rows, null, 2));
  } else if (rows.length === 0) {
    console.log("taskmesh: no service is running");
  } else {
    const out = table(["instance", "address", "health"]);
    for (const r of rows) out.push([r.name, r.address, r.status === "SERVING" ? pc.green(r.status) : pc.red(r.status)]);
    console.log(out.toString());
  }
  return rows.length > 0 && rows.every((r) => r.status === "SERVING") ? 0 : 1;
}
