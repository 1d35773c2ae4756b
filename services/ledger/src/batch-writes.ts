import type pg from "pg";
import { MeshError } from "../../kit/src/index.js";
import { uuidv7 } from "./ids.js";
import { eventTask, eventType, toTransition } from "./records.js";
import { batchSql } from "./sql/batches.js";
import type { HistoryRow } from "./sql/history.js";
import type { TaskRow } from "./sql/tasks.js";
import { EVENT_SOURCE, eventColumns, historyColumns } from "./writer.js";

/** Records the SUBMITTED transition (history and event) of tasks just inserted, one statement for all. */
export async function commitNew(client: pg.PoolClient, now: Date, rows: readonly TaskRow[]): Promise<void> {
  if (rows.length === 0) return;
  const histories: HistoryRow[] = rows.map((r) => ({
    task_id: r.id, sequence: "1", kind: "SUBMITTED", from_state: "", to_state: "PENDING", attempt: 0, worker_id: "", lease_id: "", at: now,
    reason: "", error: null, trace_id: r.trace_id, next_attempt_at: null, actor: r.created_by,
  }));
  const events = rows.map((r, i) => ({
    id: uuidv7(), type: eventType("SUBMITTED"), source: EVENT_SOURCE, subject: r.id, time: now, sequence: 1n,
    task: eventTask(r, "SUBMITTED"), change: { $case: "transition" as const, value: toTransition(histories[i]!) }, traceId: r.trace_id,
  }));
  await client.query(batchSql.historyAndEvents, [...historyColumns(histories), ...eventColumns(events, rows.map((r) => r.traceparent), now)]);
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
