import type pg from "pg";
import { TaskEvent } from "../../../gen/taskmesh/task/v1/task.js";
import { MeshError } from "../../kit/src/index.js";
import { uuidv7 } from "./ids.js";
import { eventTask, eventType, toTransition } from "./records.js";
import { historySql, type HistoryRow } from "./sql/history.js";
import { outboxSql } from "./sql/outbox.js";
import type { TaskRow } from "./sql/tasks.js";
import { EVENT_SOURCE, historyColumns } from "./writer.js";

/** Records the SUBMITTED transition (history and event) of tasks just inserted, three statements for all. */
export async function commitNew(client: pg.PoolClient, now: Date, rows: readonly TaskRow[]): Promise<void> {
  if (rows.length === 0) return;
  const histories: HistoryRow[] = rows.map((r) => ({
    task_id: r.id, sequence: "1", kind: "SUBMITTED", from_state: "", to_state: "PENDING", attempt: 0, worker_id: "", lease_id: "", at: now,
    reason: "", error: null, trace_id: r.trace_id, next_attempt_at: null, actor: r.created_by,
  }));
  await client.query(historySql.insertMany, historyColumns(histories));
  const historyOf = new Map(histories.map((h) => [h.task_id, h]));
  const events = rows.map((r) => ({
    id: uuidv7(), type: eventType("SUBMITTED"), source: EVENT_SOURCE, subject: r.id, time: now, sequence: 1n,
    task: eventTask(r, "SUBMITTED"), change: { $case: "transition" as const, value: toTransition(historyOf.get(r.id)!) }, traceId: r.trace_id,
  }));
  await client.query(outboxSql.insertMany, [
    events.map((e) => e.id), events.map((e) => e.subject), events.map(() => "1"), events.map((e) => e.type),
    events.map((e) => Buffer.from(TaskEvent.encode(e).finish())), rows.map((r) => r.traceparent), events.map(() => now),
  ]);
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
