import type pg from "pg";
import type { KindName } from "./history.js";
import type { StateName, StoredError } from "./tasks.js";

/** An outbox row (a progress report's event) as the relay reads it. */
export interface OutboxRow {
  readonly id: string;
  readonly event_id: string;
  readonly task_id: string;
  readonly sequence: string;
  readonly type: string;
  readonly payload: Buffer;
  readonly traceparent: string;
  readonly created_at: Date;
}

/**
 * A history row as the relay reads it: the transition, where it stands in
 * the relay's order (`txid`, then task id and sequence) and the `txid` of
 * the task's previous transition (null for the first), and what the event
 * carries of its task (null when the task was removed since).
 */
export interface TransitionRow extends Partial<Nullable<EventTaskColumns>> {
  readonly txid: string;
  readonly prev_txid: string | null;
  readonly event_id: string;
  readonly task_id: string;
  readonly sequence: string;
  readonly kind: KindName;
  readonly from_state: StateName | "";
  readonly to_state: StateName;
  readonly attempt: number;
  readonly worker_id: string;
  readonly lease_id: string;
  readonly at: Date;
  readonly reason: string;
  readonly error: StoredError | null;
  readonly trace_id: string;
  readonly next_attempt_at: Date | null;
  readonly actor: string;
  /** False when the task was removed since (its columns are null). */
  readonly task_found: boolean;
}

type Nullable<T> = { readonly [K in keyof T]: T[K] | null };

/** The columns of a task that its events carry (they never change), with the input of a SUBMITTED or READY and the output of a SUCCEEDED event. */
export interface EventTaskColumns {
  readonly capability: string;
  readonly max_attempts: number;
  readonly traceparent: string;
  readonly idempotency_key: string;
  readonly priority: number;
  readonly labels: Record<string, string>;
  readonly timeout_ms: number;
  readonly retry_initial_ms: number;
  readonly retry_max_ms: number;
  readonly retry_multiplier: number;
  readonly created_by: string;
  readonly created_at: Date;
  readonly workflow_id: string;
  readonly workflow_step: string;
  readonly parent_id: string;
  readonly input: Record<string, unknown>;
  readonly output: Record<string, unknown>;
}

/** Where the relay stands in history: the last transition it published, in its order. */
export interface RelayCursor {
  readonly txid: string;
  readonly task_id: string;
  readonly sequence: string;
}

/** The advisory lock (session level, two-key form) that makes one relay active across ledger replicas. */
export const RELAY_LOCK = "hashtext('taskmesh:ledger'), hashtext('outbox-relay')";

/**
 * A LISTEN channel that wakes the active relay. The ledger itself never
 * notifies (NOTIFY serializes commits); it nudges its own relay in process,
 * and a relay on another replica polls. Left for tools that write the outbox.
 */
export const RELAY_CHANNEL = "ledger_outbox";

/** What the relay reads of a history row: a {@link TransitionRow}, from {@link TRANSITION_SOURCES}; the task's columns null when it was removed. */
export const TRANSITION_COLUMNS = `h.txid::text AS txid, p.txid::text AS prev_txid, h.event_id, h.task_id, h.sequence, h.kind, h.from_state, h.to_state,
             h.attempt, h.worker_id, h.lease_id, h.at, h.reason, h.error, h.trace_id, h.next_attempt_at, h.actor,
             t.id IS NOT NULL AS task_found, t.capability, t.max_attempts, t.traceparent, t.idempotency_key, t.priority, t.labels, t.timeout_ms,
             t.retry_initial_ms, t.retry_max_ms, t.retry_multiplier, t.created_by, t.created_at, t.workflow_id, t.workflow_step, t.parent_id,
             CASE WHEN h.kind IN ('SUBMITTED', 'READY') THEN t.input END AS input, CASE WHEN h.kind = 'SUCCEEDED' THEN t.output END AS output`;

/**
 * True when history row `h` is past the relay's cursor `c` (a row of
 * `ledger.relay_cursor`) in the relay's order: its transition's event is
 * not published yet.
 */
export function pastCursor(h: string, c: string): string {
  return `(${h}.txid, ${h}.task_id, ${h}.sequence) > (${c}.txid, ${c}.task_id, ${c}.sequence)`;
}

/**
 * A history row `h` with its task's previous transition `p` and its task
 * `t`, each looked up by its key per history row (LATERAL with LIMIT: the
 * planner cannot turn them into joins). As joins, a fresh ledger's
 * statistics (a tasks table not yet analyzed, estimated at a hundred rows)
 * made the planner scan every task once per history row: 70–90 ms a read of
 * 500 rows, and Postgres spent 0.8 ms of CPU per task at 1,000 submits/s.
 */
export const TRANSITION_SOURCES = `ledger.history h
           LEFT JOIN LATERAL (SELECT p.txid FROM ledger.history p WHERE p.task_id = h.task_id AND p.sequence = h.sequence - 1 LIMIT 1) p ON true
           LEFT JOIN LATERAL (SELECT * FROM ledger.tasks t WHERE t.id = h.task_id LIMIT 1) t ON true`;

/** Statements of the outbox relay, all run on its dedicated (lock-holding) connection. */
export const relaySql = {
  tryLock: `SELECT pg_try_advisory_lock(${RELAY_LOCK}) AS locked`,
  unlock: `SELECT pg_advisory_unlock(${RELAY_LOCK}) AS unlocked`,
  listen: `LISTEN ${RELAY_CHANNEL}`,
  /** Where the relay stands in history (migration 0011 writes the row). */
  cursor: {
    name: "ledger-relay-cursor",
    text: "SELECT txid::text AS txid, task_id, sequence FROM ledger.relay_cursor WHERE relay = 'tasks'",
  },
  /**
   * Up to $4 transitions past the cursor ($1–$3) in the relay's order, only
   * of transactions older than every one still running: a transaction that
   * commits later has a txid at or above that bound, so it can never write
   * a row the cursor has passed. Each row with its task's previous
   * transition's txid (a task's transitions commit in sequence order, but a
   * transaction may take its txid before it waits for the task's lock, so a
   * later transition can have the smaller txid) and what its event carries
   * of the task.
   */
  transitions: {
    name: "ledger-relay-transitions",
    text: `SELECT ${TRANSITION_COLUMNS}
           FROM ${TRANSITION_SOURCES}
           WHERE (h.txid, h.task_id, h.sequence) > ($1::xid8, $2::uuid, $3::bigint)
             AND h.txid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
           ORDER BY h.txid, h.task_id, h.sequence LIMIT $4`,
  },
  /**
   * The oldest progress events in the outbox whose transition the relay has
   * published (at or before the cursor $1–$3): a task's progress follows
   * the transition it reports under.
   */
  progress: {
    name: "ledger-relay-progress",
    text: `SELECT o.id, o.event_id, o.task_id, o.sequence, o.type, o.payload, o.traceparent, o.created_at
           FROM ledger.outbox o JOIN ledger.history h ON h.task_id = o.task_id AND h.sequence = o.sequence
           WHERE (h.txid, h.task_id, h.sequence) <= ($1::xid8, $2::uuid, $3::bigint)
           ORDER BY o.id LIMIT $4`,
  },
  /** The relay's cursor moves past what it published. */
  advance: {
    name: "ledger-relay-advance",
    text: "UPDATE ledger.relay_cursor SET txid = $1::xid8, task_id = $2, sequence = $3 WHERE relay = 'tasks'",
  },
  /** Published progress events leave the outbox (Kafka keeps them). */
  markPublished: {
    name: "ledger-relay-mark-published",
    text: `DELETE FROM ledger.outbox WHERE id = ANY($1::bigint[])`,
  },
} satisfies Record<string, string | pg.QueryConfig>;
