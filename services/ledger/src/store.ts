import type pg from "pg";
import type { CapabilityTaskCounts } from "../../../gen/taskmesh/ledger/v1/ledger.js";
import { TaskView, type TaskCounts, type TaskLease, type TaskProgressUpdate, type TaskTransition } from "../../../gen/taskmesh/task/v1/task.js";
import { MeshError, query, withTransaction } from "../../kit/src/index.js";
import { alreadyExists, alreadyFinished, leaseLost, notRunning, sequenceMismatch, taskNotFound } from "./errors.js";
import { uuidv7 } from "./ids.js";
import { addCount, emptyCounts, eventType, isFinished, leaseOf, toTask, toTransition } from "./records.js";
import { historySql, type HistoryRow, type KindName } from "./sql/history.js";
import { taskSql, type StateName, type StoredError, type StoredProgress, type TaskRow } from "./sql/tasks.js";
import { cancelTask, completeAttempt, failAttempt, releaseTask, startAttempt, withoutLease } from "./transitions.js";
import type { NewTask } from "./validation.js";
import { EVENT_SOURCE, commitTransition, commitTransitions, dbNow, insertHistory, saveTask, writeEvent, type Committed, type PlannedTransition } from "./writer.js";
import { outboxSql } from "./sql/outbox.js";
import { TaskEvent } from "../../../gen/taskmesh/task/v1/task.js";

/** Filters of a task listing (stored names; empty means any). */
export interface TaskFilter {
  readonly states: StateName[];
  readonly capabilities: string[];
  readonly createdAfter: Date | null;
  readonly createdBefore: Date | null;
  readonly workerId: string;
  readonly createdBy: string;
}

/** A worker-side call: which task, under which lease, at which sequence. */
export interface LeaseCall {
  readonly taskId: string;
  readonly leaseId: string;
  readonly expectedSequence?: bigint | undefined;
}

type Signal = AbortSignal | undefined;

/**
 * The ledger on Postgres. Every write is one transaction holding the task
 * row's lock: the row, a history row per transition and an outbox event per
 * change commit together. Times come from the database clock.
 */
export class LedgerStore {
  /** `shared`: the transaction of a batch, which every write of this store joins. */
  constructor(private readonly pool: pg.Pool, private readonly shared?: pg.PoolClient) {}

  private tx<T>(work: (client: pg.PoolClient) => Promise<T>, signal: Signal): Promise<T> {
    if (this.shared) return work(this.shared);
    return withTransaction(this.pool, work, signal ? { signal } : {});
  }

  /**
   * Runs a batch with `many` (one transaction); when the database fails it
   * (a deadlock, a lost connection), runs every item again on its own with
   * `one`, each in its own transaction, so one bad moment costs latency and
   * never a wrong answer. A business refusal (RES_, BIZ_, VAL_) of an item is
   * its answer either way.
   */
  async batched<I, R>(items: readonly I[], many: (items: readonly I[]) => Promise<Array<R | MeshError>>, one: (item: I) => Promise<R>,
    options: { signal?: AbortSignal; onFallback?: (error: unknown) => void } = {}): Promise<Array<R | MeshError>> {
    try {
      return await many(items);
    } catch (error) {
      options.signal?.throwIfAborted();
      options.onFallback?.(error);
      return Promise.all(items.map((item) => keep(() => one(item)).catch((error: unknown) => MeshError.from(error))));
    }
  }

  /** Stores a new PENDING task (SUBMITTED, sequence 1), or returns the task an identical earlier request created. */
  async create(n: NewTask, signal?: AbortSignal): Promise<{ row: TaskRow; created: boolean }> {
    return this.tx(async (client) => {
      const inserted = (await client.query<TaskRow>(taskSql.insert, [
        n.id, n.capability, JSON.stringify(n.input), n.maxAttempts, n.traceId, n.traceparent, n.idempotencyKey, n.requestHash,
        n.priority, JSON.stringify(n.labels), n.timeoutMs, n.retryInitialMs, n.retryMaxMs, n.retryMultiplier, n.createdBy,
      ])).rows[0];
      if (inserted) {
        const now = inserted.created_at;
        const history = await insertHistory(client, inserted, "1", "", { kind: "SUBMITTED", attempt: 0, workerId: "", leaseId: "", actor: n.createdBy }, now);
        await writeEvent(client, {
          id: uuidv7(), type: eventType("SUBMITTED"), source: EVENT_SOURCE, subject: inserted.id, time: now, sequence: 1n,
          task: toTask(inserted), change: { $case: "transition", value: toTransition(history) }, traceId: inserted.trace_id,
        }, inserted.traceparent);
        return { row: inserted, created: true };
      }
      // The insert waited for and lost to a committed task holding the id or the key.
      const byId = n.id ? (await client.query<TaskRow>(taskSql.get, [n.id])).rows[0] : undefined;
      if (byId) {
        if (byId.request_hash === n.requestHash) return { row: byId, created: false };
        throw alreadyExists("id", byId.id);
      }
      const byKey = (await client.query<TaskRow>(taskSql.byIdempotencyKey, [n.createdBy, n.idempotencyKey])).rows[0];
      if (!byKey) throw new Error("task insert conflicted, but no conflicting task was found");
      if (byKey.request_hash === n.requestHash) return { row: byKey, created: false };
      throw alreadyExists("key", byKey.id);
    }, signal);
  }

  /**
   * {@link create} for a batch in one transaction: one multi-row insert for
   * the new tasks, their history rows and events; an item whose id or key is
   * taken is answered as `create` would answer it. Answers in order.
   */
  async createMany(items: readonly NewTask[], signal?: AbortSignal): Promise<Array<{ row: TaskRow; created: boolean } | MeshError>> {
    return this.batchTx(signal, async (client, store) => {
      // Items without an id (rare: the coordinator always gives one) take the single path below.
      const withId = items.filter((n) => n.id !== null);
      const col = <K extends keyof NewTask>(k: K) => withId.map((n) => n[k]);
      const inserted = withId.length === 0 ? [] : (await client.query<TaskRow>(taskSql.insertMany, [
        col("id"), col("capability"), withId.map((n) => JSON.stringify(n.input)), col("maxAttempts"), col("traceId"), col("traceparent"),
        col("idempotencyKey"), col("requestHash"), col("priority"), withId.map((n) => JSON.stringify(n.labels)), col("timeoutMs"),
        col("retryInitialMs"), col("retryMaxMs"), col("retryMultiplier"), col("createdBy"),
      ])).rows;
      const byId = new Map(inserted.map((r) => [r.id, r]));
      const now = inserted[0]?.created_at ?? new Date();
      const fresh = items.map((n) => (n.id ? byId.get(n.id) : undefined));
      await commitNew(client, now, fresh.filter((r): r is TaskRow => r !== undefined));
      const results: Array<{ row: TaskRow; created: boolean } | MeshError> = [];
      for (const [i, n] of items.entries()) {
        const row = fresh[i];
        results.push(row ? { row, created: true } : await keep(() => store.create(n)));
      }
      return results;
    });
  }

  /**
   * {@link complete} for a batch in one transaction: the rows are locked in
   * id order with one statement, and the implicit starts and the completions
   * are written with three statements each. An item is answered as
   * `complete` would answer it (a replay, or its own refusal). Answers in
   * order.
   */
  async completeMany(items: ReadonlyArray<{ call: LeaseCall; output: Record<string, unknown> }>, signal?: AbortSignal): Promise<Array<Committed | MeshError>> {
    return this.batchTx(signal, async (client) => {
      const now = await dbNow(client);
      const rows = new Map((await client.query<TaskRow>(taskSql.getManyForUpdate, [[...new Set(items.map((i) => i.call.taskId))]])).rows.map((r) => [r.id, r]));
      const replays = new Map((await client.query<HistoryRow>(historySql.byLeases, [items.map((i) => i.call.taskId), items.map((i) => i.call.leaseId), ["SUCCEEDED"]])).rows
        .map((h) => [`${h.task_id}/${h.lease_id}`, h]));
      const results: Array<Committed | MeshError | number> = [];
      const starts: PlannedTransition[] = [];
      const completions: Array<{ index: number; output: Record<string, unknown> }> = [];
      const taken = new Map<string, number>();
      for (const [i, { call, output }] of items.entries()) {
        const row = rows.get(call.taskId);
        const replay = replays.get(`${call.taskId}/${call.leaseId}`);
        const twin = taken.get(`${call.taskId}/${call.leaseId}`);
        if (!row) results.push(taskNotFound(call.taskId));
        else if (replay) results.push({ row, transition: toTransition(replay) });
        else if (twin !== undefined) results.push(twin);
        else if (isFinished(row.state) || taken.has(call.taskId)) results.push(alreadyFinished(row.id, isFinished(row.state) ? row.state : "SUCCEEDED"));
        else if (row.lease_id !== call.leaseId) results.push(leaseLost(row.id, call.leaseId));
        else if (call.expectedSequence !== undefined && BigInt(row.sequence) !== call.expectedSequence) results.push(sequenceMismatch(row.id, call.expectedSequence, row.sequence));
        else {
          if (row.state === "PENDING") starts.push({ before: row, ...startAttempt(row, now) });
          taken.set(call.taskId, i);
          taken.set(`${call.taskId}/${call.leaseId}`, i);
          completions.push({ index: i, output });
          results.push(i);
        }
      }
      for (const c of await commitTransitions(client, now, starts)) rows.set(c.row.id, c.row);
      const planned = completions.map(({ index, output }) => {
        const running = rows.get(items[index]!.call.taskId)!;
        return { before: running, ...completeAttempt(running, now, output) };
      });
      const committed = await commitTransitions(client, now, planned);
      const byIndex = new Map(completions.map((c, k) => [c.index, committed[k]!]));
      return results.map((r) => (typeof r === "number" ? byIndex.get(r)! : r));
    });
  }

  /** One transaction for a batch; when the database fails it, every item is done again on its own. */
  private async batchTx<R>(signal: Signal, work: (client: pg.PoolClient, store: LedgerStore) => Promise<R>): Promise<R> {
    return withTransaction(this.pool, (client) => work(client, new LedgerStore(this.pool, client)), signal ? { signal } : {});
  }

  /** One task, or undefined. */
  async get(id: string, signal?: AbortSignal): Promise<TaskRow | undefined> {
    return (await query<TaskRow>(this.pool, taskSql.get, [id], signal)).rows[0];
  }

  /** Up to `limit` tasks matching `filter` with ids below `beforeId`, newest first. */
  async list(filter: TaskFilter, beforeId: string | null, limit: number, signal?: AbortSignal): Promise<TaskRow[]> {
    const f = filter;
    return (await query<TaskRow>(this.pool, taskSql.list, [f.states, f.capabilities, f.createdAfter, f.createdBefore, f.workerId, f.createdBy, beforeId, limit], signal)).rows;
  }

  /** Counts by state, in all and per capability. */
  async count(capabilities: string[], createdAfter: Date | null, signal?: AbortSignal): Promise<{ total: TaskCounts; byCapability: CapabilityTaskCounts[] }> {
    const { rows } = await query<{ capability: string; state: StateName; n: string; oldest: Date }>(this.pool, taskSql.count, [capabilities, createdAfter], signal);
    const total = emptyCounts();
    const per = new Map<string, TaskCounts>();
    for (const r of rows) {
      addCount(total, r.state, BigInt(r.n), r.oldest);
      if (!per.has(r.capability)) per.set(r.capability, emptyCounts());
      addCount(per.get(r.capability)!, r.state, BigInt(r.n), r.oldest);
    }
    return { total, byCapability: [...per].map(([capability, counts]) => ({ capability, counts })) };
  }

  /** A page of a task's history after `after`, with its current sequence; undefined when the task does not exist. */
  async history(taskId: string, after: bigint, limit: number, signal?: AbortSignal): Promise<{ rows: HistoryRow[]; sequence: bigint } | undefined> {
    return this.tx(async (client) => {
      const task = (await client.query<TaskRow>(taskSql.get, [taskId])).rows[0];
      if (!task) return undefined;
      const rows = (await client.query<HistoryRow>(historySql.page, [taskId, after.toString(), limit])).rows;
      return { rows, sequence: BigInt(task.sequence) };
    }, signal);
  }

  /**
   * Runs a worker-side transition on the locked task: a call that already
   * took effect under the same lease replays its recorded outcome; then a
   * finished task, another lease or another sequence are refused.
   */
  private leased<T>(call: LeaseCall, replayKinds: KindName[], signal: Signal,
    work: (client: pg.PoolClient, now: Date, row: TaskRow) => Promise<T>,
    replay: (row: TaskRow, done: HistoryRow) => T): Promise<T> {
    return this.tx(async (client) => {
      const now = await dbNow(client);
      const row = (await client.query<TaskRow>(taskSql.getForUpdate, [call.taskId])).rows[0];
      if (!row) throw taskNotFound(call.taskId);
      if (replayKinds.length > 0) {
        const done = (await client.query<HistoryRow>(historySql.byLease, [call.taskId, call.leaseId, replayKinds])).rows[0];
        if (done) return replay(row, done);
      }
      if (isFinished(row.state)) throw alreadyFinished(row.id, row.state);
      if (row.lease_id !== call.leaseId) throw leaseLost(row.id, call.leaseId);
      if (call.expectedSequence !== undefined && BigInt(row.sequence) !== call.expectedSequence) throw sequenceMismatch(row.id, call.expectedSequence, row.sequence);
      return work(client, now, row);
    }, signal);
  }

  /** PENDING → RUNNING under the caller's lease. */
  async start(call: LeaseCall, leaseMs: number | undefined, signal?: AbortSignal): Promise<Committed> {
    return this.leased(call, ["STARTED"], signal, async (client, now, row) => {
      const step = startAttempt(row, now, leaseMs);
      return commitTransition(client, now, row, step.next, step.change);
    }, (row, done) => ({ row, transition: toTransition(done) }));
  }

  /** Stores a running attempt's latest progress and publishes it. */
  async progress(call: LeaseCall, report: Omit<StoredProgress, "attempt" | "reported_at">, signal?: AbortSignal): Promise<TaskProgressUpdate> {
    return this.leased(call, [], signal, async (client, now, row) => {
      if (row.state !== "RUNNING") throw notRunning(row.id, row.state);
      const progress: StoredProgress = { ...report, attempt: row.attempts, reported_at: now.toISOString() };
      const saved = await saveTask(client, { ...row, progress, updated_at: now });
      const task = toTask(saved, TaskView.TASK_VIEW_BASIC);
      const update: TaskProgressUpdate = {
        taskId: row.id, sequence: BigInt(row.sequence), workerId: row.worker_id, progress: toTask(saved).progress, traceId: row.trace_id,
      };
      await writeEvent(client, {
        id: uuidv7(), type: eventType("PROGRESSED"), source: EVENT_SOURCE, subject: row.id, time: now, sequence: BigInt(row.sequence),
        task, change: { $case: "progress", value: { ...update, progress: task.progress } }, traceId: row.trace_id,
      }, row.traceparent);
      return update;
    }, () => { throw new Error("unreachable"); });
  }

  /** Starts the attempt implicitly when the task is still only claimed. */
  private async ensureStarted(client: pg.PoolClient, now: Date, row: TaskRow): Promise<TaskRow> {
    if (row.state !== "PENDING") return row;
    const step = startAttempt(row, now);
    return (await commitTransition(client, now, row, step.next, step.change)).row;
  }

  /** RUNNING → SUCCEEDED (starting it implicitly first when only claimed). */
  async complete(call: LeaseCall, output: Record<string, unknown>, signal?: AbortSignal): Promise<Committed> {
    return this.leased(call, ["SUCCEEDED"], signal, async (client, now, row) => {
      const running = await this.ensureStarted(client, now, row);
      const step = completeAttempt(running, now, output);
      return commitTransition(client, now, running, step.next, step.change);
    }, (row, done) => ({ row, transition: toTransition(done) }));
  }

  /** A failed attempt: retried after a backoff, or the end (FAILED / TIMED_OUT). */
  async fail(call: LeaseCall, error: StoredError, signal?: AbortSignal): Promise<Committed & { willRetry: boolean }> {
    return this.leased(call, ["RETRYING", "FAILED", "TIMED_OUT"], signal, async (client, now, row) => {
      const running = await this.ensureStarted(client, now, row);
      const step = failAttempt(running, now, error, running.worker_id);
      return { ...(await commitTransition(client, now, running, step.next, step.change)), willRetry: step.willRetry };
    }, (row, done) => ({ row, transition: toTransition(done), willRetry: done.kind === "RETRYING" }));
  }

  /** PENDING or RUNNING → CANCELLED; a CANCELLED task is returned unchanged. */
  async cancel(taskId: string, reason: string, actor: string, expected: bigint | undefined, signal?: AbortSignal):
    Promise<{ row: TaskRow; transition?: TaskTransition; endedLease?: TaskLease }> {
    return this.tx(async (client) => {
      const now = await dbNow(client);
      const row = (await client.query<TaskRow>(taskSql.getForUpdate, [taskId])).rows[0];
      if (!row) throw taskNotFound(taskId);
      if (row.state === "CANCELLED") return { row };
      if (isFinished(row.state)) throw alreadyFinished(row.id, row.state);
      if (expected !== undefined && BigInt(row.sequence) !== expected) throw sequenceMismatch(row.id, expected, row.sequence);
      const endedLease = leaseOf(row);
      const step = cancelTask(row, now, reason, actor);
      const committed = await commitTransition(client, now, row, step.next, step.change);
      return { ...committed, ...(endedLease ? { endedLease } : {}) };
    }, signal);
  }

  /** Hands a task back: a claimed one just loses its lease; a running one goes back to PENDING (RELEASED). */
  async release(call: LeaseCall, reason: string, signal?: AbortSignal): Promise<{ row: TaskRow; transition?: TaskTransition }> {
    return this.leased<{ row: TaskRow; transition?: TaskTransition }>(call, ["RELEASED"], signal, async (client, now, row) => {
      if (row.state === "PENDING") return { row: await saveTask(client, { ...withoutLease(row), updated_at: now }) };
      const step = releaseTask(row, now, reason);
      return commitTransition(client, now, row, step.next, step.change);
    }, (row, done) => ({ row, transition: toTransition(done) }));
  }
}

/** Records the SUBMITTED transition (history and event) of tasks just inserted, three statements for all. */
async function commitNew(client: pg.PoolClient, now: Date, rows: readonly TaskRow[]): Promise<void> {
  if (rows.length === 0) return;
  const histories = (await client.query<HistoryRow>(historySql.insertMany, [
    rows.map((r) => r.id), rows.map(() => "1"), rows.map(() => "SUBMITTED"), rows.map(() => ""), rows.map(() => "PENDING"), rows.map(() => 0),
    rows.map(() => ""), rows.map(() => ""), rows.map(() => now), rows.map(() => ""), rows.map(() => null), rows.map((r) => r.trace_id),
    rows.map(() => null), rows.map((r) => r.created_by),
  ])).rows;
  const historyOf = new Map(histories.map((h) => [h.task_id, h]));
  const events = rows.map((r) => ({
    id: uuidv7(), type: eventType("SUBMITTED"), source: EVENT_SOURCE, subject: r.id, time: now, sequence: 1n,
    task: toTask(r), change: { $case: "transition" as const, value: toTransition(historyOf.get(r.id)!) }, traceId: r.trace_id,
  }));
  await client.query(outboxSql.insertMany, [
    events.map((e) => e.id), events.map((e) => e.subject), events.map(() => "1"), events.map((e) => e.type),
    events.map((e) => Buffer.from(TaskEvent.encode(e).finish())), rows.map((r) => r.traceparent), events.map(() => now),
  ]);
}

/** Runs `work`; a business refusal (RES_, BIZ_, VAL_) is its answer, anything else propagates. */
async function keep<R>(work: () => Promise<R>): Promise<R | MeshError> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof MeshError && /^(RES|BIZ|VAL)_/.test(error.reason)) return error;
    throw error;
  }
}
