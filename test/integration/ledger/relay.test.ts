import { Kafka, logLevel, type Admin, type Consumer, type IHeaders } from "kafkajs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { TaskEvent } from "../../../gen/taskmesh/task/v1/task.js";
import { createLogger } from "../../../services/kit/src/index.js";
import { OutboxRelay, type OutboxRelayOptions, type OutboxRow } from "../../../services/ledger/src/index.js";
import { testTopicPrefix } from "../../support/kafka.js";
import { connectWorker, createRequest, mirrorOutbox, seconds, startLedger, type LedgerHarness } from "./support.js";

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One consumed record. */
interface Received {
  readonly key: string;
  readonly partition: number;
  readonly headers: Record<string, string>;
  readonly value: Buffer;
}

interface StoredRow {
  id: string;
  event_id: string;
  task_id: string;
  sequence: string;
  type: string;
  traceparent: string;
  created_at: Date;
}

const text = (headers: IHeaders | undefined) =>
  Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString() : String(v)]));

describe("ledger: outbox relay to Kafka", () => {
  const prefix = testTopicPrefix("relay");
  const brokers = [inject("kafkaBrokers")];
  const logger = createLogger({ level: "silent" });
  let h: LedgerHarness;
  let kafka: Kafka;
  let admin: Admin;
  let databaseUrl: string;
  const relays: OutboxRelay[] = [];
  const consumers: Consumer[] = [];

  beforeAll(async () => {
    h = await startLedger("ledger_relay");
    databaseUrl = h.sql.options.connectionString!;
    await connectWorker(h.client, "w-relay", ["echo"]);
    await mirrorOutbox(h.sql);
    kafka = new Kafka({ clientId: prefix, brokers, logLevel: logLevel.NOTHING });
    admin = kafka.admin();
    await admin.connect();
  });

  afterAll(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    await Promise.all(consumers.map((c) => c.disconnect().catch(() => undefined)));
    await admin?.disconnect().catch(() => undefined);
    await h?.stop();
  }, 30_000);

  /** A relay on the test database publishing to `topic`, stopped after the file. */
  const relay = (topic: string, name: string, options: Partial<OutboxRelayOptions> = {}) => {
    const r = new OutboxRelay({ databaseUrl, brokers, topic, logger, name, batchSize: 20, pollIntervalMs: 50, lockRetryMs: 100, backoff: { initialMs: 50, maxMs: 500 }, ...options });
    relays.push(r);
    return r;
  };

  /** A fresh 12-partition topic and a consumer of it from the beginning, collecting every record. */
  const topicWithConsumer = async (name: string) => {
    const topic = `${prefix}.${name}`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 12 }], waitForLeaders: true });
    const consumer = kafka.consumer({ groupId: topic, heartbeatInterval: 200, maxWaitTimeInMs: 100, sessionTimeout: 10_000, rebalanceTimeout: 10_000, allowAutoTopicCreation: false });
    consumers.push(consumer);
    const received: Received[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) =>
        void received.push({ key: message.key!.toString(), partition, headers: text(message.headers), value: message.value! }),
    });
    return { topic, received };
  };

  /** `n` tasks through submit → claim → start → progress → complete (every third cancelled while running): 4 events each, interleaved across tasks. */
  const workload = async (n: number) => {
    const created = await Promise.all(Array.from({ length: n }, () => h.client.createTask(createRequest({ capability: "echo" }))));
    const { tasks } = await h.client.claimTasks({ workerId: "w-relay", capabilities: [{ capability: "echo", maxTasks: n }], maxTasks: n, leaseDuration: seconds(60) });
    expect(tasks).toHaveLength(n);
    await Promise.all(tasks.map(async (t, i) => {
      const leaseId = t.lease!.leaseId;
      await h.client.startTask({ taskId: t.id, leaseId, expectedSequence: undefined, leaseDuration: undefined });
      await h.client.recordProgress({ taskId: t.id, leaseId, progress: { percent: 50, message: "half", details: undefined, attempt: 0, reportedAt: undefined } });
      if (i % 3 === 0) await h.client.cancelTask({ taskId: t.id, reason: "test", actor: "alice", expectedSequence: undefined });
      else await h.client.completeTask({ taskId: t.id, leaseId, output: { text: "ok" }, expectedSequence: undefined });
    }));
    return created.map((c) => c.task!.id);
  };

  /** The outbox rows written for `taskIds`, in id order (from the mirror: published rows leave the outbox). */
  const rowsOf = async (taskIds: string[]) =>
    (await h.sql.query<StoredRow>("SELECT id, event_id, task_id, sequence, type, traceparent, created_at FROM public.outbox_seen WHERE task_id = ANY($1::uuid[]) ORDER BY id", [taskIds])).rows;

  /** Rows still in the outbox: every one of them is unpublished. */
  const unpublished = async () => Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.outbox")).rows[0]!.n);

  /** Checks every row arrived (at least once) as the right record, and per task the first copies are in outbox order. */
  const checkDelivery = async (rows: StoredRow[], received: Received[]) => {
    const byId = new Map<string, Received[]>();
    for (const r of received) byId.set(r.headers.ce_id!, [...(byId.get(r.headers.ce_id!) ?? []), r]);
    expect(rows.filter((row) => !byId.has(row.event_id)).map((r) => r.event_id)).toEqual([]);
    const { rows: left } = await h.sql.query<{ id: string }>("SELECT id FROM ledger.outbox WHERE id = ANY($1::bigint[])", [rows.map((r) => r.id)]);
    expect(left, "published rows still in the outbox").toEqual([]);
    for (const row of rows) {
      for (const m of byId.get(row.event_id)!) {
        expect(m.key).toBe(row.task_id);
        expect(m.headers).toEqual({
          ce_specversion: "1.0", ce_id: row.event_id, ce_type: row.type, ce_source: "//taskmesh.dev/ledger", ce_subject: row.task_id,
          ce_time: row.created_at.toISOString(), "content-type": "application/protobuf", taskmesh_sequence: row.sequence,
          ...(row.traceparent ? { traceparent: row.traceparent } : {}),
        });
        const event = TaskEvent.decode(m.value);
        expect([event.id, event.subject, event.type, event.sequence, event.source]).toEqual([row.event_id, row.task_id, row.type, BigInt(row.sequence), m.headers.ce_source]);
        expect(event.time?.toISOString()).toBe(m.headers.ce_time);
      }
    }
    // One partition per task; records of a partition arrive in offset order. Dedup by ce_id keeping first copies.
    const seen = new Set<string>();
    const firstCopies = new Map<string, string[]>();
    for (const m of received) {
      if (seen.has(m.headers.ce_id!)) continue;
      seen.add(m.headers.ce_id!);
      firstCopies.set(m.key, [...(firstCopies.get(m.key) ?? []), m.headers.ce_id!]);
    }
    const expected = new Map<string, string[]>();
    for (const row of rows) expected.set(row.task_id, [...(expected.get(row.task_id) ?? []), row.event_id]);
    for (const [task, ids] of expected) expect(firstCopies.get(task), `order of task ${task}`).toEqual(ids);
    for (const [task] of expected) expect(new Set(received.filter((m) => m.key === task).map((m) => m.partition)).size).toBe(1);
    return byId;
  };

  it("publishes every outbox row once, keyed by task, with CloudEvents headers, in order per task, and removes it from the outbox", async () => {
    const { topic, received } = await topicWithConsumer("happy");
    const before = await workload(6); // written before the relay starts
    const r = relay(topic, "relay-happy");
    expect(r.state).toBe("idle");
    r.start();
    expect(r.state).toBe("running");
    const during = await workload(24); // written while it runs
    const rows = await rowsOf([...before, ...during]);
    expect(rows).toHaveLength(30 * 4);
    await waitFor("the outbox to drain", async () => (await unpublished()) === 0);
    await waitFor("every record", () => received.length >= rows.length);
    const byId = await checkDelivery(await rowsOf([...before, ...during]), received);
    expect([...byId.values()].every((copies) => copies.length === 1)).toBe(true);
    expect(received).toHaveLength(rows.length);
    expect(r.published).toBe(rows.length);
    await r.stop();
    expect(r.state).toBe("stopped");
  });

  it("re-sends, after a crash between send and mark, what was sent but not marked: nothing lost, order kept after dedup", async () => {
    const { topic, received } = await topicWithConsumer("crash");
    const tasks = await workload(30); // 120 rows: 6 batches of 20
    let batches = 0;
    let crashed: readonly OutboxRow[] = [];
    const a = relay(topic, "relay-crash-a", {
      afterSend: async (rows) => {
        if (++batches !== 3) return;
        crashed = rows;
        // The crash: its connection (and so the lock) dies after Kafka acknowledged the batch, before the mark.
        await h.sql.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'relay-crash-a'");
        void a.stop();
      },
    });
    a.start();
    await waitFor("relay A to crash", () => a.state === "stopped");
    expect(crashed).toHaveLength(20);
    expect(a.published).toBe(40);
    expect(await unpublished()).toBe(80);
    const b = relay(topic, "relay-crash-b");
    b.start();
    const more = await workload(6); // and new rows while B runs
    const rows = await rowsOf([...tasks, ...more]);
    await waitFor("the outbox to drain", async () => (await unpublished()) === 0);
    await waitFor("every record", () => new Set(received.map((m) => m.headers.ce_id)).size >= rows.length);
    const byId = await checkDelivery(await rowsOf([...tasks, ...more]), received);
    // The crashed batch went out twice; nothing else did.
    for (const row of crashed) expect(byId.get(row.event_id)).toHaveLength(2);
    expect(received).toHaveLength(rows.length + crashed.length);
    expect(b.published).toBe(rows.length - 40);
    await b.stop();
  });

  it("backs off on Kafka and Postgres errors and loses nothing: a missing topic, then a killed connection", async () => {
    const topic = `${prefix}.late`;
    const r = relay(topic, "relay-late", { kafkaRetry: { retries: 1, delayMs: 50 } });
    r.start();
    const first = await workload(5);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(r.state).toBe("running");
    expect(r.published).toBe(0);
    expect(await unpublished()).toBe(20);
    const { received } = await topicWithConsumer("late"); // the topic appears: the relay catches up
    await waitFor("the outbox to drain", async () => (await unpublished()) === 0);
    await waitFor("the relay to hold the lock", () => r.isLeader);
    await h.sql.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'relay-late'");
    const second = await workload(5);
    await waitFor("the outbox to drain again", async () => (await unpublished()) === 0);
    const rows = await rowsOf([...first, ...second]);
    await waitFor("every record", () => new Set(received.map((m) => m.headers.ce_id)).size >= rows.length);
    await checkDelivery(rows, received);
    await r.stop();
  });

  it("runs one active relay of two at a time; the standby takes over when the active one stops", async () => {
    const { topic, received } = await topicWithConsumer("pair");
    const a = relay(topic, "relay-pair-a");
    const b = relay(topic, "relay-pair-b");
    a.start();
    b.start();
    await waitFor("a leader", () => a.isLeader || b.isLeader);
    const leaders: number[] = [];
    const sampler = setInterval(() => leaders.push(Number(a.isLeader) + Number(b.isLeader)), 10);
    const first = await workload(15);
    await waitFor("the outbox to drain", async () => (await unpublished()) === 0);
    const [active, standby] = a.isLeader ? [a, b] : [b, a];
    expect(standby.published).toBe(0);
    await active.stop();
    await waitFor("the standby to take over", () => standby.isLeader);
    const second = await workload(15);
    await waitFor("the outbox to drain", async () => (await unpublished()) === 0);
    clearInterval(sampler);
    expect(leaders.every((n) => n <= 1)).toBe(true);
    const rows = await rowsOf([...first, ...second]);
    await waitFor("every record", () => received.length >= rows.length);
    const byId = await checkDelivery(rows, received);
    expect([...byId.values()].every((copies) => copies.length === 1)).toBe(true);
    expect(active.published + standby.published).toBe(rows.length);
    expect(standby.published).toBeGreaterThan(0);
    await standby.stop();
  });
});
