import type pg from "pg";
import { pastCursor } from "./relay.js";

/**
 * Statements behind the ledger's scrape-time gauges. Each reads a partial
 * index (`tasks_dispatch_due` with `tasks_leases`, `tasks_running`) or what the outbox relay has not published, so
 * it costs what is pending, running or unpublished, not the table; only
 * `finished` scans the tasks, and is read far less often.
 */
export const metricsSql = {
  /** Pending tasks per capability, and how long the oldest due one has waited (null when none is due yet). */
  queues: {
    name: "ledger-metrics-queues",
    text: `SELECT capability, count(*)::int AS depth,
             extract(epoch FROM now() - min(next_attempt_at) FILTER (WHERE next_attempt_at <= now() AND lease_id IS NULL))::float8 AS oldest_due_s
           FROM (SELECT capability, next_attempt_at, lease_id FROM ledger.tasks WHERE state = 'PENDING' AND lease_id IS NULL
                 UNION ALL
                 SELECT capability, next_attempt_at, lease_id FROM ledger.tasks WHERE lease_id IS NOT NULL AND state = 'PENDING') AS pending
           GROUP BY capability`,
  },
  /** Running attempts. */
  running: {
    name: "ledger-metrics-running",
    text: `SELECT count(*)::int AS n FROM ledger.tasks WHERE state = 'RUNNING'`,
  },
  /** Finished tasks per final state: a scan of the table. */
  finished: {
    name: "ledger-metrics-finished",
    text: `SELECT state, count(*)::bigint::text AS n FROM ledger.tasks WHERE state NOT IN ('PENDING', 'RUNNING') GROUP BY state`,
  },
  /**
   * Events not yet published: transitions past the relay's cursor (read
   * from the `history_relay` index) and progress reports in the outbox, and
   * the age of the oldest (null when none).
   */
  outbox: {
    name: "ledger-metrics-outbox",
    text: `WITH c AS (SELECT txid, task_id, sequence FROM ledger.relay_cursor WHERE relay = 'tasks'),
           pending AS (
             SELECT h.at FROM ledger.history h, c WHERE ${pastCursor("h", "c")}
             UNION ALL
             SELECT created_at FROM ledger.outbox)
           SELECT count(*)::int AS lag, extract(epoch FROM now() - min(at))::float8 AS oldest_s FROM pending`,
  },
} satisfies Record<string, pg.QueryConfig>;
