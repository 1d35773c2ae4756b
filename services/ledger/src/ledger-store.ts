import type pg from "pg";
import type { TaskLease, TaskTransition } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { MeshError, withTransaction } from "@taskmesh/kit";
import { commitNew, insertNew, keep, newTaskRow } from "./batch-writes.js";
import { alreadyExists, alreadyFinished, leaseLost, sequenceMismatch, taskNotFound } from "./errors.js";
import { LeaseTransitions, untouched, type LeaseCall } from "./lease-transitions.js";
import { isFinished, leaseOf, toTransition } from "./records.js";
import { historySql, type HistoryRow } from "./sql/history.js";
import { taskSql, type TaskRow } from "./sql/tasks.js";
import { cancelTask, completeAttempt, startAttempt } from "./transitions.js";
import type { NewTask } from "./validation.js";
import { commitChains, commitChainsIfUnchanged, commitTransition, dbNow, insertHistory, type Committed, type PlannedTransition } from "./writer.js";
import type { CachedRow, RowCache } from "./row-cache.js";
import { DbClock, dbTimeOf } from "./db-clock.js";

type Signal = AbortSignal | undefined;

/**
 * The ledger on Postgres. Every write is one transaction holding the task
 * row's lock: the row and a history row per transition (also the
 * transition's event, which the outbox relay publishes) commit together. Times come from the database clock.
 */
export class LedgerStore extends LeaseTransitions {
  /**
   * `shared`: the transaction of a batch, which every write joins. `rows`:
   * where leased rows this process writes are remembered, so their
   * completions take one statement ({@link completeMany}).
   */
  constructor(pool: pg.Pool, shared?: pg.PoolClient, private readonly rows?: RowCache) {
    super(pool, shared);
  }

  private dbClock: DbClock | undefined;

  /**
   * The database's time for the one-statement batch writes, without a round
   * trip of its own; made on first use, so the store of each transaction
   * (which never makes those writes) does not make one.
   */
  private get clock(): DbClock {
    return (this.dbClock ??= new DbClock(dbTimeOf(this.pool)));
  }

  protected override forgetRow(taskId: string): void {
    this.rows?.forget(taskId);
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
        n.leaseTo?.workerId ?? "", n.leaseTo?.leaseMs ?? 0,
      ])).rows[0];
      if (inserted) {
        const now = inserted.created_at;
        await insertHistory(client, inserted, "1", "", { kind: "SUBMITTED", attempt: 0, workerId: "", leaseId: "", actor: n.createdBy }, now);
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
   * {@link create} for a batch: one statement, at the database's time as
   * {@link DbClock} tells it, that inserts the new tasks with their history
   * rows (its own transaction: one round trip, where BEGIN, the insert, the
   * history and COMMIT took four). An item that statement did not insert
   * (its id or key taken, its lease worker gone) is answered as `create`
   * would answer it, in one transaction ({@link createManyInTransaction}).
   * Answers in order.
   */
  async createMany(items: readonly NewTask[], signal?: AbortSignal): Promise<Array<{ row: TaskRow; created: boolean } | MeshError>> {
    // The first item of each id goes in the statement; one without an id, or a repeat of an id, the transactional way.
    const first = new Map<string, NewTask & { id: string }>();
    for (const n of items) if (n.id !== null && !first.has(n.id)) first.set(n.id, n as NewTask & { id: string });
    if (this.shared || first.size === 0) return this.createManyInTransaction(items, signal);
    const now = await this.clock.now(signal);
    const rows = new Map([...first].map(([id, n]) => [id, newTaskRow(n, now)]));
    const inserted = await insertNew(this.pool, now, [...rows.values()], signal);
    for (const [id, version] of inserted) {
      const row = rows.get(id)!;
      if (row.lease_id) this.rows?.remember(row, version);
    }
    const fast = (n: NewTask): boolean => n.id !== null && first.get(n.id) === n && inserted.has(n.id);
    const rest = items.filter((n) => !fast(n));
    // The statement committed: from here a failure must not send its tasks through `create` again (they would read as
    // repeats), so the rest falls back item by item on its own.
    const others = rest.length === 0 ? [] : await this.batched(rest, (r) => this.createManyInTransaction(r, signal), (n) => this.create(n, signal), { ...(signal ? { signal } : {}) });
    let next = 0;
    return items.map((n) => (fast(n) ? { row: rows.get(n.id!)!, created: true } : others[next++]!));
  }

  /**
   * {@link create} for a batch in one transaction: one multi-row insert for
   * the new tasks and one for their history rows; an item whose id or key is
   * taken is answered as `create` would answer it. Answers in order.
   */
  async createManyInTransaction(items: readonly NewTask[], signal?: AbortSignal): Promise<Array<{ row: TaskRow; created: boolean } | MeshError>> {
    return this.batchTx(signal, async (client, store) => {
      // Items without an id (rare: the coordinator always gives one) take the single path below.
      const withId = items.filter((n) => n.id !== null);
      const col = <K extends keyof NewTask>(k: K) => withId.map((n) => n[k]);
      const columns = [
        col("id"), col("capability"), withId.map((n) => JSON.stringify(n.input)), col("maxAttempts"), col("traceId"), col("traceparent"),
        col("idempotencyKey"), col("requestHash"), col("priority"), withId.map((n) => JSON.stringify(n.labels)), col("timeoutMs"),
        col("retryInitialMs"), col("retryMaxMs"), col("retryMultiplier"), col("createdBy"),
      ];
      // Only a batch with a sync match pays for the join with the workers.
      const leased = withId.some((n) => n.leaseTo !== null);
      const inserted = withId.length === 0 ? [] : (await client.query<TaskRow>(leased ? taskSql.insertManyLeased : taskSql.insertMany, leased
        ? [...columns, withId.map((n) => n.leaseTo?.workerId ?? ""), withId.map((n) => n.leaseTo?.leaseMs ?? 0)]
        : columns)).rows;
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
   * {@link complete} for a batch. A completion whose task row this process
   * leased and remembers ({@link RowCache}), still under that lease, is
   * written without reading the row again: one statement (its own
   * transaction, at the database's time as {@link DbClock} tells it) that writes each row only while it is
   * still the version remembered. The others, and any whose row changed
   * since, take {@link completeManyLocked}. Answers in order.
   */
  async completeMany(items: ReadonlyArray<{ call: LeaseCall; output: Record<string, unknown> }>, signal?: AbortSignal): Promise<Array<Committed | MeshError>> {
    const remembered = this.rows;
    if (this.shared || !remembered) return this.completeManyLocked(items, signal);
    const fast: Array<{ index: number; cached: CachedRow }> = [];
    // A task named more than once in the batch (a resent result, a late one) goes the locked way, its items in order.
    const named = new Map<string, number>();
    for (const { call } of items) named.set(call.taskId, (named.get(call.taskId) ?? 0) + 1);
    for (const [index, { call }] of items.entries()) {
      const cached = remembered.get(call.taskId);
      if (!cached || named.get(call.taskId)! > 1 || cached.row.lease_id !== call.leaseId || isFinished(cached.row.state)) continue;
      if (call.expectedSequence !== undefined && BigInt(cached.row.sequence) !== call.expectedSequence) continue;
      fast.push({ index, cached });
    }
    if (fast.length === 0) return this.completeManyLocked(items, signal);
    const now = await this.clock.now(signal);
    const chains = fast.map(({ index, cached }) => completionChain(cached.row, now, items[index]!.output));
    const written = await commitChainsIfUnchanged(this.pool, now, chains, fast.map((f) => f.cached.xmin), signal);
    const done = new Map<number, Committed>();
    for (const [k, { index, cached }] of fast.entries()) {
      remembered.forget(cached.row.id);
      const chain = written[k];
      if (chain) done.set(index, { row: chain.row, transition: chain.transitions.at(-1)! });
    }
    const rest = items.filter((_, i) => !done.has(i));
    // The statement committed: from here a failure must not send its completions around again, so the rest falls back item by item on its own.
    const others = rest.length === 0 ? [] : await this.batched(rest, (r) => this.completeManyLocked(r, signal), (i) => this.complete(i.call, i.output, signal), { ...(signal ? { signal } : {}) });
    let next = 0;
    return items.map((_, i) => done.get(i) ?? others[next++]!);
  }

  /**
   * {@link complete} for a batch in one transaction: the rows are locked in
   * id order with one statement, and the completions (with the implicit
   * start of a task still only claimed, in the same row write) are written
   * with three statements. An item is answered as
   * `complete` would answer it (a replay, or its own refusal). Answers in
   * order.
   */
  async completeManyLocked(items: ReadonlyArray<{ call: LeaseCall; output: Record<string, unknown> }>, signal?: AbortSignal): Promise<Array<Committed | MeshError>> {
    return this.batchTx(signal, async (client) => {
      const now = await dbNow(client);
      const rows = new Map((await client.query<TaskRow>(taskSql.getManyForUpdate, [[...new Set(items.map((i) => i.call.taskId))]])).rows.map((r) => [r.id, r]));
      // Only a call whose task no longer holds its lease as PENDING or RUNNING may be a replay.
      const suspects = items.filter((i) => {
        const row = rows.get(i.call.taskId);
        return row !== undefined && !untouched(row, i.call.leaseId, ["SUCCEEDED"]);
      });
      const replays = new Map(suspects.length === 0 ? [] : (await client.query<HistoryRow>(historySql.byLeases, [
        suspects.map((i) => i.call.taskId), suspects.map((i) => i.call.leaseId), ["SUCCEEDED"],
      ])).rows.map((h) => [`${h.task_id}/${h.lease_id}`, h] as const));
      const results: Array<Committed | MeshError | number> = [];
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
          taken.set(call.taskId, i);
          taken.set(`${call.taskId}/${call.leaseId}`, i);
          completions.push({ index: i, output });
          results.push(i);
        }
      }
      const chains = completions.map(({ index, output }) => completionChain(rows.get(items[index]!.call.taskId)!, now, output));
      const committed = await commitChains(client, now, chains);
      const byIndex = new Map(completions.map((c, k) => [c.index, { row: committed[k]!.row, transition: committed[k]!.transitions.at(-1)! }]));
      return results.map((r) => (typeof r === "number" ? byIndex.get(r)! : r));
    });
  }

  /** One transaction for a batch; when the database fails it, every item is done again on its own. */
  private async batchTx<R>(signal: Signal, work: (client: pg.PoolClient, store: LedgerStore) => Promise<R>): Promise<R> {
    return withTransaction(this.pool, (client) => work(client, new LedgerStore(this.pool, client)), signal ? { signal } : {});
  }

  /** PENDING or RUNNING → CANCELLED; a CANCELLED task is returned unchanged. */
  async cancel(taskId: string, reason: string, actor: string, expected: bigint | undefined, signal?: AbortSignal):
    Promise<{ row: TaskRow; transition?: TaskTransition; endedLease?: TaskLease }> {
    this.forgetRow(taskId);
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
}

/**
 * The transitions a completion of `row` makes: SUCCEEDED, after STARTED for a
 * task still only claimed (a chain of two, written as one row write).
 */
function completionChain(row: TaskRow, now: Date, output: Record<string, unknown>): PlannedTransition[] {
  const start = row.state === "PENDING" ? { before: row, ...startAttempt(row, now) } : undefined;
  const running = start ? start.next : row;
  return [...(start ? [start] : []), { before: running, ...completeAttempt(running, now, output) }];
}
