import { createRequire } from "node:module";
import { connect } from "node:net";
import { Kafka, logLevel, Partitioners, type Admin, type Consumer, type Producer } from "kafkajs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KAFKA_TOPICS } from "@taskmesh/local/provision/kafka";
import { testTopicPrefix } from "../../support/kafka.js";

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The broker's [min, max] version of each API key, from a raw ApiVersions v0 request (whose layout every broker keeps). */
function brokerApiVersions(broker: string): Promise<Map<number, [number, number]>> {
  const [host, port] = broker.split(":") as [string, string];
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), host);
    const clientId = Buffer.from("taskmesh-test");
    const request = Buffer.alloc(4 + 2 + 2 + 4 + 2 + clientId.length);
    request.writeInt32BE(request.length - 4, 0);
    request.writeInt16BE(18, 4); // ApiVersions
    request.writeInt16BE(0, 6); // v0
    request.writeInt32BE(1, 8); // correlation id
    request.writeInt16BE(clientId.length, 12);
    clientId.copy(request, 14);
    let data = Buffer.alloc(0);
    socket.on("error", reject);
    socket.on("data", (chunk) => {
      data = Buffer.concat([data, chunk]);
      if (data.length < 4 || data.length < 4 + data.readInt32BE(0)) return;
      socket.end();
      if (data.readInt16BE(8) !== 0) return reject(new Error(`ApiVersions error ${data.readInt16BE(8)}`));
      const versions = new Map<number, [number, number]>();
      for (let i = 0, at = 14; i < data.readInt32BE(10); i++, at += 6) versions.set(data.readInt16BE(at), [data.readInt16BE(at + 2), data.readInt16BE(at + 4)]);
      resolve(versions);
    });
    socket.write(request);
  });
}

/** The request versions kafkajs implements, by API name (from its pinned sources: it never checks a broker's minimum). */
function kafkajsVersions(): Map<string, { key: number; max: number }> {
  const require = createRequire(import.meta.url);
  const apiKeys = require("kafkajs/src/protocol/requests/apiKeys.js") as Record<string, number>;
  const { requests } = require("kafkajs/src/protocol/requests/index.js") as { requests: Record<string, { versions: string[] }> };
  return new Map(Object.entries(requests).filter(([, r]) => r.versions.length > 0).map(([name, r]) => [name, { key: apiKeys[name]!, max: Math.max(...r.versions.map(Number)) }]));
}

/** Open TCP sockets of this process (leak check). */
const tcpSockets = () => process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length;

describe("local Kafka broker with kafkajs 2.2.4", () => {
  const prefix = testTopicPrefix("kafka");
  /** The run's shared broker, started by the global setup with the same spec as `taskmesh up`. */
  const brokers = [inject("kafkaBrokers")];
  let client: Kafka;
  let admin: Admin;
  let producer: Producer;
  let socketsBefore = 0;
  const consumers: Consumer[] = [];

  /** A consumer of `groupId` that heartbeats and polls often, so rebalances settle in well under a second. */
  const consumer = (groupId: string) => {
    const c = client.consumer({ groupId, heartbeatInterval: 200, maxWaitTimeInMs: 100, sessionTimeout: 10_000, rebalanceTimeout: 10_000, allowAutoTopicCreation: false });
    consumers.push(c);
    return c;
  };

  /** The group's committed offsets on `topic`, summed, against the topic's end offsets, summed. */
  const committed = async (groupId: string, topic: string) => {
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const ends = await admin.fetchTopicOffsets(topic);
    return {
      committed: offsets!.partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0),
      end: ends.reduce((n, p) => n + Number(p.high), 0),
    };
  };

  beforeAll(async () => {
    socketsBefore = tcpSockets();
    client = new Kafka({ clientId: prefix, brokers, logLevel: logLevel.NOTHING });
    admin = client.admin();
    await admin.connect();
    producer = client.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
    await producer.connect();
  }, 90_000);

  afterAll(async () => {
    await Promise.all(consumers.map((c) => c.disconnect().catch(() => undefined)));
    await producer?.disconnect().catch(() => undefined);
    await admin?.disconnect().catch(() => undefined);
  }, 30_000);

  it("speaks, for every API kafkajs implements, a version in the broker's range", async () => {
    const broker = await brokerApiVersions(brokers[0]!);
    const implemented = kafkajsVersions();
    expect([...implemented.keys()]).toEqual(expect.arrayContaining(["Produce", "Fetch", "JoinGroup", "SyncGroup", "Heartbeat", "OffsetCommit", "OffsetFetch", "InitProducerId", "EndTxn"]));
    const outOfRange = [...implemented]
      .filter(([, { key, max }]) => !broker.has(key) || max < broker.get(key)![0])
      .map(([name, { key, max }]) => `${name} (kafkajs up to v${max}, broker ${broker.has(key) ? `v${broker.get(key)!.join("-v")}` : "none"})`);
    expect(outOfRange).toEqual([]);
  });

  it("has the taskmesh topics with their partition counts, and no others auto-created", async () => {
    const { topics } = await admin.fetchTopicMetadata({ topics: Object.keys(KAFKA_TOPICS) });
    expect(Object.fromEntries(topics.map((t) => [t.name, t.partitions.length]))).toEqual(KAFKA_TOPICS);
    // A client that asks for auto-creation is refused: topics exist only where they are created on purpose.
    const eager = client.producer({ allowAutoTopicCreation: true, retry: { retries: 0 }, createPartitioner: Partitioners.DefaultPartitioner });
    await eager.connect();
    try {
      await expect(eager.send({ topic: `${prefix}.typo`, messages: [{ value: "x" }] })).rejects.toThrow(/does not host this topic-partition/);
    } finally {
      await eager.disconnect();
    }
    expect(await admin.listTopics()).not.toContain(`${prefix}.typo`);
  });

  it("shares a topic's partitions between two group members after a rebalance, each message consumed once", async () => {
    const topic = `${prefix}.shared`;
    const groupId = `${prefix}.shared`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 6 }], waitForLeaders: true });
    const received: Array<{ member: string; partition: number; id: string }> = [];
    const assignment = new Map<string, number[]>();
    const start = async (member: string) => {
      const c = consumer(groupId);
      c.on(c.events.GROUP_JOIN, ({ payload }) => assignment.set(member, [...(payload.memberAssignment[topic] ?? [])].sort()));
      await c.connect();
      await c.subscribe({ topic, fromBeginning: true });
      await c.run({ eachMessage: async ({ partition, message }) => void received.push({ member, partition, id: message.value!.toString() }) });
      return c;
    };
    const send = (batch: string) => producer.send({ topic, acks: -1, messages: Array.from({ length: 30 }, (_, i) => ({ partition: i % 6, key: `${batch}${i}`, value: `${batch}${i}` })) });

    await start("a");
    await waitFor("a to get every partition", () => assignment.get("a")?.length === 6);
    await send("first-");
    await waitFor("a to consume the first batch", () => received.length >= 30);
    await waitFor("a to commit the first batch", async () => { const o = await committed(groupId, topic); return o.committed === o.end; });

    await start("b");
    const shared = () => {
      const [a = [], b = []] = [assignment.get("a"), assignment.get("b")];
      return a.length > 0 && b.length > 0 && new Set([...a, ...b]).size === 6 && a.length + b.length === 6;
    };
    await waitFor("a rebalance that splits the partitions between a and b", shared);
    await send("second-");
    await waitFor("the second batch", () => received.length >= 60);
    await waitFor("the second batch to be committed", async () => { const o = await committed(groupId, topic); return o.committed === o.end; });

    const counts = new Map<string, number>();
    for (const { id } of received) counts.set(id, (counts.get(id) ?? 0) + 1);
    expect(counts.size).toBe(60);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(received.filter((r) => r.id.startsWith("first-")).every((r) => r.member === "a")).toBe(true);
    for (const member of ["a", "b"]) {
      const second = received.filter((r) => r.id.startsWith("second-") && r.member === member);
      expect(second.length).toBe(assignment.get(member)!.length * 5);
      expect(new Set(second.map((r) => r.partition))).toEqual(new Set(assignment.get(member)));
    }
  });

  it("resumes a group after its last committed offset when a new member joins", async () => {
    const topic = `${prefix}.resume`;
    const groupId = `${prefix}.resume`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
    const send = (from: number, to: number) => producer.send({ topic, messages: [0, 1, 2].flatMap((partition) =>
      Array.from({ length: to - from }, (_, i) => ({ partition, value: `${partition}:${from + i}` }))) });
    await send(0, 10);

    // The first member commits by hand only the first 5 messages of each partition, then leaves.
    const first = consumer(groupId);
    let seenByFirst = 0;
    await first.connect();
    await first.subscribe({ topic, fromBeginning: true });
    await first.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        seenByFirst++;
        const offset = Number(message.offset);
        if (offset < 5) await first.commitOffsets([{ topic, partition, offset: String(offset + 1) }]);
      },
    });
    await waitFor("the first member to see all 30 messages", () => seenByFirst === 30);
    await first.disconnect();
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
    expect(offsets!.partitions.map((p) => Number(p.offset))).toEqual([5, 5, 5]);

    // Produced while the group has no member: a consumer starting at the end would miss these.
    await send(10, 13);
    const second = consumer(groupId);
    const seenBySecond: string[] = [];
    await second.connect();
    await second.subscribe({ topic, fromBeginning: true });
    await second.run({ eachMessage: async ({ message }) => void seenBySecond.push(message.value!.toString()) });
    await waitFor("the second member to consume from the committed offsets", () => seenBySecond.length >= 24);
    await waitFor("the second member to commit", async () => { const o = await committed(groupId, topic); return o.committed === o.end; });
    const expected = [0, 1, 2].flatMap((p) => Array.from({ length: 8 }, (_, i) => `${p}:${5 + i}`));
    expect([...seenBySecond].sort()).toEqual(expected.sort());
  });

  it("leaves no client connection open once its clients disconnect", async () => {
    await Promise.all(consumers.map((c) => c.disconnect()));
    await producer.disconnect();
    await admin.disconnect();
    await waitFor("sockets to close", () => tcpSockets() <= socketsBefore, 5000);
    expect(tcpSockets()).toBe(socketsBefore);
  });
});
