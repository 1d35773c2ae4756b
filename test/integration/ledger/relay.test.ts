import pg from "pg";
import { Kafka, logLevel, type Admin, type Consumer, type IHeaders } from "kafkajs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { TaskEvent, TaskState } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { createLogger, uuidv7 } from "@taskmesh/kit";
import { OutboxRelay, type OutboxRelayOptions, type RelayRow } from "@taskmesh/ledger-service";
import { testTopicPrefix } from "../../support/kafka.js";
import { connectWorker, createRequest, eventsOf, mirrorOutbox, seconds, startLedger, unpublishedEvents, type LedgerHarness, type WrittenEvent } from "./support.js";

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

const text = (headers: IHeaders | undefined) =>
  Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString() : String(v)]));

describe("ledger: outbox relay to Kafka (transitions from history, progress from the outbox)", () => {
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

  /** The events written for `taskIds`, per task in sequence order (progress from the mirror: published rows leave the outbox). */
  const rowsOf = (taskIds: string[]) => eventsOf(h.sql, taskIds, { mirrored: true });

  /** Events not yet published: transitions past the relay's cursor, progress rows still in the outbox. */
  const unpublished = () => unpublishedEvents(h.sql);

  /** Checks every event arrived (at least once) as the right record, and per task the first copies are in sequence order. */
  const checkDelivery = async (rows: WrittenEvent[], received: Received[]) => {
    const byId = new Map<string, Received[]>();
    for (const r of received) byId.set(r.headers.ce_id!, [...(byId.get(r.headers.ce_id!) ?? []), r]);
    expect(rows.filter((row) => !byId.has(row.eventId)).map((r) => r.eventId)).toEqual([]);
    const { rows: left } = await h.sql.query<{ id: string }>("SELECT id FROM ledger.outbox WHERE id = ANY($1::bigint[])", [rows.flatMap((r) => r.outboxId ?? [])]);
    expect(left, "published progress rows still in the outbox").toEqual([]);
    for (const row of rows) {
      for (const m of byId.get(row.eventId)!) {
        expect(m.key).toBe(row.taskId);
        expect(m.headers).toEqual({
          ce_specversion: "1.0", ce_id: row.eventId, ce_type: row.type, ce_source: "//taskmesh.dev/ledger", ce_subject: row.taskId,
          ce_time: row.time.toISOString(), "content-type": "application/protobuf", taskmesh_sequence: row.sequence,
          ...(row.traceparent ? { traceparent: row.traceparent } : {}),
        });
        // The record is the event as written: a transition's built from its history row and task, a progress report's as stored.
        expect(TaskEvent.decode(m.value)).toEqual(row.event);
        expect(row.event.time?.toISOString()).toBe(m.headers.ce_time);
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
    for (const row of rows) expected.set(row.taskId, [...(expected.get(row.taskId) ?? []), row.eventId]);
    for (const [task, ids] of expected) expect(firstCopies.get(task), `order of task ${task}`).toEqual(ids);
    for (const [task] of expected) expect(new Set(received.filter((m) => m.key === task).map((m) => m.partition)).size).toBe(1);
    return byId;
  };

  it("publishes every event once, keyed by task, with CloudEvents headers, in order per task, and moves past it", async () => {
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
    // What the events say of their task: the input on submitted, the output on succeeded, the state after each.
    const succeeded = rows.filter((r) => r.type === "taskmesh.task.v1.succeeded").map((r) => r.event.task!);
    expect(succeeded.length).toBeGreaterThan(0);
    expect(succeeded.every((t) => t.state === TaskState.TASK_STATE_SUCCEEDED && JSON.stringify(t.output) === JSON.stringify({ text: "ok" }) && t.finishedAt !== undefined)).toBe(true);
    const submitted = rows.filter((r) => r.type === "taskmesh.task.v1.submitted").map((r) => r.event.task!);
    expect(submitted.every((t) => t.state === TaskState.TASK_STATE_PENDING && t.capability === "echo" && t.input !== undefined && t.output === undefined)).toBe(true);
    expect(r.published).toBe(rows.length);
    await r.stop();
    expect(r.state).toBe("stopped");
  });

  it("publishes a workflow's transitions with its id and each task's name: submitted WAITING, then ready with the input its references resolved to", async () => {
    const { topic, received } = await topicWithConsumer("workflow");
    const step = (name: string, dependsOn: string[], input: Record<string, unknown>) => ({ name, dependsOn, task: createRequest({ capability: "relay-wf", input }) });
    const { workflow } = await h.client.createWorkflow({
      id: uuidv7(), name: "relayed", failurePolicy: 0, idempotencyKey: "", requestHash: "a".repeat(64), createdBy: "alice", traceId: "0af7651916cd43dd8448eb211c80319c",
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", labels: {},
      tasks: [step("first", [], { text: "hi" }), step("second", ["first"], { got: { $ref: "first.text" } })],
    });
    const [first] = (await h.client.assignTasks({ capability: "relay-wf", workerIds: ["w-relay"], leaseDuration: seconds(60) })).tasks;
    await h.client.completeTask({ taskId: first!.id, leaseId: first!.lease!.leaseId, output: { text: "hi" }, expectedSequence: undefined });
    const ids = workflow!.nodes.map((n) => n.taskId);
    const secondId = workflow!.nodes.find((n) => n.name === "second")!.taskId;
    const r = relay(topic, "relay-workflow");
    r.start();
    try {
      await waitFor("the outbox to drain", async () => (await unpublished()) === 0);
      const rows = await rowsOf(ids);
      await waitFor("every record", () => received.length >= rows.length);
      await checkDelivery(rows, received);
      const second = rows.filter((row) => row.taskId === secondId).map((row) => [row.type, TaskState[row.event.task!.state], row.event.task!.workflowId, row.event.task!.workflowStep]);
      expect(second).toEqual([
        ["taskmesh.task.v1.submitted", "TASK_STATE_WAITING", workflow!.id, "second"],
        ["taskmesh.task.v1.ready", "TASK_STATE_PENDING", workflow!.id, "second"],
      ]);
      expect(rows.find((row) => row.type === "taskmesh.task.v1.ready")!.event.task!.input).toEqual({ got: "hi" });
    } finally {
      await r.stop();
    }
  });

  it("holds a transition whose transaction took its txid before its predecessor's until the predecessor may go, then sends both in sequence order", async () => {
    const { topic, received } = await topicWithConsumer("reorder");
    const r = relay(topic, "relay-reorder");
    r.start();
    const id = (await h.client.createTask(createRequest({ capability: "echo-reorder" }))).task!.id;
    const sequences = () => received.filter((m) => m.key === id).map((m) => m.headers.taskmesh_sequence);
    await waitFor("the submitted event", () => sequences().length === 1);
    const [a, b, c] = [0, 1, 2].map(() => new pg.Client({ connectionString: databaseUrl }));
    await Promise.all([a, b, c].map((client) => client!.connect()));
    try {
      // B takes its txid first, C next (and stays open), A last.
      await b!.query("BEGIN");
      await b!.query("SELECT pg_current_xact_id()");
      await c!.query("BEGIN");
      await c!.query("SELECT pg_current_xact_id()");
      // A, the youngest, starts the task (sequence 2) and commits; then B, the oldest, completes it (sequence 3) and commits.
      await a!.query("BEGIN");
      await a!.query(`UPDATE ledger.tasks SET state = 'RUNNING', attempts = 1, started_at = now(), next_attempt_at = NULL, lease_id = uuidv7(),
                       lease_worker_id = 'w-relay', lease_acquired_at = now(), lease_expires_at = now() + interval '1 minute', sequence = 2 WHERE id = $1`, [id]);
      await a!.query(`INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, worker_id) VALUES ($1, 2, 'STARTED', 'PENDING', 'RUNNING', 1, 'w-relay')`, [id]);
      await a!.query("COMMIT");
      await b!.query(`UPDATE ledger.tasks SET state = 'SUCCEEDED', output = '{}', finished_at = now(), lease_id = NULL, lease_worker_id = NULL,
                       lease_acquired_at = NULL, lease_expires_at = NULL, sequence = 3 WHERE id = $1`, [id]);
      await b!.query(`INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, worker_id) VALUES ($1, 3, 'SUCCEEDED', 'RUNNING', 'SUCCEEDED', 1, 'w-relay')`, [id]);
      await b!.query("COMMIT");
      // B's transition is older than C, still running, and so may go; A's is younger and may not: B's waits for it.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(sequences()).toEqual(["1"]);
      await c!.query("COMMIT");
      await waitFor("the started and succeeded events", () => sequences().length >= 3);
      expect(sequences()).toEqual(["1", "2", "3"]);
      expect(await unpublished()).toBe(0);
    } finally {
      await Promise.all([a, b, c].map((client) => client!.end()));
    }
    await r.stop();
  });

  it("re-sends, after a crash between send and mark, what was sent but not marked: nothing lost, order kept after dedup", async () => {
    const { topic, received } = await topicWithConsumer("crash");
    const tasks = await workload(30); // 120 events: 90 transitions, 30 progress reports, in batches of 20 transitions and the progress they let go
    let batches = 0;
    let sentBefore = 0;
    let crashed: readonly RelayRow[] = [];
    const a = relay(topic, "relay-crash-a", {
      afterSend: async (rows) => {
        if (++batches !== 3) {
          sentBefore += rows.length;
          return;
        }
        crashed = rows;
        // The crash: its connection (and so the lock) dies after Kafka acknowledged the batch, before the mark.
        await h.sql.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'relay-crash-a'");
        void a.stop();
      },
    });
    a.start();
    await waitFor("relay A to crash", () => a.state === "stopped");
    expect(crashed.length).toBeGreaterThanOrEqual(20);
    expect(a.published).toBe(sentBefore);
    expect(await unpublished()).toBe(120 - sentBefore);
    const b = relay(topic, "relay-crash-b");
    b.start();
    const more = await workload(6); // and new rows while B runs
    const rows = await rowsOf([...tasks, ...more]);
    await waitFor("the outbox to drain", async () => (await unpublished()) === 0);
    await waitFor("every record", () => new Set(received.map((m) => m.headers.ce_id)).size >= rows.length);
    const byId = await checkDelivery(await rowsOf([...tasks, ...more]), received);
    // The crashed batch went out twice; nothing else did.
    for (const row of crashed) expect(byId.get(row.row.event_id)).toHaveLength(2);
    expect(received).toHaveLength(rows.length + crashed.length);
    expect(b.published).toBe(rows.length - sentBefore);
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
