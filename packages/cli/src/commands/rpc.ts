/**
 * What every command that calls a taskmesh service shares: finding the
 * service's address, running a call with a client that is always closed,
 * and printing a failed call's status the way grpcurl users expect.
 */
// The kit modules it needs, not the kit index (which loads Postgres, Kafka and OpenTelemetry's SDK too).
import { createClient, type MeshClient } from "@taskmesh/kit/client";
import { upstreamAddress } from "@taskmesh/kit/env";
import { Code, MeshError } from "@taskmesh/kit/errors";
import type { ServiceDefinitionLike } from "@taskmesh/kit/handlers";
import { readState } from "@taskmesh/local/state";

import { stdio, type Io } from "./io.js";

export { stdio, type Io } from "./io.js";

export { UsageError } from "@taskmesh/local/usage-error";

/**
 * The address of `service` to talk to: `--address`, else
 * TASKMESH_UPSTREAM_<SERVICE> (read as the services read it: one address, or
 * a list balanced round robin), else the first running instance in the run's
 * state file. Throws when there is none.
 */
export function serviceAddress(service: string, address: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const variable = `TASKMESH_UPSTREAM_${service.toUpperCase()}`;
  const fromEnv = env[variable]?.trim() ? upstreamAddress(service, { [variable]: env[variable] }) : undefined;
  const found = address ?? fromEnv
    ?? readState()?.processes.filter((p) => p.service === service && p.kind === "service" && p.state === "running").map((p) => `127.0.0.1:${p.ports.app}`)[0];
  if (!found) throw new Error(`no ${service} service: start taskmesh (npm start) or pass --address host:port`);
  return found;
}

/** Prints a MeshError the way grpcurl users expect: code, reason, violations; returns the exit code, 1. */
export function report(error: unknown, io: Io = stdio): number {
  const e = error instanceof MeshError ? error : MeshError.from(error);
  io.err(`${Code[e.code]} (${e.reason}): ${e.message}`);
  for (const v of e.violations) io.err(`  ${v.field}: ${v.description}`);
  for (const [k, v] of Object.entries(e.metadata)) io.err(`  ${k} = ${v}`);
  return 1;
}

/**
 * Runs `call` with `client` and returns its exit code; a failed call is
 * reported (exit 1). The client is closed either way.
 */
export async function using<C extends { close(): void }>(client: C, call: (client: C) => Promise<number>, io: Io = stdio): Promise<number> {
  try {
    return await call(client);
  } catch (error) {
    return report(error, io);
  } finally {
    client.close();
  }
}

/** {@link using} a client of `definition` at `address`. */
export function withClient<D extends ServiceDefinitionLike>(definition: D, address: string, call: (client: MeshClient<D>) => Promise<number>, io: Io = stdio): Promise<number> {
  return using(createClient(definition, address), call, io);
}
