import { Kafka, logLevel, type IHeaders } from "kafkajs";
import pg from "pg";
import { describe, expect, inject, it } from "vitest";
import { freePort } from "@taskmesh/local/secrets";
import { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { TaskEvent, TaskView } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code, MeshError, createClient, type MeshClient } from "@taskmesh/kit";
import { testTopicPrefix } from "../../support/kafka.js";
import { createTestDatabase } from "../../support/postgres.js";
import { startService, waitForServing, type ServiceProcess } from "../../support/processes.js";
import { connectWorker, createRequest, eventsOf, mirrorOutbox, seconds, unpublishedEvents } from "./support.js";

/** Tasks driven through the ledger; every fifth fails once (retryable) before it completes. */
const TASKS = 200;
/** Task lifecycles in flight at once. */
const CONCURRENCY = 10;
/** The ledger is killed once this many tasks are finished. */
const KILL_AFTER = TASKS / 2;
const WORKER = "w-crash";

type Ledger = MeshClient<typeof LedgerServiceService>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it holds or `timeoutMs` passes; says which (the assertions that follow tell what is missing). */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) return false;
    await sleep(50);
  }
  return true;
}

/**
 * Failures a call is retried on: the ledger is gone or restarting
 * (UNAVAILABLE, DEADLINE_EXCEEDED), or a transaction lost a race
 * (ABORTED SYS_SERIALIZATION_FAILURE). Every ledger rpc is safe to repeat
 * (see ledger.proto); ClaimTasks is the exception, handled in `claim`.
 */
const retryable = (e: unknown) =>
  e instanceof MeshError && (e.code === Code.UNAVAILABLE || e.code === Code.DEADLINE_EXCEEDED || (e.code === Code.ABORTED && e.reason === "SYS_SERIALIZATION_FAILURE"));

const text = (headers: IHeaders | undefined) =>
  Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString() : String(v)]));

/** One record read back from the topic. */
interface Consumed {
  readonly partition: number;
  readonly offset: bigint;
  readonly key: string;
  readonly headers: Record<string, string>;
  readonly event: TaskEvent;
}

describe("ledger: outbox relay across a kill -9 of the ledger process", () => {
  it("publishes every transition of every task, once per event id and in order per task, also when the process dies mid-publish", { timeout: 60_000 }, async () => {
    const t0 = Date.now();
    const prefix = testTopicPrefix("relay-crash");
    const topic = `${prefix}.tasks`;
    const brokers = inject("kafkaBrokers");
    const db = await createTestDatabase("ledger_relay_crash");
    const sql = new pg.Pool({ connectionString: db.url, max: 2 });
    const kafka = new Kafka({ clientId: prefix, brokers: [brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const consumer = kafka.consumer({ groupId: `${topic}.reader`, heartbeatInterval: 200, maxWaitTimeInMs: 100, allowAutoTopicCreation: false });
    const procs: ServiceProcess[] = [];
    const clients: Ledger[] = [];
    let current: Ledger | undefined;

    /** Starts a ledger process on the test database and topic, and points the calls at it. */
    const startLedger = async (instance: string): Promise<ServiceProcess> => {
      const address = `127.0.0.1:${await freePort()}`;
      const proc = startService("ledger", {
        DATABASE_URL: db.url, TASKMESH_LISTEN: address, TASKMESH_INSTANCE: instance, KAFKA_BROKERS: brokers, TASKMESH_OUTBOX_TOPIC: topic, TASKMESH_SHUTDOWN_GRACE: "5s",
      });
      procs.push(proc);
      await waitForServing(address, proc);
      const client = createClient(LedgerServiceService, address, { channelOptions: { "grpc.initial_reconnect_backoff_ms": 50, "grpc.max_reconnect_backoff_ms": 200 } });
      clients.push(client);
      current = client;
      return proc;
    };

    /** Runs `call` on the current ledger, again (on whichever ledger is current then) while it fails retryably. */
    let retried = 0;
    const call = async <T>(what: string, run: (ledger: Ledger) => Promise<T>): Promise<T> => {
      const until = Date.now() + 20_000;
      for (;;) {
        try {
          return await run(current!);
        } catch (error) {
          if (!retryable(error) || Date.now() > until) throw new Error(`${what} failed`, { cause: error });
          retried++;
          await sleep(50);
        }
      }
    };

    /**
     * Claims the task (its own capability, so the claim can only return it).
     * ClaimTasks is not idempotent: when its answer was lost to the kill, the
     * lease was taken; the task then shows it (worker-side recovery by GetTask).
     */
    let recoveredClaims = 0;
    const claim = async (taskId: string, capability: string, attempt: number): Promise<string> => {
      for (;;) {
        const { tasks } = await call("ClaimTasks", (l) => l.claimTasks({ workerId: WORKER, capabilities: [{ capability, maxTasks: 1 }], maxTasks: 1, leaseDuration: seconds(60) }));
        if (tasks.length > 0) {
          expect(tasks[0]!.id).toBe(taskId);
          return tasks[0]!.lease!.leaseId;
        }
        const { task } = await call("GetTask", (l) => l.getTask({ id: taskId, view: TaskView.TASK_VIEW_FULL }));
        if (task?.lease?.workerId === WORKER && task.lease.attempt === attempt) {
          recoveredClaims++;
          return task.lease.leaseId;
        }
        await sleep(20); // backing off before a retry
      }
    };

    let finished = 0;
    /** One task: created, claimed, started, (failed with a retry, claimed and started again,) completed. */
    const lifecycle = async (i: number): Promise<void> => {
      const capability = `crash-${i}`;
      const request = createRequest({
        capability, maxAttempts: 3,
        retryPolicy: { maxAttempts: 3, initialBackoff: { seconds: 0n, nanos: 50_000_000 }, maxBackoff: seconds(1), multiplier: 2 },
      });
      const taskId = request.id;
      await call("CreateTask", (l) => l.createTask(request));
      let leaseId = await claim(taskId, capability, 1);
      await call("StartTask", (l) => l.startTask({ taskId, leaseId, expectedSequence: undefined, leaseDuration: undefined }));
      if (i % 5 === 0) {
        const error = { reason: "BIZ_HANDLER_FAILED", message: "flaky", retryable: true, details: undefined };
        const failed = await call("FailTask", (l) => l.failTask({ taskId, leaseId, error, expectedSequence: undefined }));
        expect(failed.willRetry).toBe(true);
        leaseId = await claim(taskId, capability, 2);
        await call("StartTask", (l) => l.startTask({ taskId, leaseId, expectedSequence: undefined, leaseDuration: undefined }));
      }
      await call("CompleteTask", (l) => l.completeTask({ taskId, leaseId, output: { i }, expectedSequence: undefined }));
      finished++;
    };

    /**
     * Waits until half the work is done, then for a moment when the relay's
     * connection has just read a batch (its last statement is the unpublished
     * select: the batch is on its way to Kafka, not yet marked), and kills the
     * process there (or after 3 s regardless). Then a new process takes over.
     */
    let killedMidSend = false;
    let abandoned = false;
    const crash = async (first: ServiceProcess): Promise<void> => {
      await eventually(() => abandoned || finished >= KILL_AFTER, 20_000);
      if (abandoned) return;
      killedMidSend = await eventually(async () => (await sql.query(
        `SELECT 1 FROM pg_stat_activity WHERE application_name = 'ledger-crash-a-outbox-relay' AND state = 'idle' AND query LIKE 'SELECT o.id, o.event_id%'`,
      )).rowCount === 1, 3000);
      first.child.kill("SIGKILL");
      expect(await first.exited).toBe("SIGKILL");
      console.info(`relay-crash: killed the ledger after ${finished} of ${TASKS} tasks, ${killedMidSend ? "while a batch was in flight" : "(no batch caught in flight)"}`);
      await startLedger("ledger-crash-b");
    };

    let second: ServiceProcess | undefined;
    try {
      await admin.connect();
      await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
      const first = await startLedger("ledger-crash-a");
      await mirrorOutbox(sql); // the relay deletes what it published: keep a copy of every row written
      await call("UpsertWorker", (l) => connectWorker(l, WORKER, ["crash"]));

      let next = 0;
      const runner = async () => {
        while (next < TASKS) await lifecycle(next++);
      };
      await Promise.all([crash(first), ...Array.from({ length: CONCURRENCY }, runner)]).catch((error: unknown) => {
        abandoned = true;
        throw error;
      });
      second = procs[1]!;
      expect(finished).toBe(TASKS);

      const count = async (query: string) => Number((await sql.query<{ n: string }>(query)).rows[0]!.n);
      await eventually(async () => (await unpublishedEvents(sql)) === 0, 15_000);
      // Everything is produced (the relay's cursor passed every transition after Kafka's ack): stop the relay so the topic is final.
      second.child.kill("SIGTERM");
      expect(await second.exited, second.output()).toBe(0);

      // What the database says happened.
      expect(await count("SELECT count(*) AS n FROM ledger.tasks WHERE state = 'SUCCEEDED'")).toBe(TASKS);
      const history = (await sql.query<{ task_id: string; sequence: string }>("SELECT task_id, sequence FROM ledger.history ORDER BY task_id, sequence")).rows;
      // Every event written: a transition's is its history row, a progress report's an outbox row (mirrored: published ones leave).
      const outbox = (await eventsOf(sql, [...new Set(history.map((h) => h.task_id))], { mirrored: true }))
        .map((e) => ({ event_id: e.eventId, task_id: e.taskId, sequence: e.sequence }));
      expect(await unpublishedEvents(sql), "events left unpublished").toBe(0);

      // The whole topic, read back from the beginning up to its end offsets.
      const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
      const records = new Map<string, Consumed>();
      const reached = new Map<number, bigint>();
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          const offset = BigInt(message.offset);
          records.set(`${partition}:${offset}`, { partition, offset, key: message.key!.toString(), headers: text(message.headers), event: TaskEvent.decode(message.value!) });
          reached.set(partition, offset + 1n);
        },
      });
      const readAll = await eventually(() => [...ends].every(([p, high]) => (reached.get(p) ?? 0n) >= high), 15_000);
      expect(readAll, `read up to the end offsets ${JSON.stringify(Object.fromEntries([...ends].map(([p, h]) => [p, String(h)])))}`).toBe(true);
      const log = [...records.values()].sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : 1));

      // Every record is a well-formed event of the row it claims to be.
      const rowOf = new Map(outbox.map((r) => [r.event_id, r]));
      const malformed = log.filter((m) => {
        const row = rowOf.get(m.headers.ce_id!);
        return !row || m.key !== row.task_id || m.headers.ce_subject !== row.task_id || m.headers.taskmesh_sequence !== row.sequence
          || m.event.id !== row.event_id || m.event.subject !== row.task_id || m.event.sequence !== BigInt(row.sequence);
      });
      expect(malformed.map((m) => `${m.partition}:${m.offset}`), "records not matching their event").toEqual([]);

      // (1) Every transition of the history is in Kafka.
      const inKafka = new Set(log.map((m) => `${m.key}/${m.headers.taskmesh_sequence}`));
      expect(history.filter((h) => !inKafka.has(`${h.task_id}/${h.sequence}`)).map((h) => `${h.task_id}/${h.sequence}`), "transitions missing from Kafka").toEqual([]);

      // (2) After dropping copies by ce_id, per task the sequences grow strictly in partition order; one event id per (task, sequence).
      const seen = new Set<string>();
      const perTask = new Map<string, { partitions: Set<number>; sequences: bigint[] }>();
      const idsOf = new Map<string, Set<string>>();
      for (const m of log) {
        const at = perTask.get(m.key) ?? { partitions: new Set<number>(), sequences: [] };
        perTask.set(m.key, at);
        at.partitions.add(m.partition);
        const slot = `${m.key}/${m.event.sequence}`;
        idsOf.set(slot, (idsOf.get(slot) ?? new Set()).add(m.headers.ce_id!));
        if (seen.has(m.headers.ce_id!)) continue;
        seen.add(m.headers.ce_id!);
        at.sequences.push(m.event.sequence);
      }
      const reordered = [...perTask].filter(([, t]) => t.sequences.some((s, i) => i > 0 && s <= t.sequences[i - 1]!));
      expect(reordered.map(([task, t]) => `${task}: ${t.sequences.join(",")}`), "tasks whose events are out of order").toEqual([]);
      expect([...perTask].filter(([, t]) => t.partitions.size !== 1).map(([task]) => task), "tasks spread over partitions").toEqual([]);
      expect([...idsOf].filter(([, ids]) => ids.size !== 1).map(([slot]) => slot), "(task, sequence) with several event ids").toEqual([]);

      // (3) Exactly the events written, each transition one event.
      expect(seen.size).toBe(outbox.length);
      expect([...seen].filter((id) => !rowOf.has(id)), "event ids never written").toEqual([]);
      expect(outbox.length).toBe(history.length);

      // (4) Copies are allowed (at least once); report them.
      const duplicates = log.length - seen.size;
      console.info(`relay-crash: ${history.length} transitions of ${TASKS} tasks, ${log.length} records, ${duplicates} duplicates from the crash; `
        + `${retried} calls retried, ${recoveredClaims} claims recovered, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      for (const proc of procs) {
        if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill("SIGTERM");
        await proc.exited;
      }
      for (const client of clients) client.close();
      await consumer.disconnect().catch(() => undefined);
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      await sql.end();
    }
    expect(await eventually(async () => (await db.openConnections()) === 0, 5000), "connections left open").toBe(true);
    await db.drop();
  });
});
