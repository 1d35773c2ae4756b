import type pg from "pg";

/** A row of `ledger.workers`. */
export interface WorkerRow {
  worker_id: string;
  info: unknown;
  capabilities: string[];
  state: "CONNECTED" | "DRAINING" | "GONE";
  session_id: string;
  coordinator_id: string;
  connected_at: Date;
  last_heartbeat_at: Date;
  disconnected_at: Date | null;
  in_flight: number;
  load: number;
  first_seen_at: Date;
}

/** Statements on worker records. */
export const workerSql = {
  getForUpdate: { name: "ledger-worker-get-for-update", text: "SELECT * FROM ledger.workers WHERE worker_id = $1 FOR UPDATE" },
  get: { name: "ledger-worker-get", text: "SELECT * FROM ledger.workers WHERE worker_id = $1" },
  /** Registration: the given session becomes the current one. */
  register: {
    name: "ledger-worker-register",
    text: `INSERT INTO ledger.workers AS w (worker_id, info, capabilities, state, session_id, coordinator_id, connected_at, last_heartbeat_at,
             disconnected_at, in_flight, load, first_seen_at)
           VALUES ($1, $2, $3, $4, $5, $6, now(), now(), NULL, $7, $8, now())
           ON CONFLICT (worker_id) DO UPDATE SET info = EXCLUDED.info, capabilities = EXCLUDED.capabilities, state = EXCLUDED.state,
             session_id = EXCLUDED.session_id, coordinator_id = EXCLUDED.coordinator_id, connected_at = now(), last_heartbeat_at = now(),
             disconnected_at = NULL, in_flight = EXCLUDED.in_flight, load = EXCLUDED.load
           RETURNING *`,
  },
  /** Heartbeat of the current session. */
  heartbeat: {
    name: "ledger-worker-heartbeat",
    text: `UPDATE ledger.workers SET info = $2, capabilities = $3, state = $4, coordinator_id = $5, last_heartbeat_at = now(),
             in_flight = $6, load = $7
           WHERE worker_id = $1 RETURNING *`,
  },
  gone: {
    name: "ledger-worker-gone",
    text: "UPDATE ledger.workers SET state = 'GONE', disconnected_at = now(), in_flight = 0 WHERE worker_id = $1 RETURNING *",
  },
  /** A page of workers by id; each filter is skipped when empty. */
  list: {
    name: "ledger-worker-list",
    text: `SELECT * FROM ledger.workers
           WHERE (cardinality($1::text[]) = 0 OR state = ANY($1::text[]))
             AND ($2::text = '' OR $2::text = ANY(capabilities))
             AND ($3::timestamptz IS NULL OR last_heartbeat_at >= $3::timestamptz)
             AND worker_id > $4
           ORDER BY worker_id LIMIT $5`,
  },
} satisfies Record<string, pg.QueryConfig>;
