import type pg from "pg";

/** Statements on the transactional outbox (written with each transition; the outbox relay publishes it, see sql/relay.ts). */
export const outboxSql = {
  insert: {
    name: "ledger-outbox-insert",
    text: `INSERT INTO ledger.outbox (event_id, task_id, sequence, type, payload, traceparent, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)`,
  },
  /**
   * {@link outboxSql.insert} for many events at once, in order (their ids follow the arrays' order): one array per column,
   * except the payloads, which arrive as one binary parameter ($5, every payload one after the other; $8 and $9 give each
   * one's start, from 1, and size), and the time ($7, one for all). A bytea array would travel as hex text, twice the
   * bytes, parsed element by element. Run only as a part of `batchSql` (sql/batches.ts), so not prepared under a name of its own.
   */
  insertMany: {
    text: `INSERT INTO ledger.outbox (event_id, task_id, sequence, type, payload, traceparent, created_at)
           SELECT event_id, task_id, sequence, type, substring($5::bytea FROM start FOR size), traceparent, $7::timestamptz
           FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $6::text[], $8::int[], $9::int[])
             WITH ORDINALITY AS v(event_id, task_id, sequence, type, traceparent, start, size, n)
           ORDER BY n`,
  },
} satisfies Record<string, pg.QueryConfig>;
