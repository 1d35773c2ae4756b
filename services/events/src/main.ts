import { trace } from "@opentelemetry/api";
import { Redis } from "ioredis";
import { z } from "zod";
import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { EventServiceService } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import {
  MeshServer, connectUpstream, createLogger, envSchemas, kitEnvShape, loadEnv, runService, untilReady, watchSetting,
} from "@taskmesh/kit";
import { kafkaConsumerLag } from "@taskmesh/kit/metrics";
import { AckRelay } from "./ack-relay.js";
import { RedisAttempts } from "./attempts.js";
import { DeadLetterIndex } from "./dead-letters.js";
import { eventHandlers, Subscriptions } from "./handlers.js";
import { KafkaClients, createKafka } from "./kafka.js";
import { PublishDedup } from "./publish-dedup.js";
import { Publisher } from "./publisher.js";
import { DLQ_TOPIC, REGISTRY_KEY, parseRoutes } from "./registry.js";

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
    const relay = new AckRelay(redis, redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null }), log);
    const subscriptions = new Subscriptions();
    const deadLetters = new DeadLetterIndex(kafka, log, instance);
    const publisher = new Publisher({ kafka, dedup: new PublishDedup(redis, { ttlMs: env.TASKMESH_EVENTS_DEDUP_TTL }), routes: () => routes?.get() ?? {} });
    // Consumer lag of the named groups subscribed here, at scrape time.
    kafkaConsumerLag({ admin: () => kafka.admin(), groups: () => subscriptions.groups(), log });
    const server = new MeshServer({ name: "events", logger: log, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE })
      .addService(EventServiceService, eventHandlers({ kafka, publisher, subscriptions, deadLetters, relay, attempts: new RedisAttempts(redis), tracer: trace.getTracer("taskmesh-events") }))
      .onClose("redis", () => redis.disconnect())
      .onClose("ack relay", () => relay.stop())
      .onClose("config", () => {
        routes?.close();
        config?.close();
      })
      .onClose("kafka clients", () => kafka.close())
      .onClose("dead-letter index", () => deadLetters.stop())
      .onClose("subscriptions", () => subscriptions.closeAll());
    await server.listen(env.TASKMESH_LISTEN);
    return {
      server,
      log,
      async ready(signal) {
        await untilReady("redis", async () => {
          if (redis.status === "wait") await redis.connect();
          await redis.ping();
          await relay.start();
        }, signal, log);
        await untilReady("kafka", async () => {
          await kafka.producer();
          if ((await kafka.partitionsOf(DLQ_TOPIC)) === undefined) throw new Error(`topic ${DLQ_TOPIC} does not exist yet`);
        }, signal, log);
        await untilReady("dead-letter index", () => deadLetters.start(), signal, log);
        await routes?.ready;
      },
    };
  },
});
