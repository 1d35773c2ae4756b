import type { Tracer } from "@opentelemetry/api";
import type { Redis } from "ioredis";
import { EventServiceService } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { MeshServer, untilReady, type BuiltService, type Logger } from "@taskmesh/kit";
import { AckRelay } from "./ack-relay.js";
import { RedisAttempts } from "./attempts.js";
import { DeadLetterIndex } from "./dead-letters.js";
import { eventHandlers, Subscriptions } from "./handlers.js";
import type { KafkaClients } from "./kafka.js";
import { PublishDedup } from "./publish-dedup.js";
import { Publisher } from "./publisher.js";
import { DLQ_TOPIC } from "./registry.js";

/** What {@link buildEvents} needs: made from the environment by main.ts, or by a test. */
export interface EventsDeps {
  /** The server's name (logs, health). */
  readonly name: string;
  /** The instance's name: the dead-letter index's consumer group is named after it. */
  readonly instance: string;
  readonly logger: Logger;
  /** The Kafka clients; the service closes them when it shuts down. */
  readonly kafka: KafkaClients;
  /** Redis (publish idempotency, delivery attempts, the ack relay); the service disconnects it when it shuts down. */
  readonly redis: Redis;
  /** The type routes (config key `/events/types`), read at each publish. */
  readonly routes: () => Readonly<Record<string, string>>;
  readonly shutdownGraceMs: number;
  /** How long a published (source, id) is remembered. @default PublishDedup's (24 h) */
  readonly dedupTtlMs?: number;
  /** Prefix of the service's Redis keys (`<prefix>pub:…`, `<prefix>attempts:…`). @default "taskmesh:events:" */
  readonly redisPrefix?: string;
  /** @default the `taskmesh-events` tracer of the global provider */
  readonly tracer?: Tracer;
}

/** The events service, built: its subscriptions beside the server. */
export interface EventsService extends BuiltService {
  readonly subscriptions: Subscriptions;
}

/**
 * The events service's wiring, the one place it is put together: for
 * main.ts and the tests alike. Ready once Redis answers (the ack relay
 * subscribed), Kafka answers with the dead-letter topic in place, and the
 * dead-letter index has read that topic.
 */
export function buildEvents(deps: EventsDeps): EventsService {
  const { kafka, redis, logger } = deps;
  const prefix = deps.redisPrefix ?? "taskmesh:events:";
  const relay = new AckRelay(redis, redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null }), logger);
  const subscriptions = new Subscriptions();
  const deadLetters = new DeadLetterIndex(kafka, logger, deps.instance);
  const dedup = new PublishDedup(redis, { prefix: `${prefix}pub:`, ...(deps.dedupTtlMs !== undefined ? { ttlMs: deps.dedupTtlMs } : {}) });
  const publisher = new Publisher({ kafka, dedup, routes: deps.routes });
  const handlers = eventHandlers({
    kafka, publisher, subscriptions, deadLetters, relay, attempts: new RedisAttempts(redis, `${prefix}attempts:`), ...(deps.tracer ? { tracer: deps.tracer } : {}),
  });
  // Closers run in reverse order: subscriptions end first, Redis last.
  const server = new MeshServer({ name: deps.name, logger, shutdownGraceMs: deps.shutdownGraceMs })
    .addService(EventServiceService, handlers)
    .onClose("redis", () => redis.disconnect())
    .onClose("ack relay", () => relay.stop())
    .onClose("kafka clients", () => kafka.close())
    .onClose("dead-letter index", () => deadLetters.stop())
    .onClose("subscriptions", () => subscriptions.closeAll());
  return {
    server, subscriptions,
    async ready(signal) {
      await untilReady("redis", async () => {
        if (redis.status === "wait") await redis.connect();
        await redis.ping();
        await relay.start();
      }, signal, logger);
      await untilReady("kafka", async () => {
        await kafka.producer();
        if ((await kafka.partitionsOf(DLQ_TOPIC)) === undefined) throw new Error(`topic ${DLQ_TOPIC} does not exist yet`);
      }, signal, logger);
      await untilReady("dead-letter index", () => deadLetters.start(), signal, logger);
    },
  };
}
