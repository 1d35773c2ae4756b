import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, MeshError } from "@taskmesh/kit";
import { RefusingOffsetLookups, Subscriber, acknowledgeAll, publishMany, startEvents, waitFor, type EventsHarness } from "./support.js";

describe("events: subscriptions on real Kafka", () => {
  let h: EventsHarness;
  const subscribers: Subscriber[] = [];
  const subscribe = (request: ConstructorParameters<typeof Subscriber>[1]) => {
    const s = new Subscriber(h.client, request);
    subscribers.push(s);
    return s;
  };

  beforeAll(async () => {
    h = await startEvents("events-sub");
  });

  afterAll(async () => {
    await Promise.all(subscribers.map((s) => s.stop()));
    await h?.stop();
  }, 30_000);

  it("two subscribers of one group share the topic: every event delivered and acknowledged once, none to both", async () => {
    const topic = await h.topic("shared", 6);
    h.routes[`test.shared.*`] = topic;
    const group = `${h.prefix}.shared`;
    const acked = new Map<string, string>();
    const a = subscribe({ topic, consumerGroup: group });
    const b = subscribe({ topic, consumerGroup: group });
    for (const [name, s] of [["a", a], ["b", b]] as const) {
      s.onDelivery = (d) => {
        void s.ack([d.ackToken]).then((r) => {
          expect(r.invalidTokens).toEqual([]);
          acked.set(d.event!.id, acked.has(d.event!.id) ? "both" : name);
        });
      };
    }
    await waitFor("both subscribers to hold partitions, disjoint and covering the topic", () =>
      a.partitions.length > 0 && b.partitions.length > 0 && a.partitions.length + b.partitions.length === 6
      && a.partitions.every((p) => !b.partitions.includes(p)));
    const ids = await publishMany(h, "test.shared.created", "shared", 200);
    await waitFor("every event acknowledged", () => acked.size === 200);
    expect([...acked.keys()].sort()).toEqual([...ids].sort());
    expect([...acked.values()].filter((v) => v === "both")).toEqual([]);
    expect(a.deliveries.length + b.deliveries.length).toBe(200);
    expect(a.deliveries.length).toBeGreaterThan(0);
    expect(b.deliveries.length).toBeGreaterThan(0);
    for (const d of [...a.deliveries, ...b.deliveries]) {
      expect(d.deliveryAttempt).toBe(1);
      expect(d.topic).toBe(topic);
      expect(d.event?.source).toBe("//test/events");
      expect(d.event?.data).toMatchObject({ n: expect.any(Number) });
    }
    // Everything settled: the group's offsets reach the end of every partition.
    const ends = await h.admin.fetchTopicOffsets(topic);
    await waitFor("the group's commits to reach the end of every partition", async () => {
      const [committed] = await h.admin.fetchOffsets({ groupId: group, topics: [topic] });
      return committed!.partitions.every((p) => p.offset === ends.find((e) => e.partition === p.partition)!.high);
    }, 5000);
    await a.stop();
    await b.stop();
  });

  it("a subscriber that reconnects resumes after its acknowledgements; what it left unacknowledged is redelivered", async () => {
    const topic = await h.topic("resume", 3);
    h.routes["test.resume.*"] = topic;
    const group = `${h.prefix}.resume`;
    const first = subscribe({ topic, consumerGroup: group, ackDeadline: { seconds: 60n, nanos: 0 } });
    await first.joined();
    const ids = await publishMany(h, "test.resume.created", "resume", 60);
    await waitFor("60 deliveries", () => first.deliveries.length === 60);
    // Per partition, acknowledge the first half in offset order and leave the rest unsettled.
    const byPartition = new Map<number, typeof first.deliveries>();
    for (const d of first.deliveries) byPartition.set(d.partition, [...(byPartition.get(d.partition) ?? []), d]);
    const ackedIds = new Set<string>();
    for (const list of byPartition.values()) {
      const half = list.sort((x, y) => Number(x.offset - y.offset)).slice(0, Math.ceil(list.length / 2));
      const r = await first.ack(half.map((d) => d.ackToken));
      expect(r.acknowledged).toBe(half.length);
      for (const d of half) ackedIds.add(d.event!.id);
    }
    await first.stop();
    // Once the server has seen the stream end, the subscription's tokens are refused.
    let refused: unknown;
    await waitFor("the ended subscription to be refused", async () => {
      refused = await first.ack([first.deliveries[0]!.ackToken]).then(() => undefined, (error: unknown) => error);
      return refused !== undefined;
    }, 5000);
    expect(refused).toMatchObject({ code: Code.NOT_FOUND, reason: "RES_SUBSCRIPTION_NOT_FOUND" });

    const second = subscribe({ topic, consumerGroup: group });
    const unacked = ids.filter((id) => !ackedIds.has(id));
    await waitFor("the unacknowledged events again", () => second.deliveries.length >= unacked.length);
    await new Promise((r) => setTimeout(r, 500));
    expect(second.deliveries.map((d) => d.event!.id).sort()).toEqual([...unacked].sort());
    // The first member's deliveries count: these are second attempts.
    expect(new Set(second.deliveries.map((d) => d.deliveryAttempt))).toEqual(new Set([2]));
    await second.stop();
    // Ended streams leave the group: no consumer is left behind.
    await waitFor("the group to be empty", async () => (await h.admin.describeGroups([group])).groups[0]!.members.length === 0, 10_000);
  });

  it("replays from a timestamp exactly the events published since then", async () => {
    const topic = await h.topic("replay", 3);
    h.routes["test.replay.*"] = topic;
    await publishMany(h, "test.replay.created", "before", 30);
    await new Promise((r) => setTimeout(r, 1100));
    const since = new Date();
    await new Promise((r) => setTimeout(r, 50));
    const after = await publishMany(h, "test.replay.created", "after", 25);
    const replay = subscribe({ topic, startPosition: { $case: "timestamp", value: since } });
    await waitFor("the events since the timestamp", () => replay.deliveries.length >= 25);
    await new Promise((r) => setTimeout(r, 500));
    expect(replay.deliveries.map((d) => d.event!.id).sort()).toEqual([...after].sort());
    expect(replay.infos[0]!.consumerGroup).toMatch(/^taskmesh-events-private\./);
    // A private group commits nothing.
    const offsets = await h.admin.fetchOffsets({ groupId: replay.infos[0]!.consumerGroup, topics: [topic] });
    expect(offsets[0]!.partitions.every((p) => p.offset === "-1")).toBe(true);

    const earliest = subscribe({ topic, startPosition: { $case: "earliest", value: {} }, types: ["test.replay.*"] });
    await waitFor("every event from the earliest", () => earliest.deliveries.length >= 55);
    const filtered = subscribe({ topic, startPosition: { $case: "earliest", value: {} }, types: ["test.other"] });
    await filtered.joined();
    await new Promise((r) => setTimeout(r, 1000));
    expect(filtered.deliveries).toEqual([]);
  });

  it("max_in_flight bounds unsettled deliveries; a member joining takes partitions, and the old member can no longer settle their deliveries", async () => {
    const topic = await h.topic("rebalance", 4);
    h.routes["test.rebalance.*"] = topic;
    const group = `${h.prefix}.rebalance`;
    const a = subscribe({ topic, consumerGroup: group, maxInFlight: 5, ackDeadline: { seconds: 60n, nanos: 0 } });
    await a.joined();
    expect(a.partitions).toEqual([0, 1, 2, 3]);
    const ids = await publishMany(h, "test.rebalance.created", "rebalance", 20);
    await waitFor("five deliveries", () => a.deliveries.length === 5);
    await new Promise((r) => setTimeout(r, 700));
    expect(a.deliveries).toHaveLength(5);
    expect((await a.ack(a.deliveries.slice(0, 2).map((d) => d.ackToken))).acknowledged).toBe(2);
    await waitFor("two more", () => a.deliveries.length === 7);

    const b = subscribe({ topic, consumerGroup: group, ackDeadline: { seconds: 60n, nanos: 0 } });
    await b.joined();
    await waitFor("a's new assignment", () => a.partitions.length === 4 - b.partitions.length && a.partitions.length > 0);
    expect(a.infos.length).toBeGreaterThanOrEqual(2);
    const lost = a.deliveries.slice(2, 7).filter((d) => b.partitions.includes(d.partition));
    if (lost.length > 0) expect((await a.ack(lost.map((d) => d.ackToken))).invalidTokens).toEqual(lost.map((d) => d.ackToken));

    // Settle everything from here on: every event ends up acknowledged by one member or the other.
    const acked = await acknowledgeAll([a, b], new Set(a.deliveries.slice(0, 2).map((d) => d.event!.id)));
    await waitFor("every event acknowledged", () => acked.size === 20);
    expect([...acked].sort()).toEqual([...ids].sort());
  });

  it("while the group's offsets cannot be looked up, a member's new partitions wait; none skips what is published meanwhile, even when another member takes it", async () => {
    let refusing: RefusingOffsetLookups | undefined;
    const flaky = await startEvents("events-sub-flaky", undefined, (kafka) => (refusing = new RefusingOffsetLookups(kafka, 3)));
    const members: Subscriber[] = [];
    try {
      const topic = await flaky.topic("lookups", 2);
      flaky.routes["test.lookups.*"] = topic;
      const group = `${flaky.prefix}.lookups`;
      const a = new Subscriber(flaky.client, { topic, consumerGroup: group, maxInFlight: 1, ackDeadline: { seconds: 60n, nanos: 0 } });
      members.push(a);
      await a.joined();
      expect(refusing!.refused).toBe(3);
      // Published while a can take only one: the rest wait in Kafka, on both partitions.
      const ids = await publishMany(flaky, "test.lookups.created", "lookups", 12);
      await waitFor("a's first delivery", () => a.deliveries.length === 1);
      const b = new Subscriber(flaky.client, { topic, consumerGroup: group, ackDeadline: { seconds: 60n, nanos: 0 } });
      members.push(b);
      await b.joined();
      await waitFor("a's new assignment", () => a.partitions.length === 1 && b.partitions.length === 1);
      const acked = await acknowledgeAll([a, b]);
      await waitFor("every event acknowledged", () => acked.size === 12);
      expect([...acked].sort()).toEqual([...ids].sort());
    } finally {
      await Promise.all(members.map((m) => m.stop()));
      await flaky.stop();
    }
  });

  it("Acknowledge reaches any replica: another one forwards it to the replica holding the stream", async () => {
    const other = await startEvents("events-sub-b");
    try {
      const topic = await h.topic("forward", 1);
      h.routes["test.forward.*"] = topic;
      const sub = subscribe({ topic, consumerGroup: `${h.prefix}.forward` });
      await sub.joined();
      await publishMany(h, "test.forward.created", "forward", 3);
      await waitFor("three deliveries", () => sub.deliveries.length === 3);
      const [a, b, c] = sub.deliveries;
      const r = await other.client.acknowledge({
        subscriptionId: sub.id, ackTokens: [a!.ackToken, "bogus"], nacks: [{ ackToken: b!.ackToken, requeue: true, delay: undefined, reason: "later" }],
      });
      expect(r).toEqual({ acknowledged: 1, nacked: 1, invalidTokens: ["bogus"] });
      await waitFor("the nacked one again", () => sub.deliveries.length === 4);
      expect([sub.deliveries[3]!.event!.id, sub.deliveries[3]!.deliveryAttempt]).toEqual([b!.event!.id, 2]);
      expect(await other.client.acknowledge({ subscriptionId: sub.id, ackTokens: [c!.ackToken, sub.deliveries[3]!.ackToken], nacks: [] }))
        .toEqual({ acknowledged: 2, nacked: 0, invalidTokens: [] });
      await expect(other.client.acknowledge({ subscriptionId: "0193a5f0-0000-7000-8000-000000000000", ackTokens: ["x"], nacks: [] }))
        .rejects.toMatchObject({ code: Code.NOT_FOUND, reason: "RES_SUBSCRIPTION_NOT_FOUND" });
    } finally {
      await other.stop();
    }
  });

  it("a subscriber that goes away while its group is being joined leaves no consumer behind", async () => {
    const topic = await h.topic("gone", 1);
    const group = `${h.prefix}.gone`;
    for (const waitMs of [20, 60, 150]) {
      const s = subscribe({ topic, consumerGroup: group });
      await new Promise((r) => setTimeout(r, waitMs));
      await s.stop();
    }
    await new Promise((r) => setTimeout(r, 1000));
    await waitFor("the group to be empty", async () => {
      const [g] = (await h.admin.describeGroups([group])).groups;
      return g!.members.length === 0;
    }, 15_000);
  });

  it("refuses a missing topic and bad requests", async () => {
    const missing = subscribe({ topic: `${h.prefix}.missing` });
    await missing.done;
    expect(missing.error).toMatchObject({ code: Code.NOT_FOUND, reason: "RES_TOPIC_NOT_FOUND" });
    const bad = subscribe({ topic: "bad topic!", consumerGroup: "no spaces here", maxInFlight: 5000 });
    await bad.done;
    expect(bad.error).toBeInstanceOf(MeshError);
    const e = bad.error as MeshError;
    expect([e.code, e.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_TOPIC"]);
    expect(e.violations.map((v) => v.field)).toEqual(["topic", "consumer_group", "max_in_flight"]);
  });
});
