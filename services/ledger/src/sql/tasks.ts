import type pg from "pg";

/** A row of `ledger.tasks` as pg returns it (bigint as string). */
export interface TaskRow {
  id: string;
  capability: string;
  state: StateName;
  input: Record<string, unknown>;
  output: Record<string, unknown> | null;
  error: StoredError | null;
  attempts: number;
  max_attempts: number;
  worker_id: string;
  trace_id: string;
  traceparent: string;
  idempotency_key: string;
  request_hash: string;
  priority: number;
  labels: Record<string, string>;
  timeout_ms: number;
  retry_initial_ms: number;
  retry_max_ms: number;
  retry_multiplier: number;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  next_attempt_at: Date | null;
  lease_id: string | null;
  lease_worker_id: string | null;
  lease_acquired_at: Date | null;
  lease_expires_at: Date | null;
  progress: StoredProgress | null;
  sequence: string;
  /** The workflow it belongs to; null outside one. */
  workflow_id: string | null;
  /** Its name in the workflow; null outside one. */
  workflow_step: string | null;
  /** The tasks of its workflow it waits for; null outside a workflow. */
  depends_on: string[] | null;
  /** How many of them have not SUCCEEDED yet (WAITING while > 0); for a parked parent, how many awaited children have not ended. */
  waiting_on: number;
  /** The task that spawned it; null for a task a client submitted. */
  parent_id: string | null;
  /** A workflow task's place in its submit (1-based); null outside one. */
  workflow_position: number | null;
}

/** Task states as stored. */
export type StateName = "WAITING" | "PENDING" | "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELLED" | "TIMED_OUT";

/** A TaskError as stored in jsonb. */
export interface StoredError {
  reason: string;
  message: string;
  retryable: boolean;
  details?: Record<string, unknown>;
}

/** A TaskProgress as stored in jsonb. */
export interface StoredProgress {
  percent?: number;
  message: string;
  details?: Record<string, unknown>;
  attempt: number;
  reported_at: string;
}

const COLUMNS = "t.*";

/**
 * The multi-row insert of new tasks, from one array per column; `leased` adds two arrays ($16 lease worker, '' for
 * none; $17 lease ms) and leases each task to its worker when that worker is CONNECTED.
 */
function insertManyText(leased: boolean): string {
  const lease = (text: string): string => (leased ? text : "");
  return `INSERT INTO ledger.tasks AS t (id, capability, state, input, max_attempts, trace_id, traceparent, idempotency_key, request_hash,
             priority, labels, timeout_ms, retry_initial_ms, retry_max_ms, retry_multiplier, created_by, created_at, updated_at, next_attempt_at, sequence${lease(`,
             lease_id, lease_worker_id, lease_acquired_at, lease_expires_at`)})
           SELECT v.id, v.capability, 'PENDING', v.input, v.max_attempts, v.trace_id, v.traceparent, v.idempotency_key, v.request_hash,
             v.priority, v.labels, v.timeout_ms, v.retry_initial_ms, v.retry_max_ms, v.retry_multiplier, v.created_by, now(), now(), now(), 1${lease(`,
             CASE WHEN w.worker_id IS NOT NULL THEN uuidv7() END, w.worker_id, CASE WHEN w.worker_id IS NOT NULL THEN now() END,
             CASE WHEN w.worker_id IS NOT NULL THEN now() + make_interval(secs => v.lease_ms::double precision / 1000) END`)}
           FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::jsonb[],
                       $11::int[], $12::int[], $13::int[], $14::float8[], $15::text[]${lease(", $16::text[], $17::int[]")})
             AS v(id, capability, input, max_attempts, trace_id, traceparent, idempotency_key, request_hash, priority, labels,
                  timeout_ms, retry_initial_ms, retry_max_ms, retry_multiplier, created_by${lease(", lease_worker, lease_ms")})${lease(`
             LEFT JOIN ledger.workers w ON w.worker_id = v.lease_worker AND w.state = 'CONNECTED'`)}
           ON CONFLICT DO NOTHING
           RETURNING ${COLUMNS}`;
}

/** Statements on `ledger.tasks`. */
export const taskSql = {
  now: { name: "ledger-now", text: "SELECT now() AS now" },
  /**
   * Inserts a new task unless its id or (created_by, idempotency_key) is taken; leased to worker $16 for $17 ms (sync
   * match) when that worker is CONNECTED, else without a lease ($16 '' for none).
   */
  insert: {
    name: "ledger-task-insert",
    text: `WITH w AS (SELECT worker_id FROM ledger.workers WHERE worker_id = $16 AND state = 'CONNECTED')
           INSERT INTO ledger.tasks AS t (id, capability, state, input, max_attempts, trace_id, traceparent, idempotency_key, request_hash,
             priority, labels, timeout_ms, retry_initial_ms, retry_max_ms, retry_multiplier, created_by, created_at, updated_at, next_attempt_at, sequence,
             lease_id, lease_worker_id, lease_acquired_at, lease_expires_at)
           VALUES (COALESCE($1::uuid, uuidv7()), $2, 'PENDING', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now(), now(), now(), 1,
             (SELECT uuidv7() FROM w), (SELECT worker_id FROM w), (SELECT now() FROM w), (SELECT now() + make_interval(secs => $17::double precision / 1000) FROM w))
           ON CONFLICT DO NOTHING
           RETURNING ${COLUMNS}`,
  },
  get: { name: "ledger-task-get", text: `SELECT ${COLUMNS} FROM ledger.tasks t WHERE id = $1` },
  getForUpdate: { name: "ledger-task-get-for-update", text: `SELECT ${COLUMNS} FROM ledger.tasks t WHERE id = $1 FOR UPDATE` },
  byIdempotencyKey: {
    name: "ledger-task-by-key",
    text: `SELECT ${COLUMNS} FROM ledger.tasks t WHERE created_by = $1 AND idempotency_key = $2 AND idempotency_key <> ''`,
  },
  /** Writes every mutable column of a task. */
  save: {
    name: "ledger-task-save",
    text: `UPDATE ledger.tasks t SET state = $2, output = $3, error = $4, attempts = $5, worker_id = $6, updated_at = $7, started_at = $8,
             finished_at = $9, next_attempt_at = $10, lease_id = $11, lease_worker_id = $12, lease_acquired_at = $13, lease_expires_at = $14,
             progress = $15, sequence = $16, waiting_on = $17
           WHERE id = $1 RETURNING ${COLUMNS}`,
  },
  /**
   * {@link taskSql.save} for many rows at once: one array per column, in `save`'s order; the caller holds the rows it wrote.
   * `t.id = ANY($1)` lets the planner find the rows by the primary key: with the join alone it chose a hash join over a
   * scan of the whole table for batches of a hundred rows or more. Run only as a part of `batchSql` (sql/batches.ts), so not prepared under a name of its own.
   */
  saveMany: {
    text: `UPDATE ledger.tasks t SET state = v.state, output = v.output, error = v.error, attempts = v.attempts, worker_id = v.worker_id,
             updated_at = v.updated_at, started_at = v.started_at, finished_at = v.finished_at, next_attempt_at = v.next_attempt_at,
             lease_id = v.lease_id, lease_worker_id = v.lease_worker_id, lease_acquired_at = v.lease_acquired_at, lease_expires_at = v.lease_expires_at,
             progress = v.progress, sequence = v.sequence
           FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[], $5::int[], $6::text[], $7::timestamptz[], $8::timestamptz[],
                       $9::timestamptz[], $10::timestamptz[], $11::uuid[], $12::text[], $13::timestamptz[], $14::timestamptz[], $15::jsonb[], $16::bigint[])
             AS v(id, state, output, error, attempts, worker_id, updated_at, started_at, finished_at, next_attempt_at,
                  lease_id, lease_worker_id, lease_acquired_at, lease_expires_at, progress, sequence)
           WHERE t.id = v.id AND t.id = ANY($1::uuid[])`,
  },
  /** Several tasks, locked in id order. */
  getManyForUpdate: { name: "ledger-task-get-many-for-update", text: `SELECT ${COLUMNS} FROM ledger.tasks t WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE` },
  /** {@link taskSql.insert} for many new tasks at once: one array per column, in `insert`'s order. */
  insertMany: { name: "ledger-task-insert-many", text: insertManyText(false) },
  /**
   * {@link taskSql.insertMany} for a batch where some tasks are leased at their insert (sync match): two more arrays,
   * each task's lease worker ('' for none) and lease length in ms. A batch without one takes `insertMany`, which joins
   * no worker.
   */
  insertManyLeased: { name: "ledger-task-insert-many-leased", text: insertManyText(true) },
  /** Dispatchable tasks of one capability, locked, skipping rows other claimers hold. */
  claimable: {
    name: "ledger-task-claimable",
    text: `SELECT ${COLUMNS} FROM ledger.tasks t
           WHERE state = 'PENDING' AND lease_id IS NULL AND capability = $1 AND next_attempt_at <= now()
           ORDER BY priority DESC, next_attempt_at, id
           LIMIT $2 FOR UPDATE SKIP LOCKED`,
  },
  /**
   * Fills worker slots ($2, in pick order) with dispatchable tasks of one
   * capability ($1) in dispatch order: the k-th task to the k-th slot whose
   * worker is CONNECTED. $4 is the number of slots (a plain limit the planner
   * can use with the dispatch index). Returns the leased rows with their
   * slot number `k` and row version (`row_version`, the xmin). The k-th task finds its worker by subscript in the
   * array of connected slots: a join of tasks to slots on `k` was planned
   * as a nested loop comparing every pair (60,000 comparisons, 37 of 48 ms,
   * for 245 tasks). MATERIALIZED: inlined, the array was built again for
   * every task.
   */
  assign: {
    name: "ledger-task-assign",
    text: `WITH slots AS MATERIALIZED (
             SELECT array_agg(s.worker_id ORDER BY s.n) AS workers
             FROM unnest($2::text[]) WITH ORDINALITY AS s(worker_id, n)
             JOIN ledger.workers w ON w.worker_id = s.worker_id AND w.state = 'CONNECTED'
           ), picked AS (
             SELECT id, priority, next_attempt_at FROM ledger.tasks
             WHERE state = 'PENDING' AND lease_id IS NULL AND capability = $1 AND next_attempt_at <= now()
             ORDER BY priority DESC, next_attempt_at, id
             LIMIT $4 FOR UPDATE SKIP LOCKED
           ), ranked AS (
             SELECT id, row_number() OVER (ORDER BY priority DESC, next_attempt_at, id) AS k FROM picked
           )
           UPDATE ledger.tasks t SET lease_id = uuidv7(), lease_worker_id = s.workers[r.k], lease_acquired_at = now(),
             lease_expires_at = now() + make_interval(secs => $3::double precision / 1000), updated_at = now()
           FROM ranked r CROSS JOIN slots s
           WHERE t.id = r.id AND r.k <= cardinality(s.workers)
           RETURNING ${COLUMNS}, r.k, t.xmin::text AS row_version`,
  },
  /** `lease_id IS NOT NULL` spelled out: the lease index is partial, and a generic plan cannot prove it from `= ANY($2)`. */
  renew: {
    name: "ledger-task-renew",
    text: `UPDATE ledger.tasks t SET lease_expires_at = now() + make_interval(secs => $3::double precision / 1000), updated_at = now()
           WHERE lease_id IS NOT NULL AND lease_id = ANY($2::uuid[]) AND lease_worker_id = $1 AND state IN ('PENDING', 'RUNNING')
           RETURNING ${COLUMNS}`,
  },
  /** Tasks whose lease expired, oldest expiry first. */
  expiredLeases: {
    name: "ledger-task-expired-leases",
    text: `SELECT ${COLUMNS} FROM ledger.tasks t
           WHERE lease_id IS NOT NULL AND lease_expires_at <= now()
           ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
  },
  /** Running attempts past their timeout. */
  timedOut: {
    name: "ledger-task-timed-out",
    text: `SELECT ${COLUMNS} FROM ledger.tasks t
           WHERE state = 'RUNNING' AND started_at + make_interval(secs => timeout_ms::double precision / 1000) <= now()
           ORDER BY started_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
  },
  /** Every task a worker holds a lease on. */
  leasedBy: {
    name: "ledger-task-leased-by",
    text: `SELECT ${COLUMNS} FROM ledger.tasks t WHERE lease_worker_id = $1 ORDER BY lease_expires_at FOR UPDATE`,
  },
  /** A page of tasks, newest first; each filter is skipped when empty. */
  list: {
    name: "ledger-task-list",
    text: `SELECT ${COLUMNS} FROM ledger.tasks t
           WHERE (cardinality($1::text[]) = 0 OR state = ANY($1::text[]))
             AND (cardinality($2::text[]) = 0 OR capability = ANY($2::text[]))
             AND ($3::timestamptz IS NULL OR created_at >= $3::timestamptz)
             AND ($4::timestamptz IS NULL OR created_at < $4::timestamptz)
             AND ($5::text = '' OR worker_id = $5::text)
             AND ($6::text = '' OR created_by = $6::text)
             AND ($7::uuid IS NULL OR id < $7::uuid)
             AND ($9::uuid IS NULL OR workflow_id = $9::uuid)
             AND ($10::uuid IS NULL OR parent_id = $10::uuid)
           ORDER BY id DESC LIMIT $8`,
  },
  /**
   * Pending tasks, claimed ones included: the dispatch index (pending, not
   * leased) and the lease index, so it costs what is pending, not the table.
   */
  pendingCount: {
    name: "ledger-task-pending-count",
    text: `SELECT ((SELECT count(*) FROM ledger.tasks WHERE state = 'PENDING' AND lease_id IS NULL)
                 + (SELECT count(*) FROM ledger.tasks WHERE lease_id IS NOT NULL AND state = 'PENDING'))::int AS n`,
  },
  /**
   * Per capability with tasks pending or running: how many of each, and
   * when the longest-waiting due task not yet leased became due (null when
   * none), with the database's time; from the dispatch and lease indexes (a
   * RUNNING task always holds a lease), so it costs what is in flight, not
   * the table.
   */
  queueStats: {
    name: "ledger-task-queue-stats",
    text: `SELECT capability,
             count(*) FILTER (WHERE state = 'PENDING')::int AS pending,
             count(*) FILTER (WHERE state = 'RUNNING')::int AS running,
             min(next_attempt_at) FILTER (WHERE state = 'PENDING' AND lease_id IS NULL AND next_attempt_at <= now()) AS oldest_due,
             now() AS read_at
           FROM (SELECT capability, state, next_attempt_at, lease_id FROM ledger.tasks WHERE state = 'PENDING' AND lease_id IS NULL
                 UNION ALL
                 SELECT capability, state, next_attempt_at, lease_id FROM ledger.tasks WHERE lease_id IS NOT NULL) AS live
           GROUP BY capability ORDER BY capability`,
  },
  count: {
    name: "ledger-task-count",
    text: `SELECT capability, state, count(*)::bigint AS n, min(created_at) AS oldest FROM ledger.tasks
           WHERE (cardinality($1::text[]) = 0 OR capability = ANY($1::text[]))
             AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
           GROUP BY capability, state ORDER BY capability`,
  },
} satisfies Record<string, pg.QueryConfig>;

/** Statements on a task's children (migration 0013). */
export const childSql = {
  /** The states of tasks $2 that are children of task $1. */
  states: { name: "ledger-child-states", text: "SELECT id, state FROM ledger.tasks WHERE parent_id = $1 AND id = ANY($2::uuid[])" },
  /** A parked task's 'awaits' edges: its earlier ones gone, one from each child of $2. */
  awaitEdges: {
    name: "ledger-child-await-edges",
    text: `WITH gone AS (DELETE FROM ledger.task_deps WHERE task_id = $1 AND kind = 'awaits')
           INSERT INTO ledger.task_deps (depends_on, task_id, kind) SELECT unnest($2::uuid[]), $1, 'awaits'
           ON CONFLICT (depends_on, task_id) DO UPDATE SET kind = 'awaits'`,
  },
  /**
   * New children of task $1 (its submitter and trace; each PENDING, due
   * now), one array per column; a step already taken under the parent (or
   * an id) inserts nothing. Answers the rows it inserted.
   */
  insert: {
    name: "ledger-child-insert",
    text: `INSERT INTO ledger.tasks AS t (id, capability, state, input, max_attempts, trace_id, traceparent, idempotency_key, request_hash,
             priority, labels, timeout_ms, retry_initial_ms, retry_max_ms, retry_multiplier, created_by, created_at, updated_at, next_attempt_at, sequence,
             parent_id, workflow_step)
           SELECT v.id, v.capability, 'PENDING', v.input, v.max_attempts, p.trace_id, p.traceparent, '', v.request_hash,
             v.priority, v.labels, v.timeout_ms, v.retry_initial_ms, v.retry_max_ms, v.retry_multiplier, p.created_by, now(), now(), now(), 1, p.id, v.step
           FROM unnest($2::uuid[], $3::text[], $4::jsonb[], $5::int[], $6::text[], $7::int[], $8::jsonb[], $9::int[], $10::int[], $11::int[],
                       $12::float8[], $13::text[])
             AS v(id, capability, input, max_attempts, request_hash, priority, labels, timeout_ms, retry_initial_ms, retry_max_ms, retry_multiplier, step)
             CROSS JOIN (SELECT id, trace_id, traceparent, created_by FROM ledger.tasks WHERE id = $1) p
           ON CONFLICT DO NOTHING
           RETURNING ${COLUMNS}`,
  },
  /** Children of task $1 by step ($2). */
  bySteps: { name: "ledger-child-by-steps", text: `SELECT ${COLUMNS} FROM ledger.tasks t WHERE parent_id = $1 AND workflow_step = ANY($2::text[])` },
} satisfies Record<string, pg.QueryConfig>;
