import type pg from "pg";
import { MeshError, query } from "@taskmesh/kit";
import { uuidv7 } from "./ids.js";
import { batchSql } from "./sql/batches.js";
import type { TaskRow } from "./sql/tasks.js";
import type { NewTask } from "./validation.js";
import { historyColumns } from "./writer.js";

/** The parameters of the SUBMITTED history rows of new tasks ({@link historyColumns}). */
function submittedColumns(now: Date, rows: readonly TaskRow[]): unknown[] {
  return historyColumns(rows.map((r) => ({
    task_id: r.id, sequence: "1", kind: "SUBMITTED", from_state: "", to_state: "PENDING", attempt: 0, worker_id: "", lease_id: "", at: now,
    reason: "", error: null, trace_id: r.trace_id, next_attempt_at: null, actor: r.created_by,
  })));
}

/** Records the SUBMITTED transition (its history row, also its event) of tasks just inserted, one statement for all. */
export async function commitNew(client: pg.PoolClient, now: Date, rows: readonly TaskRow[]): Promise<void> {
  if (rows.length === 0) return;
  await client.query(batchSql.history, submittedColumns(now, rows));
}

/**
 * The row a new task (with its id) is stored as at `now` (the database's
 * time), leased to its sync-match worker when it has one, exactly as
 * {@link batchSql.newTasksAndHistory} writes it.
 */
export function newTaskRow(n: NewTask & { id: string }, now: Date): TaskRow {
  const lease = n.leaseTo;
  return {
    id: n.id, capability: n.capability, state: "PENDING", input: n.input, output: null, error: null, attempts: 0, max_attempts: n.maxAttempts,
    worker_id: "", trace_id: n.traceId, traceparent: n.traceparent, idempotency_key: n.idempotencyKey, request_hash: n.requestHash,
    priority: n.priority, labels: n.labels, timeout_ms: n.timeoutMs, retry_initial_ms: n.retryInitialMs, retry_max_ms: n.retryMaxMs,
    retry_multiplier: n.retryMultiplier, created_by: n.createdBy, created_at: now, updated_at: now, started_at: null, finished_at: null,
    next_attempt_at: now, lease_id: lease ? uuidv7() : null, lease_worker_id: lease?.workerId ?? null, lease_acquired_at: lease ? now : null,
    lease_expires_at: lease ? new Date(now.getTime() + lease.leaseMs) : null, progress: null, sequence: "1",
    workflow_id: null, workflow_step: null, depends_on: null, waiting_on: 0, parent_id: null, workflow_position: null,
  };
}

/**
 * Inserts new tasks with their SUBMITTED history rows in one
 * statement (no transaction round trips), as `rows` ({@link newTaskRow})
 * say; answers the ids it inserted. The others (an id or key taken, a lease
 * worker no longer CONNECTED) are written by nothing here. Answers each
 * inserted id with its row version (xmin).
 */
export async function insertNew(pool: pg.Pool, now: Date, rows: readonly TaskRow[], signal?: AbortSignal): Promise<Map<string, string>> {
  const col = <K extends keyof TaskRow>(k: K) => rows.map((r) => r[k]);
  const { rows: inserted } = await query<{ id: string; xmin: string }>(pool, batchSql.newTasksAndHistory, [
    col("id"), col("capability"), rows.map((r) => JSON.stringify(r.input)), col("max_attempts"), col("trace_id"), col("traceparent"),
    col("idempotency_key"), col("request_hash"), col("priority"), rows.map((r) => JSON.stringify(r.labels)), col("timeout_ms"),
    col("retry_initial_ms"), col("retry_max_ms"), col("retry_multiplier"), col("created_by"), now,
    col("lease_id"), col("lease_worker_id"), col("lease_acquired_at"), col("lease_expires_at"),
    ...submittedColumns(now, rows),
  ], signal);
  return new Map(inserted.map((r) => [r.id, r.xmin]));
}

/** Runs `work`; a business refusal (RES_, BIZ_, VAL_) is its answer, anything else propagates. */
export async function keep<R>(work: () => Promise<R>): Promise<R | MeshError> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof MeshError && /^(RES|BIZ|VAL)_/.test(error.reason)) return error;
    throw error;
  }
}
