import type pg from "pg";
import { historySql } from "./history.js";
import { taskSql } from "./tasks.js";

/** `text` with its parameters $1… moved up by `by`, to run it beside others in one statement. */
function shifted(text: string, by: number): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + by}`);
}

/**
 * The batch writes of a transition joined into one statement each (data-
 * modifying CTEs: every part runs once, to completion, in the statement's
 * snapshot), so a batch costs one round trip instead of two or three. The
 * parameters are those of the parts, in order.
 */
/** The columns of a new task row that a batch gives, one array each, in this order (see `newTaskColumns` in batch-writes.ts). */
const NEW_TASK_ARRAYS = `$1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::jsonb[],
                        $11::int[], $12::int[], $13::int[], $14::float8[], $15::text[], $17::uuid[], $18::text[], $19::timestamptz[], $20::timestamptz[]`;

/** `text` with `from` replaced once by `to`; throws when `from` is not in it (the statements below are built from others). */
function replaced(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`sql/batches.ts: expected ${JSON.stringify(from)} in a statement it builds on`);
  return text.replace(from, to);
}

/** {@link taskSql.saveMany} writing a row only while it is still row version $17 (its xmin), answering the ids it wrote. */
const saveManyIfUnchanged = replaced(replaced(replaced(taskSql.saveMany.text,
  "$16::bigint[])", "$16::bigint[], $17::xid[])"),
  "progress, sequence)", "progress, sequence, version)"),
  "WHERE t.id = v.id AND t.id = ANY($1::uuid[])", "WHERE t.id = v.id AND t.id = ANY($1::uuid[]) AND t.xmin = v.version RETURNING t.id");

/**
 * The `history` part of a batch statement that records a transition per
 * row the CTE `written` wrote (its `id`s), and nothing for the rows it left
 * out: history rows from $1–$14, moved up by `by`. Each history row is its
 * transition's event too (migration 0011): the outbox relay publishes it.
 */
function historyOf(written: string, by: number): string {
  return shifted(`history AS (
             INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, worker_id, lease_id, at, reason, error, trace_id, next_attempt_at, actor)
             SELECT h.* FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::timestamptz[],
                                    $10::text[], $11::jsonb[], $12::text[], $13::timestamptz[], $14::text[])
               AS h(task_id, sequence, kind, from_state, to_state, attempt, worker_id, lease_id, at, reason, error, trace_id, next_attempt_at, actor)
             WHERE h.task_id IN (SELECT id FROM ${written})
           )`, by);
}

export const batchSql = {
  /**
   * New tasks with their SUBMITTED history rows in one statement
   * (its own transaction: no BEGIN or COMMIT round trip), every value given:
   * $16 is the database's time (DbClock), the rows' created, updated
   * and due time; a sync-matched task carries its lease ($17–$20, nulls for
   * none). A task whose id or idempotency key is taken, or whose lease
   * worker is not CONNECTED, is not inserted, and neither is its history
   * row: the statement answers the ids it inserted, and the
   * caller takes the others the transactional way (with each row's version,
   * its xmin). History ($21–$34) as {@link historySql.insertMany}, one row
   * per task.
   */
  newTasksAndHistory: {
    name: "ledger-batch-new-tasks-and-history",
    text: `WITH ins AS (
             INSERT INTO ledger.tasks AS t (id, capability, state, input, max_attempts, trace_id, traceparent, idempotency_key, request_hash,
               priority, labels, timeout_ms, retry_initial_ms, retry_max_ms, retry_multiplier, created_by, created_at, updated_at, next_attempt_at, sequence,
               lease_id, lease_worker_id, lease_acquired_at, lease_expires_at)
             SELECT v.id, v.capability, 'PENDING', v.input, v.max_attempts, v.trace_id, v.traceparent, v.idempotency_key, v.request_hash,
               v.priority, v.labels, v.timeout_ms, v.retry_initial_ms, v.retry_max_ms, v.retry_multiplier, v.created_by,
               $16::timestamptz, $16::timestamptz, $16::timestamptz, 1, v.lease_id, v.lease_worker_id, v.lease_acquired_at, v.lease_expires_at
             FROM unnest(${NEW_TASK_ARRAYS})
               AS v(id, capability, input, max_attempts, trace_id, traceparent, idempotency_key, request_hash, priority, labels,
                    timeout_ms, retry_initial_ms, retry_max_ms, retry_multiplier, created_by, lease_id, lease_worker_id, lease_acquired_at, lease_expires_at)
             WHERE v.lease_worker_id IS NULL
                OR EXISTS (SELECT 1 FROM ledger.workers w WHERE w.worker_id = v.lease_worker_id AND w.state = 'CONNECTED')
             ON CONFLICT DO NOTHING
             RETURNING t.id, t.xmin::text AS xmin
           ), ${historyOf("ins", 20)}
           SELECT id, xmin FROM ins`,
  },
  /** {@link historySql.insertMany}, prepared under a name of its own. */
  history: { name: "ledger-batch-history", text: historySql.insertMany.text },
  /**
   * {@link batchSql.tasksAndHistory} for rows the writer read earlier,
   * without a lock: each task row is written only while it is still the
   * version the writer computed its next state from ($17, the rows' xmin),
   * and only the written tasks get their history rows ($18–$31). Its own
   * transaction; answers the ids it wrote.
   */
  tasksAndHistoryIfUnchanged: {
    name: "ledger-batch-tasks-and-history-if-unchanged",
    text: `WITH saved AS (${saveManyIfUnchanged}), ${historyOf("saved", 17)}
           SELECT id FROM saved`,
  },
  /** {@link taskSql.saveMany} ($1–$16) and {@link historySql.insertMany} ($17–$30); answers how many task rows it wrote. */
  tasksAndHistory: {
    name: "ledger-batch-tasks-and-history",
    text: `WITH saved AS (${taskSql.saveMany.text} RETURNING 1),
           history AS (${shifted(historySql.insertMany.text, 16)})
           SELECT count(*)::int AS saved FROM saved`,
  },
} satisfies Record<string, pg.QueryConfig>;
