import { join } from "node:path";
import { loadTopology, localDocs, meshEndpoints, writeEndpoints, writeMesh, writeSidecar, type AccessLogOptions, type MeshInstance, type WrittenEnvoy } from "@taskmesh/mesh";
import { parseDuration } from "@taskmesh/kit/env";
import { edgeReflection, startsAfter, type Topology } from "@taskmesh/mesh/topology";
import { ensureMeshCerts } from "./certs.js";
import { checkHealth } from "./health.js";
import type { ProcessSpec } from "./process-spec.js";
import { jaegerSpec, jaegerUiDir } from "./provision/jaeger.js";
import { kafkaSpec } from "./provision/kafka.js";
import { envoySpec, jwksFetched } from "./provision/envoy.js";
import { postgresSpec, postgresUrl } from "./provision/postgres.js";
import { redisSpec, redisUrl } from "./provision/redis.js";
import { fixedPorts } from "./ports.js";
import { freePort, localSecret, useRunPorts } from "./secrets.js";
import { ROOT } from "./provision/versions.js";
import { ensureBuild } from "../../../scripts/build.mjs";

/** TASKMESH_TRACE_SAMPLING: the percentage of requests traced, 0 to 100 (default 100, always on, as in development). */
export function tracePercent(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.TASKMESH_TRACE_SAMPLING?.trim();
  if (!raw) return 100;
  const n = Number(raw.replace(/%$/, ""));
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new Error(`TASKMESH_TRACE_SAMPLING: expected a percentage from 0 to 100, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * Which requests every Envoy logs: TASKMESH_ACCESS_LOG, `failed-or-slow`
 * (the default) or `all`; TASKMESH_ACCESS_LOG_SLOW, what counts as slow, a
 * duration such as `250ms` or `1s` (default 250ms).
 */
export function accessLogOptions(env: NodeJS.ProcessEnv = process.env): AccessLogOptions {
  const mode = env.TASKMESH_ACCESS_LOG?.trim() || "failed-or-slow";
  if (mode !== "all" && mode !== "failed-or-slow") throw new Error(`TASKMESH_ACCESS_LOG: expected all or failed-or-slow, got ${JSON.stringify(mode)}`);
  const raw = env.TASKMESH_ACCESS_LOG_SLOW?.trim();
  const slowMs = raw ? parseDuration(raw) : undefined;
  if (raw && slowMs === undefined) throw new Error(`TASKMESH_ACCESS_LOG_SLOW: expected a duration like 250ms or 1s, got ${JSON.stringify(raw)}`);
  return { all: mode === "all", ...(slowMs !== undefined ? { slowMs } : {}) };
}

export { fixedPorts } from "./ports.js";

/**
 * The services `up` runs, with their default replica counts and what must be
 * ready before each starts, as deploy/topology.yaml says (`replicas`,
 * `needs`, and the services each calls: {@link startsAfter}). The ledger
 * and identity reach Kafka only from their outbox relays, which keep rows
 * until Kafka takes them (and connect on their first send), so they start
 * without waiting for it.
 */
export const SERVICES: Readonly<Record<string, { replicas: number; dependsOn: readonly string[] }>> = (() => {
  const topology = loadTopology();
  return Object.fromEntries(Object.entries(topology.services).map(([name, s]) => [name, { replicas: s.replicas, dependsOn: startsAfter(topology, name) }]));
})();

/** Where `up` keeps the bootstrap admin API key's secret (0600), which `taskmesh token` exchanges for a token. */
export function bootstrapKeyFile(stateDir: string): string {
  return join(stateDir, "bootstrap-api-key");
}

/**
 * What only some services get: identity's key-encryption key and its
 * bootstrap key file; the service that answers the edge's reflection, the
 * names of every service the edge exposes.
 */
function serviceEnv(service: string, stateDir: string, topology: Topology): Record<string, string> {
  const reflection = edgeReflection(topology);
  return {
    ...(service === "identity" ? {
      TASKMESH_IDENTITY_KEK: localSecret(join(stateDir, "identity.kek"), 32, "base64"),
      TASKMESH_BOOTSTRAP_KEY_FILE: bootstrapKeyFile(stateDir),
    } : {}),
    ...(reflection?.target === service ? { TASKMESH_REFLECT_SERVICES: reflection.services.join(",") } : {}),
  };
}

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
  /** Jaeger goes in {@link Plan.later} instead of {@link Plan.specs}: it is still being built, and starts once it is. */
  readonly jaegerLater?: boolean;
}

/** What `up` runs: the processes in dependency order, and the database URL the services use. */
export interface Plan {
  readonly specs: readonly ProcessSpec[];
  readonly databaseUrl: string;
  /** Processes that start after the others are ready, once what they need is built (Jaeger with {@link PlanOptions.jaegerLater}). */
  readonly later: readonly ProcessSpec[];
  /** Replicas added to (and taken from) the run while it goes on. */
  readonly replicas: Replicas;
}

/** Adding replicas to a running system (`taskmesh scale`). */
export interface Replicas {
  /**
   * Why `service`'s replicas cannot change while the run goes on, or
   * undefined when they can (every service can: the Envoys of its callers
   * follow its endpoints file).
   */
  whyFixed(service: string): string | undefined;
  /**
   * The processes of replica `index` of `service`: its sidecar (its config
   * written now), then the service, after what it depends on. `name` names
   * the replica instead of `<service>-<index>` (a worker running agents of
   * its own); `env` adds to its environment; `run` replaces the service's
   * program (a worker written in another language).
   */
  add(service: string, index: number, options?: {
    readonly name?: string; readonly env?: Readonly<Record<string, string>>; readonly run?: { readonly command: string; readonly args: readonly string[] };
  }): Promise<ProcessSpec[]>;
  /** Replicas {@link add} made are ready: every caller's Envoy reaches them from now on (their service's endpoints file lists them). */
  joined(names: readonly string[]): void;
  /** Replicas about to stop: no caller's Envoy sends them new calls from now on. */
  leaving(names: readonly string[]): void;
}

/**
 * Node's arguments to run `services/<service>/src/main.ts` under the
 * telemetry preload, both compiled ahead of time (scripts/build.mjs; built
 * now when the sources changed).
 */
export function serviceArgs(service: string, build = ensureBuild(ROOT)): string[] {
  return ["--import", join(build, "packages/kit/src/telemetry/register.js"), join(build, `services/${service}/src/main.js`)];
}

/**
 * A service instance: `node` with the telemetry preload running `services/<service>/src/main.ts`,
 * ready when its gRPC health is SERVING; its Prometheus `/metrics` on `metricsPort`.
 */
function serviceSpec(name: string, service: string, port: number, metricsPort: number, env: Record<string, string>, dependsOn: readonly string[], build: string): ProcessSpec {
  const address = `127.0.0.1:${port}`;
  return {
    name,
    kind: "service",
    service,
    command: process.execPath,
    args: serviceArgs(service, build),
    cwd: ROOT,
    // A worker is known by its instance name, so a restarted one takes its session back.
    env: {
      ...env, TASKMESH_LISTEN: address, TASKMESH_METRICS_LISTEN: `127.0.0.1:${metricsPort}`, TASKMESH_INSTANCE: name, OTEL_SERVICE_NAME: service,
      ...(service === "worker" ? { TASKMESH_WORKER_ID: name } : {}),
    },
    ports: { app: port, metrics: metricsPort },
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
  useRunPorts();
  const ports = fixedPorts();
  const specs: ProcessSpec[] = [];
  let databaseUrl = options.databaseUrl;
  const infra = new Set<string>(["redis", "kafka", "jaeger"]);
  if (!databaseUrl) {
    const pgOptions = { dataDir: join(options.stateDir, "postgres"), password: options.postgresPassword, port: ports.postgres };
    specs.push(await postgresSpec(pgOptions));
    databaseUrl = postgresUrl(pgOptions);
    infra.add("postgres");
  }
  const logDir = join(options.stateDir, "logs");
  const uiAssetsDir = jaegerUiDir();
  const jaeger = jaegerSpec({
    stateDir: join(options.stateDir, "jaeger"), logDir, uiPort: ports.jaegerUi,
    otlpGrpcPort: ports.otlpGrpc, otlpHttpPort: ports.otlpHttp, queryGrpcPort: ports.jaegerQueryGrpc,
    ...(uiAssetsDir ? { uiAssetsDir } : {}),
  });
  specs.push(
    redisSpec({ dataDir: join(options.stateDir, "redis"), port: ports.redis }),
    kafkaSpec({ dataDir: join(options.stateDir, "kafka"), logDir, port: ports.kafka, controllerPort: await freePort() }),
    ...(options.jaegerLater ? [] : [jaeger]),
  );
  const sampling = tracePercent();
  const env = {
    // One sampling rate for the mesh: the edge starts that share of traces, services follow their caller
    // and sample their own roots (background work) at the same rate.
    ...(sampling < 100 && !process.env.OTEL_TRACES_SAMPLER ? { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: String(sampling / 100) } : {}),
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl(ports.redis),
    KAFKA_BROKERS: `127.0.0.1:${ports.kafka}`,
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${ports.otlpGrpc}`,
    OTEL_TRACES_EXPORTER: process.env.OTEL_TRACES_EXPORTER ?? "otlp",
  };
  for (const name of Object.keys(options.replicas ?? {})) {
    if (!SERVICES[name]) throw new Error(`--replicas: no service ${name} (services: ${Object.keys(SERVICES).join(", ")})`);
  }
  // Every replica's ports first: each app listens on loopback and reaches every other service
  // through its own sidecar's outbound port; it starts after its sidecar and the replicas it depends on.
  // Each replica also gets its own metrics port (Prometheus text at /metrics, not behind the sidecar).
  const instances = new Map<string, MeshInstance[]>();
  const metricsPorts = new Map<string, number>();
  for (const [service, { replicas }] of Object.entries(SERVICES)) {
    const count = options.replicas?.[service] ?? replicas;
    const list: MeshInstance[] = [];
    for (let i = 0; i < count; i++) {
      list.push({ name: `${service}-${i}`, service, appPort: await freePort(), inboundPort: await freePort(), outboundPort: await freePort(), adminPort: await freePort() });
      metricsPorts.set(`${service}-${i}`, await freePort());
    }
    instances.set(service, list);
  }
  await ensureMeshCerts(options.stateDir);
  const topology = loadTopology();
  const build = ensureBuild(ROOT); // once for every instance: it checks every source's size and time
  // Every mesh cluster reads its endpoints from a file Envoy watches: a replica added or removed later is one rewrite.
  const endpointsDir = join(options.stateDir, "envoy", "endpoints");
  const mesh = writeMesh({
    topology, stateDir: options.stateDir, instances: [...instances.values()].flat(), otlpGrpcPort: ports.otlpGrpc, accessLog: accessLogOptions(), endpointsDir,
    edge: {
      port: ports.edge, adminPort: ports.edgeAdmin, descriptorSetPath: join(ROOT, "packages/contracts/gen/descriptor.binpb"), traceSamplingPercent: sampling, docs: localDocs(ROOT),
      console: { dir: join(build, "ui/console"), jaegerUrl: `http://127.0.0.1:${ports.jaegerUi}` },
    },
  });
  const identities = (instances.get("identity") ?? []).map((i) => i.name);
  const envoyOf = (envoy: WrittenEnvoy): ProcessSpec => envoySpec({
    name: envoy.kind === "edge" ? "edge" : `${envoy.name}-sidecar`, kind: envoy.kind, configPath: envoy.configPath, adminPort: envoy.ports.admin!, logDir,
    ...(envoy.service ? { service: envoy.service } : {}), ports: Object.fromEntries(Object.entries(envoy.ports).filter(([k]) => k !== "admin" && k !== "app")),
  });
  for (const envoy of mesh) {
    const spec = envoyOf(envoy);
    // The edge verifies tokens with identity's keys: it starts after identity and is ready once it has fetched them.
    specs.push(envoy.kind === "edge" && identities.length > 0
      ? { ...spec, dependsOn: identities, ready: async (signal) => (await spec.ready(signal)) && (await jwksFetched(envoy.ports.admin!, signal)) }
      : spec);
  }
  /** What an instance of `service` starts after: its infrastructure and every instance of the services it needs. */
  const prerequisites = (service: string): string[] => {
    const { dependsOn } = SERVICES[service]!;
    return [...dependsOn.filter((d) => infra.has(d)), ...dependsOn.flatMap((d) => (instances.get(d) ?? []).map((p) => p.name))];
  };
  const appSpec = (instance: MeshInstance, metricsPort: number, extraEnv: Readonly<Record<string, string>> = {}): ProcessSpec => serviceSpec(
    instance.name, instance.service, instance.appPort, metricsPort,
    { ...env, ...serviceEnv(instance.service, options.stateDir, topology), ...extraEnv, TASKMESH_UPSTREAM: `127.0.0.1:${instance.outboundPort}` },
    [...prerequisites(instance.service), `${instance.name}-sidecar`], build,
  );
  for (const service of Object.keys(SERVICES)) {
    for (const instance of instances.get(service)!) specs.push(appSpec(instance, metricsPorts.get(instance.name)!));
  }
  const meshContext = { topology, stateDir: options.stateDir, instances: [...instances.values()].flat(), otlpGrpcPort: ports.otlpGrpc, accessLog: accessLogOptions(), endpointsDir };
  /** The replicas each service's callers reach, as its endpoints file lists them. */
  const reached = new Map([...instances].map(([service, list]) => [service, [...list]]));
  let endpointsVersion = 0;
  const publish = (service: string): void => {
    writeEndpoints(endpointsDir, service, meshEndpoints(reached.get(service) ?? [], service), String(++endpointsVersion));
  };
  const added = new Map<string, MeshInstance>();
  const replicas: Replicas = {
    whyFixed(service) {
      if (!SERVICES[service]) return `no service ${service} (services: ${Object.keys(SERVICES).join(", ")})`;
      return undefined;
    },
    async add(service, index, extra = {}) {
      const why = replicas.whyFixed(service);
      if (why) throw new Error(why);
      const name = extra.name ?? `${service}-${index}`;
      const instance: MeshInstance = { name, service, appPort: await freePort(), inboundPort: await freePort(), outboundPort: await freePort(), adminPort: await freePort() };
      added.set(instance.name, instance);
      const app = appSpec(instance, await freePort(), extra.env);
      return [envoyOf(writeSidecar(meshContext, instance)), extra.run ? { ...app, command: extra.run.command, args: [...extra.run.args] } : app];
    },
    joined(names) {
      for (const name of names) {
        const instance = added.get(name);
        if (!instance) continue;
        added.delete(name);
        reached.set(instance.service, [...(reached.get(instance.service) ?? []).filter((i) => i.name !== name), instance]);
        publish(instance.service);
      }
    },
    leaving(names) {
      for (const [service, list] of reached) {
        const kept = list.filter((i) => !names.includes(i.name));
        if (kept.length === list.length) continue;
        reached.set(service, kept);
        publish(service);
      }
    },
  };
  return { specs, databaseUrl, later: options.jaegerLater ? [jaeger] : [], replicas };
}
