/**
 * The environment of a service instance in a container, the same
 * variables `up` gives it (packages/local/src/plan.ts) with the container's
 * addresses: which stores each service reaches, how, and where its secrets
 * are mounted.
 */
import { edgeReflection, type Topology } from "@taskmesh/mesh/topology";
import { PORTS } from "./layout.js";

/** The stores a service reaches directly (every other service it calls through its sidecar). */
export const STORES: Readonly<Record<string, readonly ("postgres" | "redis" | "kafka")[]>> = Object.freeze({
  config: ["postgres"],
  ledger: ["postgres", "kafka"], // kafka: the outbox relay
  coordinator: ["postgres", "redis"],
  worker: [],
  identity: ["postgres", "kafka"], // kafka: the audit relay
  ratelimit: ["redis"],
  events: ["kafka", "redis"],
});

/** Where a container finds its secret files (a mounted Secret or compose volume folder). */
export const SECRETS_DIR = "/run/secrets/taskmesh";

/** How the instances of one deployment reach the stores and the collector. */
export interface StoreAddresses {
  /** `postgres://taskmesh@postgres:5432/taskmesh`: no password (it comes from PGPASSFILE or a secret). */
  readonly postgresUrl: string;
  readonly redisUrl: string;
  readonly kafkaBrokers: string;
  /** `http://jaeger:4317`. */
  readonly otlpEndpoint: string;
  /** TASKMESH_TRACE_SAMPLING, in percent. @default 100 */
  readonly tracePercent?: number;
}

/**
 * The variables of an instance of `service`: its own addresses (the app on
 * loopback, its sidecar's outbound port, metrics on every address), the
 * stores it uses, tracing, and the service-specific ones. Secrets are not
 * values here: the caller adds how they arrive (a file, a Secret).
 */
export function serviceEnv(topology: Topology, service: string, stores: StoreAddresses): Record<string, string> {
  const uses = STORES[service];
  if (!uses) throw new Error(`no service ${service} (services: ${Object.keys(STORES).join(", ")})`);
  const sampling = stores.tracePercent ?? 100;
  const reflection = edgeReflection(topology);
  return {
    TASKMESH_LISTEN: `127.0.0.1:${PORTS.app}`,
    TASKMESH_UPSTREAM: `127.0.0.1:${PORTS.outbound}`,
    TASKMESH_METRICS_LISTEN: `0.0.0.0:${PORTS.metrics}`,
    OTEL_SERVICE_NAME: service,
    OTEL_EXPORTER_OTLP_ENDPOINT: stores.otlpEndpoint,
    OTEL_TRACES_EXPORTER: "otlp",
    // The edge starts that share of traces; services follow their caller and sample their own roots alike.
    ...(sampling < 100 ? { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: String(sampling / 100) } : {}),
    ...(uses.includes("postgres") ? { DATABASE_URL: stores.postgresUrl } : {}),
    ...(uses.includes("redis") ? { REDIS_URL: stores.redisUrl } : {}),
    ...(uses.includes("kafka") ? { KAFKA_BROKERS: stores.kafkaBrokers } : {}),
    ...(reflection?.target === service ? { TASKMESH_REFLECT_SERVICES: reflection.services.join(",") } : {}),
  };
}
