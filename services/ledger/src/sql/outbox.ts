import type pg from "pg";

/** Statements on the transactional outbox (written with each transition; the outbox relay publishes it, see sql/relay.ts). */
export const outboxSql = {
  insert: {
    name: "ledger-outbox-insert",
    text: `INSERT INTO ledger.outbox (event_id, task_id, sequence, type, payload, traceparent, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)`,
  },
} satisfies Record<string, pg.QueryConfig>;
