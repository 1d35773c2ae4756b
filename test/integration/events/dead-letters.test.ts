import type { Consumer } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@taskmesh/kit";
import { DLQ_TOPIC, headersText } from "../../../services/events/src/index.js";
import { Subscriber, publishMany, startEvents, waitFor, type EventsHarness } from "./support.js";

describe("events: redelivery and dead letters on real Kafka", () => {
  let h: EventsHarness;
  const subscribers: Subscriber[] = [];
  const consumers: Consumer[] = [];
  const subscribe = (request: ConstructorParameters<typeof Subscriber>[1]) => {
    const s = new Subscriber(h.client, request);
    subscribers.push(s);
    return s;
  };

  beforeAll(async () => {
    h = await startEvents("events-dlq");
  });

  afterAll(async () => {
    await Promise.all(subscribers.map((s) => s.stop()));
    await Promise.all(consumers.map((c) => c.disconnect()));
    await h?.stop();
  }, 30_000);

  /** The dead-letter records of `topic`, read straight from taskmesh.dlq. */
  const dlqRecords = async (topic: string) => {
    const consumer = h.kafka.consumer({ groupId: `${h.prefix}.dlq-reader.${consumers.length}`, maxWaitTimeInMs: 100 });
    consumers.push(consumer);
    const records: Array<Record<string, string>> = [];
    await consumer.connect();
    await consumer.subscribe({ topic: DLQ_TOPIC, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => {
      const headers = headersText(message.headers);
      if (headers.dlq_topic === topic) records.push(headers);
    } });
    return records;
  };

  it("a poison event is redelivered until max attempts, lands in taskmesh.dlq with the dlq headers, is listed, and a redrive delivers it again", async () => {
    const topic = await h.topic("poison", 3);
    h.routes["test.poison.*"] = topic;
    const group = `${h.prefix}.poison`;
    const sub = subscribe({ topic, consumerGroup: group, maxDeliveryAttempts: 3, ackDeadline: { seconds: 1n, nanos: 0 } });
    sub.onDelivery = (d) => {
      if (d.event!.id === "poison-1") {
        // The poison: nacked with requeue on the first attempts, then never settled (its deadline expires).
        if (d.deliveryAttempt < 3) void h.client.acknowledge({ subscriptionId: sub.id, ackTokens: [], nacks: [{ ackToken: d.ackToken, requeue: true, delay: undefined, reason: "cannot parse" }] });
      } else void sub.ack([d.ackToken]);
    };
    await sub.joined();
    await publishMany(h, "test.poison.created", "poison", 4);
    await waitFor("three deliveries of the poison", () => sub.deliveries.filter((d) => d.event!.id === "poison-1").length === 3);
    expect(sub.deliveries.filter((d) => d.event!.id === "poison-1").map((d) => d.deliveryAttempt)).toEqual([1, 2, 3]);

    const records = await dlqRecords(topic);
    await waitFor("the dead-letter record", () => records.length === 1);
    const poison = sub.deliveries.find((d) => d.event!.id === "poison-1")!;
    expect(records[0]).toMatchObject({
      ce_id: "poison-1", ce_type: "test.poison.created", ce_source: "//test/events",
      dlq_topic: topic, dlq_partition: String(poison.partition), dlq_offset: String(poison.offset), dlq_group: group,
      dlq_attempts: "3", dlq_error: "ack deadline exceeded", dlq_at: expect.stringMatching(/^\d{4}-/),
    });
    // The group moved on: every partition is committed to its end.
    const ends = await h.admin.fetchTopicOffsets(topic);
    await waitFor("the group to commit past the poison", async () => {
      const [committed] = await h.admin.fetchOffsets({ groupId: group, topics: [topic] });
      return committed!.partitions.every((p) => p.offset === ends.find((e) => e.partition === p.partition)!.high);
    }, 5000);

    const listed = await h.client.listDeadLetters({ topic, consumerGroup: "", includeRedriven: false, pageSize: 0, pageToken: "" });
    expect(listed.deadLetters).toHaveLength(1);
    const letter = listed.deadLetters[0]!;
    expect(letter).toMatchObject({ topic, partition: poison.partition, offset: poison.offset, consumerGroup: group, deliveryAttempts: 3, lastError: "ack deadline exceeded" });
    expect(letter.event).toMatchObject({ id: "poison-1", type: "test.poison.created", data: { n: 1 } });
    expect(letter.redrivenAt).toBeUndefined();

    // Redrive: the same event again on its topic; the group's subscriber gets it once more.
    const seen = sub.deliveries.length;
    sub.onDelivery = (d) => void sub.ack([d.ackToken]);
    const redriven = await h.client.redrive({ ids: [letter.id, "0-999999"], topic: "", consumerGroup: "" });
    expect(redriven).toEqual({ redrivenCount: 1n, redrivenIds: [letter.id], skippedIds: ["0-999999"] });
    await waitFor("the redriven event", () => sub.deliveries.length > seen);
    expect(sub.deliveries.slice(seen).map((d) => [d.event!.id, d.deliveryAttempt])).toEqual([["poison-1", 1]]);
    const again = await h.client.redrive({ ids: [letter.id], topic: "", consumerGroup: "" });
    expect(again).toEqual({ redrivenCount: 0n, redrivenIds: [], skippedIds: [letter.id] });
    expect((await h.client.listDeadLetters({ topic, consumerGroup: "", includeRedriven: false, pageSize: 0, pageToken: "" })).deadLetters).toEqual([]);
    const all = await h.client.listDeadLetters({ topic, consumerGroup: group, includeRedriven: true, pageSize: 0, pageToken: "" });
    expect(all.deadLetters.map((d) => [d.id, d.redrivenAt instanceof Date])).toEqual([[letter.id, true]]);
  });

  it("a nack without requeue dead-letters at once; listing pages oldest first; a filter redrive takes every one", async () => {
    const topic = await h.topic("reject", 1);
    h.routes["test.reject.*"] = topic;
    const sub = subscribe({ topic, consumerGroup: `${h.prefix}.reject` });
    sub.onDelivery = (d) => void h.client.acknowledge({ subscriptionId: sub.id, ackTokens: [], nacks: [{ ackToken: d.ackToken, requeue: false, delay: undefined, reason: `bad ${d.event!.id}` }] });
    await sub.joined();
    await publishMany(h, "test.reject.created", "reject", 5);
    const page = () => h.client.listDeadLetters({ topic, consumerGroup: "", includeRedriven: false, pageSize: 2, pageToken: "" });
    await waitFor("five dead letters", async () => (await h.client.listDeadLetters({ topic, consumerGroup: "", includeRedriven: false, pageSize: 0, pageToken: "" })).deadLetters.length === 5);
    expect(sub.deliveries.map((d) => d.deliveryAttempt)).toEqual([1, 1, 1, 1, 1]);
    const ids: string[] = [];
    const times: number[] = [];
    let token = "";
    for (let i = 0; i < 3; i++) {
      const r = i === 0 ? await page() : await h.client.listDeadLetters({ topic, consumerGroup: "", includeRedriven: false, pageSize: 2, pageToken: token });
      ids.push(...r.deadLetters.map((d) => d.event!.id));
      times.push(...r.deadLetters.map((d) => d.deadLetteredAt!.getTime()));
      expect(r.deadLetters.every((d) => d.lastError === `bad ${d.event!.id}` && d.deliveryAttempts === 1)).toBe(true);
      token = r.nextPageToken;
      if (i < 2) expect(token).not.toBe("");
    }
    expect(token).toBe("");
    expect([...ids].sort()).toEqual(["reject-0", "reject-1", "reject-2", "reject-3", "reject-4"]);
    expect(times).toEqual([...times].sort((a, b) => a - b)); // oldest first
    await expect(h.client.listDeadLetters({ topic: "other", consumerGroup: "", includeRedriven: false, pageSize: 2, pageToken: "abc" }))
      .rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_PAGE_TOKEN" });

    sub.onDelivery = (d) => void sub.ack([d.ackToken]);
    const r = await h.client.redrive({ ids: [], topic, consumerGroup: "" });
    expect(r.redrivenCount).toBe(5n);
    await waitFor("the redriven events", () => sub.deliveries.length === 10);
    await expect(h.client.redrive({ ids: [], topic: "", consumerGroup: "" })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_MISSING_SELECTION" });
  });

  it("deliveries abandoned by subscribers that end count as failed, across reconnects, up to the dead-letter topic", async () => {
    const topic = await h.topic("abandon", 1);
    h.routes["test.abandon.*"] = topic;
    const group = `${h.prefix}.abandon`;
    const request = { topic, consumerGroup: group, maxDeliveryAttempts: 2 };
    const first = subscribe(request);
    await first.joined();
    await publishMany(h, "test.abandon.created", "abandon", 1);
    await waitFor("the first delivery", () => first.deliveries.length === 1);
    await first.stop();
    const second = subscribe(request);
    await waitFor("the second delivery", () => second.deliveries.length === 1);
    expect(second.deliveries[0]!.deliveryAttempt).toBe(2);
    await second.stop();
    const third = subscribe(request);
    await third.joined();
    await waitFor("the dead letter", async () => (await h.client.listDeadLetters({ topic, consumerGroup: group, includeRedriven: false, pageSize: 0, pageToken: "" })).deadLetters.length === 1);
    const [letter] = (await h.client.listDeadLetters({ topic, consumerGroup: group, includeRedriven: false, pageSize: 0, pageToken: "" })).deadLetters;
    expect(letter).toMatchObject({ deliveryAttempts: 2, lastError: "subscription ended before settling", event: { id: "abandon-0" } });
    expect(third.deliveries).toEqual([]);
  });

  it("an unacknowledged delivery expires and comes back with a new token; the old one is invalid", async () => {
    const topic = await h.topic("expire", 1);
    h.routes["test.expire.*"] = topic;
    const sub = subscribe({ topic, consumerGroup: `${h.prefix}.expire`, ackDeadline: { seconds: 1n, nanos: 0 } });
    await sub.joined();
    await publishMany(h, "test.expire.created", "expire", 1);
    await waitFor("a redelivery", () => sub.deliveries.length === 2);
    const [first, second] = sub.deliveries;
    expect([first!.deliveryAttempt, second!.deliveryAttempt]).toEqual([1, 2]);
    expect(second!.ackToken).not.toBe(first!.ackToken);
    const r = await sub.ack([first!.ackToken, second!.ackToken]);
    expect(r).toEqual({ acknowledged: 1, nacked: 0, invalidTokens: [first!.ackToken] });
  });
});
