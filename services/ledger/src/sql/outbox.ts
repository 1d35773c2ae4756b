import type pg from "pg";

/** Statements on the transactional outbox (written with each transition; the outbox relay publishes it, see sql/relay.ts). */
export const outboxSql = {
  insert: {
    name: "ledger-outbox-insert",
    text: `INSERT INTO ledger.outbox (event_id, task_id, sequence, type, payload, traceparent, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)`,
  },
  /**
   * {@link outboxSql.insert} for many events at once, in order (their ids follow the arrays' order). Run only as a part of
   * `batchSql` (sql/batches.ts), so not prepared under a name of its own.
   */
  insertMany: {
    text: `INSERT INTO ledger.outbox (event_id, task_id, sequence, type, payload, traceparent, created_at)
           SELECT event_id, task_id, sequence, type, payload, traceparent, created_at
           FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::bytea[], $6::text[], $7::timestamptz[])
             WITH ORDINALITY AS v(event_id, task_id, sequence, type, payload, traceparent, created_at, n)
           ORDER BY n`,
  },
} satisfies Record<string, pg.QueryConfig>;
