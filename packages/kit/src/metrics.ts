/**
 * Prometheus metrics for every service: the process registry, the admin HTTP
 * endpoint serving it (`GET /metrics`), the RPC series the server records for
 * every call, a scrape-time cache for series computed by queries, and the
 * Kafka consumer lag collector.
 */

import { createServer, type Server } from "node:http";
import type { Admin } from "kafkajs";
import { Counter, Gauge, Histogram, collectDefaultMetrics, register, type Registry } from "prom-client";
import type { Logger } from "pino";

/** The process registry (prom-client's default): every series of a service process, served at `/metrics`. */
export const processRegistry: Registry = register;

/**
 * Buckets of `rpc_server_duration_seconds`: from 0.5 ms (a cached read) to
 * 30 s (a long batch), about ×2.5 apart.
 */
export const RPC_DURATION_BUCKETS: readonly number[] = Object.freeze([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);

/** Records one call: started when it arrives, ended once with the gRPC code name it was answered with. */
export interface RpcObserver {
  /** Starts a call of `path` (`/pkg.Service/Method`); the returned function ends it with a code name (`OK`, `NOT_FOUND`, ...). */
  start(path: string): (code: string) => void;
}

/** The RPC series of a registry: `rpc_server_requests_total`, `rpc_server_duration_seconds`, `rpc_server_in_flight`. */
class RpcMetrics implements RpcObserver {
  private readonly requests: Counter<"service" | "method" | "code">;
  private readonly duration: Histogram<"service" | "method" | "code">;
  private readonly inFlight: Gauge<"service" | "method">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({ name: "rpc_server_requests_total", help: "gRPC calls answered, by service, method and status code (streams count when they end).", labelNames: ["service", "method", "code"], registers });
    this.duration = new Histogram({ name: "rpc_server_duration_seconds", help: "Time from a call's arrival to its answer (for streams: to their end), in seconds.", labelNames: ["service", "method", "code"], buckets: [...RPC_DURATION_BUCKETS], registers });
    this.inFlight = new Gauge({ name: "rpc_server_in_flight", help: "gRPC calls received and not answered yet (open streams included).", labelNames: ["service", "method"], registers });
  }

  start(path: string): (code: string) => void {
    const slash = path.lastIndexOf("/");
    const service = path.slice(1, slash);
    const method = path.slice(slash + 1);
    const began = process.hrtime.bigint();
    this.inFlight.inc({ service, method });
    let ended = false;
    return (code) => {
      if (ended) return;
      ended = true;
      this.inFlight.dec({ service, method });
      this.requests.inc({ service, method, code });
      this.duration.observe({ service, method, code }, Number(process.hrtime.bigint() - began) / 1e9);
    };
  }
}

const rpcByRegistry = new WeakMap<Registry, RpcMetrics>();

/** The RPC series of `registry`, created on first use (several servers of one process share them). */
export function rpcMetrics(registry: Registry = processRegistry): RpcObserver {
  let metrics = rpcByRegistry.get(registry);
  if (!metrics) rpcByRegistry.set(registry, (metrics = new RpcMetrics(registry)));
  return metrics;
}

const withDefaults = new WeakSet<Registry>();

/** Adds Node's process series (CPU, memory, event loop lag, GC, handles) to `registry`, once. */
export function enableProcessMetrics(registry: Registry = processRegistry): void {
  if (withDefaults.has(registry)) return;
  withDefaults.add(registry);
  collectDefaultMetrics({ register: registry });
}

/** Options of {@link startMetricsServer}. */
export interface MetricsServerOptions {
  /** `host:port` to listen on; port 0 picks one. */
  readonly address: string;
  /** The registry served. @default the process registry */
  readonly registry?: Registry;
  /** Where a failed scrape is reported. */
  readonly log?: Logger;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** The bound port. */
  readonly port: number;
  /** Stops listening and closes its connections. */
  close(): Promise<void>;
}

/**
 * Serves `registry` as Prometheus text at `GET /metrics` on its own plain
 * HTTP port (the admin port, never behind the sidecar); anything else is 404.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const registry = options.registry ?? processRegistry;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(path === "/metrics" ? 405 : 404, { "content-type": "text/plain" }).end(path === "/metrics" ? "GET only\n" : "not found: try /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(req.method === "HEAD" ? undefined : text),
      (error: unknown) => {
        options.log?.warn({ err: error }, "metrics scrape failed");
        res.writeHead(500, { "content-type": "text/plain" }).end("scrape failed\n");
      },
    );
  });
  const at = options.address.lastIndexOf(":");
  const host = options.address.slice(0, at).replace(/^\[|\]$/g, "");
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(options.address.slice(at + 1)), host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/**
 * Wraps an expensive read (a query behind several gauges) for scrapes: the
 * value is reused for `ttlMs`, concurrent callers share one load, and a
 * failed load is not cached.
 */
export function cachedLoad<T>(load: () => Promise<T>, ttlMs: number): () => Promise<T> {
  let value: { at: number; promise: Promise<T> } | undefined;
  return () => {
    if (value && Date.now() - value.at < ttlMs) return value.promise;
    const promise = load();
    const entry = { at: Date.now(), promise };
    value = entry;
    promise.catch(() => {
      if (value === entry) value = undefined;
    });
    return promise;
  };
}

/**
 * A gauge computed at scrape time: `read` returns its samples (label values
 * and value); the previous samples are dropped first, so a label that is no
 * longer reported disappears. When `read` fails, the gauge is left empty for
 * that scrape (the others still answer) and the failure is logged.
 */
export function scrapeGauge<L extends string>(options: {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
  readonly read: () => Promise<ReadonlyArray<readonly [Partial<Record<L, string | number>>, number]>>;
  readonly registry?: Registry;
  readonly log?: Logger;
}): Gauge<L> {
  return new Gauge<L>({
    name: options.name,
    help: options.help,
    labelNames: options.labelNames ?? [],
    registers: [options.registry ?? processRegistry],
    async collect() {
      this.reset();
      let samples;
      try {
        samples = await options.read();
      } catch (error) {
        options.log?.warn({ err: error, metric: options.name }, "metric not collected");
        return;
      }
      for (const [labels, value] of samples) this.set(labels, value);
    },
  });
}

/** What {@link kafkaConsumerLag} needs of a kafkajs admin client (connected by its owner). */
export type LagAdmin = Pick<Admin, "fetchOffsets" | "fetchTopicOffsets">;

/** A consumer group and the topics it consumes. */
export interface LagGroup {
  readonly groupId: string;
  readonly topics: readonly string[];
}

/** Options of {@link kafkaConsumerLag}. */
export interface KafkaConsumerLagOptions {
  /** A connected kafkajs admin client, or a function that gives one (e.g. connected lazily); its owner connects and disconnects it. */
  readonly admin: LagAdmin | (() => Promise<LagAdmin>);
  /** The consumer groups to watch, or a function that lists them at each reading (groups that come and go). */
  readonly groups: readonly LagGroup[] | (() => readonly LagGroup[]);
  /** How long one reading of the offsets is reused, in ms. @default 5000 */
  readonly cacheMs?: number;
  /** @default the process registry */
  readonly registry?: Registry;
  readonly log?: Logger;
}

/**
 * Registers `kafka_consumer_lag{group,topic,partition}`: per partition, the
 * high watermark minus the group's committed offset (a partition the group
 * never committed counts from its low watermark), read from the admin API
 * at scrape time.
 */
export function kafkaConsumerLag(options: KafkaConsumerLagOptions): Gauge<"group" | "topic" | "partition"> {
  const read = cachedLoad(async () => {
    const samples: Array<[{ group: string; topic: string; partition: number }, number]> = [];
    const groups = typeof options.groups === "function" ? options.groups() : options.groups;
    if (groups.length === 0) return samples;
    const admin = typeof options.admin === "function" ? await options.admin() : options.admin;
    const topics = [...new Set(groups.flatMap((g) => g.topics))];
    const ends = new Map(await Promise.all(topics.map(async (t) => [t, await admin.fetchTopicOffsets(t)] as const)));
    for (const { groupId, topics: own } of groups) {
      const committed = await admin.fetchOffsets({ groupId, topics: [...own] });
      for (const { topic, partitions } of committed) {
        for (const { partition, offset } of partitions) {
          const end = ends.get(topic)?.find((p) => p.partition === partition);
          if (!end) continue;
          const from = Number(offset) >= 0 ? Number(offset) : Number(end.low);
          samples.push([{ group: groupId, topic, partition }, Math.max(0, Number(end.high) - from)]);
        }
      }
    }
    return samples;
  }, options.cacheMs ?? 5000);
  return scrapeGauge({
    name: "kafka_consumer_lag",
    help: "Messages a consumer group has not committed yet, per partition (high watermark minus committed offset).",
    labelNames: ["group", "topic", "partition"],
    read, registry: options.registry, log: options.log,
  });
}
