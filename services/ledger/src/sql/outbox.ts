import type pg from "pg";

/** Statements on the transactional outbox (the relay that publishes it is not part of this service yet). */
export const outboxSql = {
  insert: {
    name: "ledger-outbox-insert",
    text: `INSERT INTO ledger.outbox (event_id, task_id, sequence, type, payload, traceparent, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)`,
  },
} satisfies Record<string, pg.QueryConfig>;
