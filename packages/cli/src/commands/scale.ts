import { randomUUID } from "node:crypto";
import { askSupervisor, readState, requestScale } from "@taskmesh/local/state";
import { stdio, type Io } from "./io.js";
import { UsageError } from "@taskmesh/local/usage-error";

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
  const id = randomUUID();
  const started = Date.now();
  await askSupervisor(`scaling ${service} to ${replicas}`, () => requestScale({ id, service, replicas }), (state) => (state.scale?.id === id ? state.scale : undefined), timeoutMs);
  const names = (readState()?.processes ?? []).filter((p) => p.kind === "service" && p.service === service).map((p) => p.name);
  io.out(`taskmesh: ${service}: ${names.length} replica${names.length === 1 ? "" : "s"} (${names.join(", ")}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return 0;
}
