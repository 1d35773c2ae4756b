import { join } from "node:path";
import { checkHealth } from "./health.js";
import type { ProcessSpec } from "./process-spec.js";
import { postgresSpec, postgresUrl } from "./provision/postgres.js";
import { freePort } from "./secrets.js";
import { ROOT } from "./provision/versions.js";

/** The fixed addresses of the design ("Topology and ports"), each overridable by its variable. */
export const FIXED_PORTS = {
  postgres: Number(process.env.TASKMESH_POSTGRES_PORT ?? 15432),
} as const;

/** The services `up` runs, with their default replica counts and what they need. */
export const SERVICES: Readonly<Record<string, { replicas: number; dependsOn: readonly string[] }>> = {
  config: { replicas: 1, dependsOn: ["postgres"] },
};

/** Options of {@link buildPlan}. */
export interface PlanOptions {
  /** `.taskmesh/` */
  readonly stateDir: string;
  /** The Postgres password (generated at first start). */
  readonly postgresPassword: string;
  /** Replicas per service, e.g. `{ config: 2 }`; the rest keep their defaults. */
  readonly replicas?: Readonly<Record<string, number>>;
  /** Use this Postgres instead of starting one (DATABASE_URL). */
  readonly databaseUrl?: string;
}

/** What `up` runs: the processes in dependency order, and the database URL the services use. */
export interface Plan {
  readonly specs: readonly ProcessSpec[];
  readonly databaseUrl: string;
}

/** A service instance: `node` with the telemetry preload running `services/<service>/src/main.ts`, ready when its gRPC health is SERVING. */
function serviceSpec(service: string, index: number, port: number, env: Record<string, string>, dependsOn: readonly string[]): ProcessSpec {
  const name = `${service}-${index}`;
  const address = `127.0.0.1:${port}`;
  return {
    name,
    kind: "service",
    service,
    command: process.execPath,
    args: ["--import", "tsx", "--import", "./services/kit/src/telemetry/register.ts", `services/${service}/src/main.ts`],
    cwd: ROOT,
    env: { ...env, TASKMESH_LISTEN: address, TASKMESH_INSTANCE: name, OTEL_SERVICE_NAME: service },
    ports: { app: port },
    dependsOn,
    ready: async () => (await checkHealth(address)) === "SERVING",
    stopGraceMs: 15_000,
  };
}

/**
 * The local run: infrastructure on the design's fixed ports, then every
 * service replica on a port allocated now, each depending on what it needs.
 */
export async function buildPlan(options: PlanOptions): Promise<Plan> {
  const specs: ProcessSpec[] = [];
  let databaseUrl = options.databaseUrl;
  const infra = new Set<string>();
  if (!databaseUrl) {
    const pgOptions = { dataDir: join(options.stateDir, "postgres"), password: options.postgresPassword, port: FIXED_PORTS.postgres };
    specs.push(await postgresSpec(pgOptions));
    databaseUrl = postgresUrl(pgOptions);
    infra.add("postgres");
  }
  const env = {
    DATABASE_URL: databaseUrl,
    OTEL_TRACES_EXPORTER: process.env.OTEL_TRACES_EXPORTER ?? "none",
  };
  for (const [service, { replicas, dependsOn }] of Object.entries(SERVICES)) {
    const count = options.replicas?.[service] ?? replicas;
    for (let i = 0; i < count; i++) {
      specs.push(serviceSpec(service, i, await freePort(), env, dependsOn.filter((d) => infra.has(d))));
    }
  }
  for (const name of Object.keys(options.replicas ?? {})) {
    if (!SERVICES[name]) throw new Error(`--replicas: no service ${name} (services: ${Object.keys(SERVICES).join(", ")})`);
  }
  return { specs, databaseUrl };
}
