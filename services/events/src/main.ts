import { trace } from "@opentelemetry/api";
import { Redis } from "ioredis";
import { z } from "zod";
import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { connectUpstream, createLogger, envSchemas, kitEnvShape, loadEnv, runService, watchSetting } from "@taskmesh/kit";
import { kafkaConsumerLag } from "@taskmesh/kit/metrics";
import { buildEvents } from "./build.js";
import { KafkaClients, createKafka } from "./kafka.js";
import { REGISTRY_KEY, parseRoutes } from "./registry.js";

/** The events service's environment. */
const envShape = {
  ...kitEnvShape,
  /** Kafka bootstrap brokers, comma-separated `host:port`. */
  KAFKA_BROKERS: z.string().trim().transform((s) => s.split(",").map((b) => b.trim()).filter((b) => b !== ""))
    .pipe(z.array(envSchemas.address()).min(1, "expected at least one host:port")),
  /** Redis: publish idempotency by (source, id). */
  REDIS_URL: envSchemas.url("redis"),
  /** How long a published (source, id) is remembered. @default 24h */
  TASKMESH_EVENTS_DEDUP_TTL: envSchemas.duration().pipe(z.number().min(24 * 3_600_000, "at least 24h (the contract's promise)")).default(24 * 3_600_000),
};

await runService({
  name: "events",
  async start() {
    const env = loadEnv(envShape);
    const instance = env.TASKMESH_INSTANCE ?? "events";
    const log = createLogger({ service: "events", instance, level: env.LOG_LEVEL });
    const kafka = new KafkaClients(createKafka(env.KAFKA_BROKERS, instance, log));
    const redis = new Redis(env.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectionName: `taskmesh-${instance}` });
    redis.on("error", (error: Error) => log.debug({ err: error }, "redis connection error"));
    const hasConfig = Boolean(process.env.TASKMESH_UPSTREAM_CONFIG?.trim() || env.TASKMESH_UPSTREAM);
    const config = hasConfig ? connectUpstream(ConfigServiceService, "config") : undefined;
    const routes = config
      ? watchSetting(config, { key: REGISTRY_KEY, parse: parseRoutes, fallback: {} as Readonly<Record<string, string>>, logger: log })
      : undefined;
    if (!config) log.warn(`no config upstream (TASKMESH_UPSTREAM_CONFIG): only the built-in event types are registered (${REGISTRY_KEY} is not followed)`);
    const events = buildEvents({
      name: "events", instance, logger: log, kafka, redis, routes: () => routes?.get() ?? {},
      shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE, dedupTtlMs: env.TASKMESH_EVENTS_DEDUP_TTL, tracer: trace.getTracer("taskmesh-events"),
    });
    // Consumer lag of the named groups subscribed here, at scrape time.
    kafkaConsumerLag({ admin: () => kafka.admin(), groups: () => events.subscriptions.groups(), log });
    events.server.onClose("config", () => {
      routes?.close();
      config?.close();
    });
    await events.server.listen(env.TASKMESH_LISTEN);
    return {
      server: events.server,
      log,
      async ready(signal) {
        await events.ready(signal);
        await routes?.ready;
      },
    };
  },
});
