import { createHash } from "node:crypto";
import pg from "pg";
import { expect } from "vitest";
import { LedgerServiceService, type CreateTaskRequest } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { TaskEvent } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { WorkerState } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import {
  RowCache, TRANSITION_COLUMNS, TRANSITION_SOURCES, buildLedgerService, metricsSql, transitionEvent, uuidv7,
  type EventFacts, type OutboxRow, type TransitionRow,
} from "@taskmesh/ledger-service";
import { MeshError, createClient, createLogger, createPool, serveBuilt, type MeshClient } from "@taskmesh/kit";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";

/** A ledger replica in this process on its own database, a client for it, and a direct pool for checks. */
export interface LedgerHarness {
  readonly client: MeshClient<typeof LedgerServiceService>;
  /** A direct connection to the database, for checks behind the service's back. */
  readonly sql: pg.Pool;
  /** The rows the replica remembers for one-statement completions (undefined with `rowCache: false`). */
  readonly rows: RowCache | undefined;
  /** Stops everything, checks no connection leaked and drops the database. */
  stop(): Promise<void>;
}

/** Starts a migrated, SERVING ledger replica on a fresh database named after `label`. */
export async function startLedger(label: string, options: { rowCache?: boolean } = {}): Promise<LedgerHarness> {
  const db: TestDatabase = await createTestDatabase(label);
  const logger = createLogger({ level: (process.env.TEST_LOG_LEVEL as "error" | undefined) ?? "silent" });
  const pool = createPool({ url: db.url, applicationName: "ledger-test", logger, max: 20 });
  // Built as the ledger service builds itself: leased rows remembered for one-statement completions (unless told otherwise).
  const ledger = buildLedgerService({ name: "ledger-test", logger, pool, shutdownGraceMs: 1000, rowCache: options.rowCache !== false });
  const { rows, server } = ledger;
  const port = await serveBuilt(ledger, "127.0.0.1:0");
  const client = createClient(LedgerServiceService, `127.0.0.1:${port}`);
  const sql = new pg.Pool({ connectionString: db.url, max: 2 });
  return {
    client, sql, rows,
    async stop() {
      client.close();
      await server.shutdown();
      await sql.end();
      expect(await db.openConnectionsAfter(5000)).toBe(0);
      await db.drop();
    },
  };
}

/**
 * Copies every row written to `ledger.outbox` into `public.outbox_seen`, so
 * a test can compare Kafka with what was written: the relay deletes the
 * rows it published. Call it once the schema is migrated.
 */
export async function mirrorOutbox(sql: pg.Pool): Promise<void> {
  await sql.query(`
    CREATE TABLE IF NOT EXISTS public.outbox_seen (LIKE ledger.outbox);
    CREATE OR REPLACE FUNCTION public.outbox_seen_copy() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      INSERT INTO public.outbox_seen SELECT NEW.*;
      RETURN NULL;
    END
    $fn$;
    CREATE OR REPLACE TRIGGER outbox_seen AFTER INSERT ON ledger.outbox FOR EACH ROW EXECUTE FUNCTION public.outbox_seen_copy();`);
}

/** A task event as the outbox relay publishes it, with what its Kafka record's headers say. */
export interface WrittenEvent extends EventFacts {
  readonly event: TaskEvent;
  /** The outbox row of a progress report; undefined for a transition (its history row is its event). */
  readonly outboxId?: string;
}

/**
 * Every event written for `taskIds`, per task in the order the relay sends
 * them: each transition (built from its history row as the relay builds
 * it), each progress report after the transition it follows, from
 * `ledger.outbox` or, with `mirrored`, from its mirror (`mirrorOutbox`:
 * the relay deletes the progress rows it published).
 */
export async function eventsOf(sql: pg.Pool, taskIds: readonly string[], options: { mirrored?: boolean } = {}): Promise<WrittenEvent[]> {
  const { rows: transitions } = await sql.query<TransitionRow>(
    `SELECT ${TRANSITION_COLUMNS} FROM ${TRANSITION_SOURCES} WHERE h.task_id = ANY($1::uuid[])`, [taskIds]);
  const { rows: progress } = await sql.query<OutboxRow>(
    `SELECT * FROM ${options.mirrored ? "public.outbox_seen" : "ledger.outbox"} WHERE task_id = ANY($1::uuid[]) ORDER BY id`, [taskIds]);
  const events: Array<WrittenEvent & { order: number }> = [
    ...transitions.map((h) => {
      const event = transitionEvent(h);
      return { eventId: h.event_id, taskId: h.task_id, sequence: String(h.sequence), type: event.type, traceparent: event.task!.traceparent, time: h.at, event, order: 0 };
    }),
    ...progress.map((o, i) => ({
      eventId: o.event_id, taskId: o.task_id, sequence: String(o.sequence), type: o.type, traceparent: o.traceparent, time: o.created_at,
      event: TaskEvent.decode(o.payload), outboxId: String(o.id), order: 1 + i,
    })),
  ];
  events.sort((a, b) => (a.taskId !== b.taskId ? (taskIds.indexOf(a.taskId) - taskIds.indexOf(b.taskId)) : Number(BigInt(a.sequence) - BigInt(b.sequence)) || a.order - b.order));
  return events.map(({ order: _order, ...e }) => e);
}

/** Task events not yet published (transitions past the relay's cursor, progress reports in the outbox): the `taskmesh_outbox_lag` gauge. */
export async function unpublishedEvents(sql: pg.Pool): Promise<number> {
  return (await sql.query<{ lag: number }>(metricsSql.outbox.text)).rows[0]!.lag;
}

/** The request hash a coordinator would compute for a submit. */
export function hashOf(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex");
}

/** A valid CreateTask request with `overrides`. */
export function createRequest(overrides: Partial<CreateTaskRequest> = {}): CreateTaskRequest {
  const input = overrides.input ?? { text: "hello" };
  return {
    id: uuidv7(),
    capability: "echo",
    input,
    idempotencyKey: "",
    requestHash: hashOf({ capability: overrides.capability ?? "echo", input }),
    maxAttempts: 3,
    timeout: { seconds: 60n, nanos: 0 },
    priority: 0,
    labels: {},
    retryPolicy: { maxAttempts: overrides.maxAttempts ?? 3, initialBackoff: { seconds: 1n, nanos: 0 }, maxBackoff: { seconds: 60n, nanos: 0 }, multiplier: 2 },
    createdBy: "alice",
    traceId: "0af7651916cd43dd8448eb211c80319c",
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    leaseToWorkerId: "",
    ...overrides,
  };
}

/** Registers a CONNECTED worker with the given capabilities; returns its session id. */
export async function connectWorker(client: LedgerHarness["client"], workerId: string, capabilities: string[]): Promise<string> {
  const sessionId = uuidv7();
  await client.upsertWorker({
    worker: { workerId, name: workerId, capabilities: capabilities.map((name) => ({ name, maxConcurrency: 4, description: "" })), maxConcurrency: 4, labels: {}, version: "1", weight: 1 },
    sessionId, coordinatorId: "coordinator-0", state: WorkerState.WORKER_STATE_CONNECTED, newSession: true, inFlight: 0, load: 0,
  });
  return sessionId;
}

/** A lease duration of `seconds`. */
export const seconds = (s: number) => ({ seconds: BigInt(s), nanos: 0 });

/** The MeshError a call fails with (fails the test if it succeeds). */
export const failure = (p: Promise<unknown>) => p.then(() => { throw new Error("expected the call to fail"); }, (e: unknown) => e as MeshError);
