import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import Table from "cli-table3";
import pc from "picocolors";
import { checkHealth } from "../health.js";
import { localSecret } from "../secrets.js";
import { LOG_DIR, readState, STATE_DIR, type ProcessRecord, type RunState } from "../state.js";
import { alive } from "../supervisor.js";

/** A table, coloured only on a terminal. */
export function table(head: string[]): InstanceType<typeof Table> {
  const tty = process.stdout.isTTY === true;
  return new Table({ head, style: tty ? { head: ["cyan"] } : { head: [], border: [] } });
}

/** How a process's addresses are shown: URLs for what people open, host:port for the rest. */
function addressOf(p: ProcessRecord): string {
  const port = p.ports.app;
  if (p.name === "postgres" && port !== undefined) {
    return `postgres://postgres:${localSecret(join(STATE_DIR, "postgres.password"))}@127.0.0.1:${port}/taskmesh`;
  }
  if (p.name === "redis" && port !== undefined) return `redis://127.0.0.1:${port}`;
  return Object.entries(p.ports)
    .filter(([role]) => role !== "controller" && role !== "query-grpc")
    .map(([role, n]) => (role === "app" ? `127.0.0.1:${n}` : role === "ui" ? `http://127.0.0.1:${n}` : `${role} 127.0.0.1:${n}`))
    .join("  ");
}

/** Prints every process's address, the way `up` ends. */
export function printAddresses(state: RunState): void {
  const rows = table(["process", "address"]);
  for (const p of state.processes) rows.push([p.name, addressOf(p)]);
  console.log(rows.toString());
  const service = state.processes.find((p) => p.kind === "service");
  if (service?.ports.app) console.log(pc.dim(`try: grpcurl -plaintext 127.0.0.1:${service.ports.app} list`));
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

/** `taskmesh status [--json]`: every process of the run, with pid, state and ports. */
export function status(json: boolean): number {
  const state = liveState();
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
    const colour = p.state === "running" ? pc.green : p.state === "starting" || p.state === "restarting" ? pc.yellow : pc.red;
    rows.push([p.name, p.kind, p.pid ?? "", colour(p.state), p.restarts ?? 0, addressOf(p)]);
  }
  console.log(rows.toString());
  return 0;
}

/** `taskmesh logs <process> [-f]`: prints a process's log; with follow, keeps printing what it appends. */
export async function logs(name: string, follow: boolean): Promise<number> {
  const file = join(LOG_DIR, `${name}.log`);
  if (!existsSync(file)) {
    const known = readState()?.processes.map((p) => p.name).join(", ");
    console.error(`taskmesh: no log for ${name}${known ? ` (processes: ${known}, taskmesh)` : ""}`);
    return 1;
  }
  let offset = 0;
  const drain = (): void => {
    const size = statSync(file).size;
    if (size < offset) offset = 0; // truncated
    if (size === offset) return;
    const fd = openSync(file, "r");
    try {
      const buffer = Buffer.alloc(size - offset);
      readSync(fd, buffer, 0, buffer.length, offset);
      process.stdout.write(buffer);
      offset = size;
    } finally {
      closeSync(fd);
    }
  };
  drain();
  if (!follow) return 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    drain();
  }
}

/** `taskmesh health`: the gRPC health of every service instance, in a table; non-zero when one is not SERVING. */
export async function health(json: boolean): Promise<number> {
  const state = readState();
  const services = (state?.processes ?? []).filter((p) => p.kind === "service" && p.ports.app !== undefined);
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
