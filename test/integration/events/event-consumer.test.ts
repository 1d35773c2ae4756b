import { Redis } from "ioredis";
import { Kafka, logLevel, type Admin, type Producer } from "kafkajs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { EventConsumer, RedisDedupStore, type ConsumedEvent } from "../../../packages/kit/src/events/index.js";
import { createLogger } from "@taskmesh/kit";
import { testTopicPrefix } from "../../support/kafka.js";
import { waitFor } from "./support.js";
import { createTopicsReady } from "@taskmesh/local/provision/kafka";

describe("kit: EventConsumer on real Kafka and Redis", () => {
  const prefix = testTopicPrefix("event-consumer");
  const logger = createLogger({ level: "silent" });
  let kafka: Kafka;
  let admin: Admin;
  let producer: Producer;
  let redis: Redis;
  const helpers: EventConsumer[] = [];

  beforeAll(async () => {
    kafka = new Kafka({ clientId: prefix, brokers: [inject("kafkaBrokers")], logLevel: logLevel.NOTHING });
    admin = kafka.admin();
    await admin.connect();
    producer = kafka.producer();
    await producer.connect();
    redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: 1 });
  });

  afterAll(async () => {
    await Promise.all(helpers.map((h) => h.stop()));
    await producer?.disconnect();
    await admin?.disconnect();
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis?.disconnect();
  }, 30_000);

  /** A helper in group `group` on `topic`, recording what its handler saw. */
  const consume = async (topic: string, group: string, seen: ConsumedEvent[], handler?: (e: ConsumedEvent) => Promise<void>) => {
    const helper = new EventConsumer({
      consumer: kafka.consumer({ groupId: group, maxWaitTimeInMs: 100, heartbeatInterval: 500, sessionTimeout: 10_000 }),
      groupId: group, topics: [topic], store: new RedisDedupStore(redis), keyPrefix: `${prefix}:`, logger, fromBeginning: true,
      handler: handler ?? (async (e) => void seen.push(e)),
    });
    helpers.push(helper);
    await helper.start();
    return helper;
  };

  const send = (topic: string, ids: string[]) =>
    producer.send({ topic, messages: ids.map((id) => ({ key: id, value: JSON.stringify({ id }), headers: { ce_id: id, ce_type: "test.thing.done", ce_source: "//test" } })) });

  it("hands each event id to the handler once although Kafka holds (and redelivers) copies, and commits behind it", async () => {
    const topic = `${prefix}.dups`;
    await createTopicsReady(admin, [{ topic, numPartitions: 3 }]);
    const ids = Array.from({ length: 40 }, (_, i) => `ev-${i}`);
    await send(topic, ids);
    await send(topic, ids.slice(0, 20)); // a relay re-sent half of them
    const seen: ConsumedEvent[] = [];
    const group = `${prefix}.g1`;
    const first = await consume(topic, group, seen);
    await waitFor("every event", () => seen.length >= 40);
    // At least the 60 copies: a rebalance on a busy machine hands the uncommitted ones over again, and those are skipped too.
    await waitFor("every copy consumed", () => first.counts.processed + first.counts.skipped >= 60, 40_000);
    expect(seen.map((e) => e.id).sort()).toEqual([...ids].sort());
    expect(first.counts.processed).toBe(40);
    expect(first.counts.skipped).toBeGreaterThanOrEqual(20);
    await first.stop();

    // The group committed everything; force a redelivery by rewinding its offsets to the start.
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const ends = await admin.fetchTopicOffsets(topic);
    expect(committed!.partitions.map((p) => p.offset).sort()).toEqual(ends.map((e) => e.high).sort());
    await admin.resetOffsets({ groupId: group, topic, earliest: true });
    const again: ConsumedEvent[] = [];
    const second = await consume(topic, group, again);
    await send(topic, ["ev-new"]);
    await waitFor("the new event", () => again.length === 1);
    // Every copy of the rewound 60 is skipped (a rebalance may hand some over once more: skipped again).
    await waitFor("the redelivered copies", () => second.counts.skipped >= 60, 40_000);
    expect(again.map((e) => e.id)).toEqual(["ev-new"]);

    // Another group sees every event once for itself.
    const other: ConsumedEvent[] = [];
    await consume(topic, `${prefix}.g2`, other);
    await waitFor("the other group's events", () => other.length === 41);
  });

  it("a failed handler gets the event again (after kafkajs' retry) and nothing is lost", async () => {
    const topic = `${prefix}.retry`;
    await createTopicsReady(admin, [{ topic, numPartitions: 1 }]);
    await send(topic, ["r-1", "r-2", "r-3"]);
    const seen: ConsumedEvent[] = [];
    let failures = 0;
    await consume(topic, `${prefix}.g3`, seen, async (e) => {
      if (e.id === "r-2" && failures++ < 2) throw new Error("flaky handler");
      seen.push(e);
    });
    await waitFor("all three", () => seen.length === 3, 30_000);
    expect(seen.map((e) => e.id)).toEqual(["r-1", "r-2", "r-3"]);
    expect(failures).toBe(3);
  });
});
