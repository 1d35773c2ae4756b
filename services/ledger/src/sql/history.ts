import type pg from "pg";
import type { StateName, StoredError } from "./tasks.js";

/** Transition kinds as stored. */
export type KindName = "SUBMITTED" | "STARTED" | "SUCCEEDED" | "FAILED" | "RETRYING" | "RELEASED" | "CANCELLED" | "TIMED_OUT" | "READY" | "PARKED";

/** A row of `ledger.history`. */
export interface HistoryRow {
  task_id: string;
  sequence: string;
  kind: KindName;
  from_state: StateName | "";
  to_state: StateName;
  attempt: number;
  worker_id: string;
  lease_id: string;
  at: Date;
  reason: string;
  error: StoredError | null;
  trace_id: string;
  next_attempt_at: Date | null;
  actor: string;
}

/** Statements on the append-only history. */
export const historySql = {
  insert: {
    name: "ledger-history-insert",
    text: `INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, worker_id, lease_id, at, reason, error, trace_id, next_attempt_at, actor)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING *`,
  },
  /**
   * {@link historySql.insert} for many transitions at once: one array per column (`historyColumns` in writer.ts), no RETURNING
   * (the caller holds the rows it wrote). Run only as a part of `batchSql` (sql/batches.ts), so not prepared under a name of its own.
   */
  insertMany: {
    text: `INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, worker_id, lease_id, at, reason, error, trace_id, next_attempt_at, actor)
           SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::timestamptz[],
                                $10::text[], $11::jsonb[], $12::text[], $13::timestamptz[], $14::text[])`,
  },
  /** The latest transition of each (task, lease) pair among the given kinds (replays of batched calls). */
  byLeases: {
    name: "ledger-history-by-leases",
    text: `SELECT DISTINCT ON (h.task_id, h.lease_id) h.* FROM ledger.history h
           JOIN unnest($1::uuid[], $2::text[]) AS c(task_id, lease_id) ON h.task_id = c.task_id AND h.lease_id = c.lease_id
           WHERE h.kind = ANY($3::text[]) ORDER BY h.task_id, h.lease_id, h.sequence DESC`,
  },
  /** A page of a task's transitions after a sequence. */
  page: {
    name: "ledger-history-page",
    text: "SELECT * FROM ledger.history WHERE task_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
  },
  /** The latest transition of given kinds made under a lease (for replaying a repeated call). */
  byLease: {
    name: "ledger-history-by-lease",
    text: `SELECT * FROM ledger.history WHERE task_id = $1 AND lease_id = $2 AND kind = ANY($3::text[])
           ORDER BY sequence DESC LIMIT 1`,
  },
  /** Per lease, the task that last recorded it and the task's state (for leases a renewal did not find). */
  tasksOfLeases: {
    name: "ledger-history-tasks-of-leases",
    text: `SELECT DISTINCT ON (h.lease_id) h.lease_id, h.task_id, t.state FROM ledger.history h JOIN ledger.tasks t ON t.id = h.task_id
           WHERE h.lease_id = ANY($1::text[]) ORDER BY h.lease_id, h.sequence DESC`,
  },
} satisfies Record<string, pg.QueryConfig>;
