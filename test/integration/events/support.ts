import type { Tracer } from "@opentelemetry/api";
import { Redis } from "ioredis";
import { logLevel, Kafka, type Admin } from "kafkajs";
import { inject } from "vitest";
import { EventServiceService, type Delivery, type SubscribeRequest, type SubscriptionInfo } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { createClient, createLogger, serveBuilt, type MeshClient } from "@taskmesh/kit";
import { KafkaClients, buildEvents, createKafka, type Subscriptions } from "../../../services/events/src/index.js";
import { testTopicPrefix } from "../../support/kafka.js";
import { createTopicsReady } from "@taskmesh/local/provision/kafka";

export type EventsClient = MeshClient<typeof EventServiceService>;

/** An events replica in this process on the shared Kafka and Redis, with a client, an admin and its own topic prefix. */
export interface EventsHarness {
  readonly client: EventsClient;
  readonly address: string;
  readonly prefix: string;
  readonly admin: Admin;
  readonly kafka: Kafka;
  readonly subscriptions: Subscriptions;
  /** Type routes as `/events/types` would hold them (tests change it). */
  routes: Record<string, string>;
  /** Creates `<prefix>.<name>` with `partitions` partitions; returns its name. */
  topic(name: string, partitions?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Kafka clients whose admin refuses the first `failures` lookups of a
 * group's committed offsets, as a broker under load or moving its group
 * coordinator does.
 */
export class RefusingOffsetLookups extends KafkaClients {
  refused = 0;

  constructor(kafka: Kafka, private failures: number) {
    super(kafka);
  }

  override withAdmin<T>(op: (admin: Admin) => Promise<T>): Promise<T> {
    return super.withAdmin((admin) => op(new Proxy(admin, {
      get: (target, key, receiver) => {
        if (key === "fetchOffsets" && this.failures > 0) {
          return async () => {
            this.failures--;
            this.refused++;
            throw new Error("The coordinator is loading and hence can't process requests for this group");
          };
        }
        return Reflect.get(target, key, receiver) as unknown;
      },
    })));
  }
}

/**
 * Starts an events replica for one test file, built as the events service
 * builds itself; `tracer` receives its delivery spans, `clients` replaces
 * its Kafka clients.
 */
export async function startEvents(label: string, tracer?: Tracer, clients?: (kafka: Kafka) => KafkaClients): Promise<EventsHarness> {
  const prefix = testTopicPrefix(label);
  const brokers = [inject("kafkaBrokers")];
  const logger = createLogger({ level: process.env.TEST_LOG_LEVEL as "info" | undefined ?? "silent" });
  const redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: 1, connectionName: prefix });
  const harness = { routes: {} as Record<string, string> } as EventsHarness;
  const serviceKafka = createKafka(brokers, prefix, logger);
  const events = buildEvents({
    name: "events-test", instance: prefix, logger, kafka: clients ? clients(serviceKafka) : new KafkaClients(serviceKafka), redis,
    routes: () => harness.routes, shutdownGraceMs: 2000, redisPrefix: `${prefix}:`, ...(tracer ? { tracer } : {}),
  });
  const port = await serveBuilt(events, "127.0.0.1:0");
  const kafka = new Kafka({ clientId: `${prefix}-test`, brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const client = createClient(EventServiceService, `127.0.0.1:${port}`);
  return Object.assign(harness, {
    client, address: `127.0.0.1:${port}`, prefix, admin, kafka, subscriptions: events.subscriptions,
    async topic(name: string, partitions = 3) {
      const topic = `${prefix}.${name}`;
      await createTopicsReady(admin, [{ topic, numPartitions: partitions }]);
      return topic;
    },
    async stop() {
      client.close();
      await events.server.shutdown();
      await admin.disconnect();
      // The replica disconnected its Redis as it shut down: its keys go, and no connection of it (the ack relay's included) is left.
      const probe = new Redis(inject("redisUrl"), { maxRetriesPerRequest: 1 });
      try {
        const keys = await probe.keys(`${prefix}:*`);
        if (keys.length > 0) await probe.del(...keys);
        await waitFor("its redis connections to close", async () => !String(await probe.client("LIST")).includes(`name=${prefix} `), 5000);
      } finally {
        probe.disconnect();
      }
    },
  });
}

/** A Subscribe stream run in the background: what it received, and its subscription id. */
export class Subscriber {
  readonly infos: SubscriptionInfo[] = [];
  readonly deliveries: Delivery[] = [];
  error: unknown;
  ended = false;
  readonly #abort = new AbortController();
  readonly done: Promise<void>;
  /** Called for each delivery as it arrives. */
  onDelivery: ((d: Delivery) => void) | undefined;

  constructor(private readonly client: EventsClient, request: Partial<SubscribeRequest> & { topic: string }) {
    const full: SubscribeRequest = {
      consumerGroup: "", startPosition: undefined, types: [], maxInFlight: 0, ackDeadline: undefined, maxDeliveryAttempts: 0, ...request,
    };
    this.done = (async () => {
      try {
        for await (const m of client.subscribe(full, { signal: this.#abort.signal })) {
          if (m.payload?.$case === "subscription") this.infos.push(m.payload.value);
          else if (m.payload?.$case === "delivery") {
            this.deliveries.push(m.payload.value);
            this.onDelivery?.(m.payload.value);
          }
        }
      } catch (error) {
        if (!this.#abort.signal.aborted) this.error = error;
      } finally {
        this.ended = true;
      }
    })();
  }

  get id(): string {
    return this.infos[0]?.subscriptionId ?? "";
  }

  /** The partitions it holds now. */
  get partitions(): number[] {
    return this.infos.at(-1)?.partitions ?? [];
  }

  /** Waits until the group assigned it partitions. */
  async joined(): Promise<void> {
    await waitFor("a partition assignment", () => {
      if (this.error) throw this.error;
      return this.partitions.length > 0;
    });
  }

  ack(tokens: string[]) {
    return this.client.acknowledge({ subscriptionId: this.id, ackTokens: tokens, nacks: [] });
  }

  /** Cancels the stream and waits for it to end. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.done;
  }
}

/**
 * From now on acknowledges each delivery of `members` as it arrives, and
 * what they hold already (but the events in `acked`); each event a member
 * acknowledged (its token still valid) is added to `acked`, returned.
 */
export async function acknowledgeAll(members: readonly Subscriber[], acked = new Set<string>()): Promise<Set<string>> {
  const settle = async (s: Subscriber, list: Delivery[]): Promise<void> => {
    if (list.length === 0) return;
    const r = await s.ack(list.map((d) => d.ackToken));
    for (const d of list) if (!r.invalidTokens.includes(d.ackToken)) acked.add(d.event!.id);
  };
  for (const s of members) {
    s.onDelivery = (d) => void settle(s, [d]);
    await settle(s, s.deliveries.filter((d) => !acked.has(d.event!.id)));
  }
  return acked;
}

/** Publishes `n` events of `type` (routed to a test topic by the harness), ids `<tag>-<i>`; returns their ids. */
export async function publishMany(h: EventsHarness, type: string, tag: string, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(ids.slice(i, i + 50).map((id, j) => h.client.publish({
      event: { id, source: "//test/events", specversion: "", type, subject: `s-${(i + j) % 17}`, time: undefined, datacontenttype: "", dataschema: "", data: { n: i + j }, extensions: {} },
    })));
  }
  return ids;
}
