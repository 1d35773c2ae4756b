import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { readState, requestScale } from "../state.js";
import { alive } from "../supervisor.js";
import { stdio, type Io } from "./io.js";
import { UsageError } from "./usage-error.js";

/** Most replicas `taskmesh scale` starts of one service on this machine. */
export const MAX_REPLICAS = 16;

/** `worker=3` → { service: "worker", replicas: 3 }; a usage error naming what is wrong otherwise. */
export function parseScale(arg: string): { service: string; replicas: number } {
  const match = /^([a-z][a-z0-9-]*)=(\d+)$/.exec(arg.trim());
  if (!match) throw new UsageError(`expected <service>=<replicas>, e.g. worker=3; got ${JSON.stringify(arg)}`);
  const replicas = Number(match[2]);
  if (replicas < 1 || replicas > MAX_REPLICAS) throw new UsageError(`${match[1]}: replicas must be 1 to ${MAX_REPLICAS}, got ${replicas}`);
  return { service: match[1]!, replicas };
}

/**
 * `taskmesh scale <service>=<n>`: asks the running supervisor to run `n`
 * replicas of a service (new ones join with their sidecars; removed ones
 * drain first) and returns once it has, printing the replicas' names.
 */
export async function scale(arg: string, io: Io = stdio, timeoutMs = 180_000): Promise<number> {
  const { service, replicas } = parseScale(arg);
  const state = readState();
  if (!state || !alive(state.supervisorPid)) throw new Error("nothing is running: start it with npx taskmesh up");
  if (state.phase !== "ready") throw new Error(`the run is ${state.phase}, not ready: try again once npx taskmesh status shows it ready`);
  const id = randomUUID();
  requestScale({ id, service, replicas });
  const started = Date.now();
  for (;;) {
    const now = readState();
    if (!now || !alive(now.supervisorPid)) throw new Error("the run stopped while scaling");
    if (now.scale?.id === id && now.scale.outcome === "failed") throw new Error(now.scale.error ?? "scaling failed");
    if (now.scale?.id === id && now.scale.outcome === "done") {
      const names = now.processes.filter((p) => p.kind === "service" && p.service === service).map((p) => p.name);
      io.out(`taskmesh: ${service}: ${names.length} replica${names.length === 1 ? "" : "s"} (${names.join(", ")}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return 0;
    }
    if (Date.now() - started > timeoutMs) throw new Error(`${service} was not scaled to ${replicas} within ${timeoutMs / 1000} s: see npx taskmesh status and logs`);
    await sleep(200);
  }
}
