import type pg from "pg";

/** An outbox row as the relay reads it. */
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

/** The advisory lock (session level, two-key form) that makes one relay active across ledger replicas. */
export const RELAY_LOCK = "hashtext('taskmesh:ledger'), hashtext('outbox-relay')";

/**
 * A LISTEN channel that wakes the active relay. The ledger itself never
 * notifies (NOTIFY serializes commits); it nudges its own relay in process,
 * and a relay on another replica polls. Left for tools that write the outbox.
 */
export const RELAY_CHANNEL = "ledger_outbox";

/** Statements of the outbox relay, all run on its dedicated (lock-holding) connection. */
export const relaySql = {
  tryLock: `SELECT pg_try_advisory_lock(${RELAY_LOCK}) AS locked`,
  unlock: `SELECT pg_advisory_unlock(${RELAY_LOCK}) AS unlocked`,
  listen: `LISTEN ${RELAY_CHANNEL}`,
  /** The oldest rows of the outbox: every row in it is still to be published. */
  unpublished: {
    name: "ledger-relay-unpublished",
    text: `SELECT id, event_id, task_id, sequence, type, payload, traceparent, created_at
           FROM ledger.outbox ORDER BY id LIMIT $1`,
  },
  /** Published rows leave the outbox (Kafka keeps the events, ledger.history the transitions). */
  markPublished: {
    name: "ledger-relay-mark-published",
    text: `DELETE FROM ledger.outbox WHERE id = ANY($1::bigint[])`,
  },
} satisfies Record<string, string | pg.QueryConfig>;
