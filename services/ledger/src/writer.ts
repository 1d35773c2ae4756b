import type pg from "pg";
import { TaskEvent, type TaskTransition } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import type { ReclaimedTask } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { query } from "@taskmesh/kit";
import { leaseOf, toTask, toTransition } from "./records.js";
import { batchSql } from "./sql/batches.js";
import { historySql, type HistoryRow } from "./sql/history.js";
import { outboxSql } from "./sql/outbox.js";
import { taskSql, type StoredError, type TaskRow } from "./sql/tasks.js";
import { failAttempt, withoutLease, type Change } from "./transitions.js";
import type { RowCache } from "./row-cache.js";

/** The producer of every task event. */
export const EVENT_SOURCE = "//taskmesh.dev/ledger";

/** A task after a committed transition, and the transition. */
export interface Committed {
  readonly row: TaskRow;
  readonly transition: TaskTransition;
}

/** The transaction's time (the database clock). */
export async function dbNow(client: pg.PoolClient): Promise<Date> {
  return (await client.query<{ now: Date }>(taskSql.now)).rows[0]!.now;
}

/** A jsonb parameter: the value as JSON, SQL NULL for null or undefined. */
const json = (v: unknown): string | null => (v === null || v === undefined ? null : JSON.stringify(v));

/** The parameters of {@link historySql.insertMany} for `rows`, one array per column. */
export function historyColumns(rows: readonly HistoryRow[]): unknown[] {
  return [
    rows.map((h) => h.task_id), rows.map((h) => h.sequence), rows.map((h) => h.kind), rows.map((h) => h.from_state), rows.map((h) => h.to_state),
    rows.map((h) => h.attempt), rows.map((h) => h.worker_id), rows.map((h) => h.lease_id), rows.map((h) => h.at), rows.map((h) => h.reason),
    rows.map((h) => json(h.error)), rows.map((h) => h.trace_id), rows.map((h) => h.next_attempt_at), rows.map((h) => h.actor),
  ];
}

/** Writes every mutable column of a task (no transition). */
export async function saveTask(client: pg.PoolClient, r: TaskRow): Promise<TaskRow> {
  const { rows } = await client.query<TaskRow>(taskSql.save, [
    r.id, r.state, json(r.output), json(r.error), r.attempts, r.worker_id, r.updated_at, r.started_at, r.finished_at, r.next_attempt_at,
    r.lease_id, r.lease_worker_id, r.lease_acquired_at, r.lease_expires_at, json(r.progress), r.sequence, r.waiting_on,
  ]);
  return rows[0]!;
}

/**
 * Appends an event to the outbox, in the caller's transaction: a progress
 * report's (a transition's event is its history row, see the outbox relay).
 */
export async function writeEvent(client: pg.PoolClient, event: TaskEvent, traceparent: string): Promise<void> {
  const payload = Buffer.from(TaskEvent.encode(event).finish());
  await client.query(outboxSql.insert, [event.id, event.subject, event.sequence.toString(), event.type, payload, traceparent, event.time]);
}

/** Records one transition: the task row (sequence + 1) and a history row (also its event), in the caller's transaction. */
export async function commitTransition(client: pg.PoolClient, now: Date, before: TaskRow, next: TaskRow, change: Change): Promise<Committed> {
  const sequence = (BigInt(before.sequence) + 1n).toString();
  const row = await saveTask(client, { ...next, sequence, updated_at: now });
  const history = await insertHistory(client, row, sequence, before.state, change, now);
  return { row, transition: toTransition(history) };
}

/** One transition of a batch: the row before, the row after, and what to record. */
export interface PlannedTransition {
  readonly before: TaskRow;
  readonly next: TaskRow;
  readonly change: Change;
}

/** A task after a chain of committed transitions, and each transition in order. */
export interface CommittedChain {
  readonly row: TaskRow;
  readonly transitions: readonly TaskTransition[];
}

/**
 * Records chains of consecutive transitions of many tasks (one chain per
 * task, each step's `before` the previous step's `next`): each task's row
 * is written once, in its final state (its sequence grown by the chain's
 * length), with a history row (also its event) per step. A claimed task
 * whose result arrives before its start is STARTED and SUCCEEDED in one row
 * write (migration 0006 lets the state machine take both steps at once).
 * One statement for the whole batch; answers in the order given.
 */
export async function commitChains(client: pg.PoolClient, now: Date, chains: ReadonlyArray<readonly PlannedTransition[]>): Promise<CommittedChain[]> {
  if (chains.length === 0) return [];
  const planned = planChains(now, chains);
  const { rows: written } = await client.query<{ saved: number }>(batchSql.tasksAndHistory, [...planned.taskColumns, ...planned.historyColumns]);
  // Every mutable column was written from the planned rows: they are the rows as stored (no RETURNING to parse back).
  if (written[0]!.saved !== chains.length) throw new Error(`a batch update wrote ${written[0]!.saved} of ${chains.length} task rows`);
  return planned.committed;
}

/**
 * {@link commitChains} for chains planned from rows read earlier without a
 * lock (a {@link RowCache}): one statement, its own transaction, that writes
 * a task only while its row is still row version `versions[i]`
 * ({@link batchSql.tasksAndHistoryIfUnchanged}). Answers each chain's
 * result where it was written, undefined where the row had changed since.
 */
export async function commitChainsIfUnchanged(pool: pg.Pool, now: Date, chains: ReadonlyArray<readonly PlannedTransition[]>, versions: readonly string[],
  signal?: AbortSignal): Promise<Array<CommittedChain | undefined>> {
  if (chains.length === 0) return [];
  const planned = planChains(now, chains);
  const { rows } = await query<{ id: string }>(pool, batchSql.tasksAndHistoryIfUnchanged, [...planned.taskColumns, versions, ...planned.historyColumns], signal);
  const written = new Set(rows.map((r) => r.id));
  return chains.map((chain, i) => (written.has(chain[0]!.before.id) ? planned.committed[i] : undefined));
}

/**
 * The parameters that write chains of transitions (see {@link commitChains}): the tasks' final rows as
 * {@link taskSql.saveMany} takes them, then a history row per step; and what each chain commits.
 */
function planChains(now: Date, chains: ReadonlyArray<readonly PlannedTransition[]>): { taskColumns: unknown[]; historyColumns: unknown[]; committed: CommittedChain[] } {
  // Each step's row as it was right after the step (its sequence and time), for its history row.
  const steps = chains.map((chain) => {
    const first = BigInt(chain[0]!.before.sequence);
    return chain.map((p, i) => ({ ...p, row: { ...p.next, sequence: (first + BigInt(i + 1)).toString(), updated_at: now } }));
  });
  const rows = steps.map((chain) => chain.at(-1)!.row);
  const col = <K extends keyof TaskRow>(k: K) => rows.map((r) => r[k]);
  const flat = steps.flat();
  const histories: HistoryRow[] = flat.map((s) => ({
    task_id: s.row.id, sequence: s.row.sequence, kind: s.change.kind, from_state: s.before.state, to_state: s.row.state, attempt: s.change.attempt,
    worker_id: s.change.workerId, lease_id: s.change.leaseId, at: now, reason: s.change.reason ?? "", error: s.change.error ?? null,
    trace_id: s.row.trace_id, next_attempt_at: s.change.nextAttemptAt ?? null, actor: s.change.actor,
  }));
  const transitions = histories.map(toTransition);
  let next = 0;
  return {
    taskColumns: [
      col("id"), col("state"), rows.map((r) => json(r.output)), rows.map((r) => json(r.error)), col("attempts"), col("worker_id"), col("updated_at"),
      col("started_at"), col("finished_at"), col("next_attempt_at"), col("lease_id"), col("lease_worker_id"), col("lease_acquired_at"),
      col("lease_expires_at"), rows.map((r) => json(r.progress)), col("sequence"),
    ],
    historyColumns: historyColumns(histories),
    committed: steps.map((chain) => ({ row: chain.at(-1)!.row, transitions: transitions.slice(next, (next += chain.length)) })),
  };
}

/** Inserts a history row for a transition. */
export async function insertHistory(client: pg.PoolClient, row: TaskRow, sequence: string, from: TaskRow["state"] | "", change: Change, now: Date): Promise<HistoryRow> {
  const { rows } = await client.query<HistoryRow>(historySql.insert, [
    row.id, sequence, change.kind, from, row.state, change.attempt, change.workerId, change.leaseId, now, change.reason ?? "",
    change.error ? JSON.stringify(change.error) : null, row.trace_id, change.nextAttemptAt ?? null, change.actor,
  ]);
  return rows[0]!;
}

/**
 * Takes a task back from its lease holder (expired lease, lost worker, or
 * timeout): a claimed task just loses its lease; a running attempt fails
 * with `error` (retried or ended as by FailTask).
 */
export async function reclaim(client: pg.PoolClient, now: Date, row: TaskRow, error: StoredError): Promise<ReclaimedTask> {
  const endedLease = leaseOf(row);
  if (row.state === "PENDING") {
    const saved = await saveTask(client, { ...withoutLease(row), updated_at: now });
    return { task: toTask(saved), transition: undefined, endedLease };
  }
  const step = failAttempt(row, now, error, "ledger");
  const { row: saved, transition } = await commitTransition(client, now, row, step.next, step.change);
  return { task: toTask(saved), transition, endedLease };
}
